"""LinearRegression / SoftmaxRegression (d2l chapter 3) and the loss modes of the fused
softmax cross-entropy (book ``log(y + 1e-7)`` vs exact log-sum-exp)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import functional as F
from fastnn import reference as R
from fastnn.data import DataLoader
from fastnn.datasets import load_mnist, synthetic_linear
from fastnn.layers import SoftmaxWithLoss
from fastnn.nets import LinearRegression, SoftmaxRegression
from fastnn.nets.regression import SquaredLoss
from fastnn.optimizers import SGD
from fastnn.trainer import Trainer

TRUE_W = np.array([2.0, -3.4])
TRUE_B = 4.2
TINY = np.finfo(np.float64).tiny


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-8))


# =========================================================================== LinearRegression
class TestLinearRegression:
    def test_params_shapes_sharing_and_book_init(self):
        np.random.seed(3)
        net = LinearRegression(4, num_outputs=2)
        np.random.seed(3)
        expected = 0.01 * np.random.randn(4, 2)
        assert set(net.params) == {"W", "b"}
        np.testing.assert_array_equal(net.params["W"], expected)
        np.testing.assert_array_equal(net.params["b"], np.zeros(2))
        assert net.params["W"] is net.layers["Affine"].W
        assert net.params["b"] is net.layers["Affine"].b
        assert net.lastLayer is net.last_layer
        assert isinstance(net.last_layer, SquaredLoss)
        assert net.params["W"].dtype == np.float64

    def test_loss_is_d2l_squared_loss_mean(self):
        rng = np.random.default_rng(0)
        np.random.seed(0)
        net = LinearRegression(3)
        net.params["b"][:] = 0.5
        x = rng.normal(size=(7, 3))
        y = rng.normal(size=(7, 1))
        y_hat = x @ net.params["W"] + net.params["b"]
        expected = np.sum((y_hat - y) ** 2 / 2) / 7  # d2l: squared_loss(...).sum() / batch
        np.testing.assert_allclose(net.loss(x, y), expected, rtol=1e-13)
        # labels given flat (N,) are reshaped, not broadcast into an (N, N) matrix
        np.testing.assert_allclose(net.loss(x, y.ravel()), expected, rtol=1e-13)
        np.testing.assert_allclose(net.predict(x), y_hat, rtol=1e-13)

    def test_gradient_matches_numerical(self):
        rng = np.random.default_rng(1)
        np.random.seed(1)
        net = LinearRegression(5, num_outputs=2, weight_init_std=0.5)
        net.params["b"][:] = rng.normal(size=2)
        x = rng.normal(size=(9, 5))
        t = rng.normal(size=(9, 2))
        grads = net.gradient(x, t)
        num = net.numerical_gradient(x, t)
        for key in ("W", "b"):
            assert grads[key].shape == net.params[key].shape
            np.testing.assert_allclose(grads[key], num[key], rtol=1e-6, atol=1e-9)
        assert grads["W"] is net.layers["Affine"].dW
        # analytic form: X^T (y_hat - y) / N
        diff = x @ net.params["W"] + net.params["b"] - t
        np.testing.assert_allclose(grads["W"], x.T @ diff / 9, rtol=1e-12)
        np.testing.assert_allclose(grads["b"], diff.sum(0) / 9, rtol=1e-12)

    def test_recovers_true_parameters_d2l_workflow(self):
        """Issue target: w and b within 0.01 after d2l's 3 epochs (lr 0.03, batch 10)."""
        np.random.seed(0)
        features, labels = synthetic_linear(TRUE_W, TRUE_B, 1000)
        net = LinearRegression(2)
        opt = SGD(lr=0.03)
        loader = DataLoader(features, labels, 10)
        for _ in range(3):
            for X, y in loader:
                opt.update(net.params, net.gradient(X, y))
        assert np.max(np.abs(net.params["W"].ravel() - TRUE_W)) < 0.01
        assert abs(net.params["b"][0] - TRUE_B) < 0.01
        assert net.loss(features, labels) < 1e-3
        assert net.accuracy(features, labels) > 0.999

    def test_accuracy_is_r2(self):
        np.random.seed(0)
        net = LinearRegression(1)
        x = np.arange(6.0).reshape(6, 1)
        net.params["W"][:] = 2.0
        net.params["b"][:] = 1.0
        t = 2.0 * x + 1.0
        assert net.accuracy(x, t) == 1.0
        t_noisy = t + np.array([[1.0], [-1.0], [0.0], [0.0], [1.0], [-1.0]])
        ss_res = 4.0
        ss_tot = np.sum((t_noisy - t_noisy.mean()) ** 2)
        np.testing.assert_allclose(net.accuracy(x, t_noisy), 1 - ss_res / ss_tot, rtol=1e-12)
        # constant targets: 1 for a perfect fit, 0 otherwise
        net.params["W"][:] = 0.0
        assert net.accuracy(x, np.full(6, 1.0)) == 1.0
        assert net.accuracy(x, np.full(6, 3.0)) == 0.0

    def test_float32_stays_float32(self):
        np.random.seed(0)
        net = LinearRegression(2, dtype=np.float32)
        x, y = synthetic_linear(TRUE_W, TRUE_B, 20, seed=0, dtype=np.float32)
        assert net.params["W"].dtype == np.float32
        assert net.predict(x).dtype == np.float32
        assert np.asarray(net.loss(x, y)).dtype == np.float32
        grads = net.gradient(x, y)
        assert grads["W"].dtype == np.float32 and grads["b"].dtype == np.float32

    def test_trainer_drives_it(self, capsys):
        np.random.seed(0)
        x, y = synthetic_linear(TRUE_W, TRUE_B, 400)
        net = LinearRegression(2)
        trainer = Trainer(net, x[:300], y[:300], x[300:], y[300:], epochs=10, mini_batch_size=10,
                          optimizer="SGD", optimizer_param={"lr": 0.03}, verbose=False)
        trainer.train()
        assert len(trainer.test_acc_list) == 10
        assert trainer.test_acc_list[-1] > 0.99
        assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]

    def test_save_load_roundtrip(self, tmp_path):
        np.random.seed(0)
        net = LinearRegression(3)
        net.params["W"][:] = np.arange(3.0).reshape(3, 1)
        path = tmp_path / "lin.pkl"
        net.save_params(path)
        with open(path, "rb") as f:
            raw = pickle.load(f)
        np.testing.assert_array_equal(raw["W"], net.params["W"])
        other = LinearRegression(3)
        other.load_params(path)
        np.testing.assert_array_equal(other.params["W"], net.params["W"])
        assert other.layers["Affine"].W is other.params["W"]

    def test_errors(self):
        with pytest.raises(ValueError, match="LinearRegression: num_inputs"):
            LinearRegression(0)
        with pytest.raises(TypeError, match="LinearRegression: num_inputs"):
            LinearRegression(2.5)
        with pytest.raises(TypeError, match="LinearRegression: dtype"):
            LinearRegression(2, dtype=np.float16)
        net = LinearRegression(2)
        with pytest.raises(ValueError, match="SquaredLoss.forward"):
            net.loss(np.ones((4, 2)), np.ones(3))
        with pytest.raises(ValueError, match="Affine.forward"):
            net.predict(np.ones((4, 3)))
        with pytest.raises(ValueError, match="LinearRegression.accuracy"):
            net.accuracy(np.ones((4, 2)), np.ones(5))


