"""3x3 (and 5x5, and 1x1) convolution in registers: forward (also the data gradient of stride 1)
and weight gradient, at stride 1 and (3x3, 5x5) stride 2.

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
= 20 reductions; the data gradient pads by ``4 - pad``. Measured 1.2-2.9x faster than the
panel + BLAS path (the book's ``simple_conv`` layer, (100, 1, 28, 28) x (30, 1, 5, 5): 3.7 ->
2.1 ms forward + backward).

Stride 2 reads the image split in four phase planes (see :func:`_geometry`): every tap is a
stride-1 read again, at a per-tap offset (:func:`_tap_offsets`), so the same blocks serve.

1x1 filters (stride 1, no padding) are the same layout with ``Wp = W``: no padding cells, and
the blocks take 8 filters (no partial sums to hold beside the accumulators); their weight
gradient runs the 3x3 weight blocks over 9 channels at a time.

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

#: filters per register block of the forward kernel (K x K filters with K > 1; 1x1: _FB1)
_FB = 4
#: 1x1 filters need no partial sums beside the accumulators: 8 filters x 3 vectors fit the
#: registers and halve the image reads per FMA (pointwise (32,256,14,14) forward, one
#: process: 182 -> 280 GFLOP/s)
_FB1 = 8
#: wide columns per stacked group of the forward kernel (see _plan)
_JB = 1024
#: wide columns per group of the weight gradient (its dot products want long rows)
_JB_WEIGHT = 4096
#: parallel iterations the forward kernel aims for (groups x parts of the filter blocks), so
#: that a small batch still uses every thread and an odd group count balances
_MIN_TASKS = 16


@njit(cache=True, nogil=True, error_model="numpy")
def _geometry(H, Wd, pad, stride):
    """``(P, Wr)``: the rows per stacked image and the width of a wide row.

    Stride 1: ``P = H + pad``, ``Wr = W + pad`` (rows and images share their padding). Stride 2:
    the padded image is split in four phase planes (even/odd rows x even/odd columns), each
    ``P = ceil((H + 2*pad) / 2)`` rows of ``Wr = ceil((W + 2*pad) / 2)``: tap ``(ky, kx)`` of
    output ``(oy, ox)`` is cell ``(oy + ky // 2, ox + kx // 2)`` of plane ``(ky % 2, kx % 2)``,
    a stride-1 read again."""
    if stride == 1:
        return H + pad, Wd + pad
    return (H + 2 * pad + 1) // 2, (Wd + 2 * pad + 1) // 2


@njit(cache=True, nogil=True, error_model="numpy")
def _plan(N, C, P, Wr, itemsize, target):
    """``(G, groups)``: images per stacked group and group count.

    Enough images per group for a long inner loop (about ``target`` wide columns), at least 8
    groups when the batch allows (the parallel iterations), and the group's scratch within
    about 512 KiB."""
    per_image = P * Wr
    G = min(N, target // per_image, (N + 7) // 8, (512 * 1024) // max(1, C * per_image * itemsize))
    G = max(1, G)
    groups = (N + G - 1) // G
    G = (N + groups - 1) // groups  # even groups (100 images: 10 of 10, not 9 of 11 and 1)
    return G, (N + G - 1) // G


@njit(cache=True, nogil=True, error_model="numpy")
def _split(groups, NB):
    """``(split, per_task)``: each group's ``NB`` blocks (of filters) in ``split`` parts of
    ``per_task`` blocks, as few parts as give ``_MIN_TASKS`` parallel iterations (9 groups on
    2 threads: 18 iterations, not 5 against 4)."""
    split = 1
    while groups * split < _MIN_TASKS and split < NB:
        split *= 2
    return split, (NB + split - 1) // split


@njit(cache=True, nogil=True, error_model="numpy")
def _task(t, split, per_task, G, N):
    """``(n0, m, b0)`` of parallel iteration ``t``: its images ``n0 : n0 + m`` and first block."""
    grp = t // split
    n0 = grp * G
    return n0, min(G, N - n0), (t - grp * split) * per_task


@njit(cache=True, nogil=True, error_model="numpy")
def _scratch(G, P, Wr, K, stride, extra):
    """``(S, PL)``: the length of a stacked scratch row (what ``G*P`` wide output rows read
    with ``K x K`` filters, plus ``extra`` cells) and, for stride 2, the length of one of its
    four phase planes."""
    if stride == 1:
        return (G * P + K - 1) * Wr + K - 1 + extra, 0
    PL = G * P * Wr + ((K - 1) // 2) * (Wr + 1) + extra
    return 4 * PL, PL


@njit(cache=True, nogil=True, error_model="numpy")
def _tap_offsets(K, stride, Wr, PL):
    """Where tap ``t = ky*K + kx`` of wide column ``j`` is read: ``xp[c, j + offs[t]]``."""
    offs = np.empty(K * K, dtype=np.intp)
    for ky in range(K):
        for kx in range(K):
            if stride == 1:
                offs[ky * K + kx] = ky * Wr + kx
            else:
                offs[ky * K + kx] = ((ky % 2) * 2 + kx % 2) * PL + (ky // 2) * Wr + kx // 2
    return offs


@njit(cache=True, nogil=True, error_model="numpy")
def _stack_images(x, n0, m, pad, stride, P, Wr, PL, xp):
    """Copy images ``n0 : n0 + m`` into ``xp``, stacked, every other cell staying zero.

    Stride 1: row ``pad + i*P + iy`` holds image ``n0 + i``'s row ``iy`` at columns
    ``pad : pad + W``. Stride 2: padded row ``Y = iy + pad`` goes to row ``i*P + Y // 2`` of
    the planes ``(Y % 2, 0)`` and ``(Y % 2, 1)`` (plane ``k`` starts at ``k * PL``), its
    padded column ``X`` to column ``X // 2`` of plane ``(Y % 2, X % 2)``."""
    C, H, Wd = x.shape[1], x.shape[2], x.shape[3]
    for i in range(m):
        for c in range(C):
            for iy in range(H):
                src = x[n0 + i, c, iy]
                if stride == 1:
                    base = (pad + i * P + iy) * Wr + pad
                    _copy_row(src, xp[c, base : base + Wd])
                    continue
                Y = iy + pad
                row = (Y % 2) * 2 * PL + (i * P + Y // 2) * Wr
                for px in range(2):
                    ix0 = (px - pad) % 2  # first column whose padded column has parity px
                    d = row + px * PL + (ix0 + pad) // 2
                    for k in range((Wd - ix0 + 1) // 2):
                        xp[c, d + k] = src[ix0 + 2 * k]


#: pixel vectors (of 64 bytes) per register block: 4 filters x 3 vectors = 12 accumulators and
#: 12 partial sums in registers (4 x 2: 0.9x the speed, 4 x 4 spills: 0.9x, 6 x 2 and 8 x 1 less)
_V = 3


class _VectorIR:
    """What the generated blocks share: the element and 64-byte vector types of ``dt``, and
    helpers for intp constants, unaligned vector pointers, broadcasts and ``llvm.fma``."""

    def __init__(self, context, builder, dt):
        self.builder = builder
        self.ity = context.get_value_type(types.intp)
        self.size = dt.bitwidth // 8
        self.VL = 64 // self.size  # lanes
        self.vty = ir.VectorType(context.get_value_type(dt), self.VL)
        self.fma_fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(self.vty, [self.vty] * 3),
            "llvm.fma.v%d%s" % (self.VL, "f32" if self.size == 4 else "f64"))

    def const(self, n):
        return ir.Constant(self.ity, n)

    def ints(self, context, sig, args, which):
        return [context.cast(self.builder, args[i], sig.args[i], types.intp) for i in which]

    def data(self, context, sig, args, i):
        """The data pointer of array argument ``i``."""
        return context.make_array(sig.args[i])(context, self.builder, args[i]).data

    def accumulators(self, rows, cols, zero):
        """``rows x cols`` vector allocas in the entry block (LLVM promotes them to
        registers), zeroed if ``zero``."""
        accp = [[cgutils.alloca_once(self.builder, self.vty) for _ in range(cols)]
                for _ in range(rows)]
        if zero:
            for row in accp:
                for p in row:
                    self.builder.store(ir.Constant(self.vty, None), p)
        return accp

    def tap_index(self, r0, taps, K):
        """Global tap indices ``(r0 + ky)*K + kx`` of a block's taps ``(ky, kx)``."""
        b = self.builder
        return [self.add(b.mul(b.add(r0, self.const(ky)), self.const(K)), self.const(kx))
                for ky, kx in taps]

    def add(self, *terms):
        acc = terms[0]
        for t in terms[1:]:
            acc = self.builder.add(acc, t)
        return acc

    def offsets(self, context, sig, args, i, n):
        """The ``n`` values of intp array argument ``i``, loaded once (loop invariants)."""
        data = self.data(context, sig, args, i)
        return [self.builder.load(self.builder.gep(data, [self.const(t)])) for t in range(n)]

    def load(self, base, i):
        """The vector at ``base[i:]`` (element alignment)."""
        b = self.builder
        return b.load(b.bitcast(b.gep(base, [i]), self.vty.as_pointer()), align=self.size)

    def store(self, val, base, i):
        b = self.builder
        b.store(val, b.bitcast(b.gep(base, [i]), self.vty.as_pointer()), align=self.size)

    def bcast(self, ptr):
        b = self.builder
        undef = ir.Constant(self.vty, ir.Undefined)
        v = b.insert_element(undef, b.load(ptr), ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), self.VL), None))

    def fma(self, a, x, y):
        return self.builder.call(self.fma_fn, [a, x, y])

    def hsum(self, v):
        """The lanes of ``v`` summed as a fixed tree (halves added until one lane is left)."""
        b = self.builder
        i32 = ir.IntType(32)
        n = self.VL
        while n > 1:
            h = n // 2
            lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h))))
            hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, h), list(range(h, n))))
            v = b.fadd(lo, hi)
            n = h
        return b.extract_element(v, ir.Constant(i32, 0))


