"""Tests of fastnn.nets: the book's TwoLayerNet, MultiLayerNet(Extend), SimpleConvNet, DeepConvNet.

Checked here: initial weights equal the book's under the same seed (the book's initialisation
is written out inline below), params are shared by reference with the layers, backprop
gradients match numerical gradients (float64, tiny nets), float32 stays float32 end to end,
save/load round trips (and the book's plain-dict pickle format), batched accuracy including a
final partial batch, and argument validation.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

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
from fastnn.nets import (
    DeepConvNet,
    MultiLayerNet,
    MultiLayerNetExtend,
    SimpleConvNet,
    TwoLayerNet,
)

SMALL_CONV = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}


# --------------------------------------------------------------------------- factories
def make_two_layer(dtype=np.float64, activation="relu", std=0.3):
    return TwoLayerNet(12, 5, 3, weight_init_std=std, activation=activation, dtype=dtype)


def make_multi(dtype=np.float64, **kw):
    kw.setdefault("weight_decay_lambda", 0.1)
    return MultiLayerNet(6, [5, 4], 3, dtype=dtype, **kw)


def make_extend(dtype=np.float64, **kw):
    kw.setdefault("use_batchnorm", True)
    kw.setdefault("use_dropout", True)
    kw.setdefault("dropout_ration", 0.3)
    kw.setdefault("weight_decay_lambda", 0.05)
    return MultiLayerNetExtend(6, [5, 4], 3, dtype=dtype, **kw)


def make_simple_conv(dtype=np.float64, conv_param=SMALL_CONV, std=0.3):
    return SimpleConvNet(
        input_dim=(1, 8, 8),
        conv_param=conv_param,
        hidden_size=4,
        output_size=3,
        weight_init_std=std,
        dtype=dtype,
    )


def make_deep(dtype=np.float64):
    return DeepConvNet(dtype=dtype)


# (factory, input shape of one sample, number of classes)
NETS = {
    "TwoLayerNet": (make_two_layer, (12,), 3),
    "TwoLayerNet-sigmoid": (lambda dtype=np.float64: make_two_layer(dtype, "sigmoid"), (12,), 3),
    "MultiLayerNet": (make_multi, (6,), 3),
    "MultiLayerNetExtend": (make_extend, (6,), 3),
    "SimpleConvNet": (make_simple_conv, (1, 8, 8), 3),
    "DeepConvNet": (make_deep, (1, 28, 28), 10),
}


def data(shape, n, k, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(dtype)
    t = rng.integers(0, k, size=n)
    return x, t


def one_hot(t, k):
    out = np.zeros((t.size, k))
    out[np.arange(t.size), t] = 1.0
    return out


def param_layer_pairs(net):
    """[(key, layer, attribute)] the test expects to share memory, by the book's layer names."""
    if isinstance(net, DeepConvNet):
        idx = (0, 2, 5, 7, 10, 12, 15, 18)
        return [
            (k + str(i + 1), net.layers[j], k) for i, j in enumerate(idx) for k in ("W", "b")
        ]
    if isinstance(net, SimpleConvNet):
        names = ("Conv1", "Affine1", "Affine2")
        return [(k + str(i + 1), net.layers[n], k) for i, n in enumerate(names) for k in "Wb"]
    if isinstance(net, TwoLayerNet):
        if net.activation == "sigmoid":
            return []
        return [(k + str(i), net.layers[f"Affine{i}"], k) for i in (1, 2) for k in "Wb"]
    pairs = []
    n = net.hidden_layer_num
    for i in range(1, n + 2):
        pairs += [(k + str(i), net.layers[f"Affine{i}"], k) for k in "Wb"]
        if getattr(net, "use_batchnorm", False) and i <= n:
            bn = net.layers[f"BatchNorm{i}"]
            pairs += [(f"gamma{i}", bn, "gamma"), (f"beta{i}", bn, "beta")]
    return pairs


def randomize_biases(net, seed=0):
    """Non-zero biases (in place): with zero biases a sample whose hidden units are all off
    puts the next ReLU exactly at its kink, where central differences give half the slope."""
    rng = np.random.default_rng(seed)
    for key, val in net.params.items():
        if key.startswith("b"):
            val[...] = rng.normal(0.0, 0.2, size=val.shape)