# =========================================================================== SoftmaxRegression
class TestSoftmaxRegression:
    def test_params_and_init(self):
        np.random.seed(7)
        net = SoftmaxRegression(6, 4)
        np.random.seed(7)
        np.testing.assert_array_equal(net.params["W"], 0.01 * np.random.randn(6, 4))
        np.testing.assert_array_equal(net.params["b"], np.zeros(4))
        assert net.params["W"] is net.layers["Affine"].W
        assert isinstance(net.last_layer, SoftmaxWithLoss)
        assert net.last_layer.eps == 0.0 and net.eps == 0.0
        assert SoftmaxRegression(6, 4, eps=1e-7).last_layer.eps == 1e-7

    @pytest.mark.parametrize("eps", [0.0, 1e-7])
    @pytest.mark.parametrize("one_hot", [False, True])
    def test_gradient_matches_numerical(self, eps, one_hot):
        rng = np.random.default_rng(2)
        np.random.seed(2)
        net = SoftmaxRegression(5, 3, weight_init_std=0.3, eps=eps)
        net.params["b"][:] = rng.normal(size=3)
        x = rng.normal(size=(8, 5))
        labels = rng.integers(0, 3, 8)
        t = np.eye(3)[labels] if one_hot else labels
        grads = net.gradient(x, t)
        num = net.numerical_gradient(x, t)
        # eps=0: (y - t)/N is the exact gradient of the loss. eps=1e-7: it is the gradient of
        # the unclipped loss, off by a relative ~eps / y[t] (the book's approximation).
        rtol = 1e-6 if eps == 0 else 1e-3
        for key in ("W", "b"):
            np.testing.assert_allclose(grads[key], num[key], rtol=rtol, atol=1e-9)
        # analytic: X^T (softmax - onehot) / N
        y = R.softmax(x @ net.params["W"] + net.params["b"])
        d = (y - np.eye(3)[labels]) / 8
        np.testing.assert_allclose(grads["W"], x.T @ d, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grads["b"], d.sum(0), rtol=1e-12, atol=1e-15)

    def test_loss_equals_reference_both_modes(self):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(10, 6))
        t = rng.integers(0, 4, 10)
        for eps in (0.0, 1e-7):
            np.random.seed(0)
            net = SoftmaxRegression(6, 4, weight_init_std=1.0, eps=eps)
            logits = x @ net.params["W"]
            expected, _ = R.softmax_cross_entropy_forward(logits, t, eps)
            np.testing.assert_allclose(net.loss(x, t), expected, rtol=1e-12)

    def test_nd_input_is_flattened(self):
        rng = np.random.default_rng(4)
        np.random.seed(0)
        net = SoftmaxRegression(16, 3)
        x = rng.random((5, 1, 4, 4))
        np.testing.assert_allclose(net.predict(x), net.predict(x.reshape(5, 16)), rtol=1e-14)
        grads = net.gradient(x, np.arange(5) % 3)
        assert grads["W"].shape == (16, 3)

    def test_float32_stays_float32(self):
        rng = np.random.default_rng(5)
        np.random.seed(0)
        net = SoftmaxRegression(8, 3, dtype=np.float32)
        x = rng.random((6, 8), dtype=np.float32)
        t = np.arange(6) % 3
        assert net.predict(x).dtype == np.float32
        assert np.asarray(net.loss(x, t)).dtype == np.float32
        assert net.gradient(x, t)["W"].dtype == np.float32

    def test_bundled_digits_target(self, capsys):
        """Issue target: >= 85 % test accuracy in 10 epochs (batch 256, lr 0.1)."""
        (x_train, t_train), (x_test, t_test) = load_mnist()
        np.random.seed(0)
        net = SoftmaxRegression(784, 10, dtype=np.float32)
        opt = SGD(lr=0.1)
        loader = DataLoader(x_train, t_train, 256, prefetch=True)
        losses = []
        for _ in range(10):
            for X, y in loader:
                opt.update(net.params, net.gradient(X, y))
            losses.append(float(net.loss(x_train, t_train)))
        assert losses[-1] < losses[0]
        assert net.accuracy(x_test, t_test) >= 0.85

    def test_trainer_drives_it(self):
        rng = np.random.default_rng(6)
        centers = rng.normal(scale=3.0, size=(3, 4))
        labels = rng.integers(0, 3, 300)
        x = centers[labels] + rng.normal(size=(300, 4))
        np.random.seed(0)
        net = SoftmaxRegression(4, 3)
        trainer = Trainer(net, x[:200], labels[:200], x[200:], labels[200:], epochs=5,
                          mini_batch_size=20, optimizer="SGD", optimizer_param={"lr": 0.1},
                          verbose=False)
        trainer.train()
        assert trainer.test_acc_list[-1] > 0.8

    def test_errors(self):
        with pytest.raises(ValueError, match="SoftmaxRegression: eps"):
            SoftmaxRegression(3, 2, eps=-1.0)
        with pytest.raises(TypeError, match="SoftmaxRegression: eps"):
            SoftmaxRegression(3, 2, eps="0")
        with pytest.raises(ValueError, match="SoftmaxRegression: num_outputs"):
            SoftmaxRegression(3, 0)
        net = SoftmaxRegression(3, 2)
        with pytest.raises(ValueError, match="labels t must be in"):
            net.loss(np.ones((2, 3)), np.array([0, 2]))
        with pytest.raises(ValueError, match="SoftmaxRegression.accuracy"):
            net.accuracy(np.ones((2, 3)), np.array([0, 1, 1]))


