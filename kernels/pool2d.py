"""Max pooling, forward and backward.

Windows read ``x[n, c, oy*stride + ky - pad, ox*stride + kx - pad]``; cells in the padding are
skipped, so they never win. Ties go to the first maximum in row-major window order (the book's
``np.argmax`` rule); NaN counts as the maximum, as in NumPy. The forward pass stores the
window-local index ``ky*pool_w + kx`` of the winner.
"""

import numpy as np
from numba import prange

from ._jit import njit


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def max_pool2d_forward_kernel(x, pool_h, pool_w, stride, pad, out, argmax):
    """Window maxima of ``x`` into ``out`` and their window-local indices into ``argmax``.

    Parallel over (n, c) planes. Requires ``pad < pool_h`` and ``pad < pool_w`` (every window
    then holds at least one real cell).

    Shape
    -----
    x: (N, C, H, W) C-contiguous; out, argmax: (N, C, OH, OW).
    """
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = x[n, c]
        for oy in range(OH):
            y0 = oy * stride - pad
            ky_lo = max(0, -y0)
            ky_hi = min(pool_h, H - y0)
            for ox in range(OW):
                x0 = ox * stride - pad
                kx_lo = max(0, -x0)
                kx_hi = min(pool_w, W - x0)
                best = plane[y0 + ky_lo, x0 + kx_lo]
                best_k = ky_lo * pool_w + kx_lo
                for ky in range(ky_lo, ky_hi):
                    for kx in range(kx_lo, kx_hi):
                        v = plane[y0 + ky, x0 + kx]
                        # strictly greater keeps the first maximum; a NaN wins once and stays
                        if v > best or (v != v and best == best):
                            best = v
                            best_k = ky * pool_w + kx
                out[n, c, oy, ox] = best
                argmax[n, c, oy, ox] = best_k


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def max_pool2d_backward_kernel(dout, argmax, pool_h, pool_w, stride, pad, out, bad):
    """Scatter ``dout`` to each window's winner; overlapping windows accumulate.

    Parallel over (n, c) planes, each owning ``out[n, c]``: race-free for any stride. An
    ``argmax`` entry that points outside the image (into the padding) is skipped and counted in
    ``bad[n*C + c]`` so the caller can reject it; nothing is written out of bounds.

    Shape
    -----
    dout, argmax: (N, C, OH, OW) C-contiguous; out: (N, C, H, W), fully overwritten;
    bad: (N*C,) integer.
    """
    N, C, H, W = out.shape
    OH = dout.shape[2]
    OW = dout.shape[3]
    zero = out.dtype.type(0)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = out[n, c]
        for iy in range(H):
            for ix in range(W):
                plane[iy, ix] = zero
        nbad = 0
        for oy in range(OH):
            for ox in range(OW):
                k = np.int64(argmax[n, c, oy, ox])
                ky = k // pool_w
                iy = oy * stride + ky - pad
                ix = ox * stride + (k - ky * pool_w) - pad
                if 0 <= iy < H and 0 <= ix < W and ky < pool_h:
                    plane[iy, ix] += dout[n, c, oy, ox]
                else:
                    nbad += 1
        bad[t] = nbad
