"""The benchmark table of fastnn: one list of cases shared by ``fastnn bench``, asv and the tests.

Each :class:`Case` is one operation as a network runs it (for example "conv2d fwd+bwd" is the
forward pass plus the data, weight and bias gradients) with

* a ``reference`` callable: the book's algorithm in plain NumPy, built from
  :mod:`fastnn.reference` the way the book's layers use it (one ``im2col`` per convolution,
  kept for the backward pass; ``Relu.backward`` zeroing ``dout`` in place). Unlike the book,
  the reference keeps float32 as float32 (the book's ``im2col`` always allocates float64), so
  float32 speed-ups here are conservative;
* a ``fastnn`` callable: the same work through :mod:`fastnn.functional`;
* an optional ``torch`` callable (``torch.nn.functional`` forward + autograd backward), present
  only when ``import torch`` succeeds; torch is never required;
* named input shapes: every case has ``"tiny"`` for correctness tests, ``"book"`` for the MNIST
  networks of the book at batch 100 and ``"large"`` for ImageNet-like layers
  (:data:`SHAPE_NAMES`); some add the rest of the shape set their performance targets are
  stated on (e.g. the six DeepConvNet layers as ``"deep1"`` ... ``"deep6"``). The group name
  ``"all"`` (:data:`ALL_SHAPES`) selects every shape of a case except ``"tiny"``;
* ``make(shape, dtype)``: the arguments, drawn from a fixed seed;
* ``work(shape, dtype)``: floating-point operations (convolution) or bytes moved (memory-bound
  ops), so reports can show GFLOP/s or GB/s.

:func:`run` times the cases (median of repeated :func:`time.perf_counter` measurements after a
warm-up call, the repeat count chosen from a time budget) and :func:`format_table` renders the
results.

Examples
--------
>>> from fastnn import bench
>>> results = bench.run(ops=["relu"], shapes=["book"], dtypes=["float32"])  # doctest: +SKIP
>>> print(bench.format_table(results))  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import functional as F
from . import reference as R

__all__ = [
    "Case",
    "Shape",
    "CASES",
    "CASE_KEYS",
    "SHAPE_NAMES",
    "ALL_SHAPES",
    "DEFAULT_SHAPES",
    "ASV_SHAPES",
    "IMPLEMENTATIONS",
    "SEED",
    "get_case",
    "shape_names",
    "asv_shapes",
    "geometric_means",
    "torch_available",
    "available_implementations",
    "outputs_close",
    "run",
    "format_table",
]

#: Seed of every input drawn by :meth:`Case.make`.
SEED = 1234
#: Shape names every case defines, smallest first.
SHAPE_NAMES = ("tiny", "book", "large")
#: Group name selecting every shape of each case except ``"tiny"``.
ALL_SHAPES = "all"
#: Shapes timed by ``fastnn bench`` when none are named.
DEFAULT_SHAPES = ("book",)
#: Shapes of the asv benchmarks (the book's MNIST shapes and a larger one).
ASV_SHAPES = ("book", "large")
#: Implementation names, in table order.
IMPLEMENTATIONS = ("reference", "fastnn", "torch")

_DTYPES = ("float32", "float64")


# --------------------------------------------------------------------------- case records
@dataclass(frozen=True)
class Shape:
    """One named input size of a :class:`Case`.

    Parameters
    ----------
    params : dict
        Keyword parameters of the case's input maker (sizes, stride, pad...).
    desc : str
        Human-readable description, e.g. ``"x(100,1,28,28) W(30,1,5,5)"``.
    small : bool
        True when the pure-NumPy reference runs in well under a second (``tiny`` and
        ``book``); False for shapes that are slow or memory-hungry for the reference.
    """

    params: dict
    desc: str
    small: bool = True


@dataclass(frozen=True)
class Case:
    """One benchmarked operation.

    Parameters
    ----------
    key : str
        Identifier used by ``fastnn bench --ops`` and the asv class names, e.g. ``"conv2d"``.
    op : str
        Display name, e.g. ``"conv2d fwd+bwd"``.
    shapes : dict of str to Shape
        The named shapes: every name of :data:`SHAPE_NAMES`, then any further shapes of the
        issue's shape set, in report order.
    maker : callable
        ``maker(rng, dtype, **params) -> tuple`` of arguments.
    reference, fastnn : callable
        ``f(*args)`` doing the whole operation; return a tuple of results.
    work_fn : callable
        ``work_fn(itemsize, **params) -> float``: FLOPs or bytes for one call.
    unit : {'FLOP', 'B'}
        What ``work_fn`` counts.
    torch_factory : callable, optional
        ``torch_factory(torch) -> f(*args)``: builds the PyTorch callable.
    note : str
        One-line remark shown by ``fastnn bench --list``.
    """

    key: str
    op: str
    shapes: dict
    maker: Callable[..., tuple]
    reference: Callable[..., Any]
    fastnn: Callable[..., Any]
    work_fn: Callable[..., float]
    unit: str
    torch_factory: Callable[[Any], Callable[..., Any]] | None = None
    note: str = ""
    _torch_fn: list = field(default_factory=list, repr=False, compare=False)

    def shape_names(self, include_tiny=False):
        """The case's shape names in table order (``"tiny"`` only if ``include_tiny``)."""
        return tuple(n for n in self.shapes if include_tiny or n != "tiny")

    def shape(self, name):
        """Return the :class:`Shape` called ``name``.

        Raises
        ------
        ValueError
            If the case has no such shape.
        """
        try:
            return self.shapes[name]
        except KeyError:
            raise ValueError(
                f"bench: case {self.key!r} has no shape {name!r}; "
                f"known shapes: {', '.join(self.shapes)}"
            ) from None

    def make(self, shape, dtype="float64"):
        """Build the arguments of the callables for ``shape`` and ``dtype``.

        Parameters
        ----------
        shape : str
            A name of :data:`SHAPE_NAMES`.
        dtype : {'float32', 'float64'}
            Floating-point dtype of the inputs.

        Returns
        -------
        tuple
            Arguments, the same for every implementation; drawn from ``SEED`` so every call
            returns equal arrays.
        """
        dt = _check_dtype(dtype)
        rng = np.random.default_rng(SEED)
        return self.maker(rng, dt, **self.shape(shape).params)

    def work(self, shape, dtype="float64"):
        """FLOPs (``unit == 'FLOP'``) or bytes moved (``unit == 'B'``) by one call.

        Parameters
        ----------
        shape : str
            A name of :data:`SHAPE_NAMES`.
        dtype : {'float32', 'float64'}
            Bytes depend on the item size; FLOPs do not.

        Returns
        -------
        float
        """
        dt = _check_dtype(dtype)
        return float(self.work_fn(dt.itemsize, **self.shape(shape).params))

    def callable(self, impl):
        """The callable of implementation ``impl`` (``'reference'``, ``'fastnn'``, ``'torch'``).

        Raises
        ------
        ValueError
            For an unknown name.
        RuntimeError
            For ``'torch'`` when PyTorch is not installed or the case has no torch version.
        """
        if impl == "reference":
            return self.reference
        if impl == "fastnn":
            return self.fastnn
        if impl == "torch":
            torch = _import_torch()
            if torch is None:
                raise RuntimeError("bench: PyTorch is not installed (it is optional)")
            if self.torch_factory is None:
                raise RuntimeError(f"bench: case {self.key!r} has no torch implementation")
            if not self._torch_fn:
                self._torch_fn.append(self.torch_factory(torch))
            return self._torch_fn[0]
        raise ValueError(
            f"bench: unknown implementation {impl!r}; expected one of {', '.join(IMPLEMENTATIONS)}"
        )


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"bench: dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


