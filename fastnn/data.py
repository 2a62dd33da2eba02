"""Mini-batch iteration, as *Dive into Deep Learning*'s ``data_iter`` (chapter 3).

d2l's from-scratch linear regression draws its mini-batches with::

    def data_iter(batch_size, features, labels):
        num_examples = len(features)
        indices = list(range(num_examples))
        random.shuffle(indices)
        for i in range(0, num_examples, batch_size):
            batch_indices = indices[i: min(i + batch_size, num_examples)]
            yield features[batch_indices], labels[batch_indices]

:class:`DataLoader` yields the same batches (a fresh permutation per epoch, whole batches in
permutation order, then the last partial batch) with the row copy done by a parallel Numba
kernel (:func:`gather_rows`) that releases the GIL, so ``prefetch=True`` can assemble the next
batch in a background thread while the current one trains.

Randomness comes from NumPy's global RNG (``np.random.permutation``), so ``np.random.seed(s)``
reproduces a run, or from a private generator when ``seed`` is given.
"""

from __future__ import annotations

import numbers
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _checks as ck
from .functional import SERIAL_MAX_SIZE
from .kernels.gather import gather_rows_forward_kernel as _gather_kernel
from .kernels.gather import gather_rows_forward_serial_kernel as _gather_serial_kernel

__all__ = ["DataLoader", "gather_rows"]

#: dtypes gathered by the Numba kernel; every other dtype goes through ``np.take``.
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))


def _gather_into(x2, idx, out2):
    """Trusted gather: ``out2[i] = x2[idx[i]]`` for a C-contiguous 2-D ``x2`` and ``out2``.

    Batches of up to ``SERIAL_MAX_SIZE`` elements are copied on the calling thread (starting
    the thread pool would cost more than the copy), larger ones by the parallel kernel.
    """
    if x2.dtype in _KERNEL_DTYPES and x2.shape[1] > 0:
        if out2.size <= SERIAL_MAX_SIZE:
            _gather_serial_kernel(x2, idx, out2)
        else:
            _gather_kernel(x2, idx, out2)
    else:
        np.take(x2, idx, axis=0, out=out2)
    return out2


