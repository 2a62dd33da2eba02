"""Numba kernels of fastnn (shipped as ``fastnn.kernels``).

Trusted loops that write into caller-allocated ``out`` arrays: no validation, no allocation
policy. Call them through :mod:`fastnn.functional`. Importing this package configures Numba's
threading layer (see :mod:`fastnn.kernels._jit`) before any kernel is defined.

Every module's ``*_kernel`` functions are re-exported here (``fastnn.kernels.__all__``), which is
what :func:`fastnn.compiled_signatures` and ``fastnn info`` list.
"""

from . import _jit  # noqa: F401  (threading layer + cache fallback, before any kernel)
from . import (
    batchnorm,
    conv2d,
    conv2d_3x3,
    conv2d_gemm,
    elementwise,
    gather,
    im2col,
    numgrad,
    optimizers,
    pool2d,
    softmax,
)

_MODULES = (
    batchnorm, conv2d, conv2d_3x3, conv2d_gemm, elementwise, gather, im2col, numgrad, optimizers,
    pool2d, softmax,
)

__all__ = []
for _module in _MODULES:
    for _name in dir(_module):
        if _name.endswith("_kernel") and not _name.startswith("_"):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
__all__.sort()
del _module, _name
