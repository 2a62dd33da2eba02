"""Direct 2-D convolution (cross-correlation): forward, data/weight/bias gradients.

All kernels index ``x[n, c, oy*stride + ky - pad, ox*stride + kx - pad]`` and skip taps that
fall into the zero padding by clipping the output range per tap (no branch in the inner loop).
Every ``prange`` iteration owns a disjoint output slice, and its reduction order is fixed, so
results do not depend on the number of threads.
"""

from numba import prange

from ._jit import njit


@njit(cache=True, nogil=True, error_model="numpy")
def _valid_range(k, pad, stride, in_size, out_size):
    """Output indices ``o`` with ``0 <= o*stride + k - pad < in_size``, as ``[lo, hi)``."""
    lo = 0
    if k < pad:
        lo = (pad - k + stride - 1) // stride
    top = in_size - 1 + pad - k
    if top < 0:
        return lo, lo
    hi = min(out_size, top // stride + 1)
    if hi < lo:
        hi = lo
    return lo, hi


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_forward_kernel(x, W, b, stride, pad, out):
    """``out[n, f] = b[f] + sum_{c,ky,kx} W[f, c, ky, kx] * x_pad[n, c, oy*s + ky, ox*s + kx]``.

    Parallel over (n, f) output planes.

    Shape
    -----
    x: (N, C, H, W), W: (FN, C, FH, FW), b: (FN,), out: (N, FN, OH, OW); all C-contiguous.
    """
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    OH = out.shape[2]
    OW = out.shape[3]
    for t in prange(N * FN):
        n = t // FN
        f = t - n * FN
        bias = b[f]
        for oy in range(OH):
            row = out[n, f, oy]
            for ox in range(OW):
                row[ox] = bias
            for c in range(C):
                for ky in range(FH):
                    iy = oy * stride + ky - pad
                    if iy < 0 or iy >= H:
                        continue
                    xrow = x[n, c, iy]
                    for kx in range(FW):
                        w = W[f, c, ky, kx]
                        lo, hi = _valid_range(kx, pad, stride, Wd, OW)
                        off = kx - pad
                        for ox in range(lo, hi):
                            row[ox] += w * xrow[ox * stride + off]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_backward_data_kernel(dout, W, stride, pad, out):
    """Input gradient: scatter ``W[f, c, ky, kx] * dout[n, f, oy, ox]`` back to the pixels.

    Parallel over (n, c) input planes; taps landing in the padding are dropped.

    Shape
    -----
    dout: (N, FN, OH, OW), W: (FN, C, FH, FW), out: (N, C, H, W); all C-contiguous.
    """
    N, C, H, Wd = out.shape
    FN, _, FH, FW = W.shape
    OH = dout.shape[2]
    OW = dout.shape[3]
    zero = out.dtype.type(0)
    for t in prange(N * C):
        n = t // C
        c = t - n * C
        plane = out[n, c]
        for iy in range(H):
            for ix in range(Wd):
                plane[iy, ix] = zero
        for f in range(FN):
            for ky in range(FH):
                for oy in range(OH):
                    iy = oy * stride + ky - pad
                    if iy < 0 or iy >= H:
                        continue
                    drow = dout[n, f, oy]
                    prow = plane[iy]
                    for kx in range(FW):
                        w = W[f, c, ky, kx]
                        lo, hi = _valid_range(kx, pad, stride, Wd, OW)
                        off = kx - pad
                        for ox in range(lo, hi):
                            prow[ox * stride + off] += w * drow[ox]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_backward_weight_kernel(x, dout, stride, pad, out):
    """Filter gradient ``out[f, c, ky, kx] = sum_{n,oy,ox} dout[n, f, oy, ox] * x_pad[...]``.

    Parallel over (f, c) filter slices; each sums over the batch in a fixed order.

    Shape
    -----
    x: (N, C, H, W), dout: (N, FN, OH, OW), out: (FN, C, FH, FW); all C-contiguous.
    """
    N, C, H, Wd = x.shape
    FN, _, FH, FW = out.shape
    OH = dout.shape[2]
    OW = dout.shape[3]
    zero = out.dtype.type(0)
    for t in prange(FN * C):
        f = t // C
        c = t - f * C
        for ky in range(FH):
            for kx in range(FW):
                lo, hi = _valid_range(kx, pad, stride, Wd, OW)
                off = kx - pad
                acc = zero
                for n in range(N):
                    for oy in range(OH):
                        iy = oy * stride + ky - pad
                        if iy < 0 or iy >= H:
                            continue
                        drow = dout[n, f, oy]
                        xrow = x[n, c, iy]
                        for ox in range(lo, hi):
                            acc += drow[ox] * xrow[ox * stride + off]
                out[f, c, ky, kx] = acc


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc"})
def _plane_sum(v):
    """``sum(v)`` of a contiguous 1-D view, vectorised (reassociated: the order depends only on
    the length)."""
    acc = v.dtype.type(0)
    for j in range(v.shape[0]):
        acc += v[j]
    return acc


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_backward_bias_kernel(dout, out):
    """Bias gradient ``out[f] = sum_{n,oy,ox} dout[n, f, oy, ox]``; parallel over f.

    Each ``(n, f)`` plane is summed as one vectorised run, the planes' sums added in ``n``
    order (a single scalar chain measured 0.31 ms at (100, 16, 28, 28) float32, as long as a
    convolution pass).

    Shape
    -----
    dout: (N, FN, OH, OW) C-contiguous, out: (FN,).
    """
    N, FN, OH, OW = dout.shape
    zero = out.dtype.type(0)
    for f in prange(FN):
        acc = zero
        for n in range(N):
            acc += _plane_sum(dout[n, f].reshape(OH * OW))
        out[f] = acc