# --------------------------------------------------------------------------- optional torch
_torch_module: list = []


def _import_torch():
    """``torch`` if it can be imported, else None (cached; never raises)."""
    if not _torch_module:
        try:
            import torch  # noqa: PLC0415 - optional dependency
        except Exception:  # ImportError, or a broken install
            torch = None
        _torch_module.append(torch)
    return _torch_module[0]


def torch_available():
    """Whether PyTorch can be imported (it is an optional comparison column)."""
    return _import_torch() is not None


def available_implementations():
    """``('reference', 'fastnn')``, plus ``'torch'`` when PyTorch is installed."""
    return IMPLEMENTATIONS if torch_available() else IMPLEMENTATIONS[:2]


def _t(torch, a, grad=False):
    """NumPy array -> torch tensor sharing memory (a leaf needing a gradient if ``grad``)."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_() if grad else t


# --------------------------------------------------------------------------- helpers
def _out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def _randn(rng, dt, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dt)


# --------------------------------------------------------------------------- convolution
def _conv_make(rng, dt, N, C, H, W, FN, FH, FW, stride=1, pad=0):
    OH, OW = _out_size(H, FH, stride, pad), _out_size(W, FW, stride, pad)
    x = _randn(rng, dt, (N, C, H, W))
    Wt = _randn(rng, dt, (FN, C, FH, FW), 0.1)
    b = _randn(rng, dt, (FN,), 0.1)
    dout = _randn(rng, dt, (N, FN, OH, OW))
    return x, Wt, b, dout, stride, pad


def _conv_flops(itemsize, N, C, H, W, FN, FH, FW, stride=1, pad=0):
    OH, OW = _out_size(H, FH, stride, pad), _out_size(W, FW, stride, pad)
    macs = N * FN * OH * OW * C * FH * FW
    return 2.0 * macs, N * FN * OH * OW


def _conv_fwd_work(itemsize, **p):
    gemm, outputs = _conv_flops(itemsize, **p)
    return gemm + outputs  # + bias


def _conv_work(itemsize, **p):
    gemm, outputs = _conv_flops(itemsize, **p)
    return 3 * gemm + 2 * outputs  # forward, data and weight gradients, bias and its gradient


def _conv_book_forward(x, W, b, stride, pad):
    """The book's ``Convolution.forward``; returns ``(out, col, col_W)``."""
    FN, C, FH, FW = W.shape
    N, _, H, Wd = x.shape
    OH, OW = _out_size(H, FH, stride, pad), _out_size(Wd, FW, stride, pad)
    col = R.im2col(x, FH, FW, stride, pad)
    col_W = W.reshape(FN, -1).T
    out = (col @ col_W + b).reshape(N, OH, OW, -1).transpose(0, 3, 1, 2)
    return out, col, col_W


def _conv_reference(x, W, b, dout, stride, pad):
    """The book's ``Convolution`` forward and backward (one im2col, kept for backward)."""
    FN, C, FH, FW = W.shape
    out, col, col_W = _conv_book_forward(x, W, b, stride, pad)
    d = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
    db = np.sum(d, axis=0)
    dW = (col.T @ d).transpose(1, 0).reshape(FN, C, FH, FW)
    dcol = d @ col_W.T
    dx = R.col2im(dcol, x.shape, FH, FW, stride, pad)
    return out, dx, dW, db


def _conv_fastnn(x, W, b, dout, stride, pad):
    out = F.conv2d(x, W, b, stride, pad)
    dx = F.conv2d_backward_data(dout, W, x.shape, stride, pad)
    dW = F.conv2d_backward_weight(x, dout, W.shape, stride, pad)
    db = F.conv2d_backward_bias(dout)
    return out, dx, dW, db


def _conv_torch(torch):
    tf = torch.nn.functional

    def conv(x, W, b, dout, stride, pad):
        xt, Wt, bt = _t(torch, x, True), _t(torch, W, True), _t(torch, b, True)
        out = tf.conv2d(xt, Wt, bt, stride=stride, padding=pad)
        out.backward(_t(torch, dout))
        return out.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy()

    return conv


def _conv_fwd_reference(x, W, b, dout, stride, pad):
    return (_conv_book_forward(x, W, b, stride, pad)[0],)


def _conv_fwd_fastnn(x, W, b, dout, stride, pad):
    return (F.conv2d(x, W, b, stride, pad),)


def _conv_fwd_torch(torch):
    tf = torch.nn.functional

    def conv(x, W, b, dout, stride, pad):
        with torch.no_grad():
            out = tf.conv2d(_t(torch, x), _t(torch, W), _t(torch, b), stride=stride, padding=pad)
        return (out.numpy(),)

    return conv


