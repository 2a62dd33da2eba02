"""Element-wise kernels on flat (1-D, contiguous) arrays: ReLU, sigmoid, dropout.

Each ``*_kernel`` is a flat ``prange`` over the elements (Numba chunks it and LLVM vectorises the
chunks: measured 3-6x faster than calling a per-chunk helper from the prange body); its
``*_serial_kernel`` twin is the same one-line body in a plain loop, for small arrays where
starting the thread pool costs more than the work (the book's nets run (100, 50) activations).
Both give identical results. Sigmoid inlines the vectorisable ``exp`` of :mod:`._vexp`.
"""

import numpy as np
from numba import prange

from ._jit import njit
from ._vexp import _exp_core_plus


# ------------------------------------------------------------------------------------- ReLU
@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def relu_forward_kernel(x, out, mask):
    """``mask = x <= 0``; ``out = 0 where mask else x`` (NaN passes through, as in the book).

    Shape
    -----
    x, out, mask: (M,) contiguous.
    """
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        v = x[i]
        m = v <= zero
        mask[i] = m
        out[i] = zero if m else v


@njit(cache=True, nogil=True, error_model="numpy")
def relu_forward_serial_kernel(x, out, mask):
    """Single-threaded :func:`relu_forward_kernel` for small arrays."""
    zero = x.dtype.type(0)
    for i in range(x.shape[0]):
        v = x[i]
        m = v <= zero
        mask[i] = m
        out[i] = zero if m else v


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def relu_backward_kernel(dout, mask):
    """``dout[mask] = 0`` in place (the book's ``Relu.backward``).

    Shape
    -----
    dout, mask: (M,) contiguous.
    """
    zero = dout.dtype.type(0)
    for i in prange(dout.shape[0]):
        dout[i] = zero if mask[i] else dout[i]


@njit(cache=True, nogil=True, error_model="numpy")
def relu_backward_serial_kernel(dout, mask):
    """Single-threaded :func:`relu_backward_kernel` for small arrays."""
    zero = dout.dtype.type(0)
    for i in range(dout.shape[0]):
        dout[i] = zero if mask[i] else dout[i]


# ---------------------------------------------------------------------------------- sigmoid
@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _sigmoid(v, one, lo, hi):
    """The book's ``1 / (1 + exp(-v))`` with ``exp`` the vectorisable one of :mod:`._vexp`, its
    argument clamped to ``[lo, hi]``: below ``lo`` (-87 float32, -708 float64) ``1 + exp`` is 1
    anyway, above ``hi`` (89 / 710) ``exp`` is inf and the result 0, as in NumPy (``exp`` is
    already inf from 88.38 / 709.44, where NumPy's result is a subnormal below 4e-39 /
    1e-308). The clamps keep NaN (a comparison with NaN is false), and they are the only range
    checks: measured 1.2x faster than ``e = exp(-|v|)`` with ``1/(1+e)`` or ``e/(1+e)``
    selected by sign. ``1 + exp`` is one fused multiply-add (:func:`._vexp._exp_core_plus`),
    so the serial and parallel kernels round alike. Within 2.3 ulp of the exact value."""
    u = -v
    u = hi if u > hi else u
    u = lo if u < lo else u
    return one / _exp_core_plus(u, one)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _sigmoid_consts(x):
    """``(1, lo, hi)`` of :func:`_sigmoid` in ``x``'s dtype."""
    f32 = x.itemsize == 4
    t = x.dtype.type
    return t(1), t(-87.0 if f32 else -708.0), t(89.0 if f32 else 710.0)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def sigmoid_forward_kernel(x, out):
    """``out = 1 / (1 + exp(-x))`` (see :func:`_sigmoid`).

    Shape
    -----
    x, out: (M,) contiguous.
    """
    one, lo, hi = _sigmoid_consts(x)
    for i in prange(x.shape[0]):
        out[i] = _sigmoid(x[i], one, lo, hi)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def sigmoid_forward_serial_kernel(x, out):
    """Single-threaded :func:`sigmoid_forward_kernel` for small arrays."""
    one, lo, hi = _sigmoid_consts(x)
    for i in range(x.shape[0]):
        out[i] = _sigmoid(x[i], one, lo, hi)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def sigmoid_backward_kernel(dout, y, out):
    """``out = dout * (1 - y) * y`` with ``y`` the forward output.

    Shape
    -----
    dout, y, out: (M,) contiguous.
    """
    one = y.dtype.type(1)
    for i in prange(y.shape[0]):
        v = y[i]
        out[i] = dout[i] * (one - v) * v


