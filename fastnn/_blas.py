"""Keep BLAS single-threaded while a kernel calls it from inside ``prange``.

Numba's ``np.dot`` calls SciPy's BLAS (OpenBLAS), which is multi-threaded by default. Called from
every Numba worker at once its threads fight the workers (measured: 8.9x slower than PyTorch, see
shared/MEASURED.md); limited to one thread, each worker's GEMM runs at full single-core speed.

:func:`single_threaded_blas` is reference-counted across Python threads: the first caller sets
the limit, the last one restores the user's setting, so two threads running convolutions at once
never leave BLAS stuck at one thread (nor release the limit under the other's feet).
"""

from __future__ import annotations

import contextlib
import threading

_lock = threading.Lock()
_depth = 0
_limiter = None
_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS so it can be seen)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def single_threaded_blas():
    """Limit every loaded BLAS to one thread for the duration of the block."""
    global _depth, _limiter
    with _lock:
        if _depth == 0:
            _limiter = _get_controller().limit(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None
