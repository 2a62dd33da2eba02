"""The recycled output buffers of large ops (fastnn._memory)."""

import gc
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastnn.functional as F
from fastnn import _memory as M

BIG = (M.MIN_BYTES // 8 + 1000,)  # float64 elements: just above the recycling threshold


@pytest.fixture(autouse=True)
def empty_pool():
    M.clear()
    yield
    M.clear()


def test_small_requests_are_plain_arrays():
    a = M.empty((10, 10), np.float32)
    assert a.base is None and a.flags.owndata and a.dtype == np.float32
    assert M.empty_like(a).shape == (10, 10)


def test_large_array_is_c_contiguous_writable_and_aligned():
    a = M.empty((3,) + BIG, np.float64)
    assert a.shape == (3,) + BIG and a.dtype == np.float64
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    b = M.empty_like(a)
    assert b.shape == a.shape and b.dtype == a.dtype


def test_buffer_returns_only_after_every_view_is_gone():
    a = M.empty(BIG, np.float64)
    a[:] = 7.0
    view = a[10:20]
    del a
    gc.collect()
    assert M.pooled_bytes() == 0  # the view still uses the memory
    b = M.empty(BIG, np.float64)
    b[:] = 1.0
    assert (view == 7.0).all()  # b got other memory: nothing aliased
    del view
    gc.collect()
    assert M.pooled_bytes() == BIG[0] * 8
    c = M.empty(BIG, np.float64)  # reuses the freed buffer
    assert M.pooled_bytes() == 0
    c[:] = 3.0
    assert (b == 1.0).all()


def test_pool_is_bounded(monkeypatch):
    monkeypatch.setattr(M, "MAX_BYTES", BIG[0] * 8)
    arrays = [M.empty(BIG, np.float64) for _ in range(3)]
    del arrays
    gc.collect()
    assert M.pooled_bytes() == BIG[0] * 8  # one kept, the others freed
    monkeypatch.setattr(M, "MAX_BYTES", 0)
    a = M.empty(BIG, np.float64)
    assert a.base is None  # recycling off: plain np.empty


def test_ops_results_do_not_alias_across_calls(rng):
    """Large outputs of consecutive calls, all kept: distinct memory, correct values."""
    x = rng.standard_normal((8, M.MIN_BYTES // 64 + 7))
    outs = [F.sigmoid(x + i) for i in range(3)]
    for i, y in enumerate(outs):
        np.testing.assert_allclose(y, 1 / (1 + np.exp(-(x + i))), rtol=1e-12)
    for i in range(3):
        for j in range(i):
            assert not np.shares_memory(outs[i], outs[j])


def test_concurrent_threads(rng):
    x = rng.standard_normal(BIG[0])
    want = np.tanh(x)
    errors = []

    def work():
        try:
            for _ in range(20):
                a = M.empty(BIG, np.float64)
                np.tanh(x, out=a)
                if not np.array_equal(a, want):
                    errors.append("mismatch")
                del a
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_disabled_by_environment():
    code = ("import numpy as np; from fastnn import _memory as M; "
            "a = M.empty((M.MIN_BYTES,), np.uint8); print(M.MAX_BYTES, a.base is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "FASTNN_POOL_MB": "0"}).stdout.split()
    assert out == ["0", "True"]
