"""Threads, warm-up and runtime facts (``fastnn.set_num_threads``, ``fastnn.warmup``, ...)."""

from __future__ import annotations

import time

import numba
import numpy as np

from .kernels import _jit

__all__ = ["set_num_threads", "get_num_threads", "warmup", "threading_layer", "compiled_signatures"]


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for fastnn's parallel kernels (``1 <= n <= NUMBA_NUM_THREADS``).

    Like :func:`numba.set_num_threads`, the setting applies to the calling Python thread.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an integer, got {n!r}")
    top = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= top:
        raise ValueError(f"set_num_threads: n must be in [1, {top}] (NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(int(n))


def get_num_threads() -> int:
    """Number of threads fastnn's parallel kernels use in the calling Python thread."""
    return numba.get_num_threads()


def threading_layer() -> str:
    """The threading layer in use (after the first parallel call), else the one requested."""
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return _jit.threading_layer_requested


def warmup(dtypes=("float32", "float64"), verbose: bool = False) -> float:
    """Compile (or load from Numba's cache) every kernel for ``dtypes``; returns seconds taken.

    Each op of :mod:`fastnn.functional` is called once on a tiny input of each dtype, which
    exercises exactly the signatures fastnn uses.
    """
    from . import functional as F

    t0 = time.perf_counter()
    for name in dtypes:
        dt = np.dtype(name)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"warmup: dtype must be float32 or float64, got {name!r}")
        rng = np.random.default_rng(0)
        state = np.random.get_state()  # dropout draws from the global RNG; leave it untouched
        x = rng.standard_normal((2, 2, 5, 5)).astype(dt)
        W = rng.standard_normal((3, 2, 3, 3)).astype(dt)
        b = np.zeros(3, dt)
        # 3x3 stride 1 and 2: the register-blocked kernels ("direct", stride 2's data gradient
        # by phases) and the panels ("gemm"); stride 3: the general direct loops
        for algorithm, stride in (("direct", 1), ("direct", 2), ("gemm", 1), ("direct", 3)):
            out = F.conv2d(x, W, b, stride, 1, algorithm)
            F.conv2d_backward_data(out, W, x.shape, stride, 1, algorithm)
            F.conv2d_backward_weight(x, out, W.shape, stride, 1, algorithm)
        W1 = W[:, :, :1, :1].copy()  # 1x1 filters: the pointwise gemm kernels
        out1 = F.conv2d(x, W1, b, 1, 0, "gemm")
        F.conv2d_backward_data(out1, W1, x.shape, 1, 0, "gemm")
        F.conv2d_backward_weight(x, out1, W1.shape, 1, 0, "gemm")
        F.conv2d_backward_bias(out)
        col = F.im2col(x, 3, 3, 1, 1)
        F.col2im(col, x.shape, 3, 3, 1, 1)
        for ph, st, pd in ((2, 2, 0), (3, 1, 1)):  # the 2x2 fast path and the general kernels
            p, am = F.max_pool2d(x, ph, ph, st, pd, return_argmax=True)
            F.max_pool2d_backward(p, am, x.shape, ph, ph, st, pd)
        big = rng.standard_normal(2 * F.SERIAL_MAX_SIZE + 65).astype(dt)  # parallel variants
        F.relu_backward(*F.relu(big))
        F.sigmoid_backward(big, F.sigmoid(big))
        F.dropout_backward(*F.dropout(big, 0.5))
        for v in (big, x):  # np.random.rand's path, for a global generator other than MT19937
            F._dropout_with_rand(v, 0.5, np.empty_like(v), np.empty(v.shape, np.bool_))
        rows = big[:-65].reshape(-1, 64)
        labels = np.zeros(rows.shape[0], dtype=np.intp)
        F.softmax_cross_entropy_with_grad(rows, labels)
        F.softmax_cross_entropy(rows, labels)
        F.softmax(rows)
        for xr in (rows, rows[:4]):  # softmax regression: parallel and serial
            F.linear_softmax_cross_entropy_with_grad(xr, rows[0].reshape(64, 1), rows[0, :1],
                                                     labels[: xr.shape[0]])
        _warm_optimizers(big)
        bigm = rows.reshape(64, -1)
        bo, bxn, bmu, bvar, bstd = F.batch_norm_train(bigm, bigm[0], bigm[0])
        F.batch_norm_backward(bo, bxn, bstd, bigm[0])
        logits = x.reshape(20, 5)
        F.softmax_cross_entropy_with_grad(logits, np.arange(20) % 5)
        F.softmax(logits)
        loss, y = F.softmax_cross_entropy(logits, np.arange(20) % 5)
        F.softmax_cross_entropy_backward(y, np.arange(20) % 5)
        F.softmax_cross_entropy_backward(y, np.eye(5, dtype=dt)[np.arange(20) % 5])
        r, mask = F.relu(x)
        F.relu_backward(r, mask)
        s = F.sigmoid(x)
        F.sigmoid_backward(s, s)
        d, m = F.dropout(x, 0.5)
        F.dropout_backward(d, m)
        flat = x.reshape(2, -1)
        ones = np.ones(flat.shape[1], dt)
        bn, xn, mu, var, std = F.batch_norm_train(flat, ones, ones)
        F.batch_norm_eval(flat, ones, ones, mu, var)
        F.batch_norm_backward(bn, xn, std, ones)
        from .data import gather_rows

        gather_rows(rng.standard_normal((4, 8)).astype(dt), [1, 0])
        gather_rows(rng.standard_normal((300, 200)).astype(dt), np.arange(200))  # parallel
        np.random.set_state(state)
        if verbose:
            print(f"fastnn.warmup: {name} ready after {time.perf_counter() - t0:.2f} s")
    return time.perf_counter() - t0


def _warm_optimizers(p):
    """One update of every optimizer on a parameter large enough to take the kernel path."""
    from . import optimizers

    for cls in (optimizers.SGD, optimizers.Momentum, optimizers.Nesterov, optimizers.AdaGrad,
                optimizers.RMSprop, optimizers.Adam):
        params = {"w": p.copy()}
        cls().update(params, {"w": p})


def compiled_signatures() -> dict:
    """``{kernel name: [signature, ...]}`` of every kernel compiled in this process so far."""
    from . import kernels

    return {
        name: [str(sig) for sig in getattr(kernels, name).signatures]
        for name in kernels.__all__
    }
