"""Gradient checks: every backward op of :mod:`fastnn.functional` against central differences.

For a forward op ``f`` and a fixed random ``r`` the scalar ``L = sum(f(...) * r)`` has gradient
``backward(r, ...)``; we compare it with :func:`fastnn.reference.numerical_gradient` (the book's
central difference, h = 1e-4) in float64. The convolution and pooling geometries are the shared
tables of ``conftest.py``.

Tolerance: relative 1e-6 elementwise, plus an absolute floor of 1e-8 times the gradient's
largest entry (central differences of a function with O(1) values carry ~1e-12 absolute noise).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import functional as F
from fastnn.reference import numerical_gradient


def assert_grad(analytic, numeric, rtol=1e-6):
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    assert analytic.shape == numeric.shape
    assert analytic.dtype == np.float64
    scale = max(1e-3, float(np.max(np.abs(numeric))))
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=1e-8 * scale)
    # guard against a vacuous check (both zero)
    assert np.any(numeric != 0)


# --------------------------------------------------------------------------- convolution
def _conv_setup(c, rng):
    x = rng.standard_normal(c.x_shape)
    W = rng.standard_normal(c.w_shape)
    b = rng.standard_normal(c.FN)
    r = rng.standard_normal(c.out_shape)
    return x, W, b, r


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_conv2d_grad_x(conv_case, algorithm, rng):
    c = conv_case
    x, W, b, r = _conv_setup(c, rng)

    def f(_):
        return np.sum(F.conv2d(x, W, b, c.stride, c.pad, algorithm=algorithm) * r)

    num = numerical_gradient(f, x)
    assert_grad(F.conv2d_backward_data(r, W, c.x_shape, c.stride, c.pad, algorithm=algorithm), num)


@pytest.mark.parametrize("algorithm", ["direct", "gemm"])
def test_conv2d_grad_W(conv_case, algorithm, rng):
    c = conv_case
    x, W, b, r = _conv_setup(c, rng)

    def f(_):
        return np.sum(F.conv2d(x, W, b, c.stride, c.pad, algorithm=algorithm) * r)

    num = numerical_gradient(f, W)
    assert_grad(F.conv2d_backward_weight(x, r, W.shape, c.stride, c.pad, algorithm=algorithm), num)


def test_conv2d_grad_b(conv_case, rng):
    c = conv_case
    x, W, b, r = _conv_setup(c, rng)
    num = numerical_gradient(lambda _: np.sum(F.conv2d(x, W, b, c.stride, c.pad) * r), b)
    assert_grad(F.conv2d_backward_bias(r), num)


def test_im2col_grad(conv_case, rng):
    """col2im is the gradient of im2col."""
    c = conv_case
    x = rng.standard_normal(c.x_shape)
    col = F.im2col(x, c.FH, c.FW, c.stride, c.pad)
    r = rng.standard_normal(col.shape)
    num = numerical_gradient(lambda _: np.sum(F.im2col(x, c.FH, c.FW, c.stride, c.pad) * r), x)
    assert_grad(F.col2im(r, c.x_shape, c.FH, c.FW, c.stride, c.pad), num)


# --------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive", "negative"])
def test_max_pool2d_grad(pool_case, sign, rng):
    """Distinct values 0.01 apart, so the maximum does not move under h = 1e-4. The negative
    variant makes the (ignored) padding larger than every real cell."""
    c = pool_case
    size = int(np.prod(c.x_shape))
    x = sign * (1.0 + 0.01 * rng.permutation(size).reshape(c.x_shape))
    r = rng.standard_normal(c.out_shape)
    out, am = F.max_pool2d(x, c.ph, c.pw, c.stride, c.pad, return_argmax=True)

    def f(_):
        return np.sum(F.max_pool2d(x, c.ph, c.pw, c.stride, c.pad) * r)

    num = numerical_gradient(f, x)
    assert_grad(F.max_pool2d_backward(r, am, c.x_shape, c.ph, c.pw, c.stride, c.pad), num)


# --------------------------------------------------------------------------- softmax loss
def _targets(kind, labels, K):
    if kind == "labels":
        return labels
    if kind == "labels_col":
        return labels.reshape(-1, 1)
    return np.eye(K)[labels]


@pytest.mark.parametrize("kind", ["labels", "labels_col", "onehot"])
@pytest.mark.parametrize("shape", [(5, 4), (1, 3), (3, 10)])
def test_softmax_cross_entropy_grad_exact_loss(kind, shape, rng):
    """With eps=0 the loss is exactly logsumexp(x) - x[t], whose gradient is (y - t) / N."""
    N, K = shape
    x = 2 * rng.standard_normal(shape)
    t = _targets(kind, rng.integers(0, K, N), K)
    num = numerical_gradient(lambda _: float(F.softmax_cross_entropy(x, t, eps=0)[0]), x)
    _, y = F.softmax_cross_entropy(x, t, eps=0)
    assert_grad(F.softmax_cross_entropy_backward(y, t), num)


@pytest.mark.parametrize("kind", ["labels", "onehot"])
def test_softmax_cross_entropy_grad_book_eps(kind, rng):
    """With the book's eps=1e-7 the true gradient is (y - t)/N scaled by y_t / (y_t + eps): the
    backward pass (the book's formula) agrees to ~eps / y_t (here < 1e-5 relative)."""
    N, K = 4, 3
    x = 0.5 * rng.standard_normal((N, K))
    t = _targets(kind, rng.integers(0, K, N), K)
    num = numerical_gradient(lambda _: float(F.softmax_cross_entropy(x, t)[0]), x)
    _, y = F.softmax_cross_entropy(x, t)
    assert_grad(F.softmax_cross_entropy_backward(y, t), num, rtol=1e-5)


# --------------------------------------------------------------------------- element-wise
def test_relu_grad(rng):
    """Inputs kept at least 0.01 away from the kink at 0."""
    x = rng.uniform(0.01, 2.0, (3, 4, 5)) * rng.choice([-1.0, 1.0], (3, 4, 5))
    r = rng.standard_normal(x.shape)
    num = numerical_gradient(lambda _: np.sum(F.relu(x)[0] * r), x)
    _, mask = F.relu(x)
    assert_grad(F.relu_backward(r.copy(), mask), num)


def test_sigmoid_grad(rng):
    x = 3 * rng.standard_normal((3, 4, 5))
    r = rng.standard_normal(x.shape)
    num = numerical_gradient(lambda _: np.sum(F.sigmoid(x) * r), x)
    assert_grad(F.sigmoid_backward(r, F.sigmoid(x)), num)


def test_softmax_grad_through_cross_entropy(rng):
    """The unfused path, cross_entropy(softmax(x), eps=0), has the fused op's gradient."""
    x = rng.standard_normal((3, 4))
    t = rng.integers(0, 4, 3)
    num = numerical_gradient(lambda _: float(F.cross_entropy(F.softmax(x), t, eps=0.0)), x)
    _, y = F.softmax_cross_entropy(x, t, eps=0)
    assert_grad(F.softmax_cross_entropy_backward(y, t), num)
