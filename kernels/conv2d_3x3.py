"""3x3 (and 5x5) stride-1 convolution in registers: forward (also the data gradient) and weight
gradient.

The layout is the "wide row" of :mod:`.conv2d_gemm`, without a panel: image ``n`` is copied once
into a zero-padded scratch ``xp`` (one row per channel), and output
pixel ``(oy, ox)`` becomes wide column ``j = oy*Wp + ox`` (``0 <= j < L = OH*Wp``; the
``Wp - OW`` columns past each row's end are computed and dropped). Rows share their padding:
``Wp = W + pad``, the ``pad`` zero columns at the start of row ``r + 1`` being also the right
padding of row ``r`` (a tap reaches at most ``pad`` cells past either edge); stacked images
share padding rows the same way. For 8x8 images at pad 1 that computes 81 wide cells per 64
outputs instead of 90, and the (100, 64, 8, 8) forward measured 1.1x faster.
Tap ``(ky, kx)`` of wide column ``j`` is then ``xp[c, j + ky*Wp + kx]``: nine fixed offsets,
so with the nine shifted views ``v_t = xp[c, off_t : off_t + L]`` the convolution is

    out_wide[f, j] = b[f] + sum_c sum_t W[f, c, t] * v_t[j]

Forward: for a block of 4 filters the inner loop over ``j`` loads the nine taps once and does
36 fused multiply-adds into 4 accumulator rows (the 36 weights sit in registers for the whole
loop: they are scalars loaded before it). The nine products of a filter are summed first and
then added to the accumulator (adding them one by one to it measured 3x the rounding error in
float32, for no speed; nor did summing them as a tree). LLVM vectorises that loop over ``j``;
measured on the 2-core Zen4 at 170-250 GFLOP/s float32 (the panel + BLAS path: 40-130), because
nothing but the image itself is read (no im2col panel) and each loaded pixel feeds 36 FMAs. Per
16 columns that is 40 floating-point instructions for 36 useful FMAs: on large images the loop
runs at the FMA ports' limit. (Measured and rejected: 2 filters or 2 channels per pass, 1.35x
and 1.6x slower; Winograd F(2x2, 3x3) through batched BLAS, slower below 56x56 images; a
batch-innermost layout without padding cells, slower by its transposes.)

The data gradient is the same kernel: ``dx = conv(dout, W')`` with ``W'[c, f] = W[f, c]``
rotated by 180 degrees and padding ``K - 1 - pad`` (the caller prepares ``W'``).

Weight gradient: ``dW[f, c, t] = sum_n sum_j dout_wide[n, f, j] * v_t[j]`` with ``dout_wide``
zero in the dropped columns: nine dot products over ``j`` per (f, c), vectorised as reductions.
Images are dealt round-robin to at most 8 slots (a function of N only), each owning a partial
sum; partials are added in slot order, so results are the same at any number of threads.

5x5 filters (stride 1, ``pad <= 4``) use the same layout and drivers, one filter row at a time
(25 taps x 4 filters would not fit the registers): the forward sums 4 filters x 5 taps per
pass over ``j``, the weight gradient keeps 4 filters x 5 taps = 20 reductions; the data
gradient pads by ``4 - pad``. Measured 1.2-2.9x faster than the panel + BLAS path (the book's
``simple_conv`` layer, (100, 1, 28, 28) x (30, 1, 5, 5): 3.7 -> 2.1 ms forward + backward).

``fastmath={"contract"}`` (fused multiply-add) and, for the reductions, ``"reassoc"`` only:
NaN and inf keep their IEEE behaviour.
"""

import numpy as np
from numba import prange

from ._jit import njit
from .conv2d_gemm import _copy_row, _sum_slots

#: filters per register block of the forward kernel
_FB = 4
#: wide columns per inner-loop pass: 4 accumulator rows + one input row stay in L1
_JB = 1024
#: wide columns per group of the weight gradient (its dot products want long rows)
_JB_WEIGHT = 4096
#: parallel iterations the forward kernel aims for (groups x parts of the filter blocks), so
#: that a small batch still uses every thread and an odd group count balances
_MIN_TASKS = 16


