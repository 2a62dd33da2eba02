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


@njit(cache=True, nogil=True, error_model="numpy")
def _gather_row(x, r, out, i):
    for j in range(x.shape[1]):
        out[i, j] = x[r, j]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def gather_rows_forward_kernel(x, idx, out):
    """Copy row ``idx[i]`` of ``x`` into row ``i`` of ``out``.

    Each ``prange`` iteration owns one output row; ``x`` is only read, so the result does not
    depend on the number of threads. Indices are trusted (``0 <= idx[i] < N``).

    Shape
    -----
    x: (N, D) C-contiguous; idx: (B,) intp; out: (B, D) C-contiguous, same dtype as x.
    """
    for i in prange(idx.shape[0]):
        _gather_row(x, idx[i], out, i)


@njit(cache=True, nogil=True, error_model="numpy")
def gather_rows_forward_serial_kernel(x, idx, out):
    """Single-threaded :func:`gather_rows_forward_kernel` for small batches."""
    for i in range(idx.shape[0]):
        _gather_row(x, idx[i], out, i)
