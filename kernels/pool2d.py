"""Max pooling, forward and backward.

Windows read ``x[n, c, oy*stride + ky - pad, ox*stride + kx - pad]``; cells in the padding are
skipped, so they never win. Ties go to the first maximum in row-major window order (the book's
``np.argmax`` rule); NaN counts as the maximum, as in NumPy. The forward pass stores the
window-local index ``ky*pool_w + kx`` of the winner.
"""

import numpy as np
from llvmlite import ir
from numba import config, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import njit

# (n, c) planes per prange iteration of the general forward kernel
_PLANES = 8
# interior windows per output row from which the general forward goes tap by tap
_TAP_MAJOR_MIN = 24
#: lanes the tap loops of the general forward round up to (a 512-bit vector of float32)
_LANES = 16
#: output rows per parallel iteration of the 2x2 kernels: planes of an even height are stacked
#: into one tall plane (their windows never straddle two planes), so small planes do not each
#: pay a parallel iteration
_ROWS_2X2 = 64




@njit(cache=True, nogil=True, error_model="numpy")
def _has_nan(plane):
    """Whether a 2-D plane holds a NaN (a branch-free OR reduction that vectorises).

    The NaN-aware comparison of the tie rule costs a branch per cell and made the 2x2 kernel
    16x slower, so planes without NaN (nearly all) take a plain ``v > best`` loop.
    """
    nan = False
    for iy in range(plane.shape[0]):
        row = plane[iy]
        for ix in range(plane.shape[1]):
            nan = nan | (row[ix] != row[ix])
    return nan


@njit(cache=True, nogil=True, error_model="numpy")
def _window_max(plane, y0, x0, ky_lo, ky_hi, pool_w, nan):
    """``(max, window-local index)`` of one window whose rows ``ky_lo:ky_hi`` are in the image;
    columns in the padding are skipped. ``nan``: the plane holds NaN (NaN-aware tie rule)."""
    W = plane.shape[1]
    kx_lo = max(0, -x0)
    kx_hi = min(pool_w, W - x0)
    best = plane[y0 + ky_lo, x0 + kx_lo]
    best_k = ky_lo * pool_w + kx_lo
    for ky in range(ky_lo, ky_hi):
        for kx in range(kx_lo, kx_hi):
            v = plane[y0 + ky, x0 + kx]
            # strictly greater keeps the first maximum; a NaN wins once and stays
            if v > best or (nan and v != v and best == best):
                best = v
                best_k = ky * pool_w + kx
    return best, best_k


