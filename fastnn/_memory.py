"""Output arrays of the large ops, recycled instead of freshly mapped.

A large ``np.empty`` (more than a few MiB) gets fresh pages from the kernel, which zeroes each
one when a kernel first writes it: about 4.3 ms for a 51 MB float64 array on this machine, as
long as batch norm's whole forward kernel on it. Every call of a layer allocates its outputs
anew, so a training loop pays that on every step.

:func:`empty` and :func:`empty_like` hand out such arrays from buffers that earlier outputs of
the same size no longer use. A buffer goes back to the pool only when the array built on it and
every view of it are gone (a ``weakref.finalize`` on the object that owns the memory), so a
recycled array can never alias one still in use. Smaller requests are plain ``np.empty``.

The pool keeps at most :data:`MAX_BYTES` of unused buffers (``FASTNN_POOL_MB`` in the
environment, in MiB; ``0`` disables recycling); :func:`clear` drops them.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import weakref

import numpy as np

__all__ = ["empty", "empty_like", "clear", "pooled_bytes", "MIN_BYTES", "MAX_BYTES"]

#: requests below this size are plain ``np.empty`` (mapping costs little there)
MIN_BYTES = 4 << 20


def _max_bytes():
    raw = os.environ.get("FASTNN_POOL_MB", "256")
    try:
        return max(0, int(float(raw) * (1 << 20)))
    except ValueError:
        return 256 << 20


#: unused buffers kept for reuse, at most
MAX_BYTES = _max_bytes()

_lock = threading.RLock()  # re-entrant: a finalizer may run (GC) while this thread holds it
_free: dict[int, list] = {}
_held = [0]


def _reset_after_fork():
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _give(raw):
    with _lock:
        if _held[0] + raw.nbytes <= MAX_BYTES:
            _free.setdefault(raw.nbytes, []).append(raw)
            _held[0] += raw.nbytes


def _take(nbytes):
    with _lock:
        bufs = _free.get(nbytes)
        if bufs:
            _held[0] -= nbytes
            return bufs.pop()
    return None


def empty(shape, dtype):
    """``np.empty(shape, dtype)`` (C order), recycled from a free buffer when large.

    Shape
    -----
    shape: any -> shape.
    """
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes < MIN_BYTES or MAX_BYTES == 0:
        return np.empty(shape, dtype)
    return _pooled(shape, dtype, count, nbytes)


def _pooled(shape, dtype, count, nbytes):
    """A ``(shape, dtype)`` array on a recycled (or new) buffer of ``nbytes``."""
    raw = _take(nbytes)
    if raw is None:
        raw = np.empty(nbytes, np.uint8)
    owner = (ctypes.c_char * nbytes).from_buffer(raw)
    # back to the pool when the owner dies: after the array and all its views
    weakref.finalize(owner, _give, raw).atexit = False
    return np.frombuffer(owner, dtype=dtype, count=count).reshape(shape)


def empty_like(a):
    """``np.empty_like(a)`` for a C-contiguous ``a``, recycled when large."""
    nbytes = a.nbytes
    if nbytes < MIN_BYTES or MAX_BYTES == 0:
        return np.empty(a.shape, a.dtype)  # (np.empty_like costs 50 ns more)
    return _pooled(a.shape, a.dtype, a.size, nbytes)


def clear():
    """Drop the unused buffers (their memory goes back to the system)."""
    with _lock:
        _free.clear()
        _held[0] = 0


def pooled_bytes():
    """Bytes of unused buffers the pool keeps."""
    return _held[0]
