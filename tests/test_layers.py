"""The layer contract of ``../shared/CONTRACT.md`` for :mod:`fastnn.layers`.

The book's algorithms (``common/layers.py`` of *Deep Learning from Scratch*) are written out
inline here where the test needs them (BatchNormalization, Dropout, SoftmaxWithLoss), so the
comparison does not depend on fastnn's own code.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import reference as R
from fastnn.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from fastnn.reference import numerical_gradient


def close(got, want, rtol=1e-10, atol=1e-12):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


# --------------------------------------------------------------------------- the book, inline
def book_softmax(x):
    if x.ndim == 2:
        x = x.T
        x = x - np.max(x, axis=0)
        y = np.exp(x) / np.sum(np.exp(x), axis=0)
        return y.T
    x = x - np.max(x)
    return np.exp(x) / np.sum(np.exp(x))


def book_cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def book_softmax_with_loss(x, t):
    """(loss, dx) of the book's SoftmaxWithLoss for labels (N,) or one-hot t."""
    y = book_softmax(x)
    loss = book_cross_entropy_error(y, t)
    batch_size = t.shape[0]
    if t.size == y.size:
        dx = (y - t) / batch_size
    else:
        dx = y.copy()
        dx[np.arange(batch_size), t] -= 1
        dx = dx / batch_size
    return loss, dx


class BookBatchNormalization:
    """The book's BatchNormalization, verbatim in substance."""

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xc = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            N, C, H, W = x.shape
            x = x.reshape(N, -1)
        out = self.__forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def __forward(self, x, train_flg):
        if self.running_mean is None:
            N, D = x.shape
            self.running_mean = np.zeros(D)
            self.running_var = np.zeros(D)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc = xc
            self.xn = xn
            self.std = std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / (np.sqrt(self.running_var + 10e-7))
        return self.gamma * xn + self.beta

    def backward(self, dout):
        if dout.ndim != 2:
            N, C, H, W = dout.shape
            dout = dout.reshape(N, -1)
        dx = self.__backward(dout)
        return dx.reshape(*self.input_shape)

    def __backward(self, dout):
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size
        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx


# --------------------------------------------------------------------------- Convolution
def test_convolution_matches_reference(conv_case, rng):
    c = conv_case
    x = rng.standard_normal(c.x_shape)
    W = rng.standard_normal(c.w_shape)
    b = rng.standard_normal(c.FN)
    layer = Convolution(W, b, stride=c.stride, pad=c.pad)
    out = layer.forward(x)
    close(out, R.conv2d_forward(x, W, b, c.stride, c.pad))
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    close(dx, R.conv2d_backward_data(dout, W, c.x_shape, c.stride, c.pad))
    close(layer.dW, R.conv2d_backward_weight(x, dout, (c.FH, c.FW), c.stride, c.pad))
    close(layer.db, R.conv2d_backward_bias(dout))
    assert layer.dW.shape == W.shape and layer.db.shape == b.shape


@pytest.mark.parametrize("algorithm", ["auto", "direct", "gemm"])
def test_convolution_keeps_parameters_by_reference(algorithm, rng):
    W = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 5, 5))
    kwargs = {} if algorithm == "auto" else {"algorithm": algorithm}
    layer = Convolution(W, b, stride=1, pad=1, **kwargs)
    assert layer.W is W and layer.b is b
    out = layer.forward(x)
    layer.backward(np.ones_like(out))
    assert layer.W is W and layer.b is b
    # an optimizer updates in place; the next forward/backward must see it
    W -= 0.1
    b += 0.5
    out2 = layer.forward(x)
    close(out2, R.conv2d_forward(x, W, b, 1, 1))
    assert not np.allclose(out2, out)
    dout = rng.standard_normal(out2.shape)
    close(layer.backward(dout), R.conv2d_backward_data(dout, W, x.shape, 1, 1))
    # and the gradient arrays are the layer's own, not the parameters
    assert layer.dW is not W and layer.db is not b


def test_convolution_float32_stays_float32(rng):
    W = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    layer = Convolution(W, b, stride=2, pad=1)
    out = layer.forward(x)
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == layer.dW.dtype == layer.db.dtype == np.float32
    assert layer.W is W and W.dtype == np.float32
    close(out, R.conv2d_forward(x.astype(float), W.astype(float), b.astype(float), 2, 1), 1e-4, 1e-5)


