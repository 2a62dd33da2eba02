"""Parity of the batch-norm and dropout kernels with the reference (the book's code)."""

import numpy as np
import pytest

import fastnn
import fastnn.functional as F
from fastnn import reference as R

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 5), (1, 3), (100, 130), (33, 64)])
def test_batch_norm_parity(shape, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma = rng.standard_normal(shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    got = F.batch_norm_train(x, gamma, beta)
    want = R.batch_norm_train(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64))
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, **TOL[dtype])
    out, xn, mu, var, std = got
    dout = rng.standard_normal(shape).astype(dtype)
    gd = F.batch_norm_backward(dout, xn, std, gamma)
    wd = R.batch_norm_backward(dout.astype(np.float64), xn.astype(np.float64), std.astype(np.float64), gamma.astype(np.float64))
    for g, w in zip(gd, wd):
        assert g.dtype == dtype
        scale = max(1.0, float(np.abs(w).max()))
        np.testing.assert_allclose(g, w, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale * 10)
    ev = F.batch_norm_eval(x, gamma, beta, mu, var)
    np.testing.assert_allclose(ev, R.batch_norm_eval(x.astype(np.float64), gamma, beta, mu, var), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3), (3, 5), (4, 7), (7, 300), (101, 257), (64, 600)])
