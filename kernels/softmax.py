"""Softmax and the fused softmax-with-cross-entropy loss.

Rows are independent: every kernel runs ``prange`` over rows and each iteration owns its row of
the output. Softmax is max-subtracted (finite for any finite logits). The loss has two modes:
``eps > 0`` is the book's ``-log(y[t] + eps)``; ``eps == 0`` is the exact log-sum-exp form
``log(sum(exp(x - m))) - (x[t] - m)``.
"""

import numpy as np
from numba import prange

from ._jit import njit


@njit(cache=True, nogil=True, error_model="numpy")
def _softmax_row(x, y):
    """``y = exp(x - max(x)) / sum(...)`` for one row; returns ``(max, sum)``.

    NaN anywhere makes the whole row NaN, as in NumPy.
    """
    K = x.shape[0]
    m = x[0]
    for j in range(1, K):
        v = x[j]
        if v > m or (v != v and m == m):
            m = v
    s = x.dtype.type(0)
    for j in range(K):
        e = np.exp(x[j] - m)
        y[j] = e
        s += e
    for j in range(K):
        y[j] = y[j] / s
    return m, s


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def softmax_forward_kernel(x, out):
    """Row-wise softmax.

    Shape
    -----
    x, out: (M, K) C-contiguous (any leading axes flattened into M).
    """
    for i in prange(x.shape[0]):
        _softmax_row(x[i], out[i])


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
    for i in prange(N):
        m, s = _softmax_row(x[i], y[i])
        t = labels[i]
        if eps > 0:
            row_loss[i] = -np.log(y[i, t] + eps)
        else:
            row_loss[i] = np.log(s) - (x[i, t] - m)
    total = row_loss.dtype.type(0)
    for i in range(N):
        total += row_loss[i]
    return total / row_loss.dtype.type(N)


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
