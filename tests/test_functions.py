"""fastnn.functions against the book's ``common/functions.py`` formulas, written out inline."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn.functions as fn

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-12, np.float32: 2e-6}


# ---------------------------------------------------------------- the book's formulas (oracle)
def book_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def book_softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def book_cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def _x(shape, dtype, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


SHAPES = [(7,), (4, 6)]


# ---------------------------------------------------------------- activations
def test_identity_returns_same_object():
    x = np.arange(3.0)
    assert fn.identity_function(x) is x


@pytest.mark.parametrize("dtype", DTYPES + [np.int64])
def test_step_function_returns_ints(dtype):
    x = np.array([-2, -0.0, 0, 0.5, 3]).astype(dtype)
    out = fn.step_function(x)
    assert out.dtype == np.dtype(int)
    np.testing.assert_array_equal(out, np.array(x > 0, dtype=int))
    np.testing.assert_array_equal(out, [0, 0, 0, int(dtype != np.int64), 1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid_and_grad(dtype, shape):
    x = _x(shape, dtype)
    out = fn.sigmoid(x)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out, book_sigmoid(x), rtol=RTOL[dtype])
    g = fn.sigmoid_grad(x)
    assert g.dtype == dtype
    np.testing.assert_allclose(g, (1.0 - book_sigmoid(x)) * book_sigmoid(x), rtol=RTOL[dtype] * 4)


def test_sigmoid_extremes_and_scalar():
    out = fn.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])
    s = fn.sigmoid(0.0)
    assert np.ndim(s) == 0 and s == 0.5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_relu(dtype, shape):
    x = _x(shape, dtype)
    x.flat[0] = 0
    out = fn.relu(x)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_array_equal(out, np.maximum(0, x))
    assert fn.relu(x) is not x  # a new array
    np.testing.assert_array_equal(fn.relu(np.array([np.nan, -1.0])), [np.nan, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_grad_is_one_at_zero(dtype):
    x = np.array([[-1.5, 0.0], [-0.0, 2.0]], dtype=dtype)
    g = fn.relu_grad(x)
    expected = np.zeros_like(x)
    expected[x >= 0] = 1
    assert g.dtype == dtype
    np.testing.assert_array_equal(g, expected)
    np.testing.assert_array_equal(g, [[0, 1], [1, 1]])


def test_relu_grad_int_input_gives_float64():
    g = fn.relu_grad(np.array([-1, 0, 4]))
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_and_leaky_relu(dtype):
    x = _x((3, 5), dtype)
    t = fn.tanh(x)
    assert t.dtype == dtype
    np.testing.assert_allclose(t, np.tanh(x), rtol=RTOL[dtype])
    lr = fn.leaky_relu(x)
    assert lr.dtype == dtype
    np.testing.assert_array_equal(lr, np.where(x > 0, x, dtype(0.01) * x))
    lr2 = fn.leaky_relu(x, alpha=0.2)
    np.testing.assert_array_equal(lr2, np.where(x > 0, x, dtype(0.2) * x))


def test_leaky_relu_bad_alpha():
    with pytest.raises(TypeError, match="leaky_relu.*alpha"):
        fn.leaky_relu(np.ones(2), alpha="big")


# ---------------------------------------------------------------- softmax / losses
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(2, 3, 4)])
def test_softmax(dtype, shape):
    x = _x(shape, dtype)
    y = fn.softmax(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, book_softmax(x), rtol=RTOL[dtype] * 5)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


def test_softmax_huge_inputs_are_finite():
    y = fn.softmax(np.array([[1000.0, 1000.0], [-1e4, 0.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5], [0.0, 1.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_and_mean_squared_error(dtype):
    y = _x((4, 3), dtype, seed=1)
    t = _x((4, 3), dtype, seed=2)
    sse = fn.sum_squared_error(y, t)
    np.testing.assert_allclose(sse, 0.5 * np.sum((y - t) ** 2), rtol=RTOL[dtype])
    mse = fn.mean_squared_error(y, t)
    np.testing.assert_allclose(mse, 0.5 * np.sum((y - t) ** 2) / 4, rtol=RTOL[dtype])
    # a single sample: N = 1, equal to the sum
    np.testing.assert_allclose(fn.mean_squared_error(y[0], t[0]), fn.sum_squared_error(y[0], t[0]))


def test_squared_error_book_example():
    # ch04: t = "2", y puts 0.6 on it
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
    assert fn.sum_squared_error(np.array(y), np.array(t)) == pytest.approx(0.0975)
    assert fn.mean_squared_error(np.array(y), np.array(t)) == pytest.approx(0.0975)
    assert fn.cross_entropy_error(np.array(y), np.array(t)) == pytest.approx(0.510825457099338)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("one_hot", [True, False])
def test_cross_entropy_error_2d(dtype, one_hot):
    rng = np.random.default_rng(3)
    y = book_softmax(_x((5, 4), np.float64)).astype(dtype)
    labels = rng.integers(0, 4, size=5)
    t = np.eye(4)[labels] if one_hot else labels
    got = fn.cross_entropy_error(y, t)
    np.testing.assert_allclose(got, book_cross_entropy_error(y, t), rtol=RTOL[dtype] * 5)
    if not one_hot:  # (N, 1) labels, as the book's ch07 gradient check passes
        np.testing.assert_allclose(
            fn.cross_entropy_error(y, labels.reshape(-1, 1)),
            book_cross_entropy_error(y, labels),
            rtol=RTOL[dtype] * 5,
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_error_1d(dtype):
    y = book_softmax(_x((6,), np.float64)).astype(dtype)
    t = np.zeros(6)
    t[4] = 1
    np.testing.assert_allclose(fn.cross_entropy_error(y, t), book_cross_entropy_error(y, t), rtol=RTOL[dtype])
    np.testing.assert_allclose(
        fn.cross_entropy_error(y, np.array(4)), -np.log(y[4] + 1e-7), rtol=RTOL[dtype]
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("one_hot", [True, False])
def test_softmax_loss(dtype, shape, one_hot):
    X = _x(shape, dtype, seed=5)
    K = shape[-1]
    labels = np.random.default_rng(6).integers(0, K, size=shape[0] if len(shape) == 2 else 1)
    if len(shape) == 1:
        t = np.eye(K)[labels[0]] if one_hot else labels[0]
    else:
        t = np.eye(K)[labels] if one_hot else labels
    expected = book_cross_entropy_error(book_softmax(X), np.asarray(t))
    np.testing.assert_allclose(fn.softmax_loss(X, t), expected, rtol=RTOL[dtype] * 10)


def test_softmax_loss_huge_logits_finite():
    loss = fn.softmax_loss(np.array([[1e4, 0.0, -1e4]]), np.array([1]))
    assert np.isfinite(loss)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    k=st.integers(2, 6),  # K = 1 with labels is ambiguous in the book (t.size == y.size)
    scale=st.floats(0.01, 50.0),
    seed=st.integers(0, 2**16),
)
def test_softmax_and_loss_match_book_property(n, k, scale, seed):
    X = _x((n, k), np.float64, seed=seed, scale=scale)
    t = np.random.default_rng(seed).integers(0, k, size=n)
    y = fn.softmax(X)
    np.testing.assert_allclose(y, book_softmax(X), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(
        fn.softmax_loss(X, t), book_cross_entropy_error(book_softmax(X), t), rtol=1e-9, atol=1e-12
    )


# ---------------------------------------------------------------- dtype policy
@pytest.mark.parametrize(
    "func",
    [fn.sigmoid, fn.relu, fn.softmax, fn.tanh, fn.leaky_relu, fn.relu_grad, fn.sigmoid_grad],
)
@pytest.mark.parametrize("bad", [np.float16, np.complex128])
def test_rejects_float16_and_complex(func, bad):
    with pytest.raises(TypeError, match=str(np.dtype(bad))):
        func(np.ones(3, dtype=bad))


@pytest.mark.parametrize("func", [fn.sum_squared_error, fn.mean_squared_error])
def test_losses_reject_complex(func):
    with pytest.raises(TypeError, match=func.__name__):
        func(np.ones(3, dtype=np.complex128), np.ones(3))


def test_int_inputs_become_float64():
    x = np.array([-2, 0, 3])
    for func in (fn.sigmoid, fn.relu, fn.tanh, fn.leaky_relu, fn.softmax):
        assert func(x).dtype == np.float64, func.__name__
    assert np.asarray(fn.sum_squared_error(x, np.zeros(3, dtype=int))).dtype == np.float64


def test_mean_squared_error_empty_batch():
    with pytest.raises(ValueError, match="mean_squared_error"):
        fn.mean_squared_error(np.zeros((0, 3)), np.zeros((0, 3)))


def test_star_import_exports_book_names():
    ns = {}
    exec("from fastnn.functions import *", ns)
    for name in (
        "identity_function", "step_function", "sigmoid", "sigmoid_grad", "relu", "relu_grad",
        "softmax", "sum_squared_error", "mean_squared_error", "cross_entropy_error",
        "softmax_loss", "tanh", "leaky_relu",
    ):
        assert name in ns