# =========================================================================== loss modes
def _exact_lse_loss(x, labels):
    """Mean of ``logsumexp(x) - x[t]`` in extended precision (long double)."""
    xl = np.asarray(x, dtype=np.longdouble)
    N = xl.shape[0]
    m = xl.max(axis=1)
    s = np.exp(xl - m[:, None]).sum(axis=1)
    rows = np.log(s) + (m - xl[np.arange(N), labels])
    return rows.mean(), rows


def _exact_grad(x, labels):
    xl = np.asarray(x, dtype=np.longdouble)
    N, K = xl.shape
    e = np.exp(xl - xl.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    return (y - np.eye(K, dtype=np.longdouble)[labels]) / N


def _check_lse(x, labels):
    loss, y = F.softmax_cross_entropy(x, labels, eps=0)
    dx = F.softmax_cross_entropy_backward(y, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    ref_loss, ref_y = R.softmax_cross_entropy_forward(x, labels, eps=0)
    ref_dx = R.softmax_cross_entropy_backward(ref_y, labels)
    # the float64 reference, to 1e-12 relative: the loss, the probabilities y, and the gradient
    # (y - onehot) / N. Probabilities below the smallest normal float64 (2.2e-308) may come out
    # as 0 where NumPy keeps a subnormal (atol=TINY). At the true class, y - 1 cancels when y is
    # close to 1, which turns a last-bit difference of y into a large relative one: there the
    # gradient is held to a few roundings of 1 (4 eps / N) instead.
    grad_atol = 4 * np.finfo(np.float64).eps / x.shape[0] + TINY
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=0)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=TINY)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=grad_atol)
    # the exact value (long double): to 1e-12 relative, up to a few float64 roundings of 1
    # (log(s) with s = 1 + tiny has an absolute error ~eps when a row's loss is ~0; y - 1 at the
    # true class cancels when y is close to 1)
    exact_loss, _ = _exact_lse_loss(x, labels)
    np.testing.assert_allclose(float(loss), float(exact_loss), rtol=1e-12,
                               atol=4 * np.finfo(np.float64).eps)
    np.testing.assert_allclose(
        dx, _exact_grad(x, labels).astype(np.float64), rtol=1e-12, atol=grad_atol
    )
    # the one-pass forms: loss and gradient from the same pass, and the layer built on it
    loss2, dx2 = F.softmax_cross_entropy_with_grad(x, labels, eps=0)
    layer = SoftmaxWithLoss(eps=0)
    loss3 = layer.forward(x, labels)
    dx3 = layer.backward()
    for lo, d in ((loss2, dx2), (loss3, dx3)):
        assert np.isfinite(lo) and np.all(np.isfinite(d))
        np.testing.assert_allclose(lo, ref_loss, rtol=1e-12, atol=0)
        np.testing.assert_allclose(d, ref_dx, rtol=1e-12, atol=grad_atol)
    return loss, y, dx


