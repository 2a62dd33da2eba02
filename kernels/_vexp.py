"""A vectorisable ``exp`` for Numba kernels (used by softmax and sigmoid).

LLVM cannot vectorise a call to libm's ``exp`` (Numba's SVML support needs an SVML-enabled
llvmlite, which PyPI's is not): a scalar ``exp`` per element made softmax 4x slower than NumPy.
:func:`_exp_le0` evaluates ``exp(v)`` for one ``v <= 0`` with Cody-Waite range reduction
``v = k*ln2 + r``, ``|r| <= ln2/2``, a polynomial in ``r`` (degree 6 for float32, 11 for
float64, fitted to ``exp``: approximation error below a fifth of an ulp; the Taylor series
needed degrees 7 and 13) and ``2**k`` built from its IEEE bits:
``k + bias + 2**52`` (``2**23`` for float32) is formed as a float, whose low mantissa bits are
then the biased exponent, bit-cast to an integer and shifted into place (no float-to-integer
conversion, which LLVM does not vectorise here). Inlined into a loop, all of it vectorises.
Within 1 ulp of NumPy's ``exp``; arguments below -87.3 (float32) / -708.3 (float64), whose
results lie within 4 % of the smallest normal number or below it, give 0; NaN propagates.

:func:`_exp_core` is the same ``exp`` without range checks, for callers that clamp the argument
themselves (the sigmoid, whose argument has both signs); :func:`_exp_core_plus` adds a constant
with the last product fused into the sum, so that every kernel inlining it rounds alike.

:func:`_exp_shifted_row` is the row form softmax uses: ``y = exp(x - m)`` and its sum in one
pass (an earlier version took two passes and a scratch row to build ``2**k`` through an integer
view of memory; one pass with the scalar bit cast of :mod:`._bits` measured the sigmoid forward
1.2-1.7x faster, with identical results).

``fastmath={"reassoc", "contract"}`` lets LLVM vectorise the row sum and fuse multiply-adds; no
flag assumes the absence of NaN or inf. Kernels that inline :func:`_exp_le0` pass ``contract``
themselves (inlined code takes the caller's flags).
"""

import numpy as np
from numba import types
from numba.extending import overload

from ._bits import _f2i, _fma, _i2f
from ._jit import njit


def _exp_le0(v):
    """``exp(v)`` of a float32/float64 scalar ``v <= 0`` (or NaN).

    Compiled code uses the dtype-specific overloads below; this body runs only under
    ``NUMBA_DISABLE_JIT=1`` (NumPy's ``exp``, with the same flush to 0).
    """
    low = -87.3 if np.asarray(v).dtype == np.float32 else -708.3
    if v >= low:
        return np.exp(v)
    return v if v != v else type(v)(0)


#: ``exp(r)`` on ``|r| <= ln2/2`` as ``sum(c[i] * r**i)``: ``c[0] = c[1] = 1`` and the rest a
#: Chebyshev fit (mpmath ``chebyfit``) of ``(exp(r) - 1 - r) / r**2``, relative error 1.0e-8
#: (float32, degree 6) and 1.7e-17 (float64, degree 11) before rounding. Shared with the
#: generated vector code of :mod:`.softmax`.
EXP_COEFFS_F32 = (1.0, 1.0, 0.5, 0.1666657702559798819, 0.041666554662050533982,
                  0.0083631730745137109028, 0.0013926176119935578884)