def assert_grads_close(grad, num, rtol=1e-5):
    # the book's loss is -log(y + 1e-7) while backward is (y - t) / N, so the two differ by
    # O(1e-7 / y_t) relative; real backprop bugs give errors of order 1e-2 and more
    assert grad.keys() == num.keys()
    for key in num:
        assert grad[key].shape == num[key].shape, key
        scale = max(1.0, float(np.max(np.abs(num[key]))))
        err = float(np.max(np.abs(grad[key] - num[key])))
        assert err <= rtol * scale, f"{key}: max abs diff {err:.3e}"


# --------------------------------------------------------------------------- book init, inline
def book_two_layer(input_size, hidden_size, output_size, weight_init_std=0.01):
    params = {}
    params["W1"] = weight_init_std * np.random.randn(input_size, hidden_size)
    params["b1"] = np.zeros(hidden_size)
    params["W2"] = weight_init_std * np.random.randn(hidden_size, output_size)
    params["b2"] = np.zeros(output_size)
    return params


def book_multi(input_size, hidden_size_list, output_size, weight_init_std, use_batchnorm=False):
    params = {}
    all_size_list = [input_size] + hidden_size_list + [output_size]
    for idx in range(1, len(all_size_list)):
        scale = weight_init_std
        if str(weight_init_std).lower() in ("relu", "he"):
            scale = np.sqrt(2.0 / all_size_list[idx - 1])
        elif str(weight_init_std).lower() in ("sigmoid", "xavier"):
            scale = np.sqrt(1.0 / all_size_list[idx - 1])
        params["W" + str(idx)] = scale * np.random.randn(all_size_list[idx - 1], all_size_list[idx])
        params["b" + str(idx)] = np.zeros(all_size_list[idx])
    if use_batchnorm:
        for idx in range(1, len(hidden_size_list) + 1):
            params["gamma" + str(idx)] = np.ones(hidden_size_list[idx - 1])
            params["beta" + str(idx)] = np.zeros(hidden_size_list[idx - 1])
    return params


def book_simple_conv(input_dim, conv_param, hidden_size, output_size, weight_init_std):
    filter_num = conv_param["filter_num"]
    filter_size = conv_param["filter_size"]
    filter_pad = conv_param["pad"]
    filter_stride = conv_param["stride"]
    input_size = input_dim[1]
    conv_output_size = (input_size - filter_size + 2 * filter_pad) / filter_stride + 1
    pool_output_size = int(filter_num * (conv_output_size / 2) * (conv_output_size / 2))
    params = {}
    params["W1"] = weight_init_std * np.random.randn(
        filter_num, input_dim[0], filter_size, filter_size
    )
    params["b1"] = np.zeros(filter_num)
    params["W2"] = weight_init_std * np.random.randn(pool_output_size, hidden_size)
    params["b2"] = np.zeros(hidden_size)
    params["W3"] = weight_init_std * np.random.randn(hidden_size, output_size)
    params["b3"] = np.zeros(output_size)
    return params