@njit(cache=True, nogil=True, error_model="numpy")
def _plan(N, C, H, Wd, pad, itemsize, target):
    """``(G, groups, P, Wp)``: images per stacked group, group count, row period, padded width.

    Enough images per group for a long inner loop (about ``target`` wide columns), at least 8
    groups when the batch allows (the parallel iterations), and the group's scratch within
    about 512 KiB."""
    P = H + pad
    Wp = Wd + pad  # rows share their padding columns, as stacked images share padding rows
    per_image = P * Wp
    G = min(N, target // per_image, (N + 7) // 8, (512 * 1024) // max(1, C * per_image * itemsize))
    G = max(1, G)
    groups = (N + G - 1) // G
    G = (N + groups - 1) // groups  # even groups (100 images: 10 of 10, not 9 of 11 and 1)
    return G, (N + G - 1) // G, P, Wp


@njit(cache=True, nogil=True, error_model="numpy")
def _stack_images(x, n0, m, pad, xp):
    """Copy images ``n0 : n0 + m`` into ``xp``, stacked: row ``pad + i*P + iy`` holds image
    ``n0 + i``'s row ``iy`` at columns ``pad : pad + W``; every other cell stays zero."""
    C, H, Wd = x.shape[1], x.shape[2], x.shape[3]
    P = H + pad
    Wp = Wd + pad  # rows share their padding columns, as stacked images share padding rows
    for i in range(m):
        for c in range(C):
            for iy in range(H):
                base = (pad + i * P + iy) * Wp + pad
                _copy_row(x[n0 + i, c, iy], xp[c, base : base + Wd])


@njit(cache=True, nogil=True, error_model="numpy")
def _scratch_len(G, P, Wp, K):
    """Length of a stacked scratch row: what ``G*P`` wide output rows read with ``K x K``
    filters (``K - 1`` rows and cells past them)."""
    return (G * P + K - 1) * Wp + K - 1


@njit(cache=True, nogil=True, error_model="numpy")
def _taps(W, f, c):
    """The nine weights of filter ``f``, channel ``c`` (row-major), as register values."""
    return (W[f, c, 0, 0], W[f, c, 0, 1], W[f, c, 0, 2],
            W[f, c, 1, 0], W[f, c, 1, 1], W[f, c, 1, 2],
            W[f, c, 2, 0], W[f, c, 2, 1], W[f, c, 2, 2])


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _forward_block4(xp, W, f0, Wp, acc, L):
    """``acc[i, j] += sum_c sum_t W[f0 + i, c, t] * v_t[j]`` for ``i < 4``, ``j < L``, in
    passes of ``_JB`` columns (the four accumulator rows of a pass stay in L1 over all ``c``).

    The nine views are spelled out here and in the other loops: built by a helper returning a
    tuple of views, these loops measured 1.3x slower."""
    r = 2 * Wp
    jb = _JB * 4 // xp.itemsize  # the same bytes per pass in float64
    for j0 in range(0, L, jb):
        n = min(jb, L - j0)
        # 1-D slices of contiguous rows stay contiguous (a 2-D slice would not: no vectors)
        a0, a1 = acc[0][j0 : j0 + n], acc[1][j0 : j0 + n]
        a2, a3 = acc[2][j0 : j0 + n], acc[3][j0 : j0 + n]
        for c in range(xp.shape[0]):
            xc = xp[c][j0:]
            v0, v1, v2 = xc[0:n], xc[1 : 1 + n], xc[2 : 2 + n]
            v3, v4, v5 = xc[Wp : Wp + n], xc[Wp + 1 : Wp + 1 + n], xc[Wp + 2 : Wp + 2 + n]
            v6, v7, v8 = xc[r : r + n], xc[r + 1 : r + 1 + n], xc[r + 2 : r + 2 + n]
            p = _taps(W, f0, c)
            q = _taps(W, f0 + 1, c)
            s = _taps(W, f0 + 2, c)
            u = _taps(W, f0 + 3, c)
            for j in range(n):
                x0, x1, x2 = v0[j], v1[j], v2[j]
                x3, x4, x5 = v3[j], v4[j], v5[j]
                x6, x7, x8 = v6[j], v7[j], v8[j]
                a0[j] += (p[0] * x0 + p[1] * x1 + p[2] * x2 + p[3] * x3 + p[4] * x4
                          + p[5] * x5 + p[6] * x6 + p[7] * x7 + p[8] * x8)
                a1[j] += (q[0] * x0 + q[1] * x1 + q[2] * x2 + q[3] * x3 + q[4] * x4
                          + q[5] * x5 + q[6] * x6 + q[7] * x7 + q[8] * x8)
                a2[j] += (s[0] * x0 + s[1] * x1 + s[2] * x2 + s[3] * x3 + s[4] * x4
                          + s[5] * x5 + s[6] * x6 + s[7] * x7 + s[8] * x8)
                a3[j] += (u[0] * x0 + u[1] * x1 + u[2] * x2 + u[3] * x3 + u[4] * x4
                          + u[5] * x5 + u[6] * x6 + u[7] * x7 + u[8] * x8)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _forward_block1(xp, W, f, Wp, a0):
    """``a0[j] += sum_c sum_t W[f, c, t] * v_t[j]`` (the filters left over from blocks of 4)."""
    L = a0.shape[0]
    for c in range(xp.shape[0]):
        xc = xp[c]
        v0, v1, v2 = xc[0:L], xc[1 : 1 + L], xc[2 : 2 + L]
        v3, v4, v5 = xc[Wp : Wp + L], xc[Wp + 1 : Wp + 1 + L], xc[Wp + 2 : Wp + 2 + L]
        r = 2 * Wp
        v6, v7, v8 = xc[r : r + L], xc[r + 1 : r + 1 + L], xc[r + 2 : r + 2 + L]
        p = _taps(W, f, c)
        for j in range(L):
            a0[j] += (p[0] * v0[j] + p[1] * v1[j] + p[2] * v2[j] + p[3] * v3[j]
                      + p[4] * v4[j] + p[5] * v5[j] + p[6] * v6[j] + p[7] * v7[j]
                      + p[8] * v8[j])


@njit(cache=True, nogil=True, error_model="numpy")
def _row5(W, f, c, ky):
    """The five weights of row ``ky`` of filter ``f``, channel ``c``, as register values."""
    return W[f, c, ky, 0], W[f, c, ky, 1], W[f, c, ky, 2], W[f, c, ky, 3], W[f, c, ky, 4]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _forward5_block4(xp, W, f0, Wp, acc, L):
    """5x5 filters: :func:`_forward_block4` one filter row at a time (4 filters x 5 taps: the
    20 weights stay in registers; all 25 taps at once would spill)."""
    jb = _JB * 4 // xp.itemsize
    for j0 in range(0, L, jb):
        n = min(jb, L - j0)
        a0, a1 = acc[0][j0 : j0 + n], acc[1][j0 : j0 + n]
        a2, a3 = acc[2][j0 : j0 + n], acc[3][j0 : j0 + n]
        for c in range(xp.shape[0]):
            for ky in range(5):
                xc = xp[c][j0 + ky * Wp :]
                v0, v1, v2, v3, v4 = xc[0:n], xc[1 : 1 + n], xc[2 : 2 + n], xc[3 : 3 + n], xc[4 : 4 + n]
                p = _row5(W, f0, c, ky)
                q = _row5(W, f0 + 1, c, ky)
                s = _row5(W, f0 + 2, c, ky)
                u = _row5(W, f0 + 3, c, ky)
                for j in range(n):
                    x0, x1, x2, x3, x4 = v0[j], v1[j], v2[j], v3[j], v4[j]
                    a0[j] += p[0] * x0 + p[1] * x1 + p[2] * x2 + p[3] * x3 + p[4] * x4
                    a1[j] += q[0] * x0 + q[1] * x1 + q[2] * x2 + q[3] * x3 + q[4] * x4
                    a2[j] += s[0] * x0 + s[1] * x1 + s[2] * x2 + s[3] * x3 + s[4] * x4
                    a3[j] += u[0] * x0 + u[1] * x1 + u[2] * x2 + u[3] * x3 + u[4] * x4


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _forward5_block1(xp, W, f, Wp, a0):
    """5x5 filters: :func:`_forward_block1`, one filter row at a time."""
    L = a0.shape[0]
    for c in range(xp.shape[0]):
        for ky in range(5):
            xc = xp[c][ky * Wp :]
            v0, v1, v2, v3, v4 = xc[0:L], xc[1 : 1 + L], xc[2 : 2 + L], xc[3 : 3 + L], xc[4 : 4 + L]
            p = _row5(W, f, c, ky)
            for j in range(L):
                a0[j] += p[0] * v0[j] + p[1] * v1[j] + p[2] * v2[j] + p[3] * v3[j] + p[4] * v4[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _forward_filters(xp, W, b, n0, m, f0, fb, P, Wp, acc, out):
    """Filters ``f0 : f0 + fb`` of images ``n0 : n0 + m`` (stacked in ``xp``) into ``out``."""
    OH, OW = out.shape[2], out.shape[3]
    L = m * P * Wp
    for i in range(fb):
        acc[i, :L] = b[f0 + i]
    five = W.shape[2] == 5
    if fb == _FB:
        if five:
            _forward5_block4(xp, W, f0, Wp, acc, L)
        else:
            _forward_block4(xp, W, f0, Wp, acc, L)
    else:
        for i in range(fb):
            if five:
                _forward5_block1(xp, W, f0 + i, Wp, acc[i][:L])
            else:
                _forward_block1(xp, W, f0 + i, Wp, acc[i][:L])
    for g in range(m):
        for i in range(fb):
            for oy in range(OH):
                r = (g * P + oy) * Wp
                _copy_row(acc[i, r : r + OW], out[n0 + g, f0 + i, oy])


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_3x3_forward_kernel(x, W, b, pad, out):
    """``out = conv2d(x, W, stride=1, pad=pad) + b`` for K x K filters, ``K`` 3 or 5, and
    ``0 <= pad <= K - 1``.

    Images are stacked in groups (see :func:`_plan`); parallel over (group, part of the filter
    blocks) pairs, with the filter blocks split in as few parts as give ``_MIN_TASKS``
    iterations (9 groups on 2 threads: 18 iterations, not 5 against 4).

    Shape
    -----
    x: (N, C, H, W), W: (FN, C, K, K), b: (FN,), out: (N, FN, H + 2*pad - K + 1, W + 2*pad - K + 1);
    all C-contiguous.
    """
    N, C, H, Wd = x.shape
    FN, K = W.shape[0], W.shape[2]
    G, groups, P, Wp = _plan(N, C, H, Wd, pad, x.itemsize, _JB)
    NB = (FN + _FB - 1) // _FB
    split = 1  # each group's filter blocks in ``split`` parts: at least _MIN_TASKS iterations
    while groups * split < _MIN_TASKS and split < NB:
        split *= 2
    per_task = (NB + split - 1) // split  # filter blocks per iteration
    for t in prange(groups * split):
        grp = t // split
        b0 = (t - grp * split) * per_task
        if b0 >= NB:
            continue
        n0 = grp * G
        m = min(G, N - n0)
        xp = np.zeros((C, _scratch_len(G, P, Wp, K)), dtype=x.dtype)
        _stack_images(x, n0, m, pad, xp)
        acc = np.empty((_FB, G * P * Wp), dtype=x.dtype)
        for blk in range(b0, min(NB, b0 + per_task)):
            f0 = blk * _FB
            _forward_filters(xp, W, b, n0, m, f0, min(_FB, FN - f0), P, Wp, acc, out)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _weight_taps2(xp_c, g, h, Wp, dw, dv):
    """``dw[t] += sum_j g[j] * v_t[j]`` and ``dv[t] += sum_j h[j] * v_t[j]`` for the nine taps
    ``t`` (``v_t`` views of ``xp_c``): two filters at once, so that 18 accumulators share each
    loaded tap and the loop is bound by FMAs, not loads (one filter: 1.4-1.6x slower)."""
    L = g.shape[0]
    v0, v1, v2 = xp_c[0:L], xp_c[1 : 1 + L], xp_c[2 : 2 + L]
    v3, v4, v5 = xp_c[Wp : Wp + L], xp_c[Wp + 1 : Wp + 1 + L], xp_c[Wp + 2 : Wp + 2 + L]
    r = 2 * Wp
    v6, v7, v8 = xp_c[r : r + L], xp_c[r + 1 : r + 1 + L], xp_c[r + 2 : r + 2 + L]
    z = g.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = z
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = z
    for j in range(L):
        d = g[j]
        e = h[j]
        x = v0[j]
        s0 += d * x
        t0 += e * x
        x = v1[j]
        s1 += d * x
        t1 += e * x
        x = v2[j]
        s2 += d * x
        t2 += e * x
        x = v3[j]
        s3 += d * x
        t3 += e * x
        x = v4[j]
        s4 += d * x
        t4 += e * x
        x = v5[j]
        s5 += d * x
        t5 += e * x
        x = v6[j]
        s6 += d * x
        t6 += e * x
        x = v7[j]
        s7 += d * x
        t7 += e * x
        x = v8[j]
        s8 += d * x
        t8 += e * x
    dw[0, 0] += s0
    dw[0, 1] += s1
    dw[0, 2] += s2
    dw[1, 0] += s3
    dw[1, 1] += s4
    dw[1, 2] += s5
    dw[2, 0] += s6
    dw[2, 1] += s7
    dw[2, 2] += s8
    dv[0, 0] += t0
    dv[0, 1] += t1
    dv[0, 2] += t2
    dv[1, 0] += t3
    dv[1, 1] += t4
    dv[1, 2] += t5
    dv[2, 0] += t6
    dv[2, 1] += t7
    dv[2, 2] += t8


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _weight5_row4(xr, g0, g1, g2, g3, d0, d1, d2, d3):
    """5x5 filters, one filter row: ``d_i[kx] += sum_j g_i[j] * xr[j + kx]`` for four filters
    (20 accumulators share each loaded tap, as in :func:`_weight_taps2`)."""
    L = g0.shape[0]
    v0, v1, v2, v3, v4 = xr[0:L], xr[1 : 1 + L], xr[2 : 2 + L], xr[3 : 3 + L], xr[4 : 4 + L]
    z = g0.dtype.type(0)
    s00 = s01 = s02 = s03 = s04 = s10 = s11 = s12 = s13 = s14 = z
    s20 = s21 = s22 = s23 = s24 = s30 = s31 = s32 = s33 = s34 = z
    for j in range(L):
        e0, e1, e2, e3 = g0[j], g1[j], g2[j], g3[j]
        x = v0[j]
        s00 += e0 * x
        s10 += e1 * x
        s20 += e2 * x
        s30 += e3 * x
        x = v1[j]
        s01 += e0 * x
        s11 += e1 * x
        s21 += e2 * x
        s31 += e3 * x
        x = v2[j]
        s02 += e0 * x
        s12 += e1 * x
        s22 += e2 * x
        s32 += e3 * x
        x = v3[j]
        s03 += e0 * x
        s13 += e1 * x
        s23 += e2 * x
        s33 += e3 * x
        x = v4[j]
        s04 += e0 * x
        s14 += e1 * x
        s24 += e2 * x
        s34 += e3 * x
    d0[0] += s00
    d0[1] += s01
    d0[2] += s02
    d0[3] += s03
    d0[4] += s04
    d1[0] += s10
    d1[1] += s11
    d1[2] += s12
    d1[3] += s13
    d1[4] += s14
    d2[0] += s20
    d2[1] += s21
    d2[2] += s22
    d2[3] += s23
    d2[4] += s24
    d3[0] += s30
    d3[1] += s31
    d3[2] += s32
    d3[3] += s33
    d3[4] += s34


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _weight5_row1(xr, g, d):
    """:func:`_weight5_row4` for one filter (those left over from blocks of 4)."""
    L = g.shape[0]
    v0, v1, v2, v3, v4 = xr[0:L], xr[1 : 1 + L], xr[2 : 2 + L], xr[3 : 3 + L], xr[4 : 4 + L]
    z = g.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = z
    for j in range(L):
        e = g[j]
        s0 += e * v0[j]
        s1 += e * v1[j]
        s2 += e * v2[j]
        s3 += e * v3[j]
        s4 += e * v4[j]
    d[0] += s0
    d[1] += s1
    d[2] += s2
    d[3] += s3
    d[4] += s4


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_3x3_backward_weight_kernel(x, dout, pad, out):
    """Filter gradient of the K x K stride-1 convolution (``K`` 3 or 5, ``0 <= pad <= K - 1``).

    Groups of stacked images are dealt round-robin to at most 8 slots (a function of the shapes
    only), each with its own partial sum, added in slot order afterwards.

    Shape
    -----
    x: (N, C, H, W), dout: (N, FN, H + 2*pad - K + 1, W + 2*pad - K + 1), out: (FN, C, K, K);
    all C-contiguous.
    """
    N, C, H, Wd = x.shape
    FN, OH, OW = dout.shape[1], dout.shape[2], dout.shape[3]
    K = out.shape[2]
    G, groups, P, Wp = _plan(N, C, H, Wd, pad, x.itemsize, _JB_WEIGHT)
    slots = min(groups, 8)
    partial = np.zeros((slots, FN, C, K, K), dtype=out.dtype)
    for s in prange(slots):
        xp = np.zeros((C, _scratch_len(G, P, Wp, K)), dtype=x.dtype)
        gw = np.zeros((FN, G * P * Wp), dtype=x.dtype)  # wide dout; dropped cells stay zero
        acc = partial[s]
        spare = np.zeros((3, 3), dtype=out.dtype)
        for grp in range(s, groups, slots):
            n0 = grp * G
            m = min(G, N - n0)
            _stack_images(x, n0, m, pad, xp)
            for i in range(m):
                for f in range(FN):
                    for oy in range(OH):
                        r = (i * P + oy) * Wp
                        _copy_row(dout[n0 + i, f, oy], gw[f, r : r + OW])
            L = m * P * Wp
            for c in range(C):
                if K == 5:
                    for ky in range(5):
                        xr = xp[c][ky * Wp :]
                        for f in range(0, FN - 3, 4):
                            _weight5_row4(xr, gw[f, :L], gw[f + 1, :L], gw[f + 2, :L],
                                          gw[f + 3, :L], acc[f, c, ky], acc[f + 1, c, ky],
                                          acc[f + 2, c, ky], acc[f + 3, c, ky])
                        for f in range(FN - FN % 4, FN):
                            _weight5_row1(xr, gw[f, :L], acc[f, c, ky])
                    continue
                for f in range(0, FN - 1, 2):
                    _weight_taps2(xp[c], gw[f, :L], gw[f + 1, :L], Wp, acc[f, c], acc[f + 1, c])
                if FN % 2:  # the odd filter out, paired with itself into a scratch
                    _weight_taps2(xp[c], gw[FN - 1, :L], gw[FN - 1, :L], Wp, acc[FN - 1, c],
                                  spare)
    _sum_slots(partial.reshape(slots, FN, C * K * K), out.reshape(FN, C * K * K))