EXP_COEFFS_F64 = (1.0, 1.0, 0.50000000000000010211, 0.16666666666666667452,
                  0.041666666666624161903, 0.0083333333333300644495, 0.0013888888917196719077,
                  0.00019841269863040545271, 0.000024801521322368693266,
                  2.7557268480310025526e-6, 2.7620075879983366586e-7,
                  2.5100375832561233664e-8)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_parts_f32(v):
    """``(p, 2**k)``, ``exp(v) = p * 2**k``, for float32 ``-87.3 <= v <= 89`` (or NaN), without
    range checks. From ``k = 128`` (``v > 127.5 * ln2 = 88.38``) on ``2**k`` is ``inf`` (built
    as inf's bits), also on the last 0.34 below ``log(FLT_MAX)``. The degree-6 polynomial
    ``EXP_COEFFS_F32``."""
    one = np.float32(1.0)
    log2e = np.float32(1.4426950408889634)
    ln2_hi = np.float32(0.693359375)
    ln2_lo = np.float32(-2.12194440e-4)
    c2 = np.float32(EXP_COEFFS_F32[2])
    c3 = np.float32(EXP_COEFFS_F32[3])
    c4 = np.float32(EXP_COEFFS_F32[4])
    c5 = np.float32(EXP_COEFFS_F32[5])
    c6 = np.float32(EXP_COEFFS_F32[6])
    bias = np.float32(127.0 + 8388608.0)  # + 2**23: k + 127 lands in the low mantissa bits
    k = np.floor(v * log2e + np.float32(0.5))
    r = v - k * ln2_hi - k * ln2_lo
    p = one + r * (one + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * c6)))))
    scale = _i2f(np.int32(_f2i(k + bias) << 23))  # 2**k (int32: Numba would widen the shift)
    return p, scale


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_parts_f64(v):
    """``(p, 2**k)``, ``exp(v) = p * 2**k``, for float64 ``-708.3 <= v <= 710`` (or NaN),
    without range checks: ``2**k`` is ``inf`` from ``v > 1023.5 * ln2 = 709.44`` on. The
    degree-11 polynomial ``EXP_COEFFS_F64`` (the Taylor series needed degree 13)."""
    log2e = 1.4426950408889634
    ln2_hi = 6.93145751953125e-1
    ln2_lo = 1.42860682030941723212e-6
    bias = 1023.0 + 4503599627370496.0  # + 2**52: k + 1023 lands in the low mantissa bits
    k = np.floor(v * log2e + 0.5)
    r = v - k * ln2_hi - k * ln2_lo
    c = EXP_COEFFS_F64
    p = 1.0 + r * (1.0 + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * (
        c[7] + r * (c[8] + r * (c[9] + r * (c[10] + r * c[11]))))))))))
    scale = _i2f(_f2i(k + bias) << 52)  # 2**k
    return p, scale


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_core_f32(v):
    p, scale = _exp_parts_f32(v)
    return p * scale


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_core_f64(v):
    p, scale = _exp_parts_f64(v)
    return p * scale


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_core_plus_f32(v, c):
    p, scale = _exp_parts_f32(v)
    return _fma(p, scale, c)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_core_plus_f64(v, c):
    p, scale = _exp_parts_f64(v)
    return _fma(p, scale, c)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_le0_f32(v):
    low = np.float32(-87.3)  # exp(-87.3) is about the smallest normal float32
    e = _exp_core_f32(v if v >= low else low)
    return e if v >= low else (v - v if v != v else np.float32(0.0))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"}, inline="always")
def _exp_le0_f64(v):
    low = -708.3  # exp(-708.3) is about the smallest normal float64
    e = _exp_core_f64(v if v >= low else low)
    return e if v >= low else (v - v if v != v else 0.0)


def _by_dtype(f32, f64):
    """An ``@overload`` implementation choosing the float32 or float64 body of a scalar
    function (anything else: no implementation, a typing error)."""

    def impl(v):
        if v == types.float32:
            return lambda v: f32(v)
        if v == types.float64:
            return lambda v: f64(v)
        return None

    return impl


overload(_exp_le0, jit_options={"cache": True, "nogil": True}, inline="always")(
    _by_dtype(_exp_le0_f32, _exp_le0_f64))


def _exp_core(v):
    """``exp(v)`` of a float32/float64 scalar already in range: ``[-87.3, 89]`` for float32,
    ``[-708.3, 710]`` for float64 (the caller clamps). No range checks: the caller's clamp
    selects are the only ones. NaN propagates; from ``(emax - 1/2) * ln2`` on (88.38 / 709.44,
    just below ``log(max)``) the result is ``inf``.

    Compiled code uses the dtype-specific overloads above; this body runs only under
    ``NUMBA_DISABLE_JIT=1`` (NumPy's ``exp``, with the same ``inf`` from ``k = emax`` on).
    """
    dt = np.asarray(v).dtype.type
    emax = 128 if dt is np.float32 else 1024
    with np.errstate(over="ignore", invalid="ignore"):
        if np.floor(v * dt(1.4426950408889634) + dt(0.5)) >= emax:
            return dt(np.inf)
        return np.exp(v)


overload(_exp_core, jit_options={"cache": True, "nogil": True}, inline="always")(
    _by_dtype(_exp_core_f32, _exp_core_f64))


def _exp_core_plus(v, c):
    """``exp(v) + c`` (``v`` in :func:`_exp_core`'s range, ``c`` of ``v``'s type) with the last
    product fused into the sum (:func:`._bits._fma`): the same rounding in every kernel that
    inlines it (the sigmoid's ``1 + exp(-x)``, whose serial and parallel twins fused it
    differently when LLVM chose).

    Compiled code uses the dtype-specific overloads; this body runs only under
    ``NUMBA_DISABLE_JIT=1``.
    """
    return _exp_core(v) + c