def gather_rows(x, indices, out=None):
    """Copy the rows ``x[indices]`` into a new (or given) array with a parallel kernel.

    Equivalent to ``x[indices]`` (NumPy fancy indexing along the first axis) for a 1-D integer
    ``indices``, including negative indices. float32, float64 and uint8 arrays are copied by a
    Numba kernel that releases the GIL (multi-threaded above
    :data:`fastnn.functional.SERIAL_MAX_SIZE` output elements); other dtypes use ``np.take``.

    Parameters
    ----------
    x : array_like
        Array of at least one dimension; the first axis is indexed. A non-C-contiguous ``x`` is
        copied to C order first (pass a contiguous array to avoid that copy on every call).
    indices : array_like of int
        1-D row indices in ``[-N, N)``.
    out : ndarray, optional
        C-contiguous, writable array of shape ``(len(indices),) + x.shape[1:]`` and ``x``'s
        dtype to write into.

    Returns
    -------
    ndarray
        ``out`` if given, else a new array of ``x``'s dtype.

    Raises
    ------
    TypeError
        If ``indices`` are not integers or ``out`` has the wrong dtype.
    ValueError
        If ``x`` is 0-D, ``indices`` is not 1-D, or ``out`` has the wrong shape or layout.
    IndexError
        If an index is outside ``[-N, N)``.

    Shape
    -----
    x: (N, ...); indices: (B,) -> (B, ...).

    Examples
    --------
    >>> x = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> gather_rows(x, [2, 0])
    array([[6., 7., 8.],
           [0., 1., 2.]], dtype=float32)
    """
    op = "gather_rows"
    x = ck.as_array(op, "x", x)
    if x.ndim == 0:
        raise ValueError(f"{op}: x must have at least one dimension, got a 0-d array")
    idx = ck.as_array(op, "indices", indices)
    if idx.ndim != 1:
        raise ValueError(f"{op}: indices must be 1-D, got shape {idx.shape}")
    if idx.size == 0:
        idx = idx.astype(np.intp)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be integers, got dtype {idx.dtype}")
    N = x.shape[0]
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -N or hi >= N:
            bad = lo if lo < -N else hi
            raise IndexError(f"{op}: index {bad} is out of bounds for x with {N} rows")
    idx = np.ascontiguousarray(idx, dtype=np.intp)
    if idx.size and lo < 0:
        idx = np.where(idx < 0, idx + N, idx)
    shape = (idx.shape[0],) + x.shape[1:]
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    else:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{op}: out must be a NumPy array, got {type(out).__name__}")
        if out.shape != shape:
            raise ValueError(f"{op}: out has shape {out.shape}, expected {shape}")
        if out.dtype != x.dtype:
            raise TypeError(f"{op}: out has dtype {out.dtype}, expected x's dtype {x.dtype}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"{op}: out must be C-contiguous and writable")
    x2 = np.ascontiguousarray(x).reshape(N, -1)
    _gather_into(x2, idx, out.reshape(idx.shape[0], x2.shape[1]))
    return out


def _as_rng(op, seed):
    """``None`` -> None (NumPy's global RNG); int -> a new Generator; generators as given."""
    if seed is None or isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(
            f"{op}: seed must be None, a non-negative int, a numpy.random.Generator or a "
            f"RandomState; got {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"{op}: seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


class DataLoader:
    """Shuffled mini-batches of ``(x, t)``, as d2l's ``data_iter``.

    Each pass over the loader (an epoch) draws one permutation of the ``N`` samples and yields
    ``len(loader)`` batches in permutation order: whole batches of ``batch_size`` rows, then the
    last partial batch of ``N % batch_size`` rows unless ``drop_last``. Every batch is a new
    array (a copy, as ``x[indices]``), so it may be kept or modified freely.

    Parameters
    ----------
    x : array_like
        Features, first axis = samples, any trailing shape (``(N, 784)``, ``(N, 1, 28, 28)``,
        ...). Kept by reference when it is a C-contiguous array (changes to it show in later
        batches); otherwise copied to C order once.
    t : array_like
        Targets (labels ``(N,)``, one-hot ``(N, K)``, regression targets ``(N, 1)``, ...),
        first axis = samples.
    batch_size : int
        Rows per batch (the last batch may be smaller).
    shuffle : bool, default True
        Draw a new permutation for every epoch; otherwise batches follow the stored order.
    drop_last : bool, default False
        Skip the final partial batch (so every batch has ``batch_size`` rows).
    seed : None, int, numpy.random.Generator or numpy.random.RandomState, default None
        ``None``: permutations come from NumPy's global RNG (``np.random.permutation``), so
        ``np.random.seed(s)`` reproduces the run. An int seeds a private
        ``np.random.default_rng(seed)`` created once: two loaders with the same seed yield the
        same sequence of epochs, and the global RNG is left untouched. A generator is used as
        given.
    prefetch : bool, default False
        Gather the next batch in a background thread while the caller works on the current
        one. The gather kernel releases the GIL, so the copy overlaps NumPy/Numba work of the
        training step. Batches and their order are identical with and without prefetching.
        It pays off only when the step leaves a core idle: with fastnn's parallel kernels on
        every core it competes for them (a softmax-regression epoch on 2 cores measured 1.5x
        slower with prefetching).

    Attributes
    ----------
    x, t : ndarray
        The arrays batches are drawn from.
    num_examples : int
        ``N``.

    Raises
    ------
    TypeError
        If ``batch_size`` is not an integer or ``seed`` has an unsupported type.
    ValueError
        If ``x`` is empty or 0-d, ``x`` and ``t`` disagree on ``N``, or ``batch_size < 1``.

    Shape
    -----
    x: (N, ...), t: (N, ...) -> batches (B, ...), (B, ...) with B = batch_size (last: N % B).

    Examples
    --------
    >>> x = np.arange(10.0).reshape(5, 2)
    >>> t = np.arange(5)
    >>> loader = DataLoader(x, t, batch_size=2, seed=0)
    >>> len(loader)
    3
    >>> [xb.shape[0] for xb, tb in loader]
    [2, 2, 1]
    """

    def __init__(
        self, x, t, batch_size, shuffle=True, drop_last=False, seed=None, prefetch=False
    ):
        op = "DataLoader"
        x = ck.as_array(op, "x", x)
        t = ck.as_array(op, "t", t)
        if x.ndim == 0 or t.ndim == 0:
            which = "x" if x.ndim == 0 else "t"
            raise ValueError(f"{op}: {which} must have a sample axis, got a 0-d array")
        if x.shape[0] == 0:
            raise ValueError(f"{op}: x is empty (shape {x.shape}); nothing to iterate over")
        if t.shape[0] != x.shape[0]:
            raise ValueError(
                f"{op}: x has {x.shape[0]} samples (shape {x.shape}) but t has {t.shape[0]} "
                f"(shape {t.shape})"
            )
        self.batch_size = ck.as_int(op, "batch_size", batch_size, 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.prefetch = bool(prefetch)
        self._rng = _as_rng(op, seed)
        self.x = np.ascontiguousarray(x)
        self.t = np.ascontiguousarray(t)
        self.num_examples = int(x.shape[0])
        # 2-D views used by the kernel (no copies)
        self._x2 = self.x.reshape(self.num_examples, -1)
        self._t2 = self.t.reshape(self.num_examples, -1)

    def __len__(self):
        """Number of batches per epoch: ``N // B`` if ``drop_last`` else ``ceil(N / B)``."""
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __repr__(self):
        return (
            f"DataLoader(num_examples={self.num_examples}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, prefetch={self.prefetch}, "
            f"batches={len(self)})"
        )

    def epoch_indices(self):
        """Draw the sample order of one epoch (what iterating the loader does first).

        Returns
        -------
        ndarray of intp
            A permutation of ``range(N)`` (from the loader's RNG) if ``shuffle``, else
            ``arange(N)``.
        """
        n = self.num_examples
        if not self.shuffle:
            return np.arange(n, dtype=np.intp)
        rng = self._rng
        perm = np.random.permutation(n) if rng is None else rng.permutation(n)
        return perm.astype(np.intp, copy=False)

    def _batch(self, idx):
        """``(x[idx], t[idx])`` as new arrays."""
        B = idx.shape[0]
        xb = np.empty((B,) + self.x.shape[1:], dtype=self.x.dtype)
        _gather_into(self._x2, idx, xb.reshape(B, self._x2.shape[1]))
        tb = np.take(self._t2, idx, axis=0).reshape((B,) + self.t.shape[1:])
        return xb, tb

    def _slices(self, order):
        n, b = self.num_examples, self.batch_size
        stop = len(self) * b
        for start in range(0, stop, b):
            yield order[start : min(start + b, n)]

    def __iter__(self):
        """Start an epoch: the permutation is drawn now (not at the first ``next``)."""
        order = self.epoch_indices()
        if self.prefetch and len(self) > 1:
            return self._iter_prefetch(order)
        return self._iter_plain(order)

    def _iter_plain(self, order):
        for idx in self._slices(order):
            yield self._batch(idx)

    def _iter_prefetch(self, order):
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastnn-prefetch")
        try:
            slices = self._slices(order)
            pending = pool.submit(self._batch, next(slices))
            for idx in slices:
                batch = pending.result()
                pending = pool.submit(self._batch, idx)
                yield batch
            yield pending.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
