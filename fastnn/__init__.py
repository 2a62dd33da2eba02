"""fastnn: the NumPy neural-network code of *Deep Learning from Scratch*, compiled with Numba.

Swap ``from common.layers import *`` for ``from fastnn.layers import *``: same classes, same
numbers, faster. See the README for the module map.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._blas import _limit_at_import, set_blas_threads
from ._memory import clear as clear_buffers
from .gradient import GradientDiff, gradient_check
from ._runtime import (
    compiled_signatures,
    get_num_threads,
    set_num_threads,
    threading_layer,
    warmup,
)

try:
    __version__ = _version("fastnn-numba")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

_limit_at_import()

__all__ = [
    "__version__",
    "set_blas_threads",
    "gradient_check",
    "GradientDiff",
    "install",
    "uninstall",
    "warmup",
    "set_num_threads",
    "get_num_threads",
    "threading_layer",
    "compiled_signatures",
    "clear_buffers",
]


def __getattr__(name):
    """``fastnn.install`` / ``fastnn.uninstall``: the import hook of :mod:`fastnn.hook`."""
    if name in ("install", "uninstall"):
        from . import hook

        return getattr(hook, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