@njit(cache=True, nogil=True, error_model="numpy")
def _split_phases(row, s, ph):
    """``ph[p, i] = row[i*s + p]``: the columns of one input row by phase modulo the stride.

    A window tap at column ``ox*s + off`` of the interior windows is then the contiguous run
    ``ph[off mod s, ox + off // s]``, so the tap loops below read memory linearly and
    vectorise (LLVM does not vectorise the strided original).
    """
    W = row.shape[0]
    if s == 2:  # a constant stride: LLVM vectorises the de-interleave (2x faster here)
        d0 = ph[0]
        d1 = ph[1]
        for i in range(W // 2):
            d0[i] = row[2 * i]
            d1[i] = row[2 * i + 1]
        if W % 2:
            d0[W // 2] = row[W - 1]
        return
    for p in range(s):
        dst = ph[p]
        for i in range((W - p + s - 1) // s):
            dst[i] = row[i * s + p]


@njit(cache=True, nogil=True, error_model="numpy")
def _tap_select(src, best, best_k, k, n):
    """``best[i], best_k[i] = src[i], k`` where ``src[i] > best[i]`` (a later tap wins only if
    strictly greater: the first maximum is kept). ``best_k`` has the dtype of ``best`` so the
    two selects have the same vector width."""
    for i in range(n):
        v = src[i]
        b = best[i]
        take = v > b
        best[i] = v if take else b
        best_k[i] = k if take else best_k[i]


@njit(cache=True, nogil=True, error_model="numpy")
def _pool_plane(x, n, c, pool_h, pool_w, s, pad, ox_a, ox_b, small, ph, best, best_k, out,
                argmax):
    """One (n, c) plane of :func:`max_pool2d_forward_kernel`."""
    H = x.shape[2]
    OH = out.shape[2]
    OW = out.shape[3]
    n_in = ox_b - ox_a
    # the tap loops run over whole vectors (``best`` and ``ph`` rows have room): a scalar
    # remainder of up to 15 lanes per loop cost about as much as the vector part
    nv = (n_in + _LANES - 1) // _LANES * _LANES
    plane = x[n, c]
    nan = _has_nan(plane)
    # tap-major pays off on wide rows only (measured: 17 % faster at 28 outputs per row,
    # 2x at 224; 15-130 % slower at 12 and 4)
    tap_major = small and not nan and n_in >= _TAP_MAJOR_MIN
    lo, hi = (ox_a, ox_b) if tap_major else (OW, OW)
    for oy in range(OH):
        y0 = oy * s - pad
        ky_lo = max(0, -y0)
        ky_hi = min(pool_h, H - y0)
        orow = out[n, c, oy]
        arow = argmax[n, c, oy]
        if hi > lo:
            for ky in range(ky_lo, ky_hi):
                _split_phases(plane[y0 + ky], s, ph)
                for kx in range(pool_w):
                    off = kx - pad
                    q = off // s
                    src = ph[off - q * s, ox_a + q : ox_a + q + nv]
                    k = x.dtype.type(ky * pool_w + kx)
                    if ky == ky_lo and kx == 0:
                        best[:nv] = src
                        best_k[:nv] = k
                    else:
                        _tap_select(src, best, best_k, k, nv)
            for i in range(n_in):
                orow[ox_a + i] = best[i]
                arow[ox_a + i] = best_k[i]
        for ox in range(OW):
            if lo <= ox < hi:
                continue
            v, k = _window_max(plane, y0, ox * s - pad, ky_lo, ky_hi, pool_w, nan)
            orow[ox] = v
            arow[ox] = k


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def max_pool2d_forward_kernel(x, pool_h, pool_w, stride, pad, out, argmax):
    """Window maxima of ``x`` into ``out`` and their window-local indices into ``argmax``.

    Parallel over (n, c) planes. Requires ``pad < pool_h`` and ``pad < pool_w`` (every window
    then holds at least one real cell). In a NaN-free plane the windows whose columns lie
    inside the image are computed tap by tap over a whole output row (:func:`_split_phases`,
    :func:`_tap_select`); border windows, and every window of a plane holding NaN, one at a
    time (:func:`_window_max`). Both keep the first maximum in row-major window order.

    Shape
    -----
    x: (N, C, H, W) C-contiguous; out, argmax: (N, C, OH, OW).
    """
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    s = stride
    # output columns whose window lies inside the image: x0 = ox*s - pad in [0, W - pool_w]
    ox_a = min(OW, (pad + s - 1) // s)
    ox_b = max(ox_a, min(OW, (W - pool_w + pad) // s + 1))
    n_in = ox_b - ox_a
    # window-local indices ride in float lanes: exact below 2**24 cells
    small = pool_h * pool_w <= 16777216
    P = N * C
    for blk in prange((P + _PLANES - 1) // _PLANES):
        # row buffers shared by a block of planes (allocating per small plane cost more than
        # the pooling)
        ph = np.zeros((s, (W + s - 1) // s + _LANES), dtype=x.dtype)
        best = np.empty(max(n_in, 1) + _LANES, dtype=x.dtype)
        best_k = np.empty(max(n_in, 1) + _LANES, dtype=x.dtype)
        for t in range(blk * _PLANES, min(P, (blk + 1) * _PLANES)):
            _pool_plane(x, t // C, t - (t // C) * C, pool_h, pool_w, s, pad, ox_a, ox_b, small,
                        ph, best, best_k, out, argmax)


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


@njit(cache=True, nogil=True, error_model="numpy")
def _better(v, best):
    """``v`` replaces ``best``: strictly greater (first maximum wins), or the first NaN."""
    return v > best or (v != v and best == best)


@njit(cache=True, nogil=True, error_model="numpy")
def _group_2x2(P, H, OH):
    """Planes per parallel iteration of the 2x2 kernels (1 when H is odd: a plane's last row
    belongs to no window, so planes cannot be stacked)."""
    if H % 2:
        return 1
    return max(1, min(P, _ROWS_2X2 // max(1, OH)))


@njit(cache=True, nogil=True, error_model="numpy")
def _tall(a3, t, G):
    """Planes ``t*G : (t+1)*G`` of a ``(P, rows, cols)`` stack, as one tall 2-D plane."""
    p0 = t * G
    p1 = min(a3.shape[0], p0 + G)
    return a3[p0:p1].reshape((p1 - p0) * a3.shape[1], a3.shape[2])


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def max_pool2x2_forward_kernel(x, out, argmax):
    """2x2 windows, stride 2, no padding: the book's pooling. Same results as
    :func:`max_pool2d_forward_kernel` with ``pool=2, stride=2, pad=0``.

    Parallel over groups of planes (see :func:`_group_2x2`), each pooled as one tall plane by
    :func:`_windows2x2_forward` (vector code); a group holding NaN is redone by
    :func:`_pool2x2_plane_nan`.

    Shape
    -----
    x: (N, C, H, W) C-contiguous; out, argmax: (N, C, H//2, W//2).
    """
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    P = N * C
    G = _group_2x2(P, H, OH)
    tasks = (P + G - 1) // G
    x1, o1, a1 = x.ravel(), out.ravel(), argmax.ravel()
    x3 = x.reshape(P, H, W)
    o3 = out.reshape(P, OH, OW)
    a3 = argmax.reshape(P, OH, OW)
    for t in prange(tasks):
        p0 = t * G
        p1 = min(P, p0 + G)
        # G > 1 only for an even H: the group's planes are one tall plane of 2-row window rows
        if _rows2x2_forward(x1, o1, a1, p0 * H * W, p0 * OH * OW, (p1 - p0) * OH, OW, W):
            _pool2x2_plane_nan(_tall(x3, t, G), _tall(o3, t, G), _tall(a3, t, G))


@njit(cache=True, nogil=True, error_model="numpy")
def _pool2x2_plane_nan(plane, out, argmax):
    """The 2x2 forward for a plane holding NaN: the first NaN of a window wins (NumPy)."""
    for oy in range(out.shape[0]):
        r0 = plane[2 * oy]
        r1 = plane[2 * oy + 1]
        for ox in range(out.shape[1]):
            best = r0[2 * ox]
            k = 0
            v = r0[2 * ox + 1]
            if _better(v, best):
                best = v
                k = 1
            v = r1[2 * ox]
            if _better(v, best):
                best = v
                k = 2
            v = r1[2 * ox + 1]
            if _better(v, best):
                best = v
                k = 3
            out[oy, ox] = best
            argmax[oy, ox] = k


class _MaskedIR:
    """What the generated 2x2 kernels share: 64-byte vectors of ``dt``, lane masks, masked
    loads and stores (``llvm.masked.*``: a row's last, partial vector reads and writes only its
    own cells), and a counter of mask lanes. (Not shared with ``conv2d_3x3._VectorIR``: Numba's
    cache keys a kernel on its own source file only, so codegen living in another module
    could change without the cached kernels noticing.)"""

    def __init__(self, context, builder, dt):
        self.b = builder
        self.size = dt.bitwidth // 8
        self.VL = 64 // self.size
        self.vty = ir.VectorType(context.get_value_type(dt), self.VL)

    def unpack(self, context, sig, args):
        """The data pointers of the array arguments and the other arguments as i64 values."""
        arrays = [context.make_array(t)(context, self.b, v).data
                  for t, v in zip(sig.args, args) if isinstance(t, types.Array)]
        ints = [context.cast(self.b, v, t, types.int64)
                for t, v in zip(sig.args, args) if not isinstance(t, types.Array)]
        return arrays, ints

    @staticmethod
    def _suffix(ty):
        el = ty.element
        name = "f32" if isinstance(el, ir.FloatType) else "f64" if isinstance(el, ir.DoubleType) \
            else "i%d" % el.width
        return "v%d%s" % (ty.count, name)

    def below(self, n, count):
        """The mask of lanes ``l < n`` (``n`` an i64)."""
        b, i64, i32 = self.b, ir.IntType(64), ir.IntType(32)
        undef = ir.Constant(ir.VectorType(i64, count), ir.Undefined)
        v = b.insert_element(undef, n, ir.Constant(i32, 0))
        v = b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(i32, count), None))
        return b.icmp_signed("<", ir.Constant(ir.VectorType(i64, count), list(range(count))), v)

    def load(self, ty, base, i, mask, align):
        """``ty`` at ``base[i:]``; ``mask`` None: a plain load (a whole vector)."""
        b, i32 = self.b, ir.IntType(32)
        if mask is None:
            return b.load(b.bitcast(b.gep(base, [i]), ty.as_pointer()), align=align)
        fn = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(ty, [ty.as_pointer(), i32, mask.type, ty]),
            "llvm.masked.load.%s.p0%s" % (self._suffix(ty), self._suffix(ty)))
        ptr = b.bitcast(b.gep(base, [i]), ty.as_pointer())
        return b.call(fn, [ptr, ir.Constant(i32, align), mask, ir.Constant(ty, None)])

    def store(self, val, base, i, mask, align):
        """``val`` to ``base[i:]``; ``mask`` None: a plain store (a whole vector)."""
        b, i32, ty = self.b, ir.IntType(32), val.type
        if mask is None:
            b.store(val, b.bitcast(b.gep(base, [i]), ty.as_pointer()), align=align)
            return
        fn = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(ir.VoidType(), [ty, ty.as_pointer(), i32, mask.type]),
            "llvm.masked.store.%s.p0%s" % (self._suffix(ty), self._suffix(ty)))
        b.call(fn, [val, b.bitcast(b.gep(base, [i]), ty.as_pointer()), ir.Constant(i32, align), mask])

    def window_rows(self, R, OW, q0, r0, W, body):
        """``body(q, r, c0, rem, load_all, store_all)`` over ``R`` rows of ``OW`` windows (i64
        values): row ``oy``'s first window ``q = q0 + oy*OW`` and first cell
        ``r = r0 + 2*oy*W``, in chunks ``c0 = 0, VL, 2*VL, ...``, ``rem`` windows left.

        While ``VL`` windows remain, plain loads and stores (``load_all``, ``store_all``). A
        row's last, partial chunk loads masked (the next cells may be past the array), and
        still stores whole vectors when they end within the ``R`` rows (the windows and the
        two rows of cells past this chunk belong to the rows after it, which are written
        afterwards); only near the end does it store masked. Masked stores into freshly
        allocated output cost up to 3x the whole kernel's time on this machine (book shapes:
        0.35 -> 1.15 ms median)."""
        b, i64, VL = self.b, ir.IntType(64), self.VL
        count = b.sdiv(b.add(OW, ir.Constant(i64, VL - 1)), ir.Constant(i64, VL))
        q_end = b.add(q0, b.mul(R, OW))
        r_end = b.add(r0, b.mul(b.mul(R, ir.Constant(i64, 2)), W))
        with cgutils.for_range(b, R) as row:
            q = b.add(q0, b.mul(row.index, OW))
            r = b.add(r0, b.mul(b.mul(row.index, ir.Constant(i64, 2)), W))
            with cgutils.for_range(b, count) as ch:
                c0 = b.mul(ch.index, ir.Constant(i64, VL))
                rem = b.sub(OW, c0)
                with b.if_else(b.icmp_signed(">=", rem, ir.Constant(i64, VL))) as (whole, part):
                    with whole:
                        body(q, r, c0, rem, True, True)
                    with part:
                        cells_end = b.add(b.add(r, W), b.mul(b.add(c0, ir.Constant(i64, VL)),
                                                             ir.Constant(i64, 2)))
                        fits = b.and_(
                            b.icmp_signed("<=", b.add(b.add(q, c0), ir.Constant(i64, VL)), q_end),
                            b.icmp_signed("<=", cells_end, r_end))
                        with b.if_else(fits) as (inside, near_end):
                            with inside:
                                body(q, r, c0, rem, False, True)
                            with near_end:
                                body(q, r, c0, rem, False, False)

    def packed_or_rows(self, R, OW, q0, r0, W, body, packed):
        """:meth:`window_rows`, except where a vector holds whole window rows: for ``W ==
        2*OW`` with ``OW`` one of ``VL/4``, ``VL/2`` (8x8 and 16x16 images in float32), a group's
        windows and cells are contiguous runs (its planes are stacked), and every ``VL``
        windows are whole window rows, whose ``4*VL`` cells are 4 whole vectors. Then
        ``packed(OWc, q, r, rem)`` runs per chunk of ``VL`` windows (``OWc``: OW as a Python
        int, for the shuffle constants; ``q``: first window; ``r = r0 + 4*(q - q0)``: first
        cell; ``rem``: None for a whole chunk, else the i64 count of windows left). Rows of 4
        windows otherwise leave 3/4 of each float32 vector idle."""
        b, i64, VL = self.b, ir.IntType(64), self.VL
        wide = b.icmp_signed("==", W, b.mul(OW, ir.Constant(i64, 2)))

        def chain(cands):
            if not cands:
                self.window_rows(R, OW, q0, r0, W, body)
                return
            owc = cands[0]
            hit = b.and_(wide, b.icmp_signed("==", OW, ir.Constant(i64, owc)))
            with b.if_else(hit) as (yes, no):
                with yes:
                    n = b.mul(R, ir.Constant(i64, owc))
                    full = b.sdiv(n, ir.Constant(i64, VL))
                    with cgutils.for_range(b, full) as ch:
                        k = b.mul(ch.index, ir.Constant(i64, VL))
                        packed(owc, b.add(q0, k), b.add(r0, b.mul(k, ir.Constant(i64, 4))), None)
                    k = b.mul(full, ir.Constant(i64, VL))
                    rem = b.sub(n, k)
                    with b.if_then(b.icmp_signed(">", rem, ir.Constant(i64, 0))):
                        packed(owc, b.add(q0, k), b.add(r0, b.mul(k, ir.Constant(i64, 4))), rem)
                with no:
                    chain(cands[1:])

        chain([VL // 4, VL // 2])

    def window_mask(self, rem):
        """``(lanes of the windows present, their load/store mask)`` for a chunk with ``rem``
        windows left (None: a whole chunk, all lanes, plain loads and stores)."""
        if rem is None:
            return ir.Constant(ir.VectorType(ir.IntType(1), self.VL), [1] * self.VL), None
        m = self.below(rem, self.VL)
        return m, m

    def quarter_masks(self, rem):
        """Masks of the 4 vectors of cells of ``rem`` packed windows (None: all whole)."""
        if rem is None:
            return [None] * 4
        b, i64, VL = self.b, ir.IntType(64), self.VL
        cells = b.mul(rem, ir.Constant(i64, 4))
        return [self.below(b.sub(cells, ir.Constant(i64, i * VL)), VL) for i in range(4)]

    def join(self, parts):
        """One ``4*VL``-lane value from four ``VL``-lane vectors (for one constant shuffle)."""
        b, i32 = self.b, ir.IntType(32)
        two = ir.Constant(ir.VectorType(i32, 2 * self.VL), list(range(2 * self.VL)))
        return b.shuffle_vector(parts[0], parts[1], two), b.shuffle_vector(parts[2], parts[3], two)

    def pick(self, halves, lanes):
        """Lanes ``lanes`` (indices into the ``4*VL`` lanes of :meth:`join`)."""
        idx = ir.Constant(ir.VectorType(ir.IntType(32), len(lanes)), list(lanes))
        return self.b.shuffle_vector(halves[0], halves[1], idx)

    @staticmethod
    def packed_cell(l, j, owc):
        """Offset, within a packed chunk's cells, of tap ``j`` of the chunk's window ``l``."""
        return (l // owc) * 4 * owc + (j // 2) * 2 * owc + 2 * (l % owc) + j % 2

    def count(self, mask, counter):
        """``*counter += number of true lanes of mask``."""
        b, i64 = self.b, ir.IntType(64)
        ctpop = cgutils.get_or_insert_function(b.module, ir.FunctionType(i64, [i64]), "llvm.ctpop.i64")
        n = b.call(ctpop, [b.zext(b.bitcast(mask, ir.IntType(mask.type.count)), i64)])
        b.store(b.add(b.load(counter), n), counter)


def _window_rows_intrinsic(karg, emit):
    """An intrinsic ``rows(p, q, r, i0, i1, R, OW, W) -> count`` whose body ``emit(V, b,
    arrays, ints, kty, counter)`` generates (arrays: the data pointers of ``p, q, r``; ints:
    the others as i64; ``kty``: vectors of argument ``karg``'s integer type, the argmax;
    ``counter``: an i64 alloca, returned)."""

    @intrinsic
    def rows(typingctx, p, q, r, i0, i1, R, OW, W):
        sig = types.int64(p, q, r, i0, i1, R, OW, W)

        def codegen(context, b, sig, args):
            V = _MaskedIR(context, b, sig.args[0].dtype)
            arrays, ints = V.unpack(context, sig, args)
            kty = ir.VectorType(ir.IntType(sig.args[karg].dtype.bitwidth), V.VL)
            counter = cgutils.alloca_once_value(b, ir.Constant(ir.IntType(64), 0))
            emit(V, b, arrays, ints, kty, counter)
            return b.load(counter)

        return sig, codegen

    return rows


def _windows2x2_forward():
    """An intrinsic ``rows(x, o, a, x0, q0, R, OW, W) -> nan``: the 2x2 forward of ``R`` rows of
    ``OW`` windows, as vector code.

    On 1-D arrays: window ``(oy, ox)`` (``oy < R``, ``ox < OW``) reads the cells
    ``x[x0 + (2*oy + dy)*W + 2*ox + dx]`` and writes their maximum to ``o[q0 + oy*OW + ox]`` and
    its window index ``2*dy + dx`` to ``a[q0 + oy*OW + ox]``: the first maximum, each cell
    taken only if strictly greater (inf and -inf need nothing more). NaN is not ordered: the
    count of windows holding NaN is returned, and the caller redoes such a group by
    :func:`_pool2x2_plane_nan` (NaN wins, as in NumPy).

    Per 16 windows (8 in float64): one masked load per input row, shuffles that split even
    and odd cells, three compare-and-selects, masked stores. Measured side by side against the
    loop kernels it replaces (branch-free float32, compare-and-branch float64): (100, 30, 24,
    24) float32 232 -> 140 us, (100, 16, 28, 28) float64 494 -> 143 us, (100, 64, 8, 8)
    float32 109 -> 84 us, float64 249 -> 82 us. Rows of 4 windows (8x8 images) left most
    lanes idle: where whole window rows fit a vector (:meth:`_MaskedIR.packed_or_rows`), 4
    vectors of cells are loaded and one constant shuffle per tap gathers the windows' cells,
    (100, 64, 8, 8) forward + backward float32 140 -> 53 us (31 -> 80 GB/s), float64 137-197 ->
    71-78 us; (100, 32, 16, 16) float32 145-174 -> 72-88 us.
    """

    def emit(V, b, arrays, ints, kty, nan):
        (xd, od, ad), (x0_, q0_, R_, OW_, W_) = arrays, ints
        i64, VL = ir.IntType(64), V.VL
        wty = ir.VectorType(V.vty.element, 2 * VL)  # a row pair's cells of VL windows
        even = ir.Constant(ir.VectorType(ir.IntType(32), VL), list(range(0, 2 * VL, 2)))
        odd = ir.Constant(ir.VectorType(ir.IntType(32), VL), list(range(1, 2 * VL, 2)))

        def body(q, r0, c0, rem, load_all, store_all):
            m, _ = V.window_mask(None if load_all else rem)
            m2 = None if load_all else V.below(b.mul(rem, ir.Constant(i64, 2)), 2 * VL)
            cell = b.mul(c0, ir.Constant(i64, 2))
            s0 = V.load(wty, xd, b.add(r0, cell), m2, V.size)
            s1 = V.load(wty, xd, b.add(b.add(r0, W_), cell), m2, V.size)
            cells = [b.shuffle_vector(s0, s0, even), b.shuffle_vector(s0, s0, odd),
                     b.shuffle_vector(s1, s1, even), b.shuffle_vector(s1, s1, odd)]
            # past a row's end: the next row's windows, stored after this
            select(cells, m, b.add(q, c0), None if store_all else m)

        def select(cells, m, q, store_mask):
            best, k = cells[0], ir.Constant(kty, None)
            anynan = b.fcmp_unordered("uno", cells[0], cells[0])
            for j in (1, 2, 3):
                up = b.fcmp_ordered(">", cells[j], best)
                best = b.select(up, cells[j], best)
                k = b.select(up, ir.Constant(kty, [j] * VL), k)
                anynan = b.or_(anynan, b.fcmp_unordered("uno", cells[j], cells[j]))
            V.count(b.and_(anynan, m), nan)
            V.store(best, od, q, store_mask, V.size)
            V.store(k, ad, q, store_mask, kty.element.width // 8)

        def packed(owc, q, r, rem):
            masks = V.quarter_masks(rem)
            halves = V.join([V.load(V.vty, xd, b.add(r, ir.Constant(i64, i * VL)), masks[i],
                                    V.size) for i in range(4)])
            cells = [V.pick(halves, [V.packed_cell(l, j, owc) for l in range(VL)])
                     for j in range(4)]
            m, mm = V.window_mask(rem)
            select(cells, m, q, mm)

        V.packed_or_rows(R_, OW_, q0_, x0_, W_, body, packed)

    rows = _window_rows_intrinsic(2, emit)

    def rows_python(x, o, a, x0, q0, R, OW, W):
        # NUMBA_DISABLE_JIT: the same results in NumPy
        rows2 = x[x0 : x0 + 2 * R * W].reshape(R, 2, W)
        cells = [rows2[:, dy, dx : 2 * OW : 2] for dy in range(2) for dx in range(2)]
        best = cells[0].copy()
        k = np.zeros(best.shape, dtype=a.dtype)
        for j in (1, 2, 3):
            up = cells[j] > best
            best = np.where(up, cells[j], best)
            k[up] = j
        o[q0 : q0 + R * OW] = best.ravel()
        a[q0 : q0 + R * OW] = k.ravel()
        return int(np.isnan(np.stack(cells)).any(axis=0).sum())

    return rows_python if config.DISABLE_JIT else rows


_rows2x2_forward = _windows2x2_forward()


def _windows2x2_backward():
    """An intrinsic ``rows(d, a, o, q0, o0, R, OW, W) -> nbad``: the 2x2 backward of ``R``
    rows of ``OW`` windows, as vector code.

    On 1-D arrays: window ``(oy, ox)`` (``oy < R``, ``ox < OW``) reads ``g = d[q0 + oy*OW + ox]``
    and ``k = a[q0 + oy*OW + ox]`` and writes ``o[r + 2*ox + dx] = g if k == 2*dy + dx else 0``
    for the rows ``r = o0 + (2*oy + dy)*W``. Returns how many ``k`` lie outside ``[0, 4)``.

    Why generated code: per 16 windows (8 in float64) it is one vector load of ``g`` and of
    ``k``, four compare-and-selects, two interleaving shuffles and two stores per output row,
    masked at a row's end. The scalar loop kernel (masks from integer arithmetic, one window at
    a time; LLVM vectorised none of it on rows of 4-14 windows) ran 3-6x slower: (100, 30, 24,
    24) float32 574 -> 114 us, float64 577 -> 182 us, (100, 64, 8, 8) float32 133 -> 54 us.
    """

    def emit(V, b, arrays, ints, kty, nbad):
        (dd, ad, od), (q0_, o0_, R_, OW_, W_) = arrays, ints
        i64, VL = ir.IntType(64), V.VL
        zero = ir.Constant(V.vty, None)
        # (s0, s1) -> s0[0], s1[0], s0[1], s1[1], ...: the two cells of each window row
        pairs = ir.Constant(ir.VectorType(ir.IntType(32), 2 * VL),
                            [lane // 2 + (VL if lane % 2 else 0) for lane in range(2 * VL)])

        def selections(q, rem):
            """The 4 taps' cells of the windows at ``q``: the gradient where the argmax points,
            else 0; argmax values outside [0, 4) are counted."""
            m, mm = V.window_mask(rem)
            g = V.load(V.vty, dd, q, mm, V.size)
            k = V.load(kty, ad, q, mm, kty.element.width // 8)
            V.count(b.and_(m, b.icmp_unsigned(">", k, ir.Constant(kty, [3] * VL))), nbad)
            return [b.select(b.icmp_signed("==", k, ir.Constant(kty, [j] * VL)), g, zero)
                    for j in range(4)]

        def body(q, r0, x0, rem, load_all, store_all):
            sel = selections(b.add(q, x0), None if load_all else rem)
            m2 = None if load_all else V.below(b.mul(rem, ir.Constant(i64, 2)), 2 * VL)
            cell = b.mul(x0, ir.Constant(i64, 2))
            top = b.shuffle_vector(sel[0], sel[1], pairs)
            if load_all or not store_all:
                V.store(top, od, b.add(r0, cell), m2, V.size)
            else:
                # a whole vector past the top row's end lands in the bottom row, which the next
                # store rewrites only if this is the row's first chunk (else it would clobber
                # cells of the bottom row already written)
                with b.if_else(b.icmp_signed("==", x0, ir.Constant(i64, 0))) as (first, later):
                    with first:
                        V.store(top, od, b.add(r0, cell), None, V.size)
                    with later:
                        V.store(top, od, b.add(r0, cell), m2, V.size)
            # past the bottom row's end: the next row pair, stored after this
            V.store(b.shuffle_vector(sel[2], sel[3], pairs), od, b.add(b.add(r0, W_), cell),
                    None if store_all else m2, V.size)

        def packed(owc, q, r, rem):
            sel = selections(q, rem)
            # the inverse of the forward's gather: output cell p of the chunk is tap j of
            # window l, lane j*VL + l of the joined selections
            src = {V.packed_cell(l, j, owc): j * VL + l for l in range(VL) for j in range(4)}
            halves = V.join(sel)
            for i, mask in enumerate(V.quarter_masks(rem)):
                V.store(V.pick(halves, [src[i * VL + p] for p in range(VL)]), od,
                        b.add(r, ir.Constant(i64, i * VL)), mask, V.size)

        V.packed_or_rows(R_, OW_, q0_, o0_, W_, body, packed)

    rows = _window_rows_intrinsic(1, emit)

    def rows_python(d, a, o, q0, o0, R, OW, W):
        # NUMBA_DISABLE_JIT: the same cells in NumPy
        g = d[q0 : q0 + R * OW].reshape(R, OW)
        k = a[q0 : q0 + R * OW].reshape(R, OW).astype(np.int64)
        rows2 = o[o0 : o0 + 2 * R * W].reshape(R, 2, W)
        zero = np.zeros((), dtype=d.dtype)
        for dy in range(2):
            for dx in range(2):
                rows2[:, dy, dx : 2 * OW : 2] = np.where(k == 2 * dy + dx, g, zero)
        return int(((k < 0) | (k > 3)).sum())

    return rows_python if config.DISABLE_JIT else rows


_rows2x2_backward = _windows2x2_backward()


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def max_pool2x2_backward_kernel(dout, argmax, out, bad):
    """Backward of :func:`max_pool2x2_forward_kernel`: windows do not overlap, so every input
    cell is written exactly once (the gradient or zero); no zero-fill pass, no scatter.
    ``bad[t]`` counts the argmax entries outside ``[0, 4)`` of parallel iteration ``t`` (groups
    of planes as in the forward; entries past the last group are set to 0); the cells of such
    a window are left zero.

    Each group's windows go through :func:`_windows2x2_backward` (vector code); a last column
    or row in no window (odd width or height) is zeroed here.

    Shape
    -----
    dout, argmax: (N, C, OH, OW) C-contiguous; out: (N, C, H, W) with H//2 == OH, W//2 == OW.
    """
    N, C, H, W = out.shape
    OH = dout.shape[2]
    OW = dout.shape[3]
    P = N * C
    G = _group_2x2(P, H, OH)
    tasks = (P + G - 1) // G
    d1, a1, o1 = dout.ravel(), argmax.ravel(), out.ravel()
    o3 = out.reshape(P, H, W)
    zero = out.dtype.type(0)
    for t in prange(tasks):
        p0 = t * G
        p1 = min(P, p0 + G)
        # G > 1 only for an even H: the group's planes are one tall plane of 2-row window rows
        bad[t] = _rows2x2_backward(d1, a1, o1, p0 * OH * OW, p0 * H * W, (p1 - p0) * OH, OW, W)
        if W > 2 * OW or H > 2 * OH:
            for p in range(p0, p1):
                for iy in range(H):
                    for ix in range(2 * OW, W):  # odd width: the last column is in no window
                        o3[p, iy, ix] = zero
                for iy in range(2 * OH, H):  # odd height: the last row is in no window
                    for ix in range(W):
                        o3[p, iy, ix] = zero
    for t in range(tasks, bad.shape[0]):
        bad[t] = 0
