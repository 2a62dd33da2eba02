"""Numba runtime configuration shared by every kernel module.

Two jobs, both done once, at import of :mod:`fastnn.kernels`:

1. **Threading layer.** Numba's default here is OpenMP (GNU libgomp): a child forked after a
   parallel call hangs on its next parallel call. The workqueue layer aborts the process when
   two Python threads launch parallel kernels at once. TBB handles both, but PyPI's ``tbb``
   installs ``libtbb.so.12`` into ``<prefix>/lib``, which is not on the loader path, so Numba
   cannot load its TBB pool unless the library is loaded first. We load it with
   ``RTLD_GLOBAL`` and select ``tbb``. An explicit ``NUMBA_THREADING_LAYER`` from the user is
   respected. If TBB cannot be loaded we keep Numba's default and warn once.

2. **Cache fallback.** ``cache=True`` makes Numba raise at *decoration* time when no cache
   directory is writable (read-only install and unwritable ``NUMBA_CACHE_DIR``). :func:`njit`
   decorates with the given (literal) flags and, only in that case, retries without the cache
   and warns once, so ``import fastnn`` always works.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import warnings

import numba

__all__ = ["njit", "threading_layer_requested", "cache_enabled", "CacheFallbackWarning"]


class CacheFallbackWarning(UserWarning):
    """Numba's cache directory is not writable; kernels compile on every new process."""


_cache_ok = True
_warned_cache = False


def _tbb_candidates():
    names = ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll")
    roots = {sys.prefix, sys.base_prefix, getattr(sys, "exec_prefix", sys.prefix)}
    for root in roots:
        for sub in ("lib", "Library/bin", "bin"):
            for name in names:
                yield os.path.join(root, sub, name)
    # --user / --target installs: the tbb distribution records where its files went
    try:
        from importlib import metadata

        dist = metadata.distribution("tbb")
        for f in dist.files or ():
            if os.path.basename(str(f)) in names:
                yield str(dist.locate_file(f))
    except Exception:  # pragma: no cover - metadata missing or odd install
        pass
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if d:
            yield from glob.glob(os.path.join(d, "libtbb.so.12*"))


def _configure_threading_layer() -> str:
    """Preload TBB and select it unless the user chose a layer. Returns the requested layer."""
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return os.environ["NUMBA_THREADING_LAYER"]
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        return "none (NUMBA_DISABLE_JIT)"
    for path in _tbb_candidates():
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            numba.config.THREADING_LAYER = "tbb"
            return "tbb"
    warnings.warn(
        "fastnn: the TBB library (pip package 'tbb') could not be loaded; using Numba's default "
        "threading layer. Parallel kernels may hang in processes forked after a parallel call "
        "(OpenMP) or abort when called from two threads at once (workqueue).",
        RuntimeWarning,
        stacklevel=2,
    )
    return numba.config.THREADING_LAYER


threading_layer_requested = _configure_threading_layer()


def _tolerate_corrupt_cache_files():
    """Treat an unreadable Numba cache file as a cache miss (recompile and overwrite it).

    Numba 0.68 raises from the first call of a kernel whose ``.nbi``/``.nbc`` file is truncated
    or corrupt (numba/numba#10434; fix proposed in PR #10656). Unpickling garbage can raise
    almost anything -- ``EOFError``, ``UnpicklingError``, ``MemoryError`` (a huge length
    prefix), ``KeyError``, ``OverflowError``, ``UnicodeDecodeError`` ... -- so we catch every
    ``Exception``: a corrupt index reads as empty, a corrupt data file as missing (``OSError``,
    which Numba already handles as a miss).
    """
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:  # pragma: no cover - a Numba without this class
        return
    if getattr(IndexDataCacheFile, "_fastnn_tolerant", False):
        return
    bad = Exception
    load_index, load_data = IndexDataCacheFile._load_index, IndexDataCacheFile._load_data

    def _load_index(self):
        try:
            return load_index(self)
        except bad:
            return {}

    def _load_data(self, name):
        try:
            return load_data(self, name)
        except bad as exc:
            raise OSError(f"corrupt Numba cache file for {name}") from exc

    IndexDataCacheFile._load_index = _load_index
    IndexDataCacheFile._load_data = _load_data
    IndexDataCacheFile._fastnn_tolerant = True

    # A data file can also unpickle "successfully" into something that is not a compile result
    # (random bytes that happen to be a valid pickle); rebuilding it then fails. That too is a
    # miss: Numba compiles and overwrites the entry.
    from numba.core.caching import Cache

    load_overload = Cache._load_overload

    def _load_overload(self, sig, target_context):
        try:
            return load_overload(self, sig, target_context)
        except Exception:
            return None

    Cache._load_overload = _load_overload


_tolerate_corrupt_cache_files()


def cache_enabled() -> bool:
    """True unless some kernel had to be compiled without Numba's on-disk cache."""
    return _cache_ok


def njit(**flags):
    """``numba.njit(**flags)`` that survives an unwritable cache directory.

    Kernel modules call it with literal flags, e.g.
    ``@njit(parallel=True, cache=True, nogil=True, error_model="numpy")``.
    """

    def decorate(fn):
        global _cache_ok, _warned_cache
        try:
            return numba.njit(**flags)(fn)
        except RuntimeError as exc:
            if not flags.get("cache") or "cannot cache" not in str(exc):
                raise
            _cache_ok = False
            if not _warned_cache:
                _warned_cache = True
                warnings.warn(
                    "fastnn: no writable Numba cache directory (set NUMBA_CACHE_DIR to a writable "
                    "folder); kernels will be compiled in every new process.",
                    CacheFallbackWarning,
                    stacklevel=2,
                )
            return numba.njit(**{**flags, "cache": False})(fn)

    return decorate