_CONV_SHAPES = {
    "tiny": Shape(dict(N=2, C=3, H=7, W=6, FN=4, FH=3, FW=3, stride=1, pad=1),
                  "x(2,3,7,6) W(4,3,3,3) p1"),
    "book": Shape(dict(N=100, C=1, H=28, W=28, FN=30, FH=5, FW=5, stride=1, pad=0),
                  "x(100,1,28,28) W(30,1,5,5)"),
    "large": Shape(dict(N=32, C=64, H=56, W=56, FN=64, FH=3, FW=3, stride=1, pad=1),
                   "x(32,64,56,56) W(64,64,3,3) p1", small=False),
    # the rest of the convolution shape set: DeepConvNet's six layers at batch 100, a
    # stride-2 downsampling layer and a pointwise one ("book" is SimpleConvNet's conv1,
    # "large" a ResNet 3x3 layer)
    "deep1": Shape(dict(N=100, C=1, H=28, W=28, FN=16, FH=3, FW=3, stride=1, pad=1),
                   "x(100,1,28,28) W(16,1,3,3) p1"),
    "deep2": Shape(dict(N=100, C=16, H=28, W=28, FN=16, FH=3, FW=3, stride=1, pad=1),
                   "x(100,16,28,28) W(16,16,3,3) p1"),
    "deep3": Shape(dict(N=100, C=16, H=14, W=14, FN=32, FH=3, FW=3, stride=1, pad=1),
                   "x(100,16,14,14) W(32,16,3,3) p1"),
    "deep4": Shape(dict(N=100, C=32, H=14, W=14, FN=32, FH=3, FW=3, stride=1, pad=2),
                   "x(100,32,14,14) W(32,32,3,3) p2"),
    "deep5": Shape(dict(N=100, C=32, H=8, W=8, FN=64, FH=3, FW=3, stride=1, pad=1),
                   "x(100,32,8,8) W(64,32,3,3) p1"),
    "deep6": Shape(dict(N=100, C=64, H=8, W=8, FN=64, FH=3, FW=3, stride=1, pad=1),
                   "x(100,64,8,8) W(64,64,3,3) p1"),
    "stride2": Shape(dict(N=32, C=64, H=56, W=56, FN=128, FH=3, FW=3, stride=2, pad=1),
                     "x(32,64,56,56) W(128,64,3,3) s2 p1", small=False),
    "pointwise": Shape(dict(N=32, C=256, H=14, W=14, FN=64, FH=1, FW=1),
                       "x(32,256,14,14) W(64,256,1,1)", small=False),
}

#: Pointwise (1x1) convolutions: the gemm path multiplies the images in place (no panel).
_CONV1X1_SHAPES = {
    "tiny": Shape(dict(N=2, C=5, H=4, W=3, FN=3, FH=1, FW=1), "x(2,5,4,3) W(3,5,1,1)"),
    "book": Shape(dict(N=100, C=32, H=14, W=14, FN=64, FH=1, FW=1), "x(100,32,14,14) W(64,32,1,1)"),
    "large": Shape(dict(N=32, C=256, H=14, W=14, FN=64, FH=1, FW=1),
                   "x(32,256,14,14) W(64,256,1,1)", small=False),
}


# --------------------------------------------------------------------------- im2col / col2im
def _im2col_make(rng, dt, N, C, H, W, FH, FW, stride=1, pad=0):
    return _randn(rng, dt, (N, C, H, W)), FH, FW, stride, pad


def _col2im_make(rng, dt, N, C, H, W, FH, FW, stride=1, pad=0):
    OH, OW = _out_size(H, FH, stride, pad), _out_size(W, FW, stride, pad)
    col = _randn(rng, dt, (N * OH * OW, C * FH * FW))
    return col, (N, C, H, W), FH, FW, stride, pad


def _im2col_work(itemsize, N, C, H, W, FH, FW, stride=1, pad=0):
    OH, OW = _out_size(H, FH, stride, pad), _out_size(W, FW, stride, pad)
    return float(itemsize * (N * C * H * W + N * OH * OW * C * FH * FW))


def _im2col_reference(x, FH, FW, stride, pad):
    return (R.im2col(x, FH, FW, stride, pad),)


def _im2col_fastnn(x, FH, FW, stride, pad):
    return (F.im2col(x, FH, FW, stride, pad),)


def _im2col_torch(torch):
    tf = torch.nn.functional

    def unfold(x, FH, FW, stride, pad):
        # torch's layout is (N, C*FH*FW, OH*OW): the same numbers, transposed per image.
        col = tf.unfold(_t(torch, x), (FH, FW), padding=pad, stride=stride)
        return (col.transpose(1, 2).reshape(-1, col.shape[1]).numpy(),)

    return unfold


def _col2im_reference(col, input_shape, FH, FW, stride, pad):
    return (R.col2im(col, input_shape, FH, FW, stride, pad),)


def _col2im_fastnn(col, input_shape, FH, FW, stride, pad):
    return (F.col2im(col, input_shape, FH, FW, stride, pad),)


def _col2im_torch(torch):
    tf = torch.nn.functional

    def fold(col, input_shape, FH, FW, stride, pad):
        N, C, H, W = input_shape
        # fastnn rows (n, oy, ox) -> torch's (N, C*FH*FW, OH*OW) as a strided view
        ct = _t(torch, col).reshape(N, -1, col.shape[1]).transpose(1, 2)
        out = tf.fold(ct, (H, W), (FH, FW), padding=pad, stride=stride)
        return (out.numpy(),)

    return fold


_IM2COL_SHAPES = {
    "tiny": Shape(dict(N=2, C=3, H=7, W=6, FH=3, FW=3, stride=1, pad=1), "x(2,3,7,6) 3x3 p1"),
    "book": Shape(dict(N=100, C=1, H=28, W=28, FH=5, FW=5, stride=1, pad=0),
                  "x(100,1,28,28) 5x5"),
    "large": Shape(dict(N=32, C=64, H=56, W=56, FH=3, FW=3, stride=1, pad=1),
                   "x(32,64,56,56) 3x3 p1", small=False),
}


# --------------------------------------------------------------------------- max pooling
def _pool_make(rng, dt, N, C, H, W, ph, pw, stride=2, pad=0):
    OH, OW = _out_size(H, ph, stride, pad), _out_size(W, pw, stride, pad)
    x = _randn(rng, dt, (N, C, H, W))
    dout = _randn(rng, dt, (N, C, OH, OW))
    return x, dout, ph, pw, stride, pad


def _pool_work(itemsize, N, C, H, W, ph, pw, stride=2, pad=0):
    OH, OW = _out_size(H, ph, stride, pad), _out_size(W, pw, stride, pad)
    n_in, n_out = N * C * H * W, N * C * OH * OW
    # forward reads x, writes out and a 1-byte argmax; backward reads dout and argmax, writes dx
    return float(2 * n_in * itemsize + 2 * n_out * itemsize + 2 * n_out)


def _pool_reference(x, dout, ph, pw, stride, pad):
    out, argmax = R.max_pool2d_forward(x, ph, pw, stride, pad)
    dx = R.max_pool2d_backward(dout, argmax, x.shape, ph, pw, stride, pad)
    return out, argmax, dx


def _pool_fastnn(x, dout, ph, pw, stride, pad):
    out, argmax = F.max_pool2d(x, ph, pw, stride, pad, return_argmax=True)
    dx = F.max_pool2d_backward(dout, argmax, x.shape, ph, pw, stride, pad)
    return out, argmax, dx


