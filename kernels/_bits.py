"""``_bits``: a float array viewed as same-size signed integers (shared by kernel modules)."""

import numpy as np
from numba import types
from numba.extending import overload


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
