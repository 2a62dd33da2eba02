"""fastnn.data (DataLoader, gather_rows, the gather kernel) and datasets.synthetic_linear."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.data import DataLoader, gather_rows
from fastnn.datasets import synthetic_linear
from fastnn.functional import SERIAL_MAX_SIZE
from fastnn.kernels.gather import gather_rows_forward_kernel, gather_rows_forward_serial_kernel


def _order(loader):
    """Concatenated sample indices of one epoch (x must be arange-valued column 0)."""
    return np.concatenate([xb[:, 0] for xb, _ in loader]).astype(np.int64)


def _indexed(N, D=3, dtype=np.float64):
    """x whose row i is [i, i, ...] and t = 10 * i, so batches reveal the indices drawn."""
    x = np.repeat(np.arange(N, dtype=dtype)[:, None], D, axis=1)
    t = 10 * np.arange(N)
    return x, t


# =========================================================================== gather
class TestGather:
    @pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int64, np.bool_])
    def test_matches_fancy_indexing(self, dtype):
        rng = np.random.default_rng(0)
        x = (rng.random((50, 7)) * 200).astype(dtype)
        idx = rng.integers(0, 50, 23)
        out = gather_rows(x, idx)
        assert out.dtype == x.dtype
        np.testing.assert_array_equal(out, x[idx])

    @pytest.mark.parametrize("kernel", [gather_rows_forward_kernel,
                                        gather_rows_forward_serial_kernel])
    def test_kernels_directly(self, kernel):
        x = np.arange(20, dtype=np.float32).reshape(5, 4)
        idx = np.array([4, 0, 4, 2], dtype=np.intp)
        out = np.full((4, 4), -1, dtype=np.float32)
        kernel(x, idx, out)
        np.testing.assert_array_equal(out, x[idx])

    @pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
    def test_large_batch_uses_parallel_kernel(self, dtype):
        """Batches above SERIAL_MAX_SIZE elements take the parallel kernel; same result."""
        rng = np.random.default_rng(5)
        x = (rng.random((700, 300)) * 255).astype(dtype)
        idx = rng.integers(0, 700, 256)  # 256 * 300 = 76,800 elements
        assert idx.size * x.shape[1] > SERIAL_MAX_SIZE
        np.testing.assert_array_equal(gather_rows(x, idx), x[idx])
        loader = DataLoader(x, np.arange(700), 256, seed=0, prefetch=True)
        got = np.concatenate([xb for xb, _ in loader])
        np.testing.assert_array_equal(got, x[DataLoader(x, np.arange(700), 256,
                                                        seed=0).epoch_indices()])

    def test_nd_negative_empty_noncontiguous_and_out(self):
        rng = np.random.default_rng(1)
        x = rng.random((6, 2, 3, 3))
        np.testing.assert_array_equal(gather_rows(x, [5, -1, -6, 0]), x[[5, -1, -6, 0]])
        empty = gather_rows(x, [])
        assert empty.shape == (0, 2, 3, 3) and empty.dtype == x.dtype
        xt = rng.random((5, 8)).T  # not C-contiguous
        np.testing.assert_array_equal(gather_rows(xt, [7, 1]), xt[[7, 1]])
        out = np.empty((2, 2, 3, 3))
        res = gather_rows(x, np.array([1, 3], dtype=np.int32), out=out)
        assert res is out
        np.testing.assert_array_equal(out, x[[1, 3]])
        x1 = np.arange(5.0)
        np.testing.assert_array_equal(gather_rows(x1, [3, 1]), x1[[3, 1]])

    @settings(max_examples=25, deadline=None)
    @given(
        n=st.integers(1, 40),
        d=st.integers(0, 9),
        b=st.integers(0, 60),
        dtype=st.sampled_from([np.float32, np.float64, np.uint8]),
        seed=st.integers(0, 2**32 - 1),
    )
    def test_property(self, n, d, b, dtype, seed):
        rng = np.random.default_rng(seed)
        x = (rng.random((n, d)) * 100).astype(dtype)
        idx = rng.integers(-n, n, b)
        np.testing.assert_array_equal(gather_rows(x, idx), x[idx])

    def test_errors(self):
        x = np.zeros((4, 2))
        with pytest.raises(IndexError, match="gather_rows: index 4 is out of bounds"):
            gather_rows(x, [0, 4])
        with pytest.raises(IndexError, match="gather_rows: index -5"):
            gather_rows(x, [-5])
        with pytest.raises(TypeError, match="gather_rows: indices must be integers"):
            gather_rows(x, [0.5])
        with pytest.raises(TypeError, match="gather_rows: indices must be integers"):
            gather_rows(x, np.array([True, False]))
        with pytest.raises(ValueError, match="gather_rows: indices must be 1-D"):
            gather_rows(x, [[0]])
        with pytest.raises(ValueError, match="gather_rows: x must have at least one dimension"):
            gather_rows(np.float64(1.0), [0])
        with pytest.raises(ValueError, match="gather_rows: out has shape"):
            gather_rows(x, [0], out=np.empty((2, 2)))
        with pytest.raises(TypeError, match="gather_rows: out has dtype"):
            gather_rows(x, [0], out=np.empty((1, 2), dtype=np.float32))
        with pytest.raises(ValueError, match="gather_rows: out must be C-contiguous"):
            gather_rows(x, [0, 1], out=np.empty((2, 2)).T)
        with pytest.raises(TypeError, match="gather_rows: x is None"):
            gather_rows(None, [0])


# =========================================================================== DataLoader
def _expected_sizes(N, B, drop_last):
    sizes = [B] * (N // B)
    if N % B and not drop_last:
        sizes.append(N % B)
    return sizes


class TestBatching:
    @settings(max_examples=25, deadline=None)
    @given(
        N=st.integers(1, 60),
        B=st.integers(1, 70),
        drop_last=st.booleans(),
        shuffle=st.booleans(),
        prefetch=st.booleans(),
    )
    def test_batching_rules(self, N, B, drop_last, shuffle, prefetch):
        x, t = _indexed(N)
        loader = DataLoader(x, t, B, shuffle=shuffle, drop_last=drop_last, seed=0,
                            prefetch=prefetch)
        batches = list(loader)
        sizes = [xb.shape[0] for xb, _ in batches]
        assert sizes == _expected_sizes(N, B, drop_last)
        assert len(loader) == len(sizes)
        order = np.concatenate([xb[:, 0] for xb, _ in batches] or [np.empty(0)]).astype(int)
        if drop_last:
            assert order.size == N - N % B
        else:
            assert order.size == N
        assert np.unique(order).size == order.size  # each sample at most once per epoch
        if not shuffle:
            np.testing.assert_array_equal(order, np.arange(order.size))
        for xb, tb in batches:  # x and t stay aligned
            np.testing.assert_array_equal(tb, 10 * xb[:, 0].astype(int))
            assert xb.shape[1:] == (3,) and xb.dtype == x.dtype and tb.dtype == t.dtype

    def test_len(self):
        x, t = _indexed(10)
        assert len(DataLoader(x, t, 3)) == 4
        assert len(DataLoader(x, t, 3, drop_last=True)) == 3
        assert len(DataLoader(x, t, 5)) == 2
        assert len(DataLoader(x, t, 5, drop_last=True)) == 2
        assert len(DataLoader(x, t, 20)) == 1
        assert len(DataLoader(x, t, 20, drop_last=True)) == 0
        assert list(DataLoader(x, t, 20, drop_last=True)) == []

    def test_last_partial_batch_comes_last(self):
        x, t = _indexed(7)
        sizes = [xb.shape[0] for xb, _ in DataLoader(x, t, 3, seed=1)]
        assert sizes == [3, 3, 1]

    def test_full_shapes_kept(self):
        rng = np.random.default_rng(2)
        x = rng.random((9, 1, 4, 4)).astype(np.float32)
        t = np.eye(3)[rng.integers(0, 3, 9)]
        for xb, tb in DataLoader(x, t, 4, seed=0):
            assert xb.shape[1:] == (1, 4, 4) and xb.dtype == np.float32
            assert tb.shape[1:] == (3,) and tb.dtype == np.float64
        x8 = (rng.random((9, 5)) * 255).astype(np.uint8)
        got = np.concatenate([xb for xb, _ in DataLoader(x8, np.arange(9), 4, shuffle=False)])
        np.testing.assert_array_equal(got, x8)

    def test_batches_are_copies(self):
        x, t = _indexed(6)
        before = x.copy()
        for xb, tb in DataLoader(x, t, 4):
            xb[:] = -1
            tb[:] = -1
        np.testing.assert_array_equal(x, before)
        np.testing.assert_array_equal(t, 10 * np.arange(6))

    def test_keeps_contiguous_x_by_reference(self):
        x, t = _indexed(6)
        loader = DataLoader(x, t, 6, shuffle=False)
        assert loader.x is x
        x[0, :] = 99.0  # like d2l's data_iter, later batches see changes of x
        first = next(iter(loader))[0]
        assert first[0, 0] == 99.0
        xt = np.asfortranarray(x)
        assert DataLoader(xt, t, 2).x.flags.c_contiguous


class TestReproducibility:
    def test_global_rng_follows_np_random_seed(self):
        x, t = _indexed(50)
        np.random.seed(123)
        a = [_order(DataLoader(x, t, 8)) for _ in range(3)]
        np.random.seed(123)
        loader = DataLoader(x, t, 8)
        b = [_order(loader) for _ in range(3)]
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
        # the permutation is np.random.permutation(N), drawn when an epoch starts
        np.random.seed(7)
        expected = np.random.permutation(50)
        np.random.seed(7)
        np.testing.assert_array_equal(_order(DataLoader(x, t, 8)), expected)

    def test_each_epoch_is_a_new_permutation(self):
        x, t = _indexed(40)
        loader = DataLoader(x, t, 16, seed=5)
        e1, e2 = _order(loader), _order(loader)
        assert sorted(e1) == sorted(e2) == list(range(40))
        assert not np.array_equal(e1, e2)

    def test_seed_reproduces_and_leaves_global_rng_alone(self):
        x, t = _indexed(30)
        np.random.seed(0)
        state = np.random.get_state()[1].copy()
        a, b = DataLoader(x, t, 7, seed=42), DataLoader(x, t, 7, seed=42)
        for _ in range(3):
            np.testing.assert_array_equal(_order(a), _order(b))
        np.testing.assert_array_equal(np.random.get_state()[1], state)
        c = DataLoader(x, t, 7, seed=43)
        assert not np.array_equal(_order(DataLoader(x, t, 7, seed=42)), _order(c))
        gen = np.random.default_rng(42)
        np.testing.assert_array_equal(_order(DataLoader(x, t, 7, seed=gen)),
                                      _order(DataLoader(x, t, 7, seed=42)))

    def test_permutation_drawn_at_iter_not_first_next(self):
        x, t = _indexed(20)
        np.random.seed(3)
        expected = np.random.permutation(20)
        np.random.seed(3)
        it = iter(DataLoader(x, t, 20))
        np.random.rand(5)  # other RNG use after the epoch started does not change it
        np.testing.assert_array_equal(next(it)[0][:, 0].astype(int), expected)

    def test_epoch_indices(self):
        x, t = _indexed(12)
        np.testing.assert_array_equal(DataLoader(x, t, 5, shuffle=False).epoch_indices(),
                                      np.arange(12))
        perm = DataLoader(x, t, 5, seed=9).epoch_indices()
        np.testing.assert_array_equal(np.sort(perm), np.arange(12))


class TestPrefetch:
    def test_same_batches_as_without_prefetch(self):
        rng = np.random.default_rng(3)
        x = rng.random((103, 17)).astype(np.float32)
        t = rng.integers(0, 10, 103).astype(np.uint8)
        plain = list(DataLoader(x, t, 10, seed=11))
        pre = list(DataLoader(x, t, 10, seed=11, prefetch=True))
        assert len(plain) == len(pre) == 11
        for (xa, ta), (xb, tb) in zip(plain, pre):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ta, tb)

    def test_global_rng_with_prefetch(self):
        x, t = _indexed(33)
        np.random.seed(1)
        a = _order(DataLoader(x, t, 4))
        np.random.seed(1)
        b = _order(DataLoader(x, t, 4, prefetch=True))
        np.testing.assert_array_equal(a, b)

    def test_early_break_stops_the_worker(self):
        x, t = _indexed(100)
        before = threading.active_count()
        for _ in range(3):
            for i, _batch in enumerate(DataLoader(x, t, 5, prefetch=True)):
                if i == 2:
                    break
        it = iter(DataLoader(x, t, 5, prefetch=True))
        next(it)
        it.close()
        alive = [th for th in threading.enumerate() if th.name.startswith("fastnn-prefetch")]
        assert not alive
        assert threading.active_count() <= before

    def test_works_while_main_thread_runs_kernels(self):
        """The gather runs in a worker thread while the main thread calls parallel kernels."""
        from fastnn import functional as F

        rng = np.random.default_rng(4)
        x = rng.random((400, 64))
        t = rng.integers(0, 8, 400)
        total = 0
        for xb, tb in DataLoader(x, t, 32, seed=0, prefetch=True):
            loss, _ = F.softmax_cross_entropy(xb[:, :8], tb)
            assert np.isfinite(loss)
            total += xb.shape[0]
        assert total == 400


class TestLoaderErrors:
    def test_errors(self):
        x, t = _indexed(5)
        with pytest.raises(ValueError, match="DataLoader: x has 5 samples .* t has 4"):
            DataLoader(x, t[:4], 2)
        with pytest.raises(ValueError, match="DataLoader: batch_size must be positive"):
            DataLoader(x, t, 0)
        with pytest.raises(TypeError, match="DataLoader: batch_size must be an integer"):
            DataLoader(x, t, 2.5)
        with pytest.raises(ValueError, match="DataLoader: x is empty"):
            DataLoader(np.zeros((0, 3)), np.zeros(0), 2)
        with pytest.raises(ValueError, match="DataLoader: t must have a sample axis"):
            DataLoader(x, np.float64(1.0), 2)
        with pytest.raises(TypeError, match="DataLoader: seed must be"):
            DataLoader(x, t, 2, seed="abc")
        with pytest.raises(ValueError, match="DataLoader: seed must be non-negative"):
            DataLoader(x, t, 2, seed=-1)
        with pytest.raises(TypeError, match="DataLoader: x is None"):
            DataLoader(None, t, 2)

    def test_repr(self):
        x, t = _indexed(5)
        assert "batches=3" in repr(DataLoader(x, t, 2))


# =========================================================================== synthetic_linear
class TestSyntheticLinear:
    def test_shapes_and_model(self):
        w, b = np.array([2.0, -3.4]), 4.2
        X, y = synthetic_linear(w, b, 5000, seed=0)
        assert X.shape == (5000, 2) and y.shape == (5000, 1)
        assert X.dtype == y.dtype == np.float64
        resid = y[:, 0] - (X @ w + b)
        assert abs(resid.std() - 0.01) < 0.001 and abs(resid.mean()) < 0.001
        assert abs(X.mean()) < 0.05 and abs(X.std() - 1) < 0.05

    def test_d2l_draw_order_from_global_rng(self):
        np.random.seed(0)
        X, y = synthetic_linear([1.5], -2.0, 4, noise=0.5)
        np.random.seed(0)
        Xe = np.random.normal(0, 1, (4, 1))
        ye = Xe @ np.array([1.5]) - 2.0
        ye += np.random.normal(0, 0.5, ye.shape)
        np.testing.assert_array_equal(X, Xe)
        np.testing.assert_array_equal(y, ye.reshape(-1, 1))

    def test_seed_and_noise_free(self):
        a = synthetic_linear([1, 2, 3], 0.5, 10, seed=3)
        b = synthetic_linear([1, 2, 3], 0.5, 10, seed=3)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        X, y = synthetic_linear([1, 2, 3], 0.5, 10, noise=0, seed=3)
        np.testing.assert_allclose(y[:, 0], X @ np.array([1.0, 2.0, 3.0]) + 0.5, rtol=1e-14)
        X, y = synthetic_linear(2.0, 1.0, 3, seed=0, dtype=np.float32)
        assert X.shape == (3, 1) and X.dtype == y.dtype == np.float32

    def test_errors(self):
        with pytest.raises(ValueError, match="synthetic_linear: w must be a non-empty 1-D"):
            synthetic_linear([[1, 2]], 0, 5)
        with pytest.raises(ValueError, match="synthetic_linear: w must be a non-empty 1-D"):
            synthetic_linear([], 0, 5)
        with pytest.raises(TypeError, match="synthetic_linear: w must hold real numbers"):
            synthetic_linear(["a"], 0, 5)
        with pytest.raises(ValueError, match="synthetic_linear: num_examples must be positive"):
            synthetic_linear([1], 0, 0)
        with pytest.raises(TypeError, match="synthetic_linear: num_examples must be an integer"):
            synthetic_linear([1], 0, 2.5)
        with pytest.raises(ValueError, match="synthetic_linear: noise"):
            synthetic_linear([1], 0, 5, noise=-0.1)
        with pytest.raises(ValueError, match="synthetic_linear: b must be a scalar"):
            synthetic_linear([1], [1, 2], 5)
        with pytest.raises(TypeError, match="synthetic_linear: dtype"):
            synthetic_linear([1], 0, 5, dtype=np.int32)
        with pytest.raises(TypeError, match="synthetic_linear: seed"):
            synthetic_linear([1], 0, 5, seed="x")