def _register_block(K, F, T=0):
    """An intrinsic ``regs(x, xo, xcs, w, wo, wfs, a, ao, afs, offs, C, nb)``: the K x K forward
    of ``F`` filters (4, 8 for 1x1, or 1 for those left over) over ``nb`` blocks of
    ``span = _V * (64 // itemsize)`` wide columns, with the accumulators in vector registers
    for the whole ``C x K x K`` reduction. ``T > 0``: ``T`` taps instead of ``K x K`` (the
    phases of the stride-2 data gradient).

    On 1-D arrays (offsets and strides in elements): for block ``k`` (``j0 = k * span``),
    ``i < F`` and ``j0 <= j < j0 + span``, with ``T = K*K`` taps unless given,

        a[ao + i*afs + j] += sum_c sum_rows (sum_(t in row)
                                 w[wo + i*wfs + c*T + t] * x[xo + c*xcs + j + offs[t]])

    where a "row" is all the taps for K = 3 (or given T) and one filter row for K = 5: each
    partial sum is a chain of fused multiply-adds from its first product, then added to the
    accumulator (K = 1: the FMAs go straight into the accumulators).

    Why generated code: loop kernels kept the weights in registers and streamed the
    accumulator rows through memory once per channel (LLVM vectorises only the innermost loop,
    over ``j``). Here the loop over channels is inside the block, so per channel and tap the
    block loads ``_V`` pixel vectors and broadcasts 4 weights for ``4 * _V`` FMAs, and the
    accumulators never leave the registers: 230-245 against 115-125 GFLOP/s float32 on one
    core (120 against 65 float64), at (64 channels, ten stacked 8x8 images). Plain Numba loops
    cannot say "keep these 12 vectors in registers"; the intrinsic writes LLVM vector IR
    (``<16 x float>``: on a machine without AVX-512 LLVM splits it, still correct).

    Reads ``x`` up to index ``xo + (C-1)*xcs + nb*span + max(offs) - 1`` and writes ``a`` up
    to ``ao + (F-1)*afs + nb*span - 1``: the caller sizes the scratch for whole blocks.
    """
    TT = T if T else K * K
    rows = [list(range(TT))] if K != 5 or T else [list(range(ky * K, ky * K + K)) for ky in range(K)]
    direct = TT == 1  # one tap per channel: fused multiply-adds straight into the accumulators

    @intrinsic
    def regs(typingctx, x, xo, xcs, w, wo, wfs, a, ao, afs, offs, C, nb):
        sig = types.void(x, xo, xcs, w, wo, wfs, a, ao, afs, offs, C, nb)
        dt = x.dtype

        def codegen(context, builder, sig, args):
            V = _VectorIR(context, builder, dt)
            VL, const = V.VL, V.const
            xo_, xcs_, wo_, wfs_, ao_, afs_, C_, nb_ = V.ints(
                context, sig, args, (1, 2, 4, 5, 7, 8, 10, 11))
            xd, wd, ad = (V.data(context, sig, args, i) for i in (0, 3, 6))
            accp = V.accumulators(F, _V, False)
            offs = V.offsets(context, sig, args, 9, TT)
            with cgutils.for_range(builder, nb_) as blk:
                j = builder.mul(blk.index, const(VL * _V))
                arows = [V.add(ao_, builder.mul(const(i), afs_), j) for i in range(F)]
                for i in range(F):
                    for v in range(_V):
                        builder.store(V.load(ad, V.add(arows[i], const(v * VL))), accp[i][v])
                with cgutils.for_range(builder, C_) as chan:
                    c = chan.index
                    xb = builder.gep(xd, [V.add(xo_, builder.mul(c, xcs_), j)])
                    wb = [builder.gep(wd, [V.add(wo_, builder.mul(const(i), wfs_),
                                                 builder.mul(c, const(TT)))])
                          for i in range(F)]
                    for row in rows:
                        s = [[builder.load(accp[i][v]) if direct else None for v in range(_V)]
                             for i in range(F)]
                        for t in row:
                            xs = [V.load(xb, V.add(offs[t], const(v * VL))) for v in range(_V)]
                            for i in range(F):
                                wv = V.bcast(builder.gep(wb[i], [const(t)]))
                                for v in range(_V):
                                    s[i][v] = (builder.fmul(wv, xs[v]) if s[i][v] is None
                                               else V.fma(wv, xs[v], s[i][v]))
                        for i in range(F):
                            for v in range(_V):
                                builder.store(s[i][v] if direct else
                                              builder.fadd(builder.load(accp[i][v]), s[i][v]),
                                              accp[i][v])
                for i in range(F):
                    for v in range(_V):
                        V.store(builder.load(accp[i][v]), ad, V.add(arows[i], const(v * VL)))
            return context.get_dummy_value()

        return sig, codegen

    def regs_python(x, xo, xcs, w, wo, wfs, a, ao, afs, offs, C, nb):
        # NUMBA_DISABLE_JIT: the same sums in NumPy (without the fused rounding)
        n = nb * _V * (64 // x.itemsize)
        for i in range(F):
            acc = a[ao + i * afs : ao + i * afs + n]
            for c in range(C):
                for row in rows:
                    s = 0
                    for t in row:
                        o = xo + c * xcs + offs[t]
                        s = s + w[wo + i * wfs + c * TT + t] * x[o : o + n]
                    acc += s

    return regs_python if config.DISABLE_JIT else regs


_regs3 = _register_block(3, 4)
_regs3_1 = _register_block(3, 1)
_regs5 = _register_block(5, 4)
_regs5_1 = _register_block(5, 1)
_regs1 = _register_block(1, _FB1)
_regs1_1 = _register_block(1, 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _span(itemsize):
    """Wide columns per register block (:func:`_register_block`)."""
    return _V * (64 // itemsize)


#: the stride-2 data gradient's phases have 4, 2, 2 and 1 taps (3x3 filters); its channel
#: blocks are _FB wide, also for 1 tap
_regs_t4 = _register_block(3, _FB, 4)
_regs_t4_1 = _register_block(3, 1, 4)
_regs_t2 = _register_block(3, _FB, 2)
_regs_t2_1 = _register_block(3, 1, 2)
_regs_t1 = _register_block(3, _FB, 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _blocks(xp, w, T, f0, fb, offs, acc, nb):
    """``acc[i, j] += sum_c sum_(t < T) w[(f0 + i)*C*T + c*T + t] * xp[c, j + offs[t]]`` for
    ``i < fb`` over ``nb`` register blocks (see :func:`_register_block`; ``C`` = rows of
    ``xp``): one block of ``fb`` filters when there is one of that size (4, or 8 for 1 tap),
    else ``fb`` one-filter blocks. ``T``: 9 or 25 (the K x K forward; ``w`` the filters
    raveled), 1 (1x1), or a stride-2 data-gradient phase's 4, 2 or 1. ``xp`` and ``acc`` have
    room for whole blocks (their cells past the data hold scratch)."""
    C = xp.shape[0]
    x1, a1 = xp.ravel(), acc.ravel()
    S, A = xp.shape[1], acc.shape[1]
    wo, wf = f0 * C * T, C * T
    if fb == _FB or (fb == _FB1 and T == 1):
        if T == 9:
            _regs3(x1, 0, S, w, wo, wf, a1, 0, A, offs, C, nb)
        elif T == 25:
            _regs5(x1, 0, S, w, wo, wf, a1, 0, A, offs, C, nb)
        elif T == 4:
            _regs_t4(x1, 0, S, w, wo, wf, a1, 0, A, offs, C, nb)
        elif T == 2:
            _regs_t2(x1, 0, S, w, wo, wf, a1, 0, A, offs, C, nb)
        elif fb == _FB1:
            _regs1(x1, 0, S, w, wo, wf, a1, 0, A, offs, C, nb)
        else:
            _regs_t1(x1, 0, S, w, wo, wf, a1, 0, A, offs, C, nb)
        return
    for i in range(fb):
        wi = wo + i * wf
        if T == 9:
            _regs3_1(x1, 0, S, w, wi, wf, a1, i * A, A, offs, C, nb)
        elif T == 25:
            _regs5_1(x1, 0, S, w, wi, wf, a1, i * A, A, offs, C, nb)
        elif T == 4:
            _regs_t4_1(x1, 0, S, w, wi, wf, a1, i * A, A, offs, C, nb)
        elif T == 2:
            _regs_t2_1(x1, 0, S, w, wi, wf, a1, i * A, A, offs, C, nb)
        else:
            _regs1_1(x1, 0, S, w, wi, wf, a1, i * A, A, offs, C, nb)


@njit(cache=True, nogil=True, error_model="numpy")
def _forward_filters(xp, W, b, n0, m, f0, fb, P, Wr, offs, acc, out):
    """Filters ``f0 : f0 + fb`` of images ``n0 : n0 + m`` (stacked in ``xp``) into ``out``.

    (Measured: running all filter blocks over one chunk of columns at a time, so that the
    chunk's slice of the scratch is reread from L1/L2, made no difference at 56x56.)"""
    OH, OW = out.shape[2], out.shape[3]
    span = _span(xp.itemsize)
    for i in range(fb):
        acc[i, :] = b[f0 + i]  # whole rows: the register blocks compute past the data
    K = W.shape[2]
    _blocks(xp, W.ravel(), K * K, f0, fb, offs, acc, (m * P * Wr + span - 1) // span)
    for g in range(m):
        for i in range(fb):
            for oy in range(OH):
                r = (g * P + oy) * Wr
                _copy_row(acc[i, r : r + OW], out[n0 + g, f0 + i, oy])


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_3x3_forward_kernel(x, W, b, stride, pad, out):
    """``out = conv2d(x, W, stride, pad) + b`` for K x K filters, ``K`` 3 or 5, stride 1 or 2
    and ``0 <= pad <= K - 1``.

    Images are stacked in groups (see :func:`_plan`); parallel over (group, part of the filter
    blocks) pairs, with the filter blocks split in as few parts as give ``_MIN_TASKS``
    iterations (9 groups on 2 threads: 18 iterations, not 5 against 4).

    Shape
    -----
    x: (N, C, H, W), W: (FN, C, K, K), b: (FN,), out: (N, FN, OH, OW); all C-contiguous.
    """
    N, C, H, Wd = x.shape
    FN, K = W.shape[0], W.shape[2]
    P, Wr = _geometry(H, Wd, pad, stride)
    G, groups = _plan(N, C, P, Wr, x.itemsize, _JB)
    span = _span(x.itemsize)  # the register blocks read and write up to a block past
    S, PL = _scratch(G, P, Wr, K, stride, span)
    offs = _tap_offsets(K, stride, Wr, PL)
    FB = _FB1 if K == 1 else _FB
    NB = (FN + FB - 1) // FB
    split, per_task = _split(groups, NB)
    for t in prange(groups * split):
        n0, m, b0 = _task(t, split, per_task, G, N)  # images n0 : n0 + m, first filter block
        if b0 >= NB:
            continue
        xp = np.zeros((C, S), dtype=x.dtype)
        _stack_images(x, n0, m, pad, stride, P, Wr, PL, xp)
        acc = np.empty((FB, G * P * Wr + span), dtype=x.dtype)
        for blk in range(b0, min(NB, b0 + per_task)):
            f0 = blk * FB
            _forward_filters(xp, W, b, n0, m, f0, min(FB, FN - f0), P, Wr, offs, acc, out)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def conv2d_3x3_backward_data_s2_kernel(dout, W, pad, out):
    """Input gradient of the 3x3 stride-2 convolution (``0 <= pad <= 2``), by phases.

    Padded input cell ``(Y, X) = (2a + qy, 2b + qx)`` only receives the taps ``ky = qy + 2u``,
    ``kx = qx + 2v`` of output ``(a - u, b - v)``: each of the four phases ``(qy, qx)`` is a
    stride-1 correlation of ``dout`` (stacked as the forward stacks images, one zero row and
    column of padding) with 4, 2, 2 or 1 taps of the filters, transposed. The register blocks
    compute a phase for 4 input channels; its cells are then written to every other row and
    column of ``out``. Parallel over (group of images, part of the channel blocks), each
    iteration owning its images' channels.

    Shape
    -----
    dout: (N, FN, OH, OW), W: (FN, C, 3, 3), out: (N, C, H, W) with
    ``OH = (H + 2*pad - 3) // 2 + 1`` (and OW); all C-contiguous.
    """
    N, FN, OH, OW = dout.shape
    C, H, Wd = out.shape[1], out.shape[2], out.shape[3]
    P, Wr = OH + 1, OW + 1  # = the phase planes' size: ceil((H + 2*pad) / 2), ceil(...)
    G, groups = _plan(N, FN, P, Wr, dout.itemsize, _JB)
    span = _span(dout.itemsize)
    S, _ = _scratch(G, P, Wr, 3, 1, span)
    # per phase: tap offsets into the stacked dout, and the filters as w[c, f, t] (flat)
    offs = np.zeros((4, 4), dtype=np.intp)
    taps = np.zeros(4, dtype=np.intp)
    wph = np.zeros((4, C * FN * 4), dtype=W.dtype)
    for ph in range(4):
        qy, qx = ph // 2, ph % 2
        T = ((3 - qy + 1) // 2) * ((3 - qx + 1) // 2)
        taps[ph] = T
        t = 0
        for ky in range(qy, 3, 2):
            for kx in range(qx, 3, 2):
                offs[ph, t] = (1 - (ky - qy) // 2) * Wr + 1 - (kx - qx) // 2
                for c in range(C):
                    for f in range(FN):
                        wph[ph, (c * FN + f) * T + t] = W[f, c, ky, kx]
                t += 1
    NB = (C + _FB - 1) // _FB
    split, per_task = _split(groups, NB)
    for task in prange(groups * split):
        n0, m, b0 = _task(task, split, per_task, G, N)  # first channel block b0
        if b0 >= NB:
            continue
        xp = np.zeros((FN, S), dtype=dout.dtype)
        _stack_images(dout, n0, m, 1, 1, P, Wr, 0, xp)
        acc = np.empty((_FB, G * P * Wr + span), dtype=dout.dtype)
        nb = (m * P * Wr + span - 1) // span
        for blk in range(b0, min(NB, b0 + per_task)):
            c0 = blk * _FB
            fb = min(_FB, C - c0)
            for ph in range(4):
                qy, qx = ph // 2, ph % 2
                acc[:fb] = 0
                _blocks(xp, wph[ph], taps[ph], c0, fb, offs[ph], acc, nb)
                bx = (pad - qx + 1) // 2  # first column b whose X = 2b + qx is not padding
                ix0 = 2 * bx + qx - pad
                nx = (Wd - ix0 + 1) // 2
                for g in range(m):
                    for a in range(P):
                        iy = 2 * a + qy - pad
                        if iy < 0 or iy >= H:
                            continue
                        r = (g * P + a) * Wr + bx
                        for i in range(fb):
                            dst = out[n0 + g, c0 + i, iy]
                            src = acc[i]
                            for k in range(nx):
                                dst[ix0 + 2 * k] = src[r + k]


def _weight_block_columns(F, K, R):
    """An intrinsic ``wregs(x, xo, offs, r0, g, go, gfs, dw, dwo, dwfs, nv)``: the K x K weight
    gradient of ``F`` filters over ``R`` filter rows from row ``r0`` (``R*K`` taps) of one
    channel, with the
    ``F*R*K`` dot products accumulated in vector registers over ``nv`` vectors of wide columns.

    On 1-D arrays (offsets and strides in elements), for ``i < F`` and tap ``t = ky*K + kx``
    (``r0 <= ky < r0 + R``), with ``n = nv * (64 // itemsize)``:

        dw[dwo + i*dwfs + t] += sum_(j < n) g[go + i*gfs + j] * x[xo + j + offs[t]]

    each sum taken as one vector accumulator of products (lane ``l`` sums the columns
    ``j = l mod lanes``, by fused multiply-adds in ``j`` order), its lanes then added as a fixed
    tree: the same bits at any thread count. ``g`` must be zero in the columns past the data.

    Why generated code: as a Numba loop with 18 scalar reductions (2 filters x 9 taps) LLVM
    vectorised it to 150-160 GFLOP/s float32 per core; written out as vector IR, 205-210 (85-90
    -> 115-120 float64). 3 filters x 9 taps (27 accumulators) spills: 125. Used when
    :func:`_weight_block` (filters along the vectors) would not pay for its transposed copy of
    ``dout``.
    """
    taps = [(ky, kx) for ky in range(R) for kx in range(K)]

    @intrinsic
    def wregs(typingctx, x, xo, offs, r0, g, go, gfs, dw, dwo, dwfs, nv):
        sig = types.void(x, xo, offs, r0, g, go, gfs, dw, dwo, dwfs, nv)
        dt = x.dtype

        def codegen(context, builder, sig, args):
            V = _VectorIR(context, builder, dt)
            const = V.const
            xo_, r0_, go_, gfs_, dwo_, dwfs_, nv_ = V.ints(context, sig, args, (1, 3, 5, 6, 8, 9, 10))
            xd, od, gd, dd = (V.data(context, sig, args, i) for i in (0, 2, 4, 7))
            tix = V.tap_index(r0_, taps, K)  # this block's taps t = (r0 + ky)*K + kx
            accp = V.accumulators(F, len(taps), True)
            offs = [builder.load(builder.gep(od, [t])) for t in tix]
            xb = builder.gep(xd, [xo_])
            gb = [builder.gep(gd, [V.add(go_, builder.mul(const(i), gfs_))]) for i in range(F)]
            with cgutils.for_range(builder, nv_) as lp:
                j = builder.mul(lp.index, const(V.VL))
                gv = [V.load(gb[i], j) for i in range(F)]
                for t in range(len(taps)):
                    xv = V.load(xb, builder.add(j, offs[t]))
                    for i in range(F):
                        builder.store(V.fma(gv[i], xv, builder.load(accp[i][t])), accp[i][t])
            for i in range(F):
                for t in range(len(taps)):
                    p = builder.gep(dd, [V.add(dwo_, builder.mul(const(i), dwfs_), tix[t])])
                    builder.store(builder.fadd(builder.load(p), V.hsum(builder.load(accp[i][t]))), p)
            return context.get_dummy_value()

        return sig, codegen

    def wregs_python(x, xo, offs, r0, g, go, gfs, dw, dwo, dwfs, nv):
        # NUMBA_DISABLE_JIT: the same sums in NumPy
        n = nv * (64 // x.itemsize)
        for i in range(F):
            gi = g[go + i * gfs : go + i * gfs + n]
            for ky, kx in taps:
                t = (r0 + ky) * K + kx
                o = xo + offs[t]
                dw[dwo + i * dwfs + t] += np.dot(gi, x[o : o + n])

    return wregs_python if config.DISABLE_JIT else wregs


#: filters per weight-gradient block: 2 x 9 taps (3x3), 4 x 5 taps of a filter row (5x5)
def _weight_block(FV, K, R):
    """An intrinsic ``wregs(x, xo, offs, r0, g, go, gs, p, po, L)``: the K x K weight gradient
    of ``FV`` vectors of filters (``FV * lanes`` filters) over ``R`` filter rows from row
    ``r0`` (``R*K`` taps) of one channel, the ``R*K*FV`` accumulator vectors in registers over
    all ``L`` wide columns.

    Filters along the vectors: ``g`` is the wide ``dout`` transposed, one row of ``gs`` filters
    per wide column. On 1-D arrays (offsets and strides in elements), for tap
    ``t = ky*K + kx`` (``r0 <= ky < r0 + R``) and the block's filters ``e`` (``e < FV*lanes``):

        p[po + t*gs + e] += sum_(j < L) x[xo + j + offs[t]] * g[go + j*gs + e]

    summed in ``j`` order by fused multiply-adds (the same bits at any thread count). Per
    column: ``FV`` vector loads of ``g`` and ``R*K`` broadcasts of ``x`` for ``R*K*FV`` FMAs.

    Why this shape: with the columns along the vectors instead (18 dot products of 2 filters x
    9 taps, lanes added at the end) each tap was an unaligned vector load, most splitting a
    cache line: 205 against 240 GFLOP/s float32 per core here (99 against 121 float64), at
    (64 channels, 64 filters, ten 8x8 images). Numba loops vectorise neither form this way:
    the intrinsic writes LLVM vector IR.
    """
    taps = [(ky, kx) for ky in range(R) for kx in range(K)]

    @intrinsic
    def wregs(typingctx, x, xo, offs, r0, g, go, gs, p, po, L):
        sig = types.void(x, xo, offs, r0, g, go, gs, p, po, L)
        dt = x.dtype

        def codegen(context, builder, sig, args):
            V = _VectorIR(context, builder, dt)
            const = V.const
            xo_, r0_, go_, gs_, po_, L_ = V.ints(context, sig, args, (1, 3, 5, 6, 8, 9))
            xd, od, gd, pd = (V.data(context, sig, args, i) for i in (0, 2, 4, 7))
            tix = V.tap_index(r0_, taps, K)  # this block's taps t = (r0 + ky)*K + kx
            # where column 0 of each tap reads
            xbs = [builder.gep(xd, [builder.add(xo_, builder.load(builder.gep(od, [t])))])
                   for t in tix]
            accp = V.accumulators(len(taps), FV, True)
            gb = builder.gep(gd, [go_])
            with cgutils.for_range(builder, L_) as col:
                j = col.index
                grow = builder.mul(j, gs_)
                gv = [V.load(gb, builder.add(grow, const(v * V.VL))) for v in range(FV)]
                for t in range(len(taps)):
                    xv = V.bcast(builder.gep(xbs[t], [j]))
                    for v in range(FV):
                        builder.store(V.fma(xv, gv[v], builder.load(accp[t][v])), accp[t][v])
            for t in range(len(taps)):
                for v in range(FV):
                    i = V.add(po_, builder.mul(tix[t], gs_), const(v * V.VL))
                    V.store(builder.fadd(V.load(pd, i), builder.load(accp[t][v])), pd, i)
            return context.get_dummy_value()

        return sig, codegen

    def wregs_python(x, xo, offs, r0, g, go, gs, p, po, L):
        # NUMBA_DISABLE_JIT: the same sums in NumPy
        E = FV * (64 // x.itemsize)
        gb = g[go : go + (L - 1) * gs + E].reshape(-1)
        G2 = np.lib.stride_tricks.as_strided(gb, (L, E), (gs * g.itemsize, g.itemsize))
        for ky, kx in taps:
            t = (r0 + ky) * K + kx
            o = xo + offs[t]
            p[po + t * gs : po + t * gs + E] += x[o : o + L] @ G2

    return wregs_python if config.DISABLE_JIT else wregs


#: filter vectors per weight-gradient block: 2 x 9 taps (3x3), 4 x 5 taps of a 5x5 row, and
#: 1 for those left over (18 or 20 accumulators; 27 or more spill)
_wregs3 = _weight_block(2, 3, 3)
_wregs3_1 = _weight_block(1, 3, 3)
_wregs5 = _weight_block(4, 5, 1)
_wregs5_1 = _weight_block(1, 5, 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _sum_slots_transposed(partial, out):
    """``out[f, c, t] = partial[0, c, t, f] + partial[1, c, t, f] + ...`` in slot order."""
    FN, C, KK = out.shape[0], out.shape[1], out.shape[2]
    for c in range(C):
        for t in range(KK):
            for f in range(FN):
                v = partial[0, c, t, f]
                for s in range(1, partial.shape[0]):
                    v += partial[s, c, t, f]
                out[f, c, t] = v


_cregs3 = _weight_block_columns(2, 3, 3)
_cregs3_1 = _weight_block_columns(1, 3, 3)
_cregs5 = _weight_block_columns(4, 5, 1)
_cregs5_1 = _weight_block_columns(1, 5, 1)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _weight_by_columns(x, dout, stride, pad, out):
    """:func:`conv2d_3x3_backward_weight_kernel` with the wide columns along the vectors.

    Groups of stacked images are dealt round-robin to at most 8 slots (a function of the shapes
    only), each with its own partial sum, added in slot order afterwards.

    Shape
    -----
    x: (N, C, H, W), dout: (N, FN, OH, OW), out: (FN, C, K, K); all C-contiguous.
    """
    N, C, H, Wd = x.shape
    FN, OH, OW = dout.shape[1], dout.shape[2], dout.shape[3]
    K = out.shape[2]
    P, Wr = _geometry(H, Wd, pad, stride)
    G, groups = _plan(N, C, P, Wr, x.itemsize, _JB_WEIGHT)
    VL = 64 // x.itemsize
    # the blocks run over whole vectors: room for one more past the data, zero in gw
    S, PL = _scratch(G, P, Wr, K, stride, VL)
    offs = _tap_offsets(K, stride, Wr, PL)
    slots = min(groups, 8)
    partial = np.zeros((slots, FN, C, K, K), dtype=out.dtype)
    for s in prange(slots):
        xp = np.zeros((C, S), dtype=x.dtype)
        gw = np.zeros((FN, G * P * Wr + VL), dtype=x.dtype)  # wide dout; dropped cells stay zero
        x1, g1, a1 = xp.ravel(), gw.ravel(), partial[s].ravel()
        GS, KK = gw.shape[1], K * K
        for grp in range(s, groups, slots):
            n0 = grp * G
            m = min(G, N - n0)
            _stack_images(x, n0, m, pad, stride, P, Wr, PL, xp)
            for i in range(m):
                for f in range(FN):
                    for oy in range(OH):
                        r = (i * P + oy) * Wr
                        _copy_row(dout[n0 + i, f, oy], gw[f, r : r + OW])
            L = m * P * Wr
            nv = (L + VL - 1) // VL
            gw[:, L:] = 0  # a short last group: the previous group's rows past its data
            for c in range(C):
                if K == 5:
                    for ky in range(5):
                        for f in range(0, FN - 3, 4):
                            _cregs5(x1, c * S, offs, ky, g1, f * GS, GS, a1, (f * C + c) * KK, C * KK, nv)
                        for f in range(FN - FN % 4, FN):
                            _cregs5_1(x1, c * S, offs, ky, g1, f * GS, GS, a1, (f * C + c) * KK, C * KK, nv)
                    continue
                for f in range(0, FN - 1, 2):
                    _cregs3(x1, c * S, offs, 0, g1, f * GS, GS, a1, (f * C + c) * KK, C * KK, nv)
                if FN % 2:  # the odd filter out
                    f = FN - 1
                    _cregs3_1(x1, c * S, offs, 0, g1, f * GS, GS, a1, (f * C + c) * KK, C * KK, nv)
    _sum_slots(partial.reshape(slots, FN, C * K * K), out.reshape(FN, C * K * K))


@njit(cache=True, nogil=True, error_model="numpy")
def conv2d_3x3_backward_weight_kernel(x, dout, stride, pad, out):
    """Filter gradient of the K x K convolution (``K`` 3 or 5, stride 1 or 2,
    ``0 <= pad <= K - 1``).

    Two forms of register block: filters along the vectors (:func:`_weight_by_filters`) from
    16 channels and 32 filters, else wide columns along the vectors
    (:func:`_weight_by_columns`). Measured side by side (3x3 and 5x5 shapes, both dtypes):
    from 16 channels and 32 filters the first ran 1.0-1.25x faster ((100, 64, 8, 8) x
    (64, 64, 3, 3): 1.93 -> 1.55 ms float32); with 16 filters ((100, 16, 28, 28), float64)
    1.1x slower; with 1-8 channels its transposed copy of ``dout`` costs as much as the sums
    and it ran 1.3-2.7x slower (the book's 5x5 layer: 0.50 -> 1.35 ms float32).

    Shape
    -----
    x: (N, C, H, W), dout: (N, FN, OH, OW), out: (FN, C, K, K); all C-contiguous.
    """
    if out.shape[2] == 1 or (x.shape[1] >= 16 and dout.shape[1] >= 32):
        _weight_by_filters(x, dout, stride, pad, out)
    else:
        _weight_by_columns(x, dout, stride, pad, out)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _weight_by_filters(x, dout, stride, pad, out):
    """:func:`conv2d_3x3_backward_weight_kernel` with the filters along the vectors.

    Groups of stacked images are dealt round-robin to at most 8 slots (a function of the shapes
    only), each with its own partial sum (channel, tap, filter), added in slot order
    afterwards.

    1x1 filters have one tap per channel: the 3x3 blocks run on 9 channels at once instead,
    their "taps" reading channel rows ``c0 .. c0 + 8`` (tap offsets ``t * S``; the channels are
    padded to a multiple of 9 with zero rows)."""
    N, C, H, Wd = x.shape
    FN, OH, OW = dout.shape[1], dout.shape[2], dout.shape[3]
    K = out.shape[2]
    KK = K * K
    P, Wr = _geometry(H, Wd, pad, stride)
    G, groups = _plan(N, C, P, Wr, x.itemsize, _JB_WEIGHT)
    VL = 64 // x.itemsize
    NV = (FN + VL - 1) // VL  # filter vectors; the filters past FN stay zero
    FNp = NV * VL
    S, PL = _scratch(G, P, Wr, K, stride, 0)
    CP = C if K > 1 else (C + 8) // 9 * 9  # rows of the scratch and the partial sums
    if K == 1:
        offs = np.arange(9) * S  # 9 channels as the taps of a 3x3 block
    else:
        offs = _tap_offsets(K, stride, Wr, PL)
    slots = min(groups, 8)
    partial = np.zeros((slots, CP, KK, FNp), dtype=out.dtype)
    for s in prange(slots):
        xp = np.zeros((CP, S), dtype=x.dtype)
        gT = np.zeros((G * P * Wr, FNp), dtype=x.dtype)  # wide dout, transposed; dropped cells 0
        x1, g1, p1 = xp.ravel(), gT.ravel(), partial[s].ravel()
        for grp in range(s, groups, slots):
            n0 = grp * G
            m = min(G, N - n0)
            _stack_images(x, n0, m, pad, stride, P, Wr, PL, xp)
            for i in range(m):
                for oy in range(OH):  # one output row of all filters at a time: its rows of
                    r = (i * P + oy) * Wr  # gT stay in cache (by filter: 3x slower at 56x56)
                    for f in range(FN):
                        src = dout[n0 + i, f, oy]
                        for ox in range(OW):
                            gT[r + ox, f] = src[ox]
            L = m * P * Wr
            for c in range(0, C, 9 if K == 1 else 1):
                pc = c * KK * FNp
                if K == 5:
                    for ky in range(5):
                        for v in range(0, NV - 3, 4):
                            _wregs5(x1, c * S, offs, ky, g1, v * VL, FNp, p1, pc + v * VL, L)
                        for v in range(NV - NV % 4, NV):
                            _wregs5_1(x1, c * S, offs, ky, g1, v * VL, FNp, p1, pc + v * VL, L)
                    continue
                for v in range(0, NV - 1, 2):
                    _wregs3(x1, c * S, offs, 0, g1, v * VL, FNp, p1, pc + v * VL, L)
                if NV % 2:
                    v = NV - 1
                    _wregs3_1(x1, c * S, offs, 0, g1, v * VL, FNp, p1, pc + v * VL, L)
    _sum_slots_transposed(partial, out.reshape(FN, C, KK))
