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
from ._vexp import _exp_core


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
    anyway, above ``hi`` (89 / 710) ``exp`` is inf and the result 0, as in NumPy. The clamps
    keep NaN (a comparison with NaN is false), and they are the only range checks: measured
    1.2x faster than ``e = exp(-|v|)`` with ``1/(1+e)`` or ``e/(1+e)`` selected by sign."""
    u = -v
    u = hi if u > hi else u
    u = lo if u < lo else u
    return one / (one + _exp_core(u))


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
_MT_N = 624
_MT_M = 397


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_twist(key):
    """The MT19937 state transition (regenerates all 624 words of ``key`` in place).

    ``(y & 1) * MATRIX_A`` is the reference's ``-(y & 1) & MATRIX_A``: branch-free (a select on
    the low bit compiled to a branch that mispredicts half the time) and without the unsigned
    wrap-around that NumPy scalars warn about under ``NUMBA_DISABLE_JIT``."""
    upper = np.uint32(0x80000000)
    lower = np.uint32(0x7FFFFFFF)
    matrix_a = np.uint32(0x9908B0DF)
    one = np.uint32(1)
    for i in range(_MT_N - _MT_M):
        y = (key[i] & upper) | (key[i + 1] & lower)
        key[i] = key[i + _MT_M] ^ (y >> one) ^ ((y & one) * matrix_a)
    for i in range(_MT_N - _MT_M, _MT_N - 1):
        y = (key[i] & upper) | (key[i + 1] & lower)
        key[i] = key[i + _MT_M - _MT_N] ^ (y >> one) ^ ((y & one) * matrix_a)
    y = (key[_MT_N - 1] & upper) | (key[0] & lower)
    key[_MT_N - 1] = key[_MT_M - 1] ^ (y >> one) ^ ((y & one) * matrix_a)


@njit(cache=True, nogil=True, error_model="numpy")
def _mt_words(key, pos, words):
    """The next ``len(words)`` tempered outputs of the MT19937 state ``(key, pos)``.

    ``key`` (624 uint32) is advanced in place; returns the new ``pos``. Sequential by nature
    (each block of 624 words follows from the previous one); tempering vectorises.
    """
    L = words.shape[0]
    done = 0
    while done < L:
        if pos >= _MT_N:
            _mt_twist(key)
            pos = 0
        take = min(_MT_N - pos, L - done)
        src = key[pos : pos + take]  # zero-based views: no negative-index handling per access
        dst = words[done : done + take]
        for j in range(take):
            y = src[j]
            y ^= y >> np.uint32(11)
            y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
            y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
            y ^= y >> np.uint32(18)
            dst[j] = y
        pos += take
        done += take
    return pos


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _draw(pair):
    """NumPy's double (``random_sample``, exact) from a word pair read as one little-endian
    uint64: the first word ``a`` is the low half, the second ``b`` the high half."""
    a = np.int64((pair & np.uint64(0xFFFFFFFF)) >> np.uint64(5))
    b = np.int64(pair >> np.uint64(38))
    return (a * 67108864.0 + b) / 9007199254740992.0


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def dropout_mt19937_forward_kernel(x, key, pos, ratio, out, mask, words):
    """:func:`dropout_forward_kernel` drawing ``np.random.rand``'s numbers itself: draw ``i``
    is NumPy's double from the next two words of the MT19937 state ``(key, pos)`` (advanced in
    place; the new ``pos`` is returned); ``mask = draw > ratio``.

    Chunk by chunk of ``len(words) // 2`` elements: the words are generated on one thread
    (the stream is sequential) into the caller's ``words`` buffer, then turned into the mask
    and output in parallel (read as uint64 pairs: a little-endian machine). The buffer stays in
    cache, and no (M,) array of draws is ever allocated.

    Shape
    -----
    x, out, mask: (M,) contiguous; key: (624,) uint32; words: (2C,) uint32, C >= 1.
    """
    M = x.shape[0]
    C = words.shape[0] // 2
    pairs = words.view(np.uint64)
    for c0 in range(0, M, C):
        n = min(C, M - c0)
        pos = _mt_words(key, pos, words[: 2 * n])
        xs, os, ms = x[c0 : c0 + n], out[c0 : c0 + n], mask[c0 : c0 + n]  # zero-based views
        for i in prange(n):
            m = _draw(pairs[i]) > ratio
            ms[i] = m
            os[i] = xs[i] * x.dtype.type(m)
    return pos


@njit(cache=True, nogil=True, error_model="numpy")
def dropout_mt19937_forward_serial_kernel(x, key, pos, ratio, out, mask, words):
    """Single-threaded :func:`dropout_mt19937_forward_kernel` for small arrays."""
    M = x.shape[0]
    C = words.shape[0] // 2
    pairs = words.view(np.uint64)
    for c0 in range(0, M, C):
        n = min(C, M - c0)
        pos = _mt_words(key, pos, words[: 2 * n])
        xs, os, ms = x[c0 : c0 + n], out[c0 : c0 + n], mask[c0 : c0 + n]  # zero-based views
        for i in range(n):
            m = _draw(pairs[i]) > ratio
            ms[i] = m
            os[i] = xs[i] * x.dtype.type(m)
    return pos