def test_batch_norm_forward_is_the_books_bit_for_bit(shape, dtype):
    """The training forward adds the rows in the book's order (NumPy's row-by-row reduction
    over the batch), however many rows its loops take per pass, serial ((7, 300)) or parallel
    ((64, 600)): every output is the reference's, bit for bit; so are dgamma and dbeta."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma = rng.standard_normal(shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    got = F.batch_norm_train(x, gamma, beta)
    for g, w in zip(got, R.batch_norm_train(x, gamma, beta)):
        np.testing.assert_array_equal(g, w)
    dout = rng.standard_normal(shape).astype(dtype)
    _, xn, _, _, std = got
    _, dgamma, dbeta = F.batch_norm_backward(dout, xn, std, gamma)
    _, want_dgamma, want_dbeta = R.batch_norm_backward(dout, xn, std, gamma)
    np.testing.assert_array_equal(dgamma, want_dgamma)
    np.testing.assert_array_equal(dbeta, want_dbeta)


def test_batch_norm_gradcheck():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 4))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    r = rng.standard_normal((5, 4))
    f = lambda _: float(np.sum(F.batch_norm_train(x, gamma, beta)[0] * r))  # noqa: E731
    out, xn, mu, var, std = F.batch_norm_train(x, gamma, beta)
    dx, dgamma, dbeta = F.batch_norm_backward(r, xn, std, gamma)
    np.testing.assert_allclose(dx, R.numerical_gradient(f, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dgamma, R.numerical_gradient(f, gamma), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dbeta, R.numerical_gradient(f, beta), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_parity_and_rng_stream(dtype):
    x = np.random.default_rng(3).standard_normal((6, 5, 7)).astype(dtype)
    x[0, 0, 0] = np.nan
    np.random.seed(11)
    out, mask = F.dropout(x, 0.3)
    after = np.random.rand()
    np.random.seed(11)
    rout, rmask = R.dropout_forward(x, 0.3)
    assert np.random.rand() == after  # same number of draws from the global RNG
    assert out.dtype == dtype
    assert np.array_equal(mask, rmask)
    np.testing.assert_array_equal(out, rout)
    dout = np.ones_like(x)
    np.testing.assert_array_equal(F.dropout_backward(dout, mask), R.dropout_backward(dout, rmask))
    ev, none = F.dropout(x, 0.3, train=False)
    assert none is None
    np.testing.assert_array_equal(ev, R.dropout_forward(x, 0.3, train=False)[0])


@pytest.mark.parametrize("stream", ["chunks", "stream", "np_rand"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [65536, 3 * 7 * 5003, 311, 5])
@pytest.mark.parametrize("skip", [0, 1, 623])
def test_dropout_mt19937_stream_is_numpys(dtype, size, skip, stream, restore_global_rng,
                                          monkeypatch):
    """The mask comes from our MT19937 kernel working on NumPy's global generator state in
    place (or, without that, from np.random.rand): the same mask as np.random.rand, the
    generator left in the same state (so the next draws, randn's cached Gaussian included,
    are the book's)."""
    if stream == "np_rand":
        monkeypatch.setattr(F, "_global_mt19937_state", lambda: None)
    else:
        assert F._global_mt19937_state() is not None  # NumPy >= 1.25 on x86/ARM
    if stream == "chunks":  # chunks of one 624-word block: many of them, and with an odd skip
        monkeypatch.setattr(F, "_DROPOUT_BLOCKS", 1)  # a word pair straddles every boundary
    x = np.random.default_rng(size).standard_normal(size).astype(dtype)
    x[:5] = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    results = []
    for impl in (F.dropout, R.dropout_forward):
        np.random.seed(2024)
        np.random.randn()  # leaves a cached Gaussian in the RandomState
        np.random.randint(0, 2**31, size=skip)  # odd word positions
        with np.errstate(invalid="ignore"):  # inf * 0 in the reference
            out, mask = impl(x, 0.4)
        results.append((out, mask, np.random.get_state(), np.random.randn(3), np.random.rand(4)))
    (o1, m1, s1, g1, r1), (o2, m2, s2, g2, r2) = results
    assert np.array_equal(m1, m2) and 0 < m1.sum() < size
    np.testing.assert_array_equal(o1, o2)
    assert s1[2] == s2[2] and np.array_equal(s1[1], s2[1]) and s1[3:] == s2[3:]
    assert np.array_equal(g1, g2) and np.array_equal(r1, r2)
    assert o1.dtype == dtype


@pytest.mark.parametrize("ratio", [0.0, 1.0, 0.4, 0.5 + 2.0**-40, 0.5 - 2.0**-53, 1e-300])
@pytest.mark.parametrize("size", [7, 200_003])
def test_dropout_mt19937_ratio_thresholds(ratio, size, restore_global_rng):
    """The kernel compares the draw's 53-bit integer with floor(ratio * 2**53) in two 32-bit
    halves: the same mask as ``np.random.rand(n) > ratio`` for ratios at the ends and at
    thresholds that only the second word decides."""
    x = np.ones(size, dtype=np.float32)
    np.random.seed(99)
    np.random.randint(0, 2**31, size=size % 3)
    _, mask = F.dropout(x, ratio)
    np.random.seed(99)
    np.random.randint(0, 2**31, size=size % 3)
    assert np.array_equal(mask, np.random.rand(size) > ratio)


def test_dropout_mt19937_second_word_decides(restore_global_rng):
    """A ratio equal to a draw's first-word part (``a * 2**26 / 2**53``): the element is kept
    exactly when its second word's ``b`` is positive, which only the low half of the compare
    sees."""
    np.random.seed(7)
    first = np.random.rand(1)
    np.random.seed(7)
    a = np.floor(first[0] * 2.0**27)
    _, mask = F.dropout(np.ones(1), a / 2.0**27)
    assert mask[0] == (first[0] > a / 2.0**27)
    np.random.seed(7)
    b_half = (first[0] * 2.0**53 - a * 2.0**26)  # b, the draw's low 26 bits
    _, mask = F.dropout(np.ones(1), (a * 2.0**26 + b_half) / 2.0**53)  # ratio == draw: dropped
    assert not mask[0]
    np.random.seed(7)
    _, mask = F.dropout(np.ones(1), (a * 2.0**26 + b_half - 1) / 2.0**53)  # just below: kept
    assert mask[0]


def test_dropout_mt19937_stream_two_threads(restore_global_rng):
    """Two threads drawing masks at once (under the generator's lock) get disjoint stretches of
    the one stream: together, the draws of the same calls made one after another."""
    import threading

    size = 131072
    x = np.ones(size)
    np.random.seed(5)
    masks = {0: [], 1: []}

    def work(k):
        for _ in range(6):
            masks[k].append(F.dropout(x, 0.5)[1])

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = np.random.get_state()
    np.random.seed(5)
    want = [np.random.rand(size) > 0.5 for _ in range(12)]
    assert np.random.get_state()[2] == after[2] and np.array_equal(np.random.get_state()[1], after[1])
    got = masks[0] + masks[1]
    # each mask is one of the sequential ones, and every sequential one was drawn once
    assert sorted(next(i for i, w in enumerate(want) if np.array_equal(w, g)) for g in got) == list(range(12))


def test_dropout_stream_follows_set_bit_generator(restore_global_rng):
    """A global generator replaced by np.random.set_bit_generator is used from then on; a
    non-MT19937 one falls back to np.random.rand (and still matches the book)."""
    old = np.random.get_bit_generator()
    x = np.ones(1000)
    try:
        for bg in (np.random.MT19937(7), np.random.PCG64(7)):
            np.random.set_bit_generator(bg)
            mask = F.dropout(x, 0.5)[1]
            np.random.set_bit_generator(type(bg)(7))
            assert np.array_equal(mask, np.random.rand(1000) > 0.5)
            assert (F._global_mt19937_state() is None) == isinstance(bg, np.random.PCG64)
    finally:
        np.random.set_bit_generator(old)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extremes(dtype):
    x = np.array([-1e4, -200, -90, -30, -1, 0, 1, 30, 90, 200, 1e4, np.inf, -np.inf, np.nan], dtype=dtype)
    with np.errstate(over="ignore"):
        want = R.sigmoid_forward(x.astype(np.float64))
    got = F.sigmoid(x)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype]["rtol"], atol=1e-30)


def test_same_result_one_and_max_threads():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 200))
    g, b = rng.standard_normal(200), rng.standard_normal(200)
    old = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        one = F.batch_norm_train(x, g, b) + (F.sigmoid(x),)
        fastnn.set_num_threads(old)
        many = F.batch_norm_train(x, g, b) + (F.sigmoid(x),)
    finally:
        fastnn.set_num_threads(old)
    assert all(np.array_equal(a, c) for a, c in zip(one, many))