def book_deep(input_dim=(1, 28, 28), hidden_size=50, output_size=10):
    conv_params = [
        {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
        {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
        {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
        {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
        {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
        {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    ]
    pre_node_nums = np.array(
        [1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3, 64 * 4 * 4,
         hidden_size]
    )  # fmt: skip
    wight_init_scales = np.sqrt(2.0 / pre_node_nums)
    params = {}
    pre_channel_num = input_dim[0]
    for idx, conv_param in enumerate(conv_params):
        params["W" + str(idx + 1)] = wight_init_scales[idx] * np.random.randn(
            conv_param["filter_num"],
            pre_channel_num,
            conv_param["filter_size"],
            conv_param["filter_size"],
        )
        params["b" + str(idx + 1)] = np.zeros(conv_param["filter_num"])
        pre_channel_num = conv_param["filter_num"]
    params["W7"] = wight_init_scales[6] * np.random.randn(64 * 4 * 4, hidden_size)
    params["b7"] = np.zeros(hidden_size)
    params["W8"] = wight_init_scales[7] * np.random.randn(hidden_size, output_size)
    params["b8"] = np.zeros(output_size)
    return params


BOOK_INIT_CASES = {
    "TwoLayerNet-default": (
        lambda: TwoLayerNet(784, 50, 10),
        lambda: book_two_layer(784, 50, 10),
    ),
    "TwoLayerNet-sigmoid": (
        lambda: TwoLayerNet(12, 5, 3, weight_init_std=0.3, activation="sigmoid"),
        lambda: book_two_layer(12, 5, 3, 0.3),
    ),
    "MultiLayerNet-relu": (
        lambda: MultiLayerNet(20, [7, 6, 5], 4),
        lambda: book_multi(20, [7, 6, 5], 4, "relu"),
    ),
    "MultiLayerNet-He": (
        lambda: MultiLayerNet(20, [7], 4, weight_init_std="He"),
        lambda: book_multi(20, [7], 4, "He"),
    ),
    "MultiLayerNet-sigmoid": (
        lambda: MultiLayerNet(20, [7, 6], 4, activation="sigmoid", weight_init_std="sigmoid"),
        lambda: book_multi(20, [7, 6], 4, "sigmoid"),
    ),
    "MultiLayerNet-xavier": (
        lambda: MultiLayerNet(20, [7, 6], 4, weight_init_std="xavier"),
        lambda: book_multi(20, [7, 6], 4, "xavier"),
    ),
    "MultiLayerNet-number": (
        lambda: MultiLayerNet(20, [7, 6], 4, weight_init_std=0.05),
        lambda: book_multi(20, [7, 6], 4, 0.05),
    ),
    "MultiLayerNetExtend-bn": (
        lambda: MultiLayerNetExtend(20, [7, 6], 4, use_batchnorm=True, use_dropout=True),
        lambda: book_multi(20, [7, 6], 4, "relu", use_batchnorm=True),
    ),
    "MultiLayerNetExtend-plain": (
        lambda: MultiLayerNetExtend(20, [7, 6], 4, weight_init_std=0.1),
        lambda: book_multi(20, [7, 6], 4, 0.1),
    ),
    "SimpleConvNet-default": (
        lambda: SimpleConvNet(),
        lambda: book_simple_conv(
            (1, 28, 28), {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}, 100, 10, 0.01
        ),
    ),
    "SimpleConvNet-ch07-gradient-check": (
        lambda: SimpleConvNet(
            input_dim=(1, 10, 10),
            conv_param={"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1},
            hidden_size=10,
            output_size=10,
            weight_init_std=0.01,
        ),
        lambda: book_simple_conv(
            (1, 10, 10), {"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1}, 10, 10, 0.01
        ),
    ),
    "SimpleConvNet-small": (
        lambda: make_simple_conv(),
        lambda: book_simple_conv((1, 8, 8), SMALL_CONV, 4, 3, 0.3),
    ),
    "DeepConvNet-default": (lambda: DeepConvNet(), lambda: book_deep()),
}


@pytest.mark.parametrize("case", list(BOOK_INIT_CASES))
def test_initial_params_equal_book_bit_for_bit(case):
    make, book = BOOK_INIT_CASES[case]
    np.random.seed(1234)
    expected = book()
    state_after_book = np.random.get_state()
    np.random.seed(1234)
    net = make()
    state_after_net = np.random.get_state()
    assert list(net.params) == list(expected)  # same keys, same order (pickles match)
    for key, val in expected.items():
        got = net.params[key]
        assert got.dtype == np.float64, key
        assert got.shape == val.shape, key
        assert np.array_equal(got, val), key
    # the same number of draws: the RNG continues exactly as in the book
    assert np.array_equal(state_after_book[1], state_after_net[1])
    assert state_after_book[2] == state_after_net[2]


@pytest.mark.parametrize("case", ["TwoLayerNet-default", "MultiLayerNetExtend-bn",
                                  "SimpleConvNet-small", "DeepConvNet-default"])  # fmt: skip
def test_float32_params_are_the_seeded_float64_values_cast(case):
    make, book = BOOK_INIT_CASES[case]
    np.random.seed(7)
    expected = book()
    np.random.seed(7)
    net = {
        "TwoLayerNet-default": lambda: TwoLayerNet(784, 50, 10, dtype=np.float32),
        "MultiLayerNetExtend-bn": lambda: MultiLayerNetExtend(
            20, [7, 6], 4, use_batchnorm=True, dtype=np.float32
        ),
        "SimpleConvNet-small": lambda: make_simple_conv(np.float32),
        "DeepConvNet-default": lambda: DeepConvNet(dtype="float32"),
    }[case]()
    assert net.dtype == np.float32
    for key, val in expected.items():
        assert net.params[key].dtype == np.float32, key
        assert np.array_equal(net.params[key], val.astype(np.float32)), key


# --------------------------------------------------------------------------- structure
def test_layer_names_and_types_follow_the_book():
    net = TwoLayerNet(4, 3, 2)
    assert list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert isinstance(net.last_layer, SoftmaxWithLoss)
    assert net.lastLayer is net.last_layer  # ch05's attribute name

    net = MultiLayerNet(4, [3, 3], 2, activation="sigmoid")
    assert list(net.layers) == [
        "Affine1", "Activation_function1", "Affine2", "Activation_function2", "Affine3"
    ]  # fmt: skip
    assert isinstance(net.layers["Activation_function1"], Sigmoid)
    assert net.hidden_layer_num == 2

    net = MultiLayerNetExtend(4, [3, 3], 2, use_dropout=True, use_batchnorm=True)
    assert list(net.layers) == [
        "Affine1", "BatchNorm1", "Activation_function1", "Dropout1",
        "Affine2", "BatchNorm2", "Activation_function2", "Dropout2", "Affine3",
    ]  # fmt: skip
    assert isinstance(net.layers["BatchNorm1"], BatchNormalization)
    assert isinstance(net.layers["Dropout2"], Dropout)
    assert net.layers["Dropout1"].dropout_ratio == 0.5
    assert list(net.params) == [
        "W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"
    ]  # fmt: skip

    net = SimpleConvNet()
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert net.params["W2"].shape == (30 * 12 * 12, 100)
    pool = net.layers["Pool1"]
    assert isinstance(pool, Pooling) and (pool.pool_h, pool.pool_w, pool.stride) == (2, 2, 2)

    net = DeepConvNet()
    kinds = [type(layer) for layer in net.layers]
    C, R, P, A, D = Convolution, Relu, Pooling, Affine, Dropout
    assert kinds == [C, R, C, R, P, C, R, C, R, P, C, R, C, R, P, A, R, D, A, D]
    assert net.layers[7].pad == 2 and net.layers[5].pad == 1
    assert all(layer.dropout_ratio == 0.5 for layer in net.layers if isinstance(layer, D))


def test_simple_convnet_nonsquare_and_strided_geometry():
    # W2 comes from the real conv/pool output size (the book's float formula would be wrong)
    net = SimpleConvNet(
        input_dim=(2, 9, 12),
        conv_param={"filter_num": 4, "filter_size": 3, "pad": 1, "stride": 2},
        hidden_size=5,
        output_size=3,
    )
    # conv: 5x6, pool: 2x3
    assert net.params["W1"].shape == (4, 2, 3, 3)
    assert net.params["W2"].shape == (4 * 2 * 3, 5)
    x, t = data((2, 9, 12), 3, 3)
    assert net.predict(x).shape == (3, 3)
    assert np.isfinite(net.loss(x, t))


@pytest.mark.parametrize("name", list(NETS))
def test_params_are_shared_by_reference_with_layers(name):
    make, shape, k = NETS[name]
    np.random.seed(0)
    net = make()
    for key, layer, attr in param_layer_pairs(net):
        assert getattr(layer, attr) is net.params[key], key
    x, _ = data(shape, 3, k, seed=1)
    before = net.predict(x).copy()
    net.params["W1"] -= 0.1  # in place, as optimizers do
    after = net.predict(x)
    assert not np.allclose(before, after)
    net.params["W1"] += 0.1
    np.testing.assert_allclose(net.predict(x), before, rtol=1e-12, atol=1e-12)


def test_sgd_steps_on_shared_params_reduce_the_loss():
    np.random.seed(3)
    net = make_simple_conv()
    x, t = data((1, 8, 8), 8, 3, seed=2)
    first = net.loss(x, t)
    for _ in range(30):
        grads = net.gradient(x, t)
        for key in net.params:
            net.params[key] -= 0.2 * grads[key]
    assert net.loss(x, t) < first


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("target", ["labels", "one-hot"])
def test_two_layer_net_gradient_matches_numerical(activation, target):
    np.random.seed(0)
    net = make_two_layer(activation=activation)
    randomize_biases(net)
    x, t = data((12,), 4, 3, seed=5)
    if target == "one-hot":
        t = one_hot(t, 3)
    assert_grads_close(net.gradient(x, t), net.numerical_gradient(x, t))


def test_two_layer_net_sigmoid_is_chapter_4():
    np.random.seed(0)
    net = make_two_layer(activation="sigmoid")
    x, labels = data((12,), 5, 3, seed=9)
    t = one_hot(labels, 3)
    W1, b1, W2, b2 = (net.params[k] for k in ("W1", "b1", "W2", "b2"))

    # ch04, written out with NumPy
    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    a1 = x @ W1 + b1
    z1 = sigmoid(a1)
    a2 = z1 @ W2 + b2
    e = np.exp(a2 - a2.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    loss = -np.sum(t * np.log(y + 1e-7)) / 5
    dy = (y - t) / 5
    da1 = dy @ W2.T
    dz1 = (1.0 - sigmoid(a1)) * sigmoid(a1) * da1
    expected = {"W1": x.T @ dz1, "b1": dz1.sum(0), "W2": z1.T @ dy, "b2": dy.sum(0)}

    np.testing.assert_allclose(net.predict(x), y, rtol=1e-12)  # probabilities, not scores
    np.testing.assert_allclose(net.loss(x, t), loss, rtol=1e-12)
    for grads in (net.gradient(x, t), net.gradient(x, labels)):  # labels work too
        for key, val in expected.items():
            np.testing.assert_allclose(grads[key], val, rtol=1e-10, atol=1e-15, err_msg=key)
    assert not hasattr(net, "layers")


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_multi_layer_net_gradient_matches_numerical_with_weight_decay(activation):
    np.random.seed(1)
    net = make_multi(activation=activation, weight_init_std=0.5)
    randomize_biases(net)
    x, t = data((6,), 5, 3, seed=6)
    grads = net.gradient(x, t)
    assert_grads_close(grads, net.numerical_gradient(x, t))
    # the decay term really is there
    lam = net.weight_decay_lambda
    np.testing.assert_allclose(
        grads["W2"], net.layers["Affine2"].dW + lam * net.params["W2"], rtol=1e-14
    )
    plain = net.last_layer.forward(net.predict(x), t)
    decay = sum(0.5 * lam * np.sum(net.params[f"W{i}"] ** 2) for i in (1, 2, 3))
    np.testing.assert_allclose(net.loss(x, t), plain + decay, rtol=1e-14)


@pytest.mark.parametrize(
    "options",
    [
        {"use_batchnorm": True, "use_dropout": True, "activation": "relu"},
        {"use_batchnorm": True, "use_dropout": False, "activation": "sigmoid"},
        {"use_batchnorm": False, "use_dropout": True, "activation": "relu"},
    ],
)
def test_multi_layer_net_extend_gradient_matches_numerical(options):
    np.random.seed(2)
    net = make_extend(weight_init_std=0.5, **options)
    randomize_biases(net)
    x, t = data((6,), 6, 3, seed=7)
    state = np.random.get_state()
    grads = net.gradient(x, t)  # training mode: dropout masks from the global RNG
    np.random.set_state(state)
    num = net.numerical_gradient(x, t)  # same masks in every evaluation
    assert_grads_close(grads, num)
    if options["use_batchnorm"]:
        assert {"gamma1", "beta1", "gamma2", "beta2"} <= set(grads)
        assert "gamma3" not in grads


def test_extend_modes_and_dropout_rng_follow_the_book():
    np.random.seed(4)
    net = make_extend(use_batchnorm=False, use_dropout=True, dropout_ration=0.5)
    x, _ = data((6,), 4, 3, seed=8)
    # evaluation mode: deterministic, scaled by 1 - ratio, no RNG draws
    state = np.random.get_state()
    y1 = net.predict(x)
    y2 = net.predict(x, train_flg=False)
    assert np.array_equal(y1, y2)
    assert np.array_equal(np.random.get_state()[1], state[1])
    # training mode: masks are np.random.rand(*shape) > ratio, in layer order
    np.random.seed(11)
    y_train = net.predict(x, train_flg=True)
    np.random.seed(11)
    m1 = np.random.rand(4, 5) > 0.5
    m2 = np.random.rand(4, 4) > 0.5
    h = np.maximum(x @ net.params["W1"] + net.params["b1"], 0) * m1
    h = np.maximum(h @ net.params["W2"] + net.params["b2"], 0) * m2
    np.testing.assert_allclose(y_train, h @ net.params["W3"] + net.params["b3"], rtol=1e-12)


def test_simple_convnet_gradient_matches_numerical():
    np.random.seed(3)
    net = make_simple_conv()
    randomize_biases(net)
    x, t = data((1, 8, 8), 3, 3, seed=10)
    assert_grads_close(net.gradient(x, t), net.numerical_gradient(x, t))


def test_simple_convnet_gradient_with_padding_and_book_label_shape():
    # ch07/gradient_check.py passes a single sample with t of shape (1, 1)
    np.random.seed(5)
    conv = {"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}
    net = make_simple_conv(conv_param=conv)
    x = np.random.rand(1, 1, 8, 8)
    t = np.array([1]).reshape((1, 1))
    assert_grads_close(net.gradient(x, t), net.numerical_gradient(x, t))


def test_deep_convnet_forward_backward_and_gradient_entries():
    np.random.seed(6)
    net = DeepConvNet()
    x, t = data((1, 28, 28), 2, 10, seed=11)
    assert net.predict(x).shape == (2, 10)
    state = np.random.get_state()
    grads = net.gradient(x, t)
    for key, val in net.params.items():
        assert grads[key].shape == val.shape, key
        assert grads[key].dtype == np.float64

    # central differences on a few entries of every parameter, with the same dropout masks
    def loss():
        np.random.set_state(state)
        return net.loss(x, t)

    # h = 1e-6 (not the book's 1e-4): with ~10^4 ReLU units per layer, a step of 1e-4 moves a
    # few pre-activations across zero and the kinks then show up in the difference quotient
    rng = np.random.default_rng(0)
    h = 1e-6
    for key in net.params:
        flat = net.params[key].reshape(-1)  # a view: perturbs the shared array
        g = grads[key].reshape(-1)
        for i in rng.choice(flat.size, size=2, replace=False):
            old = flat[i]
            flat[i] = old + h
            f1 = loss()
            flat[i] = old - h
            f2 = loss()
            flat[i] = old
            num = (f1 - f2) / (2 * h)
            assert abs(num - g[i]) <= 1e-5 + 1e-3 * abs(num), (key, i, num, g[i])


def test_deep_convnet_loss_draws_the_books_dropout_masks():
    np.random.seed(8)
    net = DeepConvNet()
    x, t = data((1, 28, 28), 3, 10, seed=12)
    np.random.seed(21)
    net.loss(x, t)  # training mode
    after_loss = np.random.get_state()
    np.random.seed(21)
    np.random.rand(3, 50)
    np.random.rand(3, 10)
    assert np.array_equal(np.random.get_state()[1], after_loss[1])
    # predict defaults to evaluation mode: deterministic
    assert np.array_equal(net.predict(x), net.predict(x, train_flg=False))


def test_deep_convnet_numerical_gradient_holds_dropout_masks_fixed(monkeypatch):
    # the full numerical gradient of DeepConvNet is far too slow to run; check its wiring by
    # restricting it to two parameters via a tiny stand-in list of keys
    import fastnn.nets.deep_convnet as mod

    np.random.seed(9)
    net = DeepConvNet(hidden_size=3, output_size=2)
    x, t = data((1, 28, 28), 2, 2, seed=13)
    captured = {}

    def fake_numerical_grads(loss, params, keys, fix_rng=False):
        captured.update(keys=list(keys), fix_rng=fix_rng)
        return {}

    monkeypatch.setattr(mod, "numerical_grads", fake_numerical_grads)
    net.numerical_gradient(x, t)
    assert captured["fix_rng"] is True
    assert captured["keys"] == [k + str(i) for i in range(1, 9) for k in "Wb"]


# --------------------------------------------------------------------------- dtype
@pytest.mark.parametrize("name", list(NETS))
def test_float32_end_to_end(name):
    make, shape, k = NETS[name]
    np.random.seed(0)
    net = make(dtype=np.float32)
    for key, val in net.params.items():
        assert val.dtype == np.float32, key
    x, t = data(shape, 3, k, seed=3, dtype=np.float32)
    assert net.predict(x).dtype == np.float32
    assert np.asarray(net.loss(x, t)).dtype == np.float32
    grads = net.gradient(x, t)
    assert set(grads) == set(net.params)
    for key, g in grads.items():
        assert g.dtype == np.float32, key
        assert g.shape == net.params[key].shape, key
    for key, val in net.params.items():  # still float32 and still shared after a step
        val -= np.float32(0.01) * grads[key]
        assert val.dtype == np.float32
    for key, layer, attr in param_layer_pairs(net):
        assert getattr(layer, attr) is net.params[key]
    assert 0.0 <= net.accuracy(x, t) <= 1.0


def test_float32_extend_eval_mode_stays_float32():
    np.random.seed(0)
    net = make_extend(np.float32)
    x, t = data((6,), 4, 3, dtype=np.float32)
    net.gradient(x, t)  # fills the running statistics
    assert net.predict(x, train_flg=False).dtype == np.float32


def test_float32_gradients_close_to_float64():
    np.random.seed(0)
    net64 = make_simple_conv()
    np.random.seed(0)
    net32 = make_simple_conv(np.float32)
    x, t = data((1, 8, 8), 4, 3, seed=4)
    g64 = net64.gradient(x, t)
    g32 = net32.gradient(x.astype(np.float32), t)
    for key in g64:
        np.testing.assert_allclose(g32[key], g64[key], rtol=2e-3, atol=1e-5, err_msg=key)


# --------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("name", list(NETS))
def test_save_load_round_trip_rebinds_layers(name, tmp_path):
    make, shape, k = NETS[name]
    np.random.seed(0)
    src = make()
    path = tmp_path / "params.pkl"
    src.save_params(str(path))
    with open(path, "rb") as f:  # the book's format: a plain dict of ndarrays
        raw = pickle.load(f)
    assert type(raw) is dict and list(raw) == list(src.params)
    assert all(type(v) is np.ndarray for v in raw.values())

    np.random.seed(1)
    dst = make()
    dst.load_params(path)
    for key in src.params:
        assert np.array_equal(dst.params[key], src.params[key]), key
    for key, layer, attr in param_layer_pairs(dst):
        assert getattr(layer, attr) is dst.params[key], key
    x, _ = data(shape, 3, k, seed=2)
    if isinstance(src, (MultiLayerNetExtend, DeepConvNet)):
        y_src, y_dst = src.predict(x, train_flg=False), dst.predict(x, train_flg=False)
    else:
        y_src, y_dst = src.predict(x), dst.predict(x)
    np.testing.assert_array_equal(y_src, y_dst)
    # updates in place after loading reach the layers
    before = dst.predict(x).copy()
    dst.params["W1"] *= 2.0
    assert not np.allclose(before, dst.predict(x))


def test_load_book_style_pickle_into_float32_net(tmp_path):
    np.random.seed(0)
    book = book_simple_conv((1, 8, 8), SMALL_CONV, 4, 3, 0.3)  # float64, as the book saves
    path = tmp_path / "book_params.pkl"
    with open(path, "wb") as f:
        pickle.dump(book, f)
    net = make_simple_conv(np.float32)
    net.load_params(path)
    for key, val in book.items():
        assert net.params[key].dtype == np.float32
        assert np.array_equal(net.params[key], val.astype(np.float32))
    assert net.layers["Conv1"].W is net.params["W1"]
    assert net.layers["Affine2"].b is net.params["b3"]
    x, t = data((1, 8, 8), 2, 3, dtype=np.float32)
    assert net.gradient(x, t)["W1"].dtype == np.float32


def test_load_float64_file_into_float64_net_keeps_the_loaded_arrays(tmp_path):
    np.random.seed(0)
    net = make_two_layer()
    path = tmp_path / "p.pkl"
    partial = {"W2": np.full((5, 3), 0.25)}  # the book's load assigns only the keys present
    with open(path, "wb") as f:
        pickle.dump(partial, f)
    W1 = net.params["W1"]
    net.load_params(path)
    assert net.params["W1"] is W1
    assert np.array_equal(net.params["W2"], partial["W2"])
    assert net.layers["Affine2"].W is net.params["W2"]


def test_load_params_rejects_bad_files(tmp_path):
    net = make_simple_conv()
    bad_shape = tmp_path / "shape.pkl"
    with open(bad_shape, "wb") as f:
        pickle.dump({"W1": np.zeros((5, 1, 3, 3)), "b1": np.zeros(3)}, f)
    b1 = net.params["b1"]
    with pytest.raises(ValueError, match=r"SimpleConvNet.load_params.*W1.*\(5, 1, 3, 3\)"):
        net.load_params(bad_shape)
    assert net.params["b1"] is b1  # nothing changed
    not_dict = tmp_path / "list.pkl"
    with open(not_dict, "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(TypeError, match="expected a dict"):
        net.load_params(not_dict)


def test_save_params_default_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(0)
    net = make_two_layer()
    net.save_params()
    assert (tmp_path / "params.pkl").exists()
    other = make_two_layer()
    other.load_params()
    assert np.array_equal(other.params["W1"], net.params["W1"])


# --------------------------------------------------------------------------- accuracy
def _full_accuracy(scores, labels):
    return np.mean(np.argmax(scores, axis=1) == labels)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_conv_accuracy_counts_every_sample_including_partial_batch(batch_size):
    np.random.seed(0)
    net = make_simple_conv(std=1.0)
    x, t = data((1, 8, 8), 7, 3, seed=14)
    scores = net.predict(x)
    t = np.argmax(scores, axis=1)
    t[[0, 6]] = (t[[0, 6]] + 1) % 3  # exactly 5 of 7 right; sample 6 is in the partial batch
    expected = 5 / 7
    assert net.accuracy(x, t, batch_size=batch_size) == pytest.approx(expected)
    assert net.accuracy(x, one_hot(t, 3), batch_size=batch_size) == pytest.approx(expected)
    assert net.accuracy(x, t.reshape(-1, 1), batch_size=batch_size) == pytest.approx(expected)


def test_deep_convnet_accuracy_batches_in_eval_mode():
    np.random.seed(0)
    net = DeepConvNet()
    x, _ = data((1, 28, 28), 5, 10, seed=15)
    t = np.argmax(net.predict(x), axis=1)
    state = np.random.get_state()
    assert net.accuracy(x, t, batch_size=2) == 1.0  # 2 + 2 + 1
    assert np.array_equal(np.random.get_state()[1], state[1])  # no dropout draws


@pytest.mark.parametrize("name", ["TwoLayerNet", "TwoLayerNet-sigmoid", "MultiLayerNet",
                                  "MultiLayerNetExtend"])  # fmt: skip
def test_fc_accuracy_with_labels_and_one_hot(name):
    make, shape, k = NETS[name]
    np.random.seed(0)
    net = make()
    x, t = data(shape, 9, k, seed=16)
    scores = net.predict(x) if name != "MultiLayerNetExtend" else net.predict(x, False)
    expected = _full_accuracy(scores, t)
    assert net.accuracy(x, t) == pytest.approx(expected)
    assert net.accuracy(x, one_hot(t, k)) == pytest.approx(expected)  # book bug fixed here


def test_accuracy_rejects_mismatched_batches():
    net = make_simple_conv()
    x, t = data((1, 8, 8), 4, 3)
    with pytest.raises(ValueError, match="4 samples but t has 3"):
        net.accuracy(x, t[:3])
    with pytest.raises(ValueError, match="non-empty"):
        net.accuracy(x[:0], t[:0])
    with pytest.raises(ValueError, match="batch_size"):
        net.accuracy(x, t, batch_size=0)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "build, exc, pattern",
    [
        (lambda: TwoLayerNet(4, 3, 2, activation="tanh"), ValueError, "TwoLayerNet.*activation"),
        (lambda: TwoLayerNet(4, 0, 2), ValueError, "TwoLayerNet.*hidden_size"),
        (lambda: TwoLayerNet(4, 3, 2, dtype=np.float16), TypeError, "TwoLayerNet.*float16"),
        (lambda: TwoLayerNet(4, 3, 2, weight_init_std="he"), TypeError, "weight_init_std"),
        (lambda: MultiLayerNet(4, [3], 2, weight_init_std="glorot"), ValueError, "glorot"),
        (lambda: MultiLayerNet(4, [3], 2, activation="elu"), ValueError, "activation"),
        (lambda: MultiLayerNet(4, 3, 2), TypeError, "hidden_size_list"),
        (lambda: MultiLayerNetExtend(4, [3], 2, dropout_ration=1.5), ValueError, "dropout"),
        (lambda: MultiLayerNetExtend(4, [3], 2, dtype=int), TypeError, "dtype"),
        (
            lambda: SimpleConvNet(input_dim=(1, 4, 4), conv_param={"filter_num": 2,
                                  "filter_size": 5, "pad": 0, "stride": 1}),
            ValueError,
            "SimpleConvNet.*does not fit",
        ),
        (
            lambda: SimpleConvNet(conv_param={"filter_num": 2, "filter_size": 3}),
            ValueError,
            "missing",
        ),
        (lambda: SimpleConvNet(input_dim=(28, 28)), ValueError, "input_dim"),
        (lambda: DeepConvNet(input_dim=(1, 2, 2)), ValueError, "DeepConvNet.*pooling.*not fit"),
    ],
)
def test_bad_arguments_raise_clear_errors(build, exc, pattern):
    with pytest.raises(exc, match=pattern):
        build()


def test_validation_does_not_consume_random_numbers():
    np.random.seed(0)
    state = np.random.get_state()
    with pytest.raises(ValueError):
        MultiLayerNet(4, [3], 2, weight_init_std="glorot")
    assert np.array_equal(np.random.get_state()[1], state[1])


def test_mutable_default_conv_params_are_not_modified():
    import inspect

    defaults = {
        name: dict(p.default)
        for name, p in inspect.signature(DeepConvNet).parameters.items()
        if name.startswith("conv_param")
    }
    DeepConvNet(dtype=np.float32)
    SimpleConvNet()
    after = {
        name: p.default
        for name, p in inspect.signature(DeepConvNet).parameters.items()
        if name.startswith("conv_param")
    }
    assert after == defaults
    assert defaults["conv_param_4"] == {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1}