def _pool_torch(torch):
    tf = torch.nn.functional

    def pool(x, dout, ph, pw, stride, pad):
        xt = _t(torch, x, True)
        out = tf.max_pool2d(xt, (ph, pw), stride=stride, padding=pad)
        out.backward(_t(torch, dout))
        return out.detach().numpy(), None, xt.grad.numpy()

    return pool


_POOL_SHAPES = {
    "tiny": Shape(dict(N=2, C=3, H=7, W=6, ph=3, pw=3, stride=2, pad=1),
                  "x(2,3,7,6) 3x3 s2 p1"),
    "book": Shape(dict(N=100, C=30, H=24, W=24, ph=2, pw=2, stride=2, pad=0),
                  "x(100,30,24,24) 2x2 s2"),
    "large": Shape(dict(N=32, C=64, H=112, W=112, ph=3, pw=3, stride=2, pad=1),
                   "x(32,64,112,112) 3x3 s2 p1", small=False),
    # DeepConvNet's three pooling layers
    "deep_pool1": Shape(dict(N=100, C=16, H=28, W=28, ph=2, pw=2, stride=2, pad=0),
                        "x(100,16,28,28) 2x2 s2"),
    "deep_pool2": Shape(dict(N=100, C=32, H=16, W=16, ph=2, pw=2, stride=2, pad=0),
                        "x(100,32,16,16) 2x2 s2"),
    "deep_pool3": Shape(dict(N=100, C=64, H=8, W=8, ph=2, pw=2, stride=2, pad=0),
                        "x(100,64,8,8) 2x2 s2"),
}


# --------------------------------------------------------------------------- softmax + loss
def _sce_make(rng, dt, N, K, one_hot):
    x = _randn(rng, dt, (N, K), 3.0)
    labels = rng.integers(0, K, size=N)
    if one_hot:
        t = np.zeros((N, K), dtype=dt)
        t[np.arange(N), labels] = 1
    else:
        t = labels.astype(np.intp)
    return x, t


def _sce_work(itemsize, N, K, one_hot):
    # bytes read + written once: logits in, gradient out, plus the targets
    if one_hot:
        return float(3 * N * K * itemsize)
    return float(2 * N * K * itemsize + N * 8)


def _sce_reference(x, t):
    loss, y = R.softmax_cross_entropy_forward(x, t)
    dx = R.softmax_cross_entropy_backward(y, t)
    return loss, y, dx


def _sce_fastnn(x, t):
    # what SoftmaxWithLoss runs: loss and gradient from one fused pass
    loss, dx = F.softmax_cross_entropy_with_grad(x, t)
    return loss, None, dx


def _sce_torch(torch):
    tf = torch.nn.functional

    def sce(x, t):
        xt = _t(torch, x, True)
        target = _t(torch, t) if t.ndim == 2 else _t(torch, t.astype(np.int64))
        loss = tf.cross_entropy(xt, target)  # exact log-softmax (no 1e-7 inside the log)
        loss.backward()
        return loss.detach().numpy(), None, xt.grad.numpy()

    return sce


def _sce_shapes(one_hot):
    shapes = {
        "tiny": Shape(dict(N=3, K=5, one_hot=one_hot), "x(3,5)"),
        "book": Shape(dict(N=100, K=10, one_hot=one_hot), "x(100,10)"),
        "large": Shape(dict(N=4096, K=1000, one_hot=one_hot), "x(4096,1000)", small=True),
    }
    if not one_hot:  # a language-model vocabulary (labels only: one-hot would be 65 MB)
        shapes["vocab"] = Shape(dict(N=256, K=32000, one_hot=False), "x(256,32000)", small=False)
    return shapes


# --------------------------------------------------------------------------- element-wise
def _ew_make(rng, dt, shape):
    return _randn(rng, dt, shape), _randn(rng, dt, shape)


def _relu_work(itemsize, shape):
    n = int(np.prod(shape))
    # forward reads x, writes out and a 1-byte mask; backward reads the mask, updates dout
    return float(n * (4 * itemsize + 2))


def _sigmoid_work(itemsize, shape):
    n = int(np.prod(shape))
    # forward reads x, writes y; backward reads dout and y, writes dx
    return float(5 * n * itemsize)


def _relu_reference(x, dout):
    out, mask = R.relu_forward(x)
    dout[mask] = 0  # the book's Relu.backward: in place on dout
    return out, mask, dout


def _relu_fastnn(x, dout):
    out, mask = F.relu(x)
    dx = F.relu_backward(dout, mask)
    return out, mask, dx


def _relu_torch(torch):
    def relu(x, dout):
        xt = _t(torch, x, True)
        out = torch.relu(xt)
        out.backward(_t(torch, dout))
        return out.detach().numpy(), None, xt.grad.numpy()

    return relu


def _sigmoid_reference(x, dout):
    y = R.sigmoid_forward(x)
    return y, R.sigmoid_backward(dout, y)


def _sigmoid_fastnn(x, dout):
    y = F.sigmoid(x)
    return y, F.sigmoid_backward(dout, y)


def _sigmoid_torch(torch):
    def sigmoid(x, dout):
        xt = _t(torch, x, True)
        out = torch.sigmoid(xt)
        out.backward(_t(torch, dout))
        return out.detach().numpy(), xt.grad.numpy()

    return sigmoid


_EW_SHAPES = {
    "tiny": Shape(dict(shape=(2, 3, 4, 5)), "x(2,3,4,5)"),
    "book": Shape(dict(shape=(100, 30, 24, 24)), "x(100,30,24,24)"),
    "large": Shape(dict(shape=(32, 64, 56, 56)), "x(32,64,56,56)", small=False),
    "fc": Shape(dict(shape=(100, 100)), "x(100,100)"),  # a fully connected layer
}


# Dropout: the book's mask np.random.rand(*x.shape) > ratio from NumPy's global RNG, so each
# implementation reseeds it first (the same cost on both sides) and draws the same mask.
_DROPOUT_RATIO = 0.5


def _dropout_reference(x, dout):
    np.random.seed(SEED)
    out, mask = R.dropout_forward(x, _DROPOUT_RATIO)
    return out, mask, R.dropout_backward(dout, mask)


def _dropout_fastnn(x, dout):
    np.random.seed(SEED)
    out, mask = F.dropout(x, _DROPOUT_RATIO)
    return out, mask, F.dropout_backward(dout, mask)


