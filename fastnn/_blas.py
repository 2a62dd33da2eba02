"""BLAS threads: single-threaded inside kernels, and (by default) for NumPy too.

**Inside kernels.**
Numba's ``np.dot`` calls SciPy's BLAS (OpenBLAS), which is multi-threaded by default. Called from
every Numba worker at once its threads fight the workers (measured: 8.9x slower than PyTorch, see
shared/MEASURED.md); limited to one thread, each worker's GEMM runs at full single-core speed.

:func:`single_threaded_blas` is reference-counted across Python threads: the first caller sets
the limit, the last one restores the user's setting, so two threads running convolutions at once
never leave BLAS stuck at one thread (nor release the limit under the other's feet).

**NumPy's own BLAS.** OpenBLAS worker threads busy-wait for a long time after each call. On a
2-core machine they then fight Numba's TBB workers: measured here, a ReLU kernel followed by
``np.dot((100, 4320), (4320, 100))`` took 143 ms, against 10 ms for the dot alone and 5.7 ms for
both with BLAS on one thread (a short sleep in between did not help; ``OPENBLAS_THREAD_TIMEOUT=4``
did, but OpenBLAS reads it only when NumPy is first imported). So importing fastnn limits the
BLAS libraries loaded so far to ``FASTNN_BLAS_THREADS`` threads (default 1; ``keep`` leaves them
alone); :func:`set_blas_threads` changes it later.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

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


_global_limiter = None


def set_blas_threads(n):
    """Limit the BLAS libraries loaded so far (NumPy's, SciPy's) to ``n`` threads.

    ``None`` restores the limits they had before fastnn changed them.
    """
    global _global_limiter
    from threadpoolctl import ThreadpoolController

    if _global_limiter is not None:
        _global_limiter.restore_original_limits()
        _global_limiter = None
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_blas_threads: n must be a positive integer or None, got {n!r}")
    _global_limiter = ThreadpoolController().limit(limits=n, user_api="blas")


def _limit_at_import():
    """Apply ``FASTNN_BLAS_THREADS`` (default 1) once, when fastnn is imported."""
    value = os.environ.get("FASTNN_BLAS_THREADS", "1").strip().lower()
    if value in ("keep", "default", ""):
        return
    try:
        n = int(value)
    except ValueError:
        warnings.warn(f"fastnn: ignoring FASTNN_BLAS_THREADS={value!r} (expected an integer or 'keep')")
        return
    set_blas_threads(max(1, n))


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
