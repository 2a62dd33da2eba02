"""Softmax and the fused softmax-with-cross-entropy loss.

Rows are independent: every kernel runs ``prange`` over blocks of rows and each iteration owns
its rows of the output, so results do not depend on the thread count. Softmax is
max-subtracted (finite for any finite logits). The loss has two modes: ``eps > 0`` is the book's
``-log(y[t] + eps)``; ``eps == 0`` is the exact log-sum-exp form ``log(sum(exp(x - m))) - (x[t] - m)``.

``exp`` is the vectorisable row function of :mod:`._vexp` (libm's ``exp`` does not vectorise).
NaN rows propagate, as in NumPy.
"""

import numpy as np
from numba import prange

from ._jit import njit
from ._vexp import _exp_shifted_row, _scratch

# rows handled by one prange iteration: amortises the scratch allocation over small rows
_ROW_BLOCK = 16


@njit(cache=True, nogil=True, error_model="numpy")
def _row_max(x):
    """Maximum of a row; NaN if the row holds a NaN (NumPy's ``max``)."""
    m = x[0]
    nan = False
    for j in range(x.shape[0]):
        v = x[j]
        m = v if v > m else m
        nan = nan or v != v
    if nan:
        for j in range(x.shape[0]):
            if x[j] != x[j]:
                return x[j]
    return m


@njit(cache=True, nogil=True, error_model="numpy")
def _softmax_row(x, y, scratch):
    """``y = exp(x - max(x)) / sum(...)`` for one row; returns ``(max, sum)``."""
    m = _row_max(x)
    s = _exp_shifted_row(x, m, y, scratch)
    for j in range(x.shape[0]):
        y[j] = y[j] / s
    return m, s


@njit(cache=True, nogil=True, error_model="numpy")
def _row_loss(x, y, m, s, t, eps):
    """Cross-entropy of one row: book mode (``eps > 0``) or exact log-sum-exp (``eps == 0``)."""
    if eps > 0:
        return -np.log(y[t] + eps)
    return np.log(s) - (x[t] - m)


@njit(cache=True, nogil=True, error_model="numpy")
def _mean(row_loss):
    total = row_loss.dtype.type(0)
    for i in range(row_loss.shape[0]):
        total += row_loss[i]
    return total / row_loss.dtype.type(row_loss.shape[0])


@njit(cache=True, nogil=True, error_model="numpy")
def _softmax_rows(x, out, i0, i1):
    scratch = _scratch(x, x.shape[1])
    for i in range(i0, i1):
        _softmax_row(x[i], out[i], scratch)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax_forward_kernel(x, out):
    """Row-wise softmax.

    Shape
    -----
    x, out: (M, K) C-contiguous (any leading axes flattened into M).
    """
    M = x.shape[0]
    for blk in prange((M + _ROW_BLOCK - 1) // _ROW_BLOCK):
        _softmax_rows(x, out, blk * _ROW_BLOCK, min(M, (blk + 1) * _ROW_BLOCK))


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_forward_serial_kernel(x, out):
    """Single-threaded :func:`softmax_forward_kernel` for small inputs."""
    _softmax_rows(x, out, 0, x.shape[0])


@njit(cache=True, nogil=True, error_model="numpy")
def _loss_rows(x, labels, eps, y, row_loss, i0, i1):
    scratch = _scratch(x, x.shape[1])
    for i in range(i0, i1):
        m, s = _softmax_row(x[i], y[i], scratch)
        row_loss[i] = _row_loss(x[i], y[i], m, s, labels[i], eps)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_forward_kernel(x, labels, eps, y, row_loss):
    """Softmax of ``x`` into ``y`` and the mean cross-entropy against integer ``labels``.

    ``row_loss`` receives each row's loss; the mean is summed serially afterwards (fixed order,
    no shared accumulator) and returned.

    Shape
    -----
    x, y: (N, K); labels: (N,) intp in [0, K); row_loss: (N,). Returns a scalar of x's dtype.
    """
    N = x.shape[0]
    for blk in prange((N + _ROW_BLOCK - 1) // _ROW_BLOCK):
        _loss_rows(x, labels, eps, y, row_loss, blk * _ROW_BLOCK, min(N, (blk + 1) * _ROW_BLOCK))
    return _mean(row_loss)


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_forward_serial_kernel(x, labels, eps, y, row_loss):
    """Single-threaded :func:`softmax_cross_entropy_forward_kernel` for small inputs."""
    _loss_rows(x, labels, eps, y, row_loss, 0, x.shape[0])
    return _mean(row_loss)


@njit(cache=True, nogil=True, error_model="numpy")
def _fused_rows(x, labels, t, eps, dx, row_loss, i0, i1):
    N, K = x.shape
    n = x.dtype.type(N)
    one = x.dtype.type(1)
    dense = t.shape[0] == N
    scratch = _scratch(x, K)
    for i in range(i0, i1):
        yi = dx[i]
        m, s = _softmax_row(x[i], yi, scratch)
        c = labels[i]
        row_loss[i] = _row_loss(x[i], yi, m, s, c, eps)
        if dense:
            ti = t[i]
            for j in range(K):
                yi[j] = (yi[j] - ti[j]) / n
        else:
            for j in range(K):
                yi[j] = yi[j] / n
            yi[c] = yi[c] - one / n


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_fused_kernel(x, labels, t, eps, dx, row_loss):
    """Loss and gradient in one pass: ``dx = (softmax(x) - target) / N``.

    The target is ``t`` when it has ``N`` rows (dense one-hot or soft targets; ``labels`` are
    then its argmax, used for the loss as in the book), else the one-hot of ``labels``
    (pass a ``(0, K)`` array as ``t``). Returns the mean loss.

    Shape
    -----
    x, dx: (N, K); labels: (N,) intp; t: (N, K) or (0, K); row_loss: (N,).
    """
    N = x.shape[0]
    for blk in prange((N + _ROW_BLOCK - 1) // _ROW_BLOCK):
        _fused_rows(x, labels, t, eps, dx, row_loss, blk * _ROW_BLOCK, min(N, (blk + 1) * _ROW_BLOCK))
    return _mean(row_loss)


@njit(cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_fused_serial_kernel(x, labels, t, eps, dx, row_loss):
    """Single-threaded :func:`softmax_cross_entropy_fused_kernel` for small inputs."""
    _fused_rows(x, labels, t, eps, dx, row_loss, 0, x.shape[0])
    return _mean(row_loss)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_backward_kernel(y, labels, out):
    """``out = (y - onehot(labels)) / N``.

    Shape
    -----
    y, out: (N, K); labels: (N,) intp.
    """
    N, K = y.shape
    n = y.dtype.type(N)
    one = y.dtype.type(1)
    for i in prange(N):
        for j in range(K):
            out[i, j] = y[i, j] / n
        t = labels[i]
        out[i, t] = (y[i, t] - one) / n


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax_cross_entropy_backward_dense_kernel(y, t, out):
    """``out = (y - t) / N`` for a dense (one-hot or soft) target ``t``.

    Shape
    -----
    y, t, out: (N, K).
    """
    N, K = y.shape
    n = y.dtype.type(N)
    for i in prange(N):
        for j in range(K):
            out[i, j] = (y[i, j] - t[i, j]) / n