def _dropout_torch(torch):
    def dropout(x, dout):
        # torch draws its own mask and scales by 1 / (1 - p) (inverted dropout): same work,
        # different numbers, so nothing is compared
        xt = _t(torch, x, True)
        out = torch.nn.functional.dropout(xt, _DROPOUT_RATIO, training=True)
        out.backward(_t(torch, dout))
        return None, None, None

    return dropout


def _dropout_work(itemsize, shape):
    # as ReLU: x in, out and a 1-byte mask out; dout and the mask in, dx out (the RNG's 8-byte
    # draws are not counted)
    return _relu_work(itemsize, shape)


def _bn_make(rng, dt, N, D):
    x = _randn(rng, dt, (N, D), 2.0) + dt.type(0.5)
    gamma = (1.0 + 0.1 * rng.standard_normal(D)).astype(dt)
    beta = _randn(rng, dt, (D,), 0.1)
    return x, gamma, beta, _randn(rng, dt, (N, D))


def _bn_work(itemsize, N, D):
    # forward reads x, writes out and xn; backward reads dout and xn, writes dx
    return float(6 * N * D * itemsize)


def _bn_reference(x, gamma, beta, dout):
    out, xn, _, _, std = R.batch_norm_train(x, gamma, beta)
    dx, dgamma, dbeta = R.batch_norm_backward(dout, xn, std, gamma)
    return out, dx, dgamma, dbeta


def _bn_fastnn(x, gamma, beta, dout):
    out, xn, _, _, std = F.batch_norm_train(x, gamma, beta)
    dx, dgamma, dbeta = F.batch_norm_backward(dout, xn, std, gamma)
    return out, dx, dgamma, dbeta


def _bn_torch(torch):
    tf = torch.nn.functional

    def bn(x, gamma, beta, dout):
        xt, gt, bt = _t(torch, x, True), _t(torch, gamma, True), _t(torch, beta, True)
        out = tf.batch_norm(xt, None, None, gt, bt, training=True, eps=R.BATCHNORM_EPS)
        out.backward(_t(torch, dout))
        return out.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()

    return bn


# the book's BatchNormalization flattens a conv output (N, C, H, W) to (N, C*H*W) features
_BN_SHAPES = {
    "tiny": Shape(dict(N=4, D=6), "x(4,6)"),
    "book": Shape(dict(N=100, D=30 * 24 * 24), "x(100,30,24,24) as (100,17280)"),
    "large": Shape(dict(N=32, D=64 * 56 * 56), "x(32,64,56,56) as (32,200704)", small=False),
    "fc": Shape(dict(N=100, D=100), "x(100,100)"),
}


# --------------------------------------------------------------------------- d2l chapter 3
# One epoch of mini-batches as d2l's data_iter draws them: a permutation from
# np.random.default_rng(seed), then whole batches in order and the last partial one. Every
# implementation uses the same permutation (fastnn.data.DataLoader(seed=seed) draws exactly
# this one), so the results agree. Each epoch returns a short fingerprint of its batches (the
# first 4 values of each batch's last row and its label), not the batches themselves.
_LR_SGD = 0.1  # d2l's softmax-regression learning rate


def _loader_make(rng, dt, N, D, B):
    x = rng.random((N, D)).astype(dt)
    t = rng.integers(0, 10, size=N).astype(np.uint8)
    return x, t, B, SEED


def _loader_work(itemsize, N, D, B):
    # every row read once and written once into its batch; one label byte each way
    return float(2 * N * D * itemsize + 2 * N)


def _fingerprint(rows, labels):
    return np.stack(rows), np.array(labels)


def _loader_reference(x, t, B, seed):
    order = np.random.default_rng(seed).permutation(x.shape[0])
    rows, labels = [], []
    for start in range(0, x.shape[0], B):
        idx = order[start : start + B]
        xb, tb = x[idx], t[idx]
        rows.append(xb[-1, :4].copy())
        labels.append(tb[-1])
    return _fingerprint(rows, labels)


def _loader_fastnn(x, t, B, seed):
    from .data import DataLoader

    rows, labels = [], []
    for xb, tb in DataLoader(x, t, B, seed=seed):
        rows.append(xb[-1, :4].copy())
        labels.append(tb[-1])
    return _fingerprint(rows, labels)


def _loader_torch(torch):
    def epoch(x, t, B, seed):
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        order = torch.from_numpy(np.random.default_rng(seed).permutation(x.shape[0]))
        rows, labels = [], []
        for start in range(0, x.shape[0], B):
            idx = order[start : start + B]
            xb, tb = xt.index_select(0, idx), tt.index_select(0, idx)
            rows.append(xb[-1, :4].numpy().copy())
            labels.append(tb[-1].item())
        return np.stack(rows), np.array(labels, dtype=np.uint8)

    return epoch


_LOADER_SHAPES = {
    "tiny": Shape(dict(N=1000, D=16, B=64), "x(1000,16) batch 64"),
    "book": Shape(dict(N=10000, D=784, B=256), "x(10000,784) batch 256"),
    "large": Shape(dict(N=60000, D=784, B=256), "x(60000,784) batch 256", small=False),
}


def _sr_make(rng, dt, N, D, K, B):
    x = rng.random((N, D)).astype(dt)
    t = rng.integers(0, K, size=N).astype(np.uint8)
    W0 = _randn(rng, dt, (D, K), 0.01)  # d2l: W ~ N(0, 0.01), b = 0
    b0 = np.zeros(K, dtype=dt)
    return x, t, W0, b0, B, SEED


def _sr_work(itemsize, N, D, K, B):
    # logits x @ W and weight gradient x.T @ dz: 2 FLOPs per multiply-add each
    return float(4 * N * D * K)


def _sr_reference(x, t, W0, b0, B, seed):
    """d2l's from-scratch softmax regression epoch in NumPy (max-subtracted, log-sum-exp)."""
    W, b = W0.copy(), b0.copy()
    lr = W.dtype.type(_LR_SGD)
    order = np.random.default_rng(seed).permutation(x.shape[0])
    loss = None
    for start in range(0, x.shape[0], B):
        idx = order[start : start + B]
        X, y = x[idx], t[idx]
        n = X.shape[0]
        rows = np.arange(n)
        Z = X @ W + b
        m = Z.max(axis=1, keepdims=True)
        e = np.exp(Z - m)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - (Z[rows, y] - m[:, 0]))
        dZ = e / s
        dZ[rows, y] -= 1
        dZ /= n
        W -= lr * (X.T @ dZ)
        b -= lr * dZ.sum(axis=0)
    return W, b, np.asarray(loss)