def test_convolution_bad_input_names_the_op(rng):
    layer = Convolution(rng.standard_normal((3, 2, 3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="^conv2d:"):
        layer.forward(np.zeros((2, 3, 5, 5)))  # 3 channels, W expects 2


def test_convolution_gradient_check(rng):
    """Convolution + sum(out * r): layer gradients vs central differences on W, b and x."""
    W = rng.standard_normal((2, 2, 3, 2))
    b = rng.standard_normal(2)
    x = rng.standard_normal((2, 2, 5, 4))
    layer = Convolution(W, b, stride=2, pad=1)
    r = rng.standard_normal(layer.forward(x).shape)

    def f(_):
        return np.sum(layer.forward(x) * r)

    num_W, num_b, num_x = numerical_gradient(f, W), numerical_gradient(f, b), numerical_gradient(f, x)
    layer.forward(x)
    dx = layer.backward(r)
    close(layer.dW, num_W, 1e-6, 1e-8)
    close(layer.db, num_b, 1e-6, 1e-8)
    close(dx, num_x, 1e-6, 1e-8)


# --------------------------------------------------------------------------- Pooling
def test_pooling_matches_reference(pool_case, rng):
    c = pool_case
    x = rng.standard_normal(c.x_shape)
    layer = Pooling(c.ph, c.pw, stride=c.stride, pad=c.pad)
    out = layer.forward(x)
    ref_out, ref_am = R.max_pool2d_forward(x, c.ph, c.pw, c.stride, c.pad)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(np.asarray(layer.arg_max).reshape(ref_am.shape), ref_am)
    dout = rng.standard_normal(out.shape)
    close(layer.backward(dout), R.max_pool2d_backward(dout, ref_am, c.x_shape, c.ph, c.pw, c.stride, c.pad))


def test_pooling_book_defaults_and_padding(rng):
    """Default stride 2; with pad 1 on an all-negative input the padding never wins (the
    book's zero padding would give 0 in every border window)."""
    x = -1.0 - rng.random((2, 3, 4, 4))
    out = Pooling(2, 2).forward(x)
    assert out.shape == (2, 3, 2, 2)
    layer = Pooling(2, 2, stride=2, pad=1)
    out = layer.forward(x)
    assert out.shape == (2, 3, 3, 3)
    assert np.all(out <= -1.0)
    np.testing.assert_array_equal(out, R.max_pool2d_forward(x, 2, 2, 2, 1)[0])
    dx = layer.backward(np.ones_like(out))
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx.sum(), out.size)


def test_pooling_float32_stays_float32(rng):
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    layer = Pooling(2, 2, 2)
    out = layer.forward(x)
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == np.float32


# --------------------------------------------------------------------------- Relu / Sigmoid
def test_relu_mask_and_in_place_backward(rng):
    x = rng.standard_normal((3, 4))
    x[0, :3] = [0.0, -0.0, 1e-300]
    x_before = x.copy()
    layer = Relu()
    out = layer.forward(x)
    np.testing.assert_array_equal(x, x_before)  # forward does not touch x
    np.testing.assert_array_equal(layer.mask, x <= 0)
    assert layer.mask[0, 0] and layer.mask[0, 1] and not layer.mask[0, 2]
    np.testing.assert_array_equal(out, np.where(x <= 0, 0.0, x))
    dout = rng.standard_normal(x.shape)
    want = np.where(x <= 0, 0.0, dout)
    dx = layer.backward(dout)
    assert dx is dout
    np.testing.assert_array_equal(dout, want)


def test_relu_float32_stays_float32(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    layer = Relu()
    out = layer.forward(x)
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == np.float32


def test_sigmoid_keeps_output(rng):
    x = rng.standard_normal((3, 5))
    layer = Sigmoid()
    out = layer.forward(x)
    close(out, 1 / (1 + np.exp(-x)))
    assert layer.out is out
    dout = rng.standard_normal(x.shape)
    close(layer.backward(dout), dout * (1.0 - out) * out)


# --------------------------------------------------------------------------- Affine
@pytest.mark.parametrize("x_shape", [(4, 6), (3, 1, 2, 3), (2, 3, 2, 1), (1, 6)])
def test_affine_flatten_and_gradients(x_shape, rng):
    W = rng.standard_normal((6, 5))
    b = rng.standard_normal(5)
    x = rng.standard_normal(x_shape)
    layer = Affine(W, b)
    out = layer.forward(x)
    x2 = x.reshape(x.shape[0], -1)
    close(out, x2 @ W + b)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    assert dx.shape == x.shape
    close(dx, (dout @ W.T).reshape(x.shape))
    close(layer.dW, x2.T @ dout)
    close(layer.db, dout.sum(axis=0))


def test_affine_keeps_parameters_by_reference(rng):
    W = rng.standard_normal((4, 3))
    b = rng.standard_normal(3)
    x = rng.standard_normal((2, 4))
    layer = Affine(W, b)
    assert layer.W is W and layer.b is b
    layer.forward(x)
    layer.backward(np.ones((2, 3)))
    assert layer.W is W and layer.b is b
    W -= 0.1
    b *= 2.0
    close(layer.forward(x), x @ W + b)


# --------------------------------------------------------------------------- SoftmaxWithLoss
def test_softmax_with_loss_matches_book_labels_and_onehot(rng):
    x = 2 * rng.standard_normal((5, 4))
    lab = rng.integers(0, 4, 5)
    onehot = np.eye(4)[lab]
    for t in (lab, onehot):
        layer = SoftmaxWithLoss()
        loss = layer.forward(x, t)
        want_loss, want_dx = book_softmax_with_loss(x, t)
        close(loss, want_loss)
        close(layer.backward(), want_dx)


def test_softmax_with_loss_onehot_equals_labels(rng):
    x = rng.standard_normal((6, 3))
    lab = rng.integers(0, 3, 6)
    a, b, c = SoftmaxWithLoss(), SoftmaxWithLoss(), SoftmaxWithLoss()
    la, lb, lc = a.forward(x, lab), b.forward(x, np.eye(3)[lab]), c.forward(x, lab.reshape(-1, 1))
    np.testing.assert_allclose([lb, lc], la, rtol=1e-15)
    np.testing.assert_allclose(b.backward(), a.backward(), rtol=1e-15, atol=1e-17)
    np.testing.assert_allclose(c.backward(), a.backward(), rtol=1e-15, atol=1e-17)


def test_softmax_with_loss_single_sample_1x1_label(rng):
    """The book's ch07 gradient check passes t of shape (1, 1)."""
    x = rng.standard_normal((1, 10))
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, np.array([[7]]))
    want_loss, want_dx = book_softmax_with_loss(x, np.array([7]))
    close(loss, want_loss)
    dx = layer.backward()
    assert dx.shape == (1, 10)
    close(dx, want_dx)


def test_softmax_with_loss_backward_ignores_dout(rng):
    x = rng.standard_normal((4, 3))
    t = rng.integers(0, 3, 4)
    layer = SoftmaxWithLoss()
    layer.forward(x, t)
    d1 = layer.backward()
    d5 = layer.backward(5.0)
    np.testing.assert_array_equal(d1, d5)
    y = book_softmax(x)
    close(d1, (y - np.eye(3)[t]) / 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_with_loss_huge_logits_finite(dtype):
    x = np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, 1e30], [5e29, 5e29, -1e30]], dtype)
    t = np.array([1, 2, 0])
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, t)
    dx = layer.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    # row 0 misses (book: -log(1e-7)); rows 1 and 2 hit (~0 loss)
    np.testing.assert_allclose(loss, -np.log(1e-7) / 3 + (-np.log(0.5 + 1e-7)) / 3, rtol=1e-5)


