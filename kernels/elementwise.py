"""Element-wise kernels on flat (1-D, contiguous) arrays: ReLU, sigmoid, dropout."""

import numpy as np
from numba import prange

from ._jit import njit
from ._vexp import _exp_shifted_row

# elements per prange iteration for kernels that need per-chunk scratch
_CHUNK = 4096


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def relu_forward_kernel(x, out, mask):
    """``mask = x <= 0``; ``out = 0 where mask else x`` (NaN passes through, as in the book).

    Shape
    -----
    x, out, mask: (M,) contiguous.
    """
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        v = x[i]
        m = v <= zero
        mask[i] = m
        out[i] = zero if m else v


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def relu_backward_kernel(dout, mask):
    """``dout[mask] = 0`` in place (the book's ``Relu.backward``).

    Shape
    -----
    dout, mask: (M,) contiguous.
    """
    zero = dout.dtype.type(0)
    for i in prange(dout.shape[0]):
        if mask[i]:
            dout[i] = zero


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def sigmoid_forward_kernel(x, out):
    """``out = 1 / (1 + exp(-x))``, evaluated as ``1/(1+e)`` for ``x >= 0`` and ``e/(1+e)``
    for ``x < 0`` with ``e = exp(-|x|)`` (vectorised exp, never overflows).

    Shape
    -----
    x, out: (M,) contiguous.
    """
    M = x.shape[0]
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for ch in prange((M + _CHUNK - 1) // _CHUNK):
        lo = ch * _CHUNK
        L = min(M, lo + _CHUNK) - lo
        neg = np.empty(L, dtype=x.dtype)
        e = np.empty(L, dtype=x.dtype)
        scratch = np.empty(L, dtype=x.dtype)
        for j in range(L):
            neg[j] = -np.abs(x[lo + j])
        _exp_shifted_row(neg, zero, e, scratch)
        for j in range(L):
            ej = e[j]
            out[lo + j] = one / (one + ej) if x[lo + j] >= zero else ej / (one + ej)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def sigmoid_backward_kernel(dout, y, out):
    """``out = dout * (1 - y) * y`` with ``y`` the forward output.

    Shape
    -----
    dout, y, out: (M,) contiguous.
    """
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        v = y[i]
        out[i] = dout[i] * (one - v) * v


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def dropout_forward_kernel(x, r, ratio, out, mask):
    """The book's training dropout in one pass: ``mask = r > ratio``; ``out = x * mask``.

    ``r`` is ``np.random.rand(*x.shape)`` (drawn by the caller, so NumPy's global RNG stream is
    the book's). Multiplying (not selecting) keeps ``0 * nan = nan`` as in NumPy.

    Shape
    -----
    x, r, out, mask: (M,) contiguous.
    """
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        m = r[i] > ratio
        mask[i] = m
        out[i] = x[i] * (one if m else zero)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def dropout_backward_kernel(dout, mask, out):
    """``out = dout * mask``.

    Shape
    -----
    dout, mask, out: (M,) contiguous.
    """
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    for i in prange(dout.shape[0]):
        out[i] = dout[i] * (one if mask[i] else zero)
