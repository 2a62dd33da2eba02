"""Batch normalization (the book's per-activation version) over ``(N, D)`` inputs.

Every kernel runs ``prange`` over blocks of ``_BLOCK_BYTES`` of features per row (256 float32 /
128 float64 features: a block's rows of every array stay in L2 across the passes, and each row
segment is long enough that the inner loops are not mostly overhead; 64 features measured
1.1-1.3x slower in float32); an iteration owns its columns
of every output and reduces over the batch in a fixed order (row by row, vectorised across the
block's features), so results do not depend on the thread count. The arithmetic follows the
book's ``BatchNormalization``: ``xc = x - mu``, ``var = mean(xc**2)``, ``std = sqrt(var + eps)``,
``xn = xc / std``, ``out = gamma * xn + beta``.
"""

import numpy as np
from numba import prange

from ._jit import njit

_BLOCK_BYTES = 1024


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def batchnorm_forward_train_kernel(x, gamma, beta, eps, out, xn, mean, var, std):
    """Training forward: batch statistics, normalised input and output.

    Shape
    -----
    x, out, xn: (N, D) C-contiguous; gamma, beta, mean, var, std: (D,).
    """
    D = x.shape[1]
    B = _BLOCK_BYTES // x.itemsize
    for blk in prange((D + B - 1) // B):
        _train_block(x, gamma, beta, eps, out, xn, mean, var, std, blk * B, B)


@njit(cache=True, nogil=True, error_model="numpy")
def batchnorm_forward_train_serial_kernel(x, gamma, beta, eps, out, xn, mean, var, std):
    """Single-threaded :func:`batchnorm_forward_train_kernel` for small inputs."""
    D = x.shape[1]
    B = _BLOCK_BYTES // x.itemsize
    for blk in range((D + B - 1) // B):
        _train_block(x, gamma, beta, eps, out, xn, mean, var, std, blk * B, B)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _train_block(x, gamma, beta, eps, out, xn, mean, var, std, j0, B):
    """Features ``[j0, j0 + B)`` of the training forward."""
    N, D = x.shape
    n = x.dtype.type(N)
    w = min(D, j0 + B) - j0
    j1 = j0 + w
    zero = x.dtype.type(0)
    mu = np.empty(w, dtype=x.dtype)
    s2 = np.empty(w, dtype=x.dtype)
    for j in range(w):
        mu[j] = zero
        s2[j] = zero
    # zero-based row views: an index ``j0 + j`` may wrap around (negative) for all LLVM knows,
    # which kept these loops scalar (measured 8x slower). Four rows per pass of the inner loop:
    # the accumulators are loaded and stored once per four rows, in the same order of additions
    # as one row at a time (the loops were bound by those loads and stores: 1.3x faster).
    N4 = N - N % 4
    for i in range(0, N4, 4):
        r0, r1, r2, r3 = x[i, j0:j1], x[i + 1, j0:j1], x[i + 2, j0:j1], x[i + 3, j0:j1]
        for j in range(w):
            mu[j] = (((mu[j] + r0[j]) + r1[j]) + r2[j]) + r3[j]
    for i in range(N4, N):
        row = x[i, j0:j1]
        for j in range(w):
            mu[j] += row[j]
    for j in range(w):
        mu[j] = mu[j] / n
    for i in range(0, N4, 4):
        r0, r1, r2, r3 = x[i, j0:j1], x[i + 1, j0:j1], x[i + 2, j0:j1], x[i + 3, j0:j1]
        for j in range(w):
            m = mu[j]
            d0, d1, d2, d3 = r0[j] - m, r1[j] - m, r2[j] - m, r3[j] - m
            s2[j] = (((s2[j] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3
    for i in range(N4, N):
        row = x[i, j0:j1]
        for j in range(w):
            d = row[j] - mu[j]
            s2[j] += d * d
    sd = std[j0:j1]
    for j in range(w):
        v = s2[j] / n
        mean[j0 + j] = mu[j]
        var[j0 + j] = v
        sd[j] = np.sqrt(v + eps)
    g = gamma[j0:j1]
    b = beta[j0:j1]
    for i in range(0, N - N % 2, 2):  # two rows: the per-feature loads once per two rows
        r0, r1 = x[i, j0:j1], x[i + 1, j0:j1]
        n0, n1 = xn[i, j0:j1], xn[i + 1, j0:j1]
        o0, o1 = out[i, j0:j1], out[i + 1, j0:j1]
        for j in range(w):
            m, s, gj, bj = mu[j], sd[j], g[j], b[j]
            v0, v1 = (r0[j] - m) / s, (r1[j] - m) / s
            n0[j], n1[j] = v0, v1
            o0[j], o1[j] = gj * v0 + bj, gj * v1 + bj
    if N % 2:
        row, nrow, orow = x[N - 1, j0:j1], xn[N - 1, j0:j1], out[N - 1, j0:j1]
        for j in range(w):
            v = (row[j] - mu[j]) / sd[j]
            nrow[j] = v
            orow[j] = g[j] * v + b[j]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def batchnorm_forward_eval_kernel(x, gamma, beta, running_mean, running_var, eps, out):
    """Inference forward ``out = gamma * (x - mean) / sqrt(var + eps) + beta`` in one pass.

    Shape
    -----
    x, out: (N, D) C-contiguous; gamma, beta, running_mean, running_var: (D,).
    """
    N, D = x.shape
    B = _BLOCK_BYTES // x.itemsize
    for blk in prange((D + B - 1) // B):
        j0 = blk * B
        w = min(D, j0 + B) - j0
        sd = np.empty(w, dtype=x.dtype)
        for j in range(w):
            sd[j] = np.sqrt(running_var[j0 + j] + eps)
        j1 = j0 + w
        g, b, m = gamma[j0:j1], beta[j0:j1], running_mean[j0:j1]
        for i in range(N):
            row = x[i, j0:j1]
            orow = out[i, j0:j1]
            for j in range(w):
                orow[j] = g[j] * ((row[j] - m[j]) / sd[j]) + b[j]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def batchnorm_backward_kernel(dout, xn, std, gamma, dx, dgamma, dbeta):
    """Backward of the training forward (the book's chain, rearranged per feature):
    ``dxc = gamma/std * (dout - xn * dgamma/N)``, ``dx = dxc - sum(dxc)/N``.

    Shape
    -----
    dout, xn, dx: (N, D) C-contiguous; std, gamma, dgamma, dbeta: (D,).
    """
    D = dout.shape[1]
    B = _BLOCK_BYTES // dout.itemsize
    for blk in prange((D + B - 1) // B):
        _backward_block(dout, xn, std, gamma, dx, dgamma, dbeta, blk * B, B)


@njit(cache=True, nogil=True, error_model="numpy")
def batchnorm_backward_serial_kernel(dout, xn, std, gamma, dx, dgamma, dbeta):
    """Single-threaded :func:`batchnorm_backward_kernel` for small inputs."""
    D = dout.shape[1]
    B = _BLOCK_BYTES // dout.itemsize
    for blk in range((D + B - 1) // B):
        _backward_block(dout, xn, std, gamma, dx, dgamma, dbeta, blk * B, B)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _backward_block(dout, xn, std, gamma, dx, dgamma, dbeta, j0, B):
    """Features ``[j0, j0 + B)`` of the backward pass."""
    N, D = dout.shape
    n = dout.dtype.type(N)
    w = min(D, j0 + B) - j0
    zero = dout.dtype.type(0)
    sb = np.empty(w, dtype=dout.dtype)
    sg = np.empty(w, dtype=dout.dtype)
    dmu = np.empty(w, dtype=dout.dtype)
    for j in range(w):
        sb[j] = zero
        sg[j] = zero
        dmu[j] = zero
    j1 = j0 + w
    N4 = N - N % 4  # four rows per pass, as in _train_block
    for i in range(0, N4, 4):
        g0, g1, g2, g3 = dout[i, j0:j1], dout[i + 1, j0:j1], dout[i + 2, j0:j1], dout[i + 3, j0:j1]
        n0, n1, n2, n3 = xn[i, j0:j1], xn[i + 1, j0:j1], xn[i + 2, j0:j1], xn[i + 3, j0:j1]
        for j in range(w):
            sb[j] = (((sb[j] + g0[j]) + g1[j]) + g2[j]) + g3[j]
            sg[j] = (((sg[j] + n0[j] * g0[j]) + n1[j] * g1[j]) + n2[j] * g2[j]) + n3[j] * g3[j]
    for i in range(N4, N):
        drow = dout[i, j0:j1]
        nrow = xn[i, j0:j1]
        for j in range(w):
            g = drow[j]
            sb[j] += g
            sg[j] += nrow[j] * g
    scale = np.empty(w, dtype=dout.dtype)
    sgn = np.empty(w, dtype=dout.dtype)
    for j in range(w):
        dbeta[j0 + j] = sb[j]
        dgamma[j0 + j] = sg[j]
        scale[j] = gamma[j0 + j] / std[j0 + j]
        sgn[j] = sg[j] / n  # per feature, not a division per element
    for i in range(0, N4, 4):
        g0, g1, g2, g3 = dout[i, j0:j1], dout[i + 1, j0:j1], dout[i + 2, j0:j1], dout[i + 3, j0:j1]
        n0, n1, n2, n3 = xn[i, j0:j1], xn[i + 1, j0:j1], xn[i + 2, j0:j1], xn[i + 3, j0:j1]
        x0, x1, x2, x3 = dx[i, j0:j1], dx[i + 1, j0:j1], dx[i + 2, j0:j1], dx[i + 3, j0:j1]
        for j in range(w):
            c, sn = scale[j], sgn[j]
            v0, v1 = c * (g0[j] - n0[j] * sn), c * (g1[j] - n1[j] * sn)
            v2, v3 = c * (g2[j] - n2[j] * sn), c * (g3[j] - n3[j] * sn)
            x0[j], x1[j], x2[j], x3[j] = v0, v1, v2, v3
            dmu[j] = (((dmu[j] + v0) + v1) + v2) + v3
    for i in range(N4, N):
        drow = dout[i, j0:j1]
        nrow = xn[i, j0:j1]
        xrow = dx[i, j0:j1]
        for j in range(w):
            v = scale[j] * (drow[j] - nrow[j] * sgn[j])
            xrow[j] = v
            dmu[j] += v
    for j in range(w):
        dmu[j] = dmu[j] / n
    for i in range(N):
        xrow = dx[i, j0:j1]
        for j in range(w):
            xrow[j] -= dmu[j]
