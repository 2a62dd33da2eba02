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

Forward: a register block is 4 filters x ``_V`` vectors of wide columns (48 in float32). Its
12 accumulators stay in vector registers for the whole ``C x 3 x 3`` reduction; per channel
and tap it loads ``_V`` pixel vectors (unaligned, from the shifted view) and broadcasts 4
weights, for 12 FMAs. The nine products of a filter are summed first and then added to the
accumulator (adding them one by one measured 3x the rounding error in float32). LLVM's
vectoriser cannot be steered into that from plain loops (it vectorises the innermost loop,
over ``j``, and streamed the accumulators through memory once per channel: 115-125 GFLOP/s
per core), so the block is LLVM vector IR written by an intrinsic (:func:`_register_block`):
230-245 GFLOP/s float32 per core on this 2-core Zen4. Nothing but the image itself is read (no
im2col panel). (Measured and rejected: 2 filters or 2 channels per pass of the loop kernel;
Winograd F(2x2, 3x3) through batched BLAS, slower below 56x56 images; a batch-innermost
layout without padding cells, slower by its transposes; register blocks of 4 x 2, 4 x 4,
6 x 2 or 8 x 1 vectors.)

The data gradient is the same kernel: ``dx = conv(dout, W')`` with ``W'[c, f] = W[f, c]``
rotated by 180 degrees and padding ``K - 1 - pad`` (the caller prepares ``W'``).

Weight gradient: ``dW[f, c, t] = sum_n sum_j dout_wide[n, f, j] * v_t[j]`` with ``dout_wide``
zero in the dropped columns: nine dot products over ``j`` per (f, c), vectorised as reductions.
Images are dealt round-robin to at most 8 slots (a function of N only), each owning a partial
sum; partials are added in slot order, so results are the same at any number of threads.

5x5 filters (stride 1, ``pad <= 4``) use the same layout and drivers: the forward's partial
sums run over one filter row (5 taps) at a time, the weight gradient keeps 4 filters x 5 taps
= 20 reductions; the data gradient pads by ``4 - pad``. Measured 1.2-2.9x faster than the panel + BLAS path (the book's
``simple_conv`` layer, (100, 1, 28, 28) x (30, 1, 5, 5): 3.7 -> 2.1 ms forward + backward).

``fastmath={"contract"}`` (fused multiply-add) and, for the reductions, ``"reassoc"`` only; the
register blocks call ``llvm.fma`` explicitly: NaN and inf keep their IEEE behaviour.
"""

import numpy as np
from llvmlite import ir
from numba import config, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import njit
from .conv2d_gemm import _copy_row, _sum_slots

#: filters per register block of the forward kernel
_FB = 4
#: wide columns per stacked group of the forward kernel (see _plan)
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


#: pixel vectors (of 64 bytes) per register block: 4 filters x 3 vectors = 12 accumulators and
#: 12 partial sums in registers (4 x 2: 0.9x the speed, 4 x 4 spills: 0.9x, 6 x 2 and 8 x 1 less)
_V = 3


def _register_block(K):
    """An intrinsic ``regs(x, xo, xcs, w, wo, wfs, a, ao, afs, Wp, C, nb)``: the K x K forward
    of 4 filters over ``nb`` blocks of ``span = _V * (64 // itemsize)`` wide columns, with the
    accumulators in vector registers for the whole ``C x K x K`` reduction.

    On 1-D arrays (offsets and strides in elements): for block ``k`` (``j0 = k * span``),
    ``i < 4`` and ``j0 <= j < j0 + span``,

        a[ao + i*afs + j] += sum_c sum_rows (sum_(ky, kx) in row
                                 w[wo + i*wfs + c*K*K + ky*K + kx] * x[xo + c*xcs + j + ky*Wp + kx])

    where a "row" is all nine taps for K = 3 and one filter row for K = 5: each partial sum is
    a chain of fused multiply-adds from its first product, then added to the accumulator.

    Why generated code: loop kernels kept the weights in registers and streamed the
    accumulator rows through memory once per channel (LLVM vectorises only the innermost loop,
    over ``j``). Here the loop over channels is inside the block, so per channel and tap the
    block loads ``_V`` pixel vectors and broadcasts 4 weights for ``4 * _V`` FMAs, and the
    accumulators never leave the registers: 230-245 against 115-125 GFLOP/s float32 on one
    core (120 against 65 float64), at (64 channels, ten stacked 8x8 images). Plain Numba loops
    cannot say "keep these 12 vectors in registers"; the intrinsic writes LLVM vector IR
    (``<16 x float>``: on a machine without AVX-512 LLVM splits it, still correct).

    Reads ``x`` up to index ``xo + (C-1)*xcs + nb*span + (K-1)*(Wp+1) - 1`` and writes ``a`` up
    to ``ao + 3*afs + nb*span - 1``: the caller sizes the scratch for whole blocks.
    """
    rows = [list(range(K * K))] if K == 3 else [list(range(ky * K, ky * K + K)) for ky in range(K)]

    @intrinsic
    def regs(typingctx, x, xo, xcs, w, wo, wfs, a, ao, afs, Wp, C, nb):
        sig = types.void(x, xo, xcs, w, wo, wfs, a, ao, afs, Wp, C, nb)
        dt = x.dtype

        def codegen(context, builder, sig, args):
            ity = context.get_value_type(types.intp)
            fty = context.get_value_type(dt)
            size = dt.bitwidth // 8
            VL = 64 // size
            vty = ir.VectorType(fty, VL)
            vpty = vty.as_pointer()
            xo_, xcs_, wo_, wfs_, ao_, afs_, Wp_, C_, nb_ = [
                context.cast(builder, args[i], sig.args[i], types.intp)
                for i in (1, 2, 4, 5, 7, 8, 9, 10, 11)]
            xd = context.make_array(sig.args[0])(context, builder, args[0]).data
            wd = context.make_array(sig.args[3])(context, builder, args[3]).data
            ad = context.make_array(sig.args[6])(context, builder, args[6]).data
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                "llvm.fma.v%d%s" % (VL, "f32" if size == 4 else "f64"))
            # accumulators as allocas in the entry block: LLVM promotes them to registers
            accp = [[cgutils.alloca_once(builder, vty) for _ in range(_V)] for _ in range(4)]
            const = lambda n: ir.Constant(ity, n)  # noqa: E731
            lane0 = ir.Constant(ir.IntType(32), 0)
            splat = ir.Constant(ir.VectorType(ir.IntType(32), VL), None)
            undef = ir.Constant(vty, ir.Undefined)
            offs = [builder.add(builder.mul(const(t // K), Wp_), const(t % K)) for t in range(K * K)]

            def vptr(base, i):
                return builder.bitcast(builder.gep(base, [i]), vpty)

            def bcast(ptr):
                v = builder.insert_element(undef, builder.load(ptr), lane0)
                return builder.shuffle_vector(v, undef, splat)

            with cgutils.for_range(builder, nb_) as blk:
                j = builder.mul(blk.index, const(VL * _V))
                arows = [builder.add(builder.add(ao_, builder.mul(const(i), afs_)), j) for i in range(4)]
                for i in range(4):
                    for v in range(_V):
                        p = vptr(ad, builder.add(arows[i], const(v * VL)))
                        builder.store(builder.load(p, align=size), accp[i][v])
                with cgutils.for_range(builder, C_) as chan:
                    c = chan.index
                    xb = builder.gep(xd, [builder.add(builder.add(xo_, builder.mul(c, xcs_)), j)])
                    wb = [builder.gep(wd, [builder.add(builder.add(wo_, builder.mul(const(i), wfs_)),
                                                       builder.mul(c, const(K * K)))])
                          for i in range(4)]
                    for row in rows:
                        s = [[None] * _V for _ in range(4)]
                        for t in row:
                            xs = [builder.load(vptr(xb, builder.add(offs[t], const(v * VL))), align=size)
                                  for v in range(_V)]
                            for i in range(4):
                                wv = bcast(builder.gep(wb[i], [const(t)]))
                                for v in range(_V):
                                    s[i][v] = (builder.fmul(wv, xs[v]) if s[i][v] is None
                                               else builder.call(fma, [wv, xs[v], s[i][v]]))
                        for i in range(4):
                            for v in range(_V):
                                builder.store(builder.fadd(builder.load(accp[i][v]), s[i][v]), accp[i][v])
                for i in range(4):
                    for v in range(_V):
                        p = vptr(ad, builder.add(arows[i], const(v * VL)))
                        builder.store(builder.load(accp[i][v]), p, align=size)
            return context.get_dummy_value()

        return sig, codegen

    def regs_python(x, xo, xcs, w, wo, wfs, a, ao, afs, Wp, C, nb):
        # NUMBA_DISABLE_JIT: the same sums in NumPy (without the fused rounding)
        n = nb * _V * (64 // x.itemsize)
        for i in range(4):
            acc = a[ao + i * afs : ao + i * afs + n]
            for c in range(C):
                for row in rows:
                    s = 0
                    for t in row:
                        o = xo + c * xcs + (t // K) * Wp + t % K
                        s = s + w[wo + i * wfs + c * K * K + t] * x[o : o + n]
                    acc += s

    return regs_python if config.DISABLE_JIT else regs


_regs3 = _register_block(3)
_regs5 = _register_block(5)


@njit(cache=True, nogil=True, error_model="numpy")
def _span(itemsize):
    """Wide columns per register block of :func:`_forward_regs4`."""
    return _V * (64 // itemsize)


@njit(cache=True, nogil=True, error_model="numpy")
def _forward_regs4(xp, W, f0, Wp, acc, L):
    """``acc[i, j] += sum_c sum_t W[f0 + i, c, t] * v_t[j]`` for ``i < 4`` and ``j`` up to ``L``
    rounded up to whole register blocks (see :func:`_register_block`), K = 3 or 5; ``xp`` and ``acc`` have room for that (their cells past ``L``
    hold scratch)."""
    C, K = W.shape[1], W.shape[2]
    span = _span(xp.itemsize)
    nb = (L + span - 1) // span
    x1, w1, a1 = xp.ravel(), W.ravel(), acc.ravel()
    if K == 5:
        _regs5(x1, 0, xp.shape[1], w1, f0 * C * 25, C * 25, a1, 0, acc.shape[1], Wp, C, nb)
    else:
        _regs3(x1, 0, xp.shape[1], w1, f0 * C * 9, C * 9, a1, 0, acc.shape[1], Wp, C, nb)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _forward_block1(xp, W, f, Wp, a0):
    """``a0[j] += sum_c sum_t W[f, c, t] * v_t[j]`` (the filters left over from blocks of 4),
    the nine products of a channel summed first, as in the register blocks. The nine views are
    spelled out here and in the other loops: built by a helper returning a tuple of views,
    such loops measured 1.3x slower."""
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
def _forward5_block1(xp, W, f, Wp, a0):
    """5x5 filters: :func:`_forward_block1`, the products summed one filter row at a time."""
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
        acc[i, :] = b[f0 + i]  # whole rows: the register blocks compute past L
    five = W.shape[2] == 5
    if fb == _FB:
        _forward_regs4(xp, W, f0, Wp, acc, L)
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
        span = _span(x.itemsize)  # the register blocks read and write up to a block past
        xp = np.zeros((C, _scratch_len(G, P, Wp, K) + span), dtype=x.dtype)
        _stack_images(x, n0, m, pad, xp)
        acc = np.empty((_FB, G * P * Wp + span), dtype=x.dtype)
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