def _sr_fastnn(x, t, W0, b0, B, seed):
    from .data import DataLoader
    from .nets import SoftmaxRegression
    from .optimizers import SGD

    D, K = W0.shape
    net = SoftmaxRegression(D, K, weight_init_std=0.0, dtype=W0.dtype)
    net.params["W"][...] = W0
    net.params["b"][...] = b0
    opt = SGD(lr=_LR_SGD)
    # no prefetch: with parallel kernels on every core, a background gather only competes for
    # them (measured 1.5x slower per epoch on 2 cores)
    for X, y in DataLoader(x, t, B, seed=seed):
        opt.update(net.params, net.gradient(X, y))
    return net.params["W"], net.params["b"], np.asarray(net.last_layer.loss)


def _sr_torch(torch):
    tf = torch.nn.functional

    def epoch(x, t, W0, b0, B, seed):
        W = torch.from_numpy(W0.copy()).requires_grad_()
        b = torch.from_numpy(b0.copy()).requires_grad_()
        xt, tt = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
        order = torch.from_numpy(np.random.default_rng(seed).permutation(x.shape[0]))
        loss = None
        for start in range(0, x.shape[0], B):
            idx = order[start : start + B]
            loss = tf.cross_entropy(xt.index_select(0, idx) @ W + b, tt.index_select(0, idx))
            gW, gb = torch.autograd.grad(loss, (W, b))
            with torch.no_grad():
                W -= _LR_SGD * gW
                b -= _LR_SGD * gb
        return W.detach().numpy(), b.detach().numpy(), loss.detach().numpy()

    return epoch


_SR_SHAPES = {
    "tiny": Shape(dict(N=1000, D=16, K=10, B=64), "x(1000,16) K=10 batch 64"),
    "book": Shape(dict(N=10000, D=784, K=10, B=256), "x(10000,784) K=10 batch 256"),
    "large": Shape(dict(N=60000, D=784, K=10, B=256), "x(60000,784) K=10 batch 256",
                   small=False),
}


# --------------------------------------------------------------------------- the table
CASES: tuple[Case, ...] = (
    Case(
        "conv2d", "conv2d fwd+bwd", _CONV_SHAPES, _conv_make, _conv_reference, _conv_fastnn,
        _conv_work, "FLOP", _conv_torch,
        "forward + data, weight and bias gradients (the book's Convolution layer)",
    ),
    Case(
        "conv2d_fwd", "conv2d fwd", _CONV_SHAPES, _conv_make, _conv_fwd_reference,
        _conv_fwd_fastnn, _conv_fwd_work, "FLOP", _conv_fwd_torch,
        "forward only (inference, accuracy evaluation)",
    ),
    Case(
        "conv2d_1x1", "conv2d 1x1 fwd+bwd", _CONV1X1_SHAPES, _conv_make, _conv_reference,
        _conv_fastnn, _conv_work, "FLOP", _conv_torch,
        "pointwise convolution, forward + all gradients (bottleneck / channel-mixing layers)",
    ),
    Case(
        "im2col", "im2col", _IM2COL_SHAPES, _im2col_make, _im2col_reference, _im2col_fastnn,
        _im2col_work, "B", _im2col_torch,
        "patch unfolding (torch: F.unfold, transposed layout)",
    ),
    Case(
        "col2im", "col2im", _IM2COL_SHAPES, _col2im_make, _col2im_reference, _col2im_fastnn,
        _im2col_work, "B", _col2im_torch,
        "patch folding with overlap sums (torch: F.fold)",
    ),
    Case(
        "max_pool2d", "max_pool2d fwd+bwd", _POOL_SHAPES, _pool_make, _pool_reference,
        _pool_fastnn, _pool_work, "B", _pool_torch,
        "max pooling forward (with argmax) + backward (the book's Pooling layer)",
    ),
    Case(
        "softmax_ce", "softmax_cross_entropy fwd+bwd (labels)", _sce_shapes(False), _sce_make,
        _sce_reference, _sce_fastnn, _sce_work, "B", _sce_torch,
        "SoftmaxWithLoss with integer labels",
    ),
    Case(
        "softmax_ce_onehot", "softmax_cross_entropy fwd+bwd (one-hot)", _sce_shapes(True),
        _sce_make, _sce_reference, _sce_fastnn, _sce_work, "B", _sce_torch,
        "SoftmaxWithLoss with one-hot targets",
    ),
    Case(
        "relu", "relu fwd+bwd", _EW_SHAPES, _ew_make, _relu_reference, _relu_fastnn,
        _relu_work, "B", _relu_torch, "the book's Relu layer (backward in place on dout)",
    ),
    Case(
        "sigmoid", "sigmoid fwd+bwd", _EW_SHAPES, _ew_make, _sigmoid_reference,
        _sigmoid_fastnn, _sigmoid_work, "B", _sigmoid_torch, "the book's Sigmoid layer",
    ),
    Case(
        "dropout", "dropout fwd+bwd", _EW_SHAPES, _ew_make, _dropout_reference,
        _dropout_fastnn, _dropout_work, "B", _dropout_torch,
        "the book's Dropout layer, ratio 0.5, training (mask from np.random.rand)",
    ),
    Case(
        "batchnorm", "batchnorm fwd+bwd", _BN_SHAPES, _bn_make, _bn_reference, _bn_fastnn,
        _bn_work, "B", _bn_torch,
        "the book's BatchNormalization, training forward + backward (per-feature statistics)",
    ),
    Case(
        "dataloader_epoch", "DataLoader epoch", _LOADER_SHAPES, _loader_make,
        _loader_reference, _loader_fastnn, _loader_work, "B", _loader_torch,
        "one shuffled epoch of mini-batches (d2l's data_iter; fastnn.data.DataLoader)",
    ),
    Case(
        "softmax_regression_epoch", "softmax regression epoch", _SR_SHAPES, _sr_make,
        _sr_reference, _sr_fastnn, _sr_work, "FLOP", _sr_torch,
        "one SGD epoch of d2l's softmax regression (DataLoader + SoftmaxRegression + SGD)",
    ),
)

#: Keys of :data:`CASES`, in table order.
CASE_KEYS = tuple(c.key for c in CASES)
_BY_KEY = {c.key: c for c in CASES}


def get_case(name):
    """Look a case up by key (``"conv2d"``) or display name (``"conv2d fwd+bwd"``).

    Raises
    ------
    ValueError
        If no case has that key or name; the message lists the keys.
    """
    if name in _BY_KEY:
        return _BY_KEY[name]
    for case in CASES:
        if case.op == name:
            return case
    raise ValueError(f"bench: unknown op {name!r}; known ops: {', '.join(CASE_KEYS)}")