def test_softmax_with_loss_float32_stays_float32(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    lab = rng.integers(0, 5, 4)
    for t in (lab, np.eye(5, dtype=np.float32)[lab]):
        layer = SoftmaxWithLoss()
        loss = layer.forward(x, t)
        dx = layer.backward()
        assert np.asarray(loss).dtype == np.float32
        assert dx.dtype == np.float32


def test_softmax_with_loss_gradient_check(rng):
    """Loss gradient vs central differences (book's eps: agreement to ~eps / y_t)."""
    x = 0.5 * rng.standard_normal((3, 4))
    t = rng.integers(0, 4, 3)
    layer = SoftmaxWithLoss()
    num = numerical_gradient(lambda _: float(layer.forward(x, t)), x)
    layer.forward(x, t)
    close(layer.backward(), num, rtol=1e-5, atol=1e-8)


# --------------------------------------------------------------------------- Dropout
def test_dropout_follows_numpy_global_rng(restore_global_rng, rng):
    x = rng.standard_normal((4, 7))
    np.random.seed(123)
    expected_mask = np.random.rand(*x.shape) > 0.3
    np.random.seed(123)
    layer = Dropout(0.3)
    out = layer.forward(x)
    np.testing.assert_array_equal(layer.mask, expected_mask)
    np.testing.assert_array_equal(out, x * expected_mask)
    # reproducible: the same seed gives the same mask, and the next draw continues the stream
    follow_up = np.random.rand(3)
    np.random.seed(123)
    np.random.rand(*x.shape)
    np.testing.assert_array_equal(np.random.rand(3), follow_up)
    dout = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(layer.backward(dout), dout * expected_mask)


def test_dropout_default_ratio_and_eval(restore_global_rng, rng):
    x = rng.standard_normal((3, 5))
    layer = Dropout()
    assert layer.dropout_ratio == 0.5
    np.random.seed(7)
    state = np.random.get_state()
    out = layer.forward(x, train_flg=False)
    np.testing.assert_array_equal(out, x * (1.0 - 0.5))
    # eval draws nothing from the global RNG
    after = np.random.get_state()
    assert state[2] == after[2] and np.array_equal(state[1], after[1])
    np.testing.assert_array_equal(Dropout(0.2).forward(x, False), x * 0.8)


# --------------------------------------------------------------------------- BatchNormalization
@pytest.mark.parametrize("x_shape", [(6, 5), (4, 2, 3, 3)], ids=["2d", "4d"])
def test_batchnorm_matches_book(x_shape, rng):
    D = int(np.prod(x_shape[1:]))
    gamma = 1.0 + 0.1 * rng.standard_normal(D)
    beta = 0.1 * rng.standard_normal(D)
    layer = BatchNormalization(gamma, beta, momentum=0.9)
    book = BookBatchNormalization(gamma.copy(), beta.copy(), momentum=0.9)
    assert layer.gamma is gamma and layer.beta is beta
    for step in range(4):  # running statistics after several steps
        x = 2.0 * rng.standard_normal(x_shape) + step
        out = layer.forward(x, train_flg=True)
        want = book.forward(x, train_flg=True)
        assert out.shape == x_shape
        close(out, want)
        dout = rng.standard_normal(x_shape)
        dx = layer.backward(dout)
        close(dx, book.backward(dout))
        assert dx.shape == x_shape
        close(layer.dgamma, book.dgamma)
        close(layer.dbeta, book.dbeta)
    close(layer.running_mean, book.running_mean)
    close(layer.running_var, book.running_var)
    x = rng.standard_normal(x_shape)
    close(layer.forward(x, train_flg=False), book.forward(x, train_flg=False))
    close(layer.forward(x, False), book.forward(x, False))  # positional train_flg
    close(layer.running_mean, book.running_mean)  # eval does not update the statistics


def test_batchnorm_default_train_flag_is_training(rng):
    x = rng.standard_normal((5, 3))
    layer = BatchNormalization(np.ones(3), np.zeros(3))
    out = layer.forward(x)
    close(out.mean(axis=0), np.zeros(3), atol=1e-12)
    close(layer.running_mean, 0.1 * x.mean(axis=0))


@pytest.mark.parametrize("x_shape", [(5, 4), (3, 2, 2, 2)], ids=["2d", "4d"])
def test_batchnorm_gradient_check(x_shape, rng):
    D = int(np.prod(x_shape[1:]))
    gamma = 1.0 + 0.2 * rng.standard_normal(D)
    beta = 0.2 * rng.standard_normal(D)
    x = rng.standard_normal(x_shape)
    r = rng.standard_normal(x_shape)
    layer = BatchNormalization(gamma, beta)

    def f(_):
        return np.sum(layer.forward(x, train_flg=True) * r)

    num_x = numerical_gradient(f, x)
    num_g = numerical_gradient(f, gamma)
    num_b = numerical_gradient(f, beta)
    layer.forward(x, train_flg=True)
    dx = layer.backward(r)
    close(dx, num_x, rtol=1e-5, atol=1e-7)
    close(layer.dgamma, num_g, rtol=1e-6, atol=1e-8)
    close(layer.dbeta, num_b, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- a small stack
def test_conv_relu_pool_affine_softmax_stack_float32(rng):
    """float32 data with float32 parameters stays float32 through a SimpleConvNet-like stack."""
    f32 = np.float32
    x = rng.standard_normal((2, 1, 8, 8)).astype(f32)
    t = np.array([1, 3])
    conv = Convolution(0.1 * rng.standard_normal((3, 1, 3, 3)).astype(f32), np.zeros(3, f32), 1, 1)
    relu, pool = Relu(), Pooling(2, 2, 2)
    affine = Affine(0.1 * rng.standard_normal((3 * 4 * 4, 5)).astype(f32), np.zeros(5, f32))
    last = SoftmaxWithLoss()
    h = pool.forward(relu.forward(conv.forward(x)))
    loss = last.forward(affine.forward(h), t)
    assert np.asarray(loss).dtype == f32
    d = affine.backward(last.backward())
    d = conv.backward(relu.backward(pool.backward(d)))
    assert d.dtype == f32 and d.shape == x.shape
    for g in (conv.dW, conv.db, affine.dW, affine.db):
        assert g.dtype == f32
