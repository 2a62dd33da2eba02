"""Fused parameter-update kernels for the book's optimizers (``common/optimizer.py``).

Each kernel makes one pass over a parameter and its state, updating them in place, with no
temporaries. The arithmetic is written in the same order as the book's NumPy expressions, so
float64 results are bit-for-bit those of the book (Numba does not contract ``a*b + c`` into a
fused multiply-add without ``fastmath``).

All arrays are flat (1-D, C-contiguous) views of one parameter, its gradient and its state, of
one dtype (float32 or float64); the scalars are of that same dtype, so float32 parameters are
updated in float32. The caller (:mod:`fastnn.optimizers`) validates shapes and dtypes; nothing
here checks bounds.
"""

import numpy as np
from numba import prange

from ._jit import njit

__all__ = [
    "sgd_update_kernel",
    "momentum_update_kernel",
    "nesterov_update_kernel",
    "adagrad_update_kernel",
    "rmsprop_update_kernel",
    "adam_update_kernel",
]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def sgd_update_kernel(p, g, lr):
    """``p -= lr * g`` in place.

    Shape
    -----
    p, g: (M,) contiguous.
    """
    for i in prange(p.shape[0]):
        p[i] = p[i] - lr * g[i]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def momentum_update_kernel(p, g, v, lr, momentum):
    """``v = momentum * v - lr * g; p += v`` in place.

    Shape
    -----
    p, g, v: (M,) contiguous.
    """
    for i in prange(p.shape[0]):
        vi = momentum * v[i] - lr * g[i]
        v[i] = vi
        p[i] = p[i] + vi


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def nesterov_update_kernel(p, g, v, lr, momentum, mom_sq, step):
    """The book's Nesterov step in place.

    ``v *= momentum; v -= lr * g; p += mom_sq * v; p -= step * g`` with
    ``mom_sq = momentum * momentum`` and ``step = (1 + momentum) * lr`` precomputed by the
    caller, as the book's left-to-right evaluation does.

    Shape
    -----
    p, g, v: (M,) contiguous.
    """
    for i in prange(p.shape[0]):
        gi = g[i]
        vi = v[i] * momentum
        vi = vi - lr * gi
        v[i] = vi
        pi = p[i] + mom_sq * vi
        p[i] = pi - step * gi


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def adagrad_update_kernel(p, g, h, lr, eps):
    """``h += g * g; p -= lr * g / (sqrt(h) + eps)`` in place.

    Shape
    -----
    p, g, h: (M,) contiguous.
    """
    for i in prange(p.shape[0]):
        gi = g[i]
        hi = h[i] + gi * gi
        h[i] = hi
        p[i] = p[i] - lr * gi / (np.sqrt(hi) + eps)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def rmsprop_update_kernel(p, g, h, lr, decay_rate, one_minus_decay, eps):
    """``h *= decay_rate; h += (1 - decay_rate) * g * g; p -= lr * g / (sqrt(h) + eps)``.

    ``one_minus_decay = 1 - decay_rate`` is precomputed by the caller.

    Shape
    -----
    p, g, h: (M,) contiguous.
    """
    for i in prange(p.shape[0]):
        gi = g[i]
        hi = h[i] * decay_rate
        hi = hi + one_minus_decay * gi * gi
        h[i] = hi
        p[i] = p[i] - lr * gi / (np.sqrt(hi) + eps)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def adam_update_kernel(p, g, m, v, lr_t, one_minus_beta1, one_minus_beta2, eps):
    """The book's Adam step in place, bias correction folded into ``lr_t``.

    ``m += (1 - beta1) * (g - m); v += (1 - beta2) * (g**2 - v);
    p -= lr_t * m / (sqrt(v) + eps)``.

    Shape
    -----
    p, g, m, v: (M,) contiguous.
    """
    for i in prange(p.shape[0]):
        gi = g[i]
        mi = m[i]
        mi = mi + one_minus_beta1 * (gi - mi)
        m[i] = mi
        vi = v[i]
        vi = vi + one_minus_beta2 * (gi * gi - vi)
        v[i] = vi
        p[i] = p[i] - lr_t * mi / (np.sqrt(vi) + eps)