# --------------------------------------------------------------------------- comparison
def outputs_close(expected, actual, dtype):
    """Whether two results of a case's callables agree, output by output.

    Parameters
    ----------
    expected, actual : tuple
        Return values of two implementations. ``None`` entries (an output one implementation
        does not produce, e.g. torch's argmax) are skipped.
    dtype : str or numpy.dtype
        Tolerance: ``rtol=1e-4`` for float32, ``1e-10`` for float64 (``atol`` scaled by the
        magnitude of the expected output).

    Returns
    -------
    (bool, str)
        Verdict and, on failure, which output differs and by how much.
    """
    rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    if len(expected) != len(actual):
        return False, f"{len(expected)} outputs vs {len(actual)}"
    for i, (e, a) in enumerate(zip(expected, actual)):
        if e is None or a is None:
            continue
        e, a = np.asarray(e), np.asarray(a)
        if e.shape != a.shape:
            return False, f"output {i}: shape {e.shape} vs {a.shape}"
        if e.dtype.kind in "biu":
            if not np.array_equal(e, a):
                return False, f"output {i}: integer/bool values differ"
            continue
        scale = float(np.max(np.abs(e))) if e.size else 0.0
        if not np.allclose(a, e, rtol=rtol, atol=rtol * max(scale, 1.0)):
            err = float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64))))
            return False, f"output {i}: max abs difference {err:.3g} (scale {scale:.3g})"
    return True, ""


# --------------------------------------------------------------------------- timing
def _measure(fn, args, repeat, budget, warmup, max_repeat):
    """Median seconds of ``fn(*args)`` over ``repeat`` runs (adaptive when None)."""
    if warmup:
        fn(*args)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit: no collection pauses inside the timed calls
    try:
        t0 = time.perf_counter()
        fn(*args)
        first = time.perf_counter() - t0
        if repeat is None:
            repeat = int(min(max_repeat, max(1, budget / max(first, 1e-9))))
        times = [first]
        for _ in range(repeat - 1):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(times), len(times)


def _names(values, known, what):
    if isinstance(values, str):
        values = [values]
    values = list(values)
    for v in values:
        if v not in known:
            raise ValueError(f"bench: unknown {what} {v!r}; known: {', '.join(known)}")
    return values


def run(
    ops=None,
    shapes=None,
    dtypes=_DTYPES,
    repeat=None,
    warmup=True,
    *,
    budget=0.25,
    max_repeat=1000,
    impls=None,
    threads=None,
    callback=None,
):
    """Time the cases of the table.

    For every (case, shape, dtype) and implementation: one warm-up call (compiles or loads
    the Numba kernels), then ``repeat`` timed calls (:func:`time.perf_counter`); the median is
    reported.

    Parameters
    ----------
    ops : sequence of str, optional
        Case keys or display names (:data:`CASE_KEYS`); all cases when omitted.
    shapes : sequence of str, optional
        Shape names (:func:`shape_names`), or ``"all"`` for every shape of each case but
        ``"tiny"``; :data:`DEFAULT_SHAPES` (the book's) when omitted. A case is timed on the
        named shapes it has (``"deep3"`` only exists for convolutions).
    dtypes : sequence of {'float32', 'float64'}, default both
    repeat : int, optional
        Timed calls per measurement. When omitted it is chosen from ``budget``: as many calls
        as fit in ``budget`` seconds (at least 1, at most ``max_repeat``), judged from the
        first timed call.
    warmup : bool, default True
        Make one untimed call first.
    budget : float, default 0.25
        Seconds per measurement when ``repeat`` is omitted.
    max_repeat : int, default 1000
        Upper bound of the adaptive repeat count.
    impls : sequence of str, optional
        Implementations to time; default :func:`available_implementations` (torch only when
        installed).
    threads : int, optional
        Threads for fastnn (and torch) during the run; the previous setting is restored.
    callback : callable, optional
        Called with each result dict as soon as it is measured (progress reporting).

    Returns
    -------
    list of dict
        One dict per (case, shape, dtype) with keys ``key``, ``op``, ``shape``,
        ``shape_desc``, ``dtype``, ``threads``, ``work``, ``unit`` ('FLOP' or 'B'),
        ``reference_ms``, ``fastnn_ms``, ``torch_ms`` (None when not timed), ``repeats``
        (dict impl -> number of timed calls), ``speedup`` (reference / fastnn),
        ``torch_ratio`` (torch / fastnn), ``rate`` and ``rate_unit`` (fastnn's GFLOP/s or
        GB/s).

    Raises
    ------
    ValueError
        For unknown op, shape, dtype or implementation names, or a bad ``repeat``/``threads``.
    """
    from . import _runtime

    names = CASE_KEYS if ops is None else _names(ops, _all_op_names(), "op")
    cases = [get_case(o) for o in names]
    shapes = list(DEFAULT_SHAPES) if shapes is None else _names(
        shapes, shape_names() + (ALL_SHAPES,), "shape")
    dtypes = [str(_check_dtype(d)) for d in ([dtypes] if isinstance(dtypes, str) else dtypes)]
    if repeat is not None and (isinstance(repeat, bool) or int(repeat) != repeat or repeat < 1):
        raise ValueError(f"bench: repeat must be a positive integer, got {repeat!r}")
    if not budget > 0:
        raise ValueError(f"bench: budget must be > 0 seconds, got {budget!r}")
    impls = list(available_implementations()) if impls is None else _names(
        impls, IMPLEMENTATIONS, "implementation")
    if "torch" in impls and not torch_available():
        raise ValueError("bench: implementation 'torch' requested but PyTorch is not installed")

    old_threads = _runtime.get_num_threads()
    torch = _import_torch() if "torch" in impls else None
    old_torch_threads = torch.get_num_threads() if torch is not None else None
    results = []
    try:
        if threads is not None:
            _runtime.set_num_threads(threads)
        n_threads = _runtime.get_num_threads()
        if torch is not None:
            torch.set_num_threads(n_threads)
        for case in cases:
            for shape in _case_shapes(case, shapes):
                for dtype in dtypes:
                    args = case.make(shape, dtype)
                    res = {
                        "key": case.key,
                        "op": case.op,
                        "shape": shape,
                        "shape_desc": case.shape(shape).desc,
                        "dtype": dtype,
                        "threads": n_threads,
                        "work": case.work(shape, dtype),
                        "unit": case.unit,
                        "repeats": {},
                    }
                    for impl in IMPLEMENTATIONS:
                        res[f"{impl}_ms"] = None
                        if impl not in impls or (impl == "torch" and case.torch_factory is None):
                            continue
                        seconds, n = _measure(
                            case.callable(impl), args, None if repeat is None else int(repeat),
                            budget, warmup, max_repeat,
                        )
                        res[f"{impl}_ms"] = seconds * 1e3
                        res["repeats"][impl] = n
                    del args
                    _derive(res)
                    results.append(res)
                    if callback is not None:
                        callback(res)
    finally:
        _runtime.set_num_threads(old_threads)
        if torch is not None:
            torch.set_num_threads(old_torch_threads)
    return results


