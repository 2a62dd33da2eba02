"""Element-wise activation kernels on flat (1-D, contiguous) arrays."""

import numpy as np
from numba import prange

from ._jit import njit


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
    """``out = 1 / (1 + exp(-x))``.

    Shape
    -----
    x, out: (M,) contiguous.
    """
    one = x.dtype.type(1)
    for i in prange(x.shape[0]):
        out[i] = one / (one + np.exp(-x[i]))


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