@njit(cache=True, nogil=True, error_model="numpy")
def sigmoid_backward_serial_kernel(dout, y, out):
    """Single-threaded :func:`sigmoid_backward_kernel` for small arrays."""
    one = y.dtype.type(1)
    for i in range(y.shape[0]):
        v = y[i]
        out[i] = dout[i] * (one - v) * v


# ---------------------------------------------------------------------------------- dropout
@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def dropout_forward_kernel(x, r, ratio, out, mask):
    """The book's training dropout in one pass: ``mask = r > ratio``; ``out = x * mask``.

    ``r`` is ``np.random.rand(*x.shape)`` (drawn by the caller, so NumPy's global RNG stream is
    the book's). Multiplying (not selecting) keeps ``0 * nan = nan`` as in NumPy.

    Shape
    -----
    x, r, out, mask: (M,) contiguous.
    """
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for i in prange(x.shape[0]):
        m = r[i] > ratio
        mask[i] = m
        out[i] = x[i] * (one if m else zero)


@njit(cache=True, nogil=True, error_model="numpy")
def dropout_forward_serial_kernel(x, r, ratio, out, mask):
    """Single-threaded :func:`dropout_forward_kernel` for small arrays."""
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for i in range(x.shape[0]):
        m = r[i] > ratio
        mask[i] = m
        out[i] = x[i] * (one if m else zero)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def dropout_backward_kernel(dout, mask, out):
    """``out = dout * mask``.

    Shape
    -----
    dout, mask, out: (M,) contiguous.
    """
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    for i in prange(dout.shape[0]):
        out[i] = dout[i] * (one if mask[i] else zero)


@njit(cache=True, nogil=True, error_model="numpy")
def dropout_backward_serial_kernel(dout, mask, out):
    """Single-threaded :func:`dropout_backward_kernel` for small arrays."""
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    for i in range(dout.shape[0]):
        out[i] = dout[i] * (one if mask[i] else zero)