def _all_op_names():
    return CASE_KEYS + tuple(c.op for c in CASES)


def _case_shapes(case, names):
    """The shapes of ``case`` selected by ``names`` (``"all"`` expanded), in table order."""
    if ALL_SHAPES in names:
        names = [n for n in names if n != ALL_SHAPES] + list(case.shape_names())
    return [n for n in case.shape_names(include_tiny=True) if n in names]


def shape_names():
    """Every shape name of the table: :data:`SHAPE_NAMES`, then the cases' further shapes."""
    names = list(SHAPE_NAMES)
    for case in CASES:
        names += [n for n in case.shapes if n not in names]
    return tuple(names)


def asv_shapes(key):
    """Shapes of the asv benchmark of case ``key``: :data:`ASV_SHAPES` and its further ones."""
    case = get_case(key)
    return tuple(ASV_SHAPES) + tuple(n for n in case.shape_names() if n not in ASV_SHAPES)


def geometric_means(results):
    """Geometric means of the ratios over the shapes of each (op, dtype) timed on several.

    Parameters
    ----------
    results : list of dict
        As returned by :func:`run`.

    Returns
    -------
    list of dict
        One dict per (op, dtype) with at least two results, in table order: ``key``, ``op``,
        ``dtype``, ``shapes`` (how many), ``speedup`` (geometric mean of reference / fastnn)
        and ``torch_ratio`` (of torch / fastnn; None unless every shape was timed with
        torch), plus ``worst_torch_ratio`` (the smallest torch / fastnn) and its shape.
    """
    groups = {}
    for r in results:
        if "speedup" not in r:
            r = dict(r)
            _derive(r)
        groups.setdefault((r["key"], r["dtype"]), []).append(r)

    def gmean(values):
        if not values or any(v is None or v <= 0 for v in values):
            return None
        return float(np.exp(np.mean(np.log(values))))

    out = []
    for (key, dtype), rows in groups.items():
        if len(rows) < 2:
            continue
        torch_ratios = [r["torch_ratio"] for r in rows]
        worst = min(rows, key=lambda r: r["torch_ratio"]) if None not in torch_ratios else None
        out.append({
            "key": key, "op": rows[0]["op"], "dtype": dtype, "shapes": len(rows),
            "speedup": gmean([r["speedup"] for r in rows]),
            "torch_ratio": gmean(torch_ratios),
            "worst_torch_ratio": worst["torch_ratio"] if worst else None,
            "worst_shape": worst["shape"] if worst else None,
        })
    return out


def _ratio(a, b):
    return a / b if a is not None and b else None


def _derive(res):
    """Add ``speedup``, ``torch_ratio``, ``rate``, ``rate_unit`` to a result dict."""
    res["speedup"] = _ratio(res.get("reference_ms"), res.get("fastnn_ms"))
    res["torch_ratio"] = _ratio(res.get("torch_ms"), res.get("fastnn_ms"))
    fast = res.get("fastnn_ms")
    res["rate_unit"] = "GFLOP/s" if res["unit"] == "FLOP" else "GB/s"
    res["rate"] = res["work"] / (fast * 1e-3) / 1e9 if fast else None


# --------------------------------------------------------------------------- report
def _fmt_ms(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _fmt_ratio(v):
    if v is None:
        return "-"
    return f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"


def _fmt_rate(res):
    if res.get("rate") is None:
        return "-"
    return f"{res['rate']:.1f} {res['rate_unit']}"


def format_table(results):
    """Render :func:`run` results as a plain-text table.

    Columns: op, shape, dtype, reference and fastnn median times in ms, the speed-up
    (reference / fastnn), torch time and torch / fastnn when torch was timed, and fastnn's
    throughput in GFLOP/s (convolution) or GB/s (memory-bound ops). The geometric means of
    the ratios of every op timed on several shapes (:func:`geometric_means`) and a legend of
    the shape names follow the table.

    Parameters
    ----------
    results : list of dict
        As returned by :func:`run` (or loaded back from ``fastnn bench --json``).

    Returns
    -------
    str
    """
    results = list(results)
    if not results:
        return "(no results)"
    with_torch = any(r.get("torch_ms") is not None for r in results)
    header = ["op", "shape", "dtype", "reference ms", "fastnn ms", "speed-up"]
    if with_torch:
        header += ["torch ms", "torch/fastnn"]
    header.append("fastnn rate")
    rows = []
    for r in results:
        if "speedup" not in r or "rate" not in r:
            r = dict(r)
            _derive(r)
        row = [r["op"], r["shape"], r["dtype"], _fmt_ms(r.get("reference_ms")),
               _fmt_ms(r.get("fastnn_ms")), _fmt_ratio(r.get("speedup"))]
        if with_torch:
            row += [_fmt_ms(r.get("torch_ms")), _fmt_ratio(r.get("torch_ratio"))]
        row.append(_fmt_rate(r))
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    left = {0, 1, 2}

    def line(cells):
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    means = geometric_means(results)
    if means:
        out.append("")
        out.append("geometric means over the shapes timed:")
        for m in means:
            text = (f"  {m['op']} {m['dtype']} ({m['shapes']} shapes): speed-up "
                    f"{_fmt_ratio(m['speedup'])}")
            if m["torch_ratio"] is not None:
                text += (f", torch/fastnn {_fmt_ratio(m['torch_ratio'])} (worst "
                         f"{_fmt_ratio(m['worst_torch_ratio'])} at {m['worst_shape']})")
            out.append(text)
    legend = {}
    for r in results:
        legend.setdefault((r["op"], r["shape"]), r.get("shape_desc", ""))
    out.append("")
    out.append("shapes:")
    op_width = max(len(op) for op, _ in legend)
    for (op, shape), desc in legend.items():
        out.append(f"  {op.ljust(op_width)}  {shape}: {desc}")
    threads = sorted({r.get("threads") for r in results if r.get("threads") is not None})
    if threads:
        out.append(f"threads: {', '.join(str(t) for t in threads)}; times are medians; "
                   "speed-up = reference / fastnn")
    return "\n".join(out)