@pytest.mark.parametrize("dtype", DTYPES)
def test_serial_and_parallel_twins_agree_bitwise(dtype):
    """Each ``*_serial_kernel`` (small inputs) gives exactly its parallel kernel's result."""
    from fastnn.kernels import batchnorm as bn
    from fastnn.kernels import elementwise as ew
    from fastnn.kernels import softmax as sm

    rng = np.random.default_rng(5)
    x = rng.standard_normal(40000).astype(dtype)
    x[7] = np.nan
    r = rng.random(40000)
    mask = x > 0

    def both(par, ser, make_outs, *args):
        o1, o2 = make_outs(), make_outs()
        res1, res2 = par(*args, *o1), ser(*args, *o2)
        for a, b in zip(o1, o2):
            assert np.array_equal(a, b, equal_nan=True), par.__name__
        if res1 is not None:
            assert res1 == res2 or (np.isnan(res1) and np.isnan(res2)), par.__name__

    like = lambda *dts: (lambda: tuple(np.empty(x.shape, d) for d in dts))  # noqa: E731
    both(ew.relu_forward_kernel, ew.relu_forward_serial_kernel, like(dtype, np.bool_), x)
    both(ew.sigmoid_forward_kernel, ew.sigmoid_forward_serial_kernel, like(dtype), x)
    both(ew.sigmoid_backward_kernel, ew.sigmoid_backward_serial_kernel, like(dtype), x, x)
    both(ew.dropout_forward_kernel, ew.dropout_forward_serial_kernel, like(dtype, np.bool_), x, r, 0.5)
    both(ew.dropout_backward_kernel, ew.dropout_backward_serial_kernel, like(dtype), x, mask)
    d1, d2 = x.copy(), x.copy()
    ew.relu_backward_kernel(d1, mask)
    ew.relu_backward_serial_kernel(d2, mask)
    assert np.array_equal(d1, d2, equal_nan=True)

    z = x.reshape(400, 100)
    labels = rng.integers(0, 100, 400).astype(np.intp)
    onehot = np.eye(100, dtype=dtype)[labels]
    eps = dtype(1e-7)
    both(sm.softmax_forward_kernel, sm.softmax_forward_serial_kernel, lambda: (np.empty_like(z),), z)
    rows = lambda: (np.empty_like(z), np.empty(400, dtype))  # noqa: E731
    both(sm.softmax_cross_entropy_forward_kernel, sm.softmax_cross_entropy_forward_serial_kernel,
         rows, z, labels, eps)
    rows1 = lambda: (np.empty_like(z), np.empty(401, dtype))  # noqa: E731  (losses, then mean)
    for t in (onehot, np.empty((0, 100), dtype)):
        both(sm.softmax_cross_entropy_fused_kernel, sm.softmax_cross_entropy_fused_serial_kernel,
             rows1, z, labels.copy(), t, eps)
    # rows of 10: the transposed narrow path, in 16-row blocks against 128-row passes
    z10 = x.reshape(4000, 10)
    lab10 = rng.integers(-1, 11, 4000).astype(np.intp)  # some out of range: skipped rows
    hot10 = np.eye(10, dtype=dtype)[np.clip(lab10, 0, 9)]
    hot10[3, 4] = np.nan
    rows10 = lambda: (np.empty_like(z10), np.empty(4001, dtype))  # noqa: E731
    for t, lab in ((hot10, np.empty(0, np.intp)), (np.empty((0, 10), dtype), lab10)):
        for e in (eps, dtype(0)):
            both(sm.softmax_cross_entropy_fused_kernel,
                 sm.softmax_cross_entropy_fused_serial_kernel, rows10, z10, lab.copy(), t, e)

    b = np.abs(x[:100]) + 0.5
    stats = lambda: (np.empty_like(z), np.empty_like(z), np.empty(100, dtype),  # noqa: E731
                     np.empty(100, dtype), np.empty(100, dtype))
    both(bn.batchnorm_forward_train_kernel, bn.batchnorm_forward_train_serial_kernel, stats,
         z, b, b, dtype(1e-6))
    grads = lambda: (np.empty_like(z), np.empty(100, dtype), np.empty(100, dtype))  # noqa: E731
    both(bn.batchnorm_backward_kernel, bn.batchnorm_backward_serial_kernel, grads, z, z, b, b)


def test_regressions_found_by_fuzzing():
    """float64 logits + float32 one-hot: float64 gradient (promotion, as the book); 0-d dropout."""
    loss, dx = F.softmax_cross_entropy_with_grad(np.array([[0.5, -1.0, 2.0]]), np.array([[0, 0, 1]], np.float32))
    assert dx.dtype == np.float64
    y = R.softmax(np.array([[0.5, -1.0, 2.0]]))
    np.testing.assert_allclose(dx, R.softmax_cross_entropy_backward(y, np.array([[0, 0, 1.0]])), rtol=1e-12)
    np.random.seed(0)
    out, mask = F.dropout(np.array(2.0), 0.5)
    np.random.seed(0)
    want, wmask = R.dropout_forward(np.array(2.0), 0.5)
    assert out.shape == () and out == want and mask == wmask
