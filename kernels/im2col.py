"""im2col and its adjoint col2im, in the book's layout.

``col[(n*OH + oy)*OW + ox, (c*FH + ky)*FW + kx] = x[n, c, oy*stride + ky - pad, ox*stride + kx - pad]``
(zero outside the image). col2im sums every column entry back into its pixel and drops the
padding.
"""

from numba import prange

from ._jit import njit


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def im2col_forward_kernel(x, FH, FW, stride, pad, out):
    """Unfold patches of ``x`` into ``out`` (im2col).

    Parallel over (n, oy): each iteration owns the ``OW`` rows of one output row.

    Shape
    -----
    x: (N, C, H, W) C-contiguous; out: (N*OH*OW, C*FH*FW) C-contiguous, fully overwritten.
    """
    N, C, H, W = x.shape
    OH = (H + 2 * pad - FH) // stride + 1
    OW = (W + 2 * pad - FW) // stride + 1
    zero = x.dtype.type(0)
    for t in prange(N * OH):
        n = t // OH
        oy = t - n * OH
        row0 = t * OW
        for c in range(C):
            for ky in range(FH):
                iy = oy * stride + ky - pad
                inside_y = 0 <= iy < H
                for kx in range(FW):
                    j = (c * FH + ky) * FW + kx
                    for ox in range(OW):
                        ix = ox * stride + kx - pad
                        if inside_y and 0 <= ix < W:
                            out[row0 + ox, j] = x[n, c, iy, ix]
                        else:
                            out[row0 + ox, j] = zero


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def im2col_backward_kernel(col, FH, FW, stride, pad, out):
    """Fold ``col`` back into images, accumulating overlaps (col2im).

    Parallel over (n, c) image planes: each iteration owns ``out[n, c]``, so overlapping
    windows are summed without races, in a fixed order independent of the thread count.

    Shape
    -----
    col: (N*OH*OW, C*FH*FW) C-contiguous; out: (N, C, H, W), fully overwritten.
    """
    N, C, H, W = out.shape
    OH = (H + 2 * pad - FH) // stride + 1
    OW = (W + 2 * pad - FW) // stride + 1
    zero = out.dtype.type(0)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = out[n, c]
        for iy in range(H):
            for ix in range(W):
                plane[iy, ix] = zero
        for oy in range(OH):
            row0 = (n * OH + oy) * OW
            for ky in range(FH):
                iy = oy * stride + ky - pad
                if iy < 0 or iy >= H:
                    continue
                for kx in range(FW):
                    j = (c * FH + ky) * FW + kx
                    # valid ox: 0 <= ox*stride + kx - pad < W
                    ox_lo = 0
                    if kx < pad:
                        ox_lo = (pad - kx + stride - 1) // stride
                    ox_hi = min(OW, (W - 1 + pad - kx) // stride + 1)
                    for ox in range(ox_lo, ox_hi):
                        plane[iy, ox * stride + kx - pad] += col[row0 + ox, j]