@overload(_exp_core_plus, jit_options={"cache": True, "nogil": True}, inline="always")
def _exp_core_plus_overload(v, c):
    if v == types.float32 and c == types.float32:
        return lambda v, c: _exp_core_plus_f32(v, c)
    if v == types.float64 and c == types.float64:
        return lambda v, c: _exp_core_plus_f64(v, c)
    return None


def _log(v):
    """``log(v)`` of a float32/float64 scalar, vectorisable (see :func:`_log_f64`).

    Compiled code uses the dtype-specific overloads below; this body runs only under
    ``NUMBA_DISABLE_JIT=1`` (NumPy's ``log``).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(v)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _log_f32(v):
    """musl's ``logf`` as branch-free code (selects instead of its special-case branches), so
    that a loop of them vectorises; under 1 ulp. ``v = 2**k * (1 + f)`` with ``1 + f`` in
    ``[sqrt(2)/2, sqrt(2))`` from the IEEE bits, ``s = f / (2 + f)``, a degree-4 polynomial in
    ``s**2``."""
    tiny = v < np.float32(1.1754944e-38)  # subnormal (or <= 0, NaN: selected below)
    u = v * np.float32(33554432.0) if tiny else v  # * 2**25
    # (int32 results cast back: Numba widens int32 arithmetic to int64)
    ix = np.int32(_f2i(u) + np.int32(0x3F800000 - 0x3F3504F3))
    k = (ix >> np.int32(23)) - np.int32(0x7F) - (np.int32(25) if tiny else np.int32(0))
    f = _i2f(np.int32((ix & np.int32(0x007FFFFF)) + np.int32(0x3F3504F3))) - np.float32(1.0)
    s = f / (np.float32(2.0) + f)
    z = s * s
    w = z * z
    t1 = w * (np.float32(0.40000972152) + w * np.float32(0.24279078841))
    t2 = z * (np.float32(0.66666662693) + w * np.float32(0.28498786688))
    hfsq = np.float32(0.5) * f * f
    dk = np.float32(k)
    r = (s * (hfsq + (t2 + t1)) + dk * np.float32(9.0580006145e-06) - hfsq + f
         + dk * np.float32(6.9313812256e-01))
    if v > np.float32(0.0) and v < np.float32(np.inf):
        return r
    if v == np.float32(0.0):
        return np.float32(-np.inf)
    return v if (v == np.float32(np.inf) or v != v) else np.float32(np.nan)  # v < 0: NaN


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _log_f64(v):
    """musl's ``log`` as branch-free code (see :func:`_log_f32`): ``1 + f`` in
    ``[sqrt(2)/2, sqrt(2))``, ``s = f / (2 + f)``, a degree-7 polynomial in ``s**2``; under
    1 ulp. (libm's ``log`` is a call per element: 100 of them were about a quarter of a
    (100, 10) softmax-cross-entropy call.)"""
    tiny = v < 2.2250738585072014e-308
    u = v * 18014398509481984.0 if tiny else v  # * 2**54
    ix = _f2i(u) + np.int64((0x3FF00000 - 0x3FE6A09E) << 32)
    k = (ix >> np.int64(52)) - np.int64(0x3FF) - (np.int64(54) if tiny else np.int64(0))
    f = _i2f((ix & np.int64(0x000FFFFFFFFFFFFF)) + np.int64(0x3FE6A09E << 32)) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01
                                              + w * 1.531383769920937332e-01))
    t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01 + w * (
        1.818357216161805012e-01 + w * 1.479819860511658591e-01)))
    hfsq = 0.5 * f * f
    dk = np.float64(k)
    r = s * (hfsq + (t2 + t1)) + dk * 1.90821492927058770002e-10 - hfsq + f \
        + dk * 6.93147180369123816490e-01
    if v > 0.0 and v < np.inf:
        return r
    if v == 0.0:
        return -np.inf
    return v if (v == np.inf or v != v) else np.nan


overload(_log, jit_options={"cache": True, "nogil": True}, inline="always")(
    _by_dtype(_log_f32, _log_f64))


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _exp_shifted_row(x, m, y):
    """``y[:] = exp(x - m)`` for a row ``x`` with ``x <= m``; returns ``sum(y)``."""
    s = y.dtype.type(0)
    for j in range(x.shape[0]):
        t = _exp_le0(x[j] - m)
        y[j] = t
        s += t
    return s


@njit(cache=True, nogil=True, error_model="numpy")
def _scratch(x, K):
    """A scratch row of x's dtype."""
    return np.empty(K, dtype=x.dtype)
