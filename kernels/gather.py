"""Row gather: ``out[i] = x[idx[i]]``, the mini-batch copy of :class:`fastnn.data.DataLoader`.

NumPy's ``x[idx]`` copies the selected rows on one thread while holding the GIL. This kernel
splits the rows of the output over Numba's workers and releases the GIL, so a background thread
can assemble the next mini-batch while the current one trains. The ``*_serial_kernel`` twin
copies on the calling thread only, for small batches (d2l's linear regression draws 10 x 2)
where starting the thread pool costs more than the copy; both give identical results.

Compiled for the dtypes the data loader routes here (float32, float64 and uint8 images, with
``intp`` indices); anything else is gathered with ``np.take``.
"""

from numba import prange

from ._jit import njit


_GROUP = 4  # rows copied side by side per prange iteration


@njit(cache=True, nogil=True, error_model="numpy")
def _gather_row(x, r, out, i):
    for j in range(x.shape[1]):
        out[i, j] = x[r, j]


@njit(cache=True, nogil=True, error_model="numpy")
def _gather_group(x, idx, out, i0):
    """Rows ``i0 .. i0 + 3`` of ``out``, copied side by side (4 memory streams at once)."""
    r0, r1, r2, r3 = idx[i0], idx[i0 + 1], idx[i0 + 2], idx[i0 + 3]
    for j in range(x.shape[1]):
        out[i0, j] = x[r0, j]
        out[i0 + 1, j] = x[r1, j]
        out[i0 + 2, j] = x[r2, j]
        out[i0 + 3, j] = x[r3, j]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def gather_rows_forward_kernel(x, idx, out):
    """Copy row ``idx[i]`` of ``x`` into row ``i`` of ``out``.

    Each ``prange`` iteration owns a group of 4 output rows and copies them side by side:
    random rows of a dataset larger than the cache come from DRAM, and 4 streams at once keep
    more reads in flight than one row after another (a 60,000 x 784 float32 epoch of 256-row
    batches: 39-55 -> 30-32 us per batch, about the time of copying 256 consecutive rows).
    ``x`` is only read, so the result does not depend on the number of threads. Indices are
    trusted (``0 <= idx[i] < N``).

    Shape
    -----
    x: (N, D) C-contiguous; idx: (B,) intp; out: (B, D) C-contiguous, same dtype as x.
    """
    B = idx.shape[0]
    full = B // _GROUP
    for g in prange(full + 1):
        if g < full:
            _gather_group(x, idx, out, g * _GROUP)
        else:
            for i in range(full * _GROUP, B):
                _gather_row(x, idx[i], out, i)


@njit(cache=True, nogil=True, error_model="numpy")
def gather_rows_forward_serial_kernel(x, idx, out):
    """Single-threaded :func:`gather_rows_forward_kernel` for small batches."""
    for i in range(idx.shape[0]):
        _gather_row(x, idx[i], out, i)