# --------------------------------------------------------- dropout: NumPy's MT19937 stream
# np.random.rand draws each double from two consecutive 32-bit MT19937 outputs a, b:
# ((a >> 5) * 2**26 + (b >> 6)) / 2**53. The book's dropout mask is rand(*x.shape) > ratio, so
# the same stream, produced here from the state of NumPy's global generator, gives the same
# mask bit for bit, without NumPy's per-double calls through its bit-generator interface and
# without the (M,) float64 array of draws.
#
# The stream is the recurrence x[k + 624] = x[k + 397] ^ twist(x[k], x[k + 1]) (MT19937's state
# transition read along the stream: the 624-word state is a window of it), then each output is
# tempered. Only the recurrence is sequential; it runs one chunk ahead of the tempering and
# masking, which run in parallel on the chunk before (see dropout_mt19937_forward_kernel).
_MT_N = 624
_MT_M = 397


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_extend(w, nblk):
    """Given a 624-word block of the untempered MT19937 stream in ``w[:624]``, write the next
    ``nblk`` blocks after it (``w[624 : 624 * (nblk + 1)]``).

    ``x[k + 624]`` reads ``x[k]``, ``x[k + 1]`` and ``x[k + 397]``: the nearest read is 227 words
    behind the write, so LLVM vectorises the loop (0.06 ns per word here, against 0.1 for the
    reference's in-place twist plus a copy). ``(y & 1) * MATRIX_A`` is the reference's
    ``-(y & 1) & MATRIX_A`` without a branch or an unsigned wrap-around.
    """
    upper = np.uint32(0x80000000)
    lower = np.uint32(0x7FFFFFFF)
    matrix_a = np.uint32(0x9908B0DF)
    one = np.uint32(1)
    n = nblk * _MT_N
    src0, src1, srcm = w[0:n], w[1 : n + 1], w[_MT_M : n + _MT_M]  # zero-based views
    dst = w[_MT_N : n + _MT_N]
    for k in range(n):
        y = (src0[k] & upper) | (src1[k] & lower)
        dst[k] = srcm[k] ^ (y >> one) ^ ((y & one) * matrix_a)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _temper(y):
    """MT19937's output tempering of one word (each step cast back to uint32: Numba would widen
    it to 64 bits, and the loop would run 8 lanes wide instead of 16)."""
    y = np.uint32(y ^ (y >> np.uint32(11)))
    y = np.uint32(y ^ ((y << np.uint32(7)) & np.uint32(0x9D2C5680)))
    y = np.uint32(y ^ ((y << np.uint32(15)) & np.uint32(0xEFC60000)))
    return np.uint32(y ^ (y >> np.uint32(18)))


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_mask(w, x, ratio, out, mask):
    """``mask[i] = draw_i > ratio``, ``out[i] = x[i] * mask[i]``, draw ``i`` being NumPy's
    double from the untempered words ``w[2i]``, ``w[2i + 1]``.

    The double ``(a * 2**26 + b) / 2**53`` (``a = word >> 5``, ``b = word >> 6``) exceeds
    ``ratio`` exactly when the integer ``a * 2**26 + b`` exceeds ``T = floor(ratio * 2**53)``
    (exact: a power-of-two scaling), that is when ``a > T >> 26``, or ``a == T >> 26`` and
    ``b > T & (2**26 - 1)``: 32-bit compares, no conversion to double. Multiplying (not
    selecting) keeps ``0 * nan = nan`` as in NumPy.
    """
    T = np.int64(np.floor(ratio * 9007199254740992.0))
    ta = np.uint32(T >> 26)
    tb = np.uint32(T & 0x3FFFFFF)
    for i in range(x.shape[0]):
        a = np.uint32(_temper(w[2 * i]) >> np.uint32(5))
        b = np.uint32(_temper(w[2 * i + 1]) >> np.uint32(6))
        m = (a > ta) | ((a == ta) & (b > tb))
        mask[i] = m
        out[i] = x[i] * x.dtype.type(m)


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_plan(pos, M, G):
    """``(last, last_block, nchunk)``: the stream index of the last word drawn (counted from the
    state's block, whose next word is ``pos``), its block, and the number of chunks of ``G``
    new blocks."""
    last = pos + 2 * M - 1
    last_block = last // _MT_N
    return last, last_block, max(1, (last_block + G - 1) // G)


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_generate(buf, c, G, key, last_block):
    """Chunk ``c`` of the stream into slot ``c % 2`` of ``buf``: blocks ``c*G .. c*G + G`` (fewer
    for the last chunk), the first copied (the state ``key`` for chunk 0, else the last block of
    chunk ``c - 1`` in the other slot), the rest by :func:`_mt_extend`."""
    s = c % 2
    if c == 0:
        buf[0, :_MT_N] = key
    else:
        buf[s, :_MT_N] = buf[1 - s, G * _MT_N : (G + 1) * _MT_N]
    nb = min(G, last_block - c * G)
    if nb > 0:
        _mt_extend(buf[s], nb)


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_chunk_elements(c, G, pos, M):
    """``(i0, i1)``: the elements whose second word lies in chunk ``c``'s new blocks (chunk 0:
    from the state's block on). Both words of such an element are in the chunk's slot, also
    when the pair straddles two chunks."""
    lo = 0 if c == 0 else (c * G + 1) * _MT_N
    hi = ((c + 1) * G + 1) * _MT_N
    # element i's second word is pos + 2i + 1: lo <= pos + 2i + 1 < hi
    return max(0, (lo - pos) // 2), min(M, (hi - pos) // 2)


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_mask_part(buf, c, G, pos, M, r, nsplit, x, ratio, out, mask):
    """Part ``r`` of ``nsplit`` of chunk ``c``'s elements: :func:`_mt_mask` on its words."""
    i0, i1 = _mt_chunk_elements(c, G, pos, M)
    per = (i1 - i0 + nsplit - 1) // nsplit
    a0 = min(i1, i0 + r * per)
    a1 = min(i1, a0 + per)
    if a0 < a1:
        w0 = pos - c * G * _MT_N + 2 * a0  # stream index pos + 2*a0, counted from the slot
        _mt_mask(buf[c % 2, w0 : w0 + 2 * (a1 - a0)], x[a0:a1], ratio, out[a0:a1], mask[a0:a1])


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_finish(buf, key, last, last_block, nchunk, G):
    """Leave the state where NumPy's draws would: ``key`` = the last word's block; returns the
    new ``pos``."""
    c = nchunk - 1
    j = (last_block - c * G) * _MT_N
    key[:] = buf[c % 2, j : j + _MT_N]
    return last - last_block * _MT_N + 1


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def dropout_mt19937_forward_kernel(x, key, pos, ratio, out, mask, buf, nsplit):
    """:func:`dropout_forward_kernel` drawing ``np.random.rand``'s numbers itself: draw ``i``
    is NumPy's double from the next two words of the MT19937 state ``(key, pos)`` (advanced in
    place; the new ``pos`` is returned); ``mask = draw > ratio``.

    The stream is produced in chunks of ``G = buf.shape[1] // 624 - 1`` blocks, alternately
    into the two slots of ``buf``. While chunk ``c`` is tempered and masked in ``nsplit``
    parts, one more ``prange`` iteration generates chunk ``c + 1`` into the other slot: the
    sequential recurrence overlaps the parallel work. Every iteration owns its outputs (its
    elements, or the other slot), so the result does not depend on the number of threads.
    (100, 30, 24, 24) float32 forward: 770-810 -> 440 us.

    Shape
    -----
    x, out, mask: (M,) contiguous, M >= 1; key: (624,) uint32; buf: (2, 624 * (G + 1)) uint32,
    G >= 1; nsplit >= 1.
    """
    M = x.shape[0]
    G = buf.shape[1] // _MT_N - 1
    last, last_block, nchunk = _mt_plan(pos, M, G)
    _mt_generate(buf, 0, G, key, last_block)
    for c in range(nchunk):
        for r in prange(nsplit + 1):
            if r == nsplit:
                if c + 1 < nchunk:
                    _mt_generate(buf, c + 1, G, key, last_block)
            else:
                _mt_mask_part(buf, c, G, pos, M, r, nsplit, x, ratio, out, mask)
    return _mt_finish(buf, key, last, last_block, nchunk, G)


@njit(cache=True, nogil=True, error_model="numpy")
def dropout_mt19937_forward_serial_kernel(x, key, pos, ratio, out, mask, buf):
    """Single-threaded :func:`dropout_mt19937_forward_kernel` for small arrays."""
    M = x.shape[0]
    G = buf.shape[1] // _MT_N - 1
    last, last_block, nchunk = _mt_plan(pos, M, G)
    for c in range(nchunk):
        _mt_generate(buf, c, G, key, last_block)
        _mt_mask_part(buf, c, G, pos, M, 0, 1, x, ratio, out, mask)
    return _mt_finish(buf, key, last, last_block, nchunk, G)
