"""Float bits as integers (shared by kernel modules): ``_bits`` views a float array as same-size
signed integers; ``_f2i`` / ``_i2f`` bit-cast single scalars."""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


def _bits(a):
    """``a`` viewed as same-size signed integers (its IEEE bit patterns).

    Compiled code uses the overload below; this body runs only under ``NUMBA_DISABLE_JIT=1``.
    """
    return a.view(np.int32 if a.itemsize == 4 else np.int64)


@overload(_bits, jit_options={"cache": True})
def _bits_overload(a):
    if a.dtype == types.float32:
        return lambda a: a.view(np.int32)
    if a.dtype == types.float64:
        return lambda a: a.view(np.int64)
    return None


# ------------------------------------------------------------------ scalar bit casts
def _f2i(v):
    """The IEEE bits of a float32/float64 scalar as an int32/int64 (free in compiled code, and
    vectorisable: a bit cast, not a conversion).

    Compiled code uses the overload below; this body runs only under ``NUMBA_DISABLE_JIT=1``.
    """
    a = np.asarray(v)
    return a.view(np.int32 if a.itemsize == 4 else np.int64)[()]


def _i2f(i):
    """The float32/float64 whose IEEE bits are the int32/int64 ``i`` (inverse of :func:`_f2i`).

    Compiled code uses the overload below; this body runs only under ``NUMBA_DISABLE_JIT=1``.
    """
    a = np.asarray(i)
    return a.view(np.float32 if a.itemsize == 4 else np.float64)[()]


def _bitcast(accepts, target):
    """An intrinsic bit-casting a scalar whose Numba type ``accepts`` to ``target(type)``."""

    @intrinsic
    def cast(typingctx, v):
        if not accepts(v):
            return None
        to = target(v)

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(to))

        return to(v), codegen

    return cast


_bitcast_f2i = _bitcast(lambda v: isinstance(v, types.Float) and v.bitwidth in (32, 64),
                        lambda v: types.int32 if v.bitwidth == 32 else types.int64)
_bitcast_i2f = _bitcast(lambda v: isinstance(v, types.Integer) and v.bitwidth in (32, 64),
                        lambda v: types.float32 if v.bitwidth == 32 else types.float64)


@overload(_f2i, jit_options={"cache": True}, inline="always")
def _f2i_overload(v):
    if isinstance(v, types.Float):
        return lambda v: _bitcast_f2i(v)
    return None


@overload(_i2f, jit_options={"cache": True}, inline="always")
def _i2f_overload(i):
    if isinstance(i, types.Integer):
        return lambda i: _bitcast_i2f(i)
    return None


# ------------------------------------------------------------------ fused multiply-add
def _fma(a, b, c):
    """``a * b + c`` with one rounding (``llvm.fma``; vectorisable) for three scalars of one
    float type. ``fastmath={"contract"}`` only allows LLVM to fuse, and whether it does can
    differ between two compilations of the same expression (a serial kernel and its
    ``prange`` twin); this always fuses.

    Compiled code uses the intrinsic below; this body runs only under ``NUMBA_DISABLE_JIT=1``
    (two roundings).
    """
    return a * b + c


@intrinsic
def _fma_intrinsic(typingctx, a, b, c):
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(sig.return_type)
        fnty = ir.FunctionType(ty, [ty, ty, ty])
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], fnty)
        return builder.call(fn, list(args))

    return a(a, b, c), codegen


@overload(_fma, jit_options={"cache": True}, inline="always")
def _fma_overload(a, b, c):
    if isinstance(a, types.Float) and a == b == c:
        return lambda a, b, c: _fma_intrinsic(a, b, c)
    return None
