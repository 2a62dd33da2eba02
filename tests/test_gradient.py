"""fastnn.gradient: the book's central differences, in place, for any shape and strides."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import reference
from fastnn.gradient import (
    _numerical_gradient_1d,
    _numerical_gradient_no_batch,
    numerical_gradient,
    numerical_gradient_2d,
)


def _rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def book_numerical_gradient(f, x):
    """The book's ``common/gradient.py::numerical_gradient``, verbatim."""
    h = 1e-4
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        idx = it.multi_index
        tmp_val = x[idx]
        x[idx] = float(tmp_val) + h
        fxh1 = f(x)
        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val
        it.iternext()
    return grad


SHAPES = [(5,), (3, 4), (2, 3, 2, 2)]


@pytest.mark.parametrize("shape", SHAPES)
def test_quadratic_matches_reference_and_book(shape):
    x = _rand(shape)
    A = _rand(shape, seed=1)

    def f(z):
        return np.sum(A * z**2) + np.sum(z)

    before = x.copy()
    g = numerical_gradient(f, x)
    assert g.shape == shape and g.dtype == np.float64
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(g, book_numerical_gradient(f, x.copy()))
    np.testing.assert_allclose(g, reference.numerical_gradient(f, x.copy()), rtol=1e-10)
    np.testing.assert_allclose(g, 2 * A * x + 1, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
def test_function_reading_shared_weight(shape):
    """The book's pattern: ``f`` ignores its argument and reads the weight ``x`` is."""
    W = _rand(shape, seed=2)
    x_in = _rand(shape, seed=3)

    def loss(_):
        return 0.5 * np.sum((W * x_in) ** 2)

    before = W.copy()
    g = numerical_gradient(loss, W)
    np.testing.assert_array_equal(W, before)  # restored bit for bit
    np.testing.assert_allclose(g, W * x_in**2, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(g, book_numerical_gradient(loss, W))


def test_dict_of_params_pattern():
    """``numerical_gradient(lambda W: net.loss(x, t), net.params['W1'])`` style."""
    params = {"W1": _rand((3, 2), seed=4), "b1": np.zeros(2)}
    x = _rand((4, 3), seed=5)

    def net_loss():
        return np.sum(np.tanh(x @ params["W1"] + params["b1"]))

    grads = {k: numerical_gradient(lambda _: net_loss(), v) for k, v in params.items()}
    z = 1 - np.tanh(x @ params["W1"] + params["b1"]) ** 2
    np.testing.assert_allclose(grads["W1"], x.T @ z, rtol=1e-6)
    np.testing.assert_allclose(grads["b1"], z.sum(axis=0), rtol=1e-6)


def test_non_contiguous_view_written_through():
    A = _rand((4, 6), seed=6)
    base = A.copy()
    view = A[:, ::2]
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    seen = []

    def f(_):
        # reads the *base* array: only correct if the perturbation reaches A itself
        seen.append(A[1, 2] - base[1, 2])
        return np.sum(A**3)

    g = numerical_gradient(f, view)
    np.testing.assert_array_equal(A, base)
    # central differences of a cubic are off by h**2 = 1e-8
    np.testing.assert_allclose(g, 3 * base[:, ::2] ** 2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g[:, 2], 3 * base[:, 4] ** 2, rtol=1e-6, atol=1e-7)
    assert g.shape == view.shape
    assert max(abs(v) for v in seen) == pytest.approx(1e-4)  # A[1, 2] was perturbed in A


def test_fortran_ordered_and_transposed():
    A = np.asfortranarray(_rand((3, 5), seed=7))
    g = numerical_gradient(lambda _: np.sum(A**2), A)
    np.testing.assert_allclose(g, 2 * A, rtol=1e-6)
    B = _rand((3, 5), seed=8)
    gt = numerical_gradient(lambda _: np.sum(np.arange(15).reshape(3, 5) * B), B.T)
    np.testing.assert_allclose(gt, np.arange(15).reshape(3, 5).T, rtol=1e-7, atol=1e-9)


def test_float32_stays_float32_and_restored():
    x = _rand((3, 3), np.float32, seed=9)
    before = x.copy()
    g = numerical_gradient(lambda z: np.sum(z.astype(np.float64) ** 2), x)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(g, book_numerical_gradient(lambda z: np.sum(z.astype(np.float64) ** 2), x))
    np.testing.assert_allclose(g, 2 * x, rtol=1e-3)


def test_zero_d_array():
    x = np.array(3.0)
    g = numerical_gradient(lambda z: float(z) ** 2, x)
    assert g.shape == () and g == pytest.approx(6.0)
    assert x == 3.0


def test_special_values_restored_exactly():
    x = np.array([np.nan, -0.0, np.inf, 1e308, 5e-324])
    before = x.copy()
    numerical_gradient(lambda z: 0.0, x)
    np.testing.assert_array_equal(x, before)
    assert np.signbit(x[1])


def test_restores_element_when_f_raises():
    x = np.arange(4.0)
    calls = []

    def f(z):
        calls.append(1)
        if len(calls) == 4:  # second element, first evaluation
            raise RuntimeError("boom")
        return 0.0

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x)
    np.testing.assert_array_equal(x, np.arange(4.0))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_input_is_type_error(dtype):
    with pytest.raises(TypeError, match="numerical_gradient: x has dtype"):
        numerical_gradient(lambda z: 0.0, np.ones(3, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float16, np.complex128])
def test_float16_complex_rejected(dtype):
    with pytest.raises(TypeError, match=str(np.dtype(dtype))):
        numerical_gradient(lambda z: 0.0, np.ones(3, dtype=dtype))


def test_non_array_and_read_only_rejected():
    with pytest.raises(TypeError, match="numpy.ndarray"):
        numerical_gradient(lambda z: 0.0, [1.0, 2.0])
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numerical_gradient(lambda z: 0.0, x)


# ---------------------------------------------------------------- numerical_gradient_2d
def book_numerical_gradient_2d(f, X):
    """The book's ``ch04/gradient_2d.py``, verbatim."""

    def no_batch(f, x):
        h = 1e-4
        grad = np.zeros_like(x)
        for idx in range(x.size):
            tmp_val = x[idx]
            x[idx] = float(tmp_val) + h
            fxh1 = f(x)
            x[idx] = tmp_val - h
            fxh2 = f(x)
            grad[idx] = (fxh1 - fxh2) / (2 * h)
            x[idx] = tmp_val
        return grad

    if X.ndim == 1:
        return no_batch(f, X)
    grad = np.zeros_like(X)
    for idx, x in enumerate(X):
        grad[idx] = no_batch(f, x)
    return grad


def function_2(x):
    if x.ndim == 1:
        return np.sum(x**2)
    return np.sum(x**2, axis=1)


@pytest.mark.parametrize("shape", [(2,), (6, 2), (4, 3)])
def test_numerical_gradient_2d_matches_book(shape):
    X = _rand(shape, seed=10)
    before = X.copy()
    g = numerical_gradient_2d(function_2, X)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_array_equal(g, book_numerical_gradient_2d(function_2, X.copy()))
    np.testing.assert_allclose(g, 2 * X, rtol=1e-6)


def test_numerical_gradient_2d_calls_f_with_rows():
    X = _rand((3, 4), seed=11)
    shapes = set()

    def f(x):
        shapes.add(x.shape)
        return np.sum(x**2)

    numerical_gradient_2d(f, X)
    assert shapes == {(4,)}


def test_1d_helpers():
    x = _rand(5, seed=12)
    for helper in (_numerical_gradient_1d, _numerical_gradient_no_batch):
        np.testing.assert_allclose(helper(lambda z: np.sum(z**2), x), 2 * x, rtol=1e-6)
    with pytest.raises(TypeError):
        _numerical_gradient_1d(lambda z: 0.0, np.arange(3))
    with pytest.raises(TypeError, match="numerical_gradient_2d"):
        numerical_gradient_2d(lambda z: 0.0, np.arange(6).reshape(2, 3))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**16),
    step=st.integers(1, 2),
)
def test_matches_reference_property(shape, dtype, seed, step):
    base = _rand(shape[:-1] + (shape[-1] * step,), dtype, seed=seed)
    x = base[..., ::step]
    A = _rand(x.shape, np.float64, seed=seed + 1)

    def f(z):
        return float(np.sum(A * z.astype(np.float64) ** 2))

    before = base.copy()
    g = numerical_gradient(f, x)
    np.testing.assert_array_equal(base, before)
    assert g.dtype == dtype and g.shape == x.shape
    np.testing.assert_array_equal(g, book_numerical_gradient(f, x.copy()))
    np.testing.assert_allclose(g, reference.numerical_gradient(f, x.copy()), rtol=1e-3, atol=1e-2)