class TestLossModes:
    def test_default_is_book_epsilon(self):
        x = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
        t = np.array([0, 2])
        layer = SoftmaxWithLoss()
        y = R.softmax(x)
        expected = -np.mean(np.log(y[np.arange(2), t] + 1e-7))
        np.testing.assert_allclose(layer.forward(x, t), expected, rtol=1e-14)
        loss, _ = F.softmax_cross_entropy(x, t)
        np.testing.assert_allclose(loss, expected, rtol=1e-14)
        # the two modes differ by the epsilon's bias
        exact = -np.mean(np.log(y[np.arange(2), t]))
        assert abs(float(F.softmax_cross_entropy(x, t, eps=0)[0]) - exact) < 1e-14
        assert abs(float(loss) - exact) > 1e-9

    def test_layer_eps0_selects_logsumexp(self):
        x = np.array([[1000.0, 0.0, -1000.0], [3.0, 1.0, 2.0]])
        t = np.array([2, 1])
        layer = SoftmaxWithLoss(eps=0)
        loss = layer.forward(x, t)
        expected = float(_exact_lse_loss(x, t)[0])  # (2000 + ~0 + (log(1+e^-1+e^-2)+2)) / 2
        np.testing.assert_allclose(loss, expected, rtol=1e-12)
        book = SoftmaxWithLoss().forward(x, t)
        assert book < 20  # -log(0 + 1e-7) = 16.1 clips the first row
        dx = layer.backward()
        y = R.softmax(x)
        np.testing.assert_allclose(dx, (y - np.eye(3)[t]) / 2, rtol=1e-14)

    def test_naive_log_softmax_fails_where_logsumexp_is_finite(self):
        """d2l's lesson: exp(50)... overflows and log(0) = -inf; log-sum-exp does not."""
        x = np.array([[50.0, 0.0], [800.0, -800.0]])
        t = np.array([1, 1])
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            naive = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
            naive_loss = -np.log(naive[np.arange(2), t])
        assert not np.all(np.isfinite(naive_loss))
        loss, _, _ = _check_lse(x, t)
        np.testing.assert_allclose(float(loss), (50 + np.log1p(np.exp(-50)) + 1600) / 2,
                                   rtol=1e-13)

    @pytest.mark.parametrize("scale", [1.0, 1e3, 1e10, 1e20, 1e30])
    def test_huge_logits_and_underflowed_true_class(self, scale):
        x = np.array([
            [1.0, -1.0, 0.5, 0.0],
            [1.0, 0.0, -1.0, 0.25],
            [-1.0, 1.0, 0.0, 1.0],   # tie for the max
            [1.0, 1.0, 1.0, 1.0],    # all equal
            [0.0, -1.0, 1.0, 0.5],
        ]) * scale
        labels = np.array([1, 2, 3, 0, 1])
        loss, y, dx = _check_lse(x, labels)
        if scale >= 1e3:
            # rows 0, 1, 4: the true class's probability underflows to exactly 0
            assert np.all(y[[0, 1, 4], labels[[0, 1, 4]]] == 0.0)
            book, _ = F.softmax_cross_entropy(x, labels)  # eps=1e-7 clips those rows at ~16.1
            assert book < 20 < loss
        assert loss > 0

    def test_extreme_mixed_row(self):
        x = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30], [1e30, 1e30 * (1 - 1e-15), 5.0]])
        labels = np.array([1, 0, 1])
        loss, _, dx = _check_lse(x, labels)
        assert float(loss) > 1e29
        assert np.all(np.abs(dx) <= 1.0 / 3 + 1e-15)

    @settings(max_examples=25, deadline=None)
    @given(
        n=st.integers(1, 6),
        k=st.integers(2, 6),
        log_scale=st.floats(-3, 30),
        seed=st.integers(0, 2**32 - 1),
    )
    def test_random_logits_property(self, n, k, log_scale, seed):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, k)) * 10.0**log_scale
        labels = rng.integers(0, k, n)
        _check_lse(x, labels)

    def test_large_batch_parallel_kernels(self):
        """Above SERIAL_MAX_SIZE elements the parallel kernels run: same guarantees."""
        from fastnn.functional import SERIAL_MAX_SIZE

        rng = np.random.default_rng(10)
        N, K = 600, 64
        assert N * K > SERIAL_MAX_SIZE
        x = rng.normal(size=(N, K)) * 10.0 ** rng.uniform(-2, 30, size=(N, 1))
        labels = rng.integers(0, K, N)
        loss, y, _ = _check_lse(x, labels)
        assert np.any(y[np.arange(N), labels] == 0.0)  # some true classes underflowed

    def test_one_hot_targets_eps0(self):
        rng = np.random.default_rng(8)
        x = rng.normal(size=(4, 5)) * 1e5
        labels = np.array([0, 4, 2, 2])
        loss_labels, _ = F.softmax_cross_entropy(x, labels, eps=0)
        loss_onehot, y = F.softmax_cross_entropy(x, np.eye(5)[labels], eps=0)
        assert loss_labels == loss_onehot
        np.testing.assert_allclose(loss_onehot, float(_exact_lse_loss(x, labels)[0]), rtol=1e-12)

    def test_float32_eps0(self):
        rng = np.random.default_rng(9)
        x = (rng.normal(size=(6, 5)) * 1e4).astype(np.float32)
        labels = rng.integers(0, 5, 6)
        loss, y = F.softmax_cross_entropy(x, labels, eps=0)
        assert np.asarray(loss).dtype == np.float32 and y.dtype == np.float32
        assert np.isfinite(loss)
        np.testing.assert_allclose(float(loss), float(_exact_lse_loss(x, labels)[0]), rtol=1e-5)

    def test_eps_validation(self):
        with pytest.raises(ValueError, match="softmax_cross_entropy: eps"):
            F.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1]), eps=-1e-7)
