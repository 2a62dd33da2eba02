"""Start-up cost: ``import fastnn`` and the first convolution in a fresh interpreter.

Numba compiles fastnn's kernels once and caches them on disk (``cache=True``); later processes
load the machine code from the cache. ``setup`` makes sure the cache is warm (it runs
:func:`fastnn.warmup`, which compiles or loads every kernel and writes missing cache entries),
so these benchmarks measure what a user pays on every run after the first.
"""

_FIRST_CONV = """
import numpy as np
import fastnn
from fastnn import functional as F
x = np.ones((2, 1, 28, 28))
W = np.ones((3, 1, 5, 5))
F.conv2d(x, W, np.zeros(3))
"""


class Startup:
    """Fresh-process timings (asv ``timeraw``), with a warm Numba cache."""

    timeout = 600
    repeat = (1, 5, 60.0)

    def setup(self):
        import fastnn

        fastnn.warmup()  # fills Numba's on-disk cache for both dtypes if it is cold

    def timeraw_import(self):
        """``import fastnn`` (Numba, the threading layer, no kernel loaded yet)."""
        return "import fastnn"

    def timeraw_import_and_first_call(self):
        """``import fastnn`` and one small float64 ``conv2d`` (loads a kernel from the cache)."""
        return _FIRST_CONV

    def timeraw_import_numpy_baseline(self):
        """``import numpy`` alone, the floor of the two timings above."""
        return "import numpy"
