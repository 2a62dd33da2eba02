"""Fast numerical gradients: every fast path against the book's loop (fastnn.reference).

The oracle is the book's ``numerical_gradient(lambda W: net.loss(x, t), net.params[key])`` for
each key, i.e. :func:`fastnn.reference.numerical_gradient` driving the net's own ``loss``.
Nets are tiny so that the oracle runs quickly; inputs have zeros (the kernels skip them) and
some cases use large inputs so that the kernels' fallback branches (softmax recomputed from the
logits instead of Taylor-evaluated moments) are taken too.
"""

from __future__ import annotations

import copy

import numba
import numpy as np
import pytest

import fastnn
from fastnn import reference
from fastnn.gradient import GradientDiff, gradient_check, numerical_gradient
from fastnn.nets import MultiLayerNet, MultiLayerNetExtend, SimpleConvNet, TwoLayerNet
from fastnn.nets._base import numerical_grads

TOL = 1e-8  # the bound; the fast paths agree to ~1e-11


def book_grads(net, x, t, train_flg=None):
    """The book's loop, key by key, in the order of the fast path's keys."""
    if train_flg is None:

        def loss(_):
            return net.loss(x, t)

    else:

        def loss(_):
            return net.loss(x, t, train_flg=train_flg)

    return {key: reference.numerical_gradient(loss, net.params[key]) for key in net.params}


def check_against_book(net, x, t, train_flg=None, tol=TOL, rtol=0.0):
    before = {k: v.copy() for k, v in net.params.items()}
    fast = net.numerical_gradient(x, t)
    for key, val in before.items():  # parameters untouched, bit for bit
        np.testing.assert_array_equal(net.params[key], val)
        assert net.params[key].dtype == val.dtype
    book = book_grads(net, x, t, train_flg)
    assert set(fast) == set(book)
    for key in book:
        assert fast[key].shape == net.params[key].shape, key
        assert fast[key].dtype == np.float64, key
        np.testing.assert_allclose(fast[key], book[key], rtol=rtol, atol=tol, err_msg=key)
    return fast


def sparse_input(rng, shape, zero_frac=0.4, scale=1.0):
    x = rng.random(shape) * scale
    x[rng.random(shape) < zero_frac] = 0.0
    return x


def one_hot(labels, K):
    return np.eye(K)[labels]


# --------------------------------------------------------------------------- TwoLayerNet
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("target", ["one_hot", "labels"])
def test_two_layer_net_matches_book(activation, target, rng, restore_global_rng):
    np.random.seed(1)
    net = TwoLayerNet(9, 5, 4, weight_init_std=0.5, activation=activation)
    x = sparse_input(rng, (6, 9))
    labels = rng.integers(0, 4, 6)
    t = one_hot(labels, 4) if target == "one_hot" else labels
    check_against_book(net, x, t)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_two_layer_net_book_init_and_float32_input(activation, rng, restore_global_rng):
    """ch04/ch05 setting: weights 0.01 * randn, float32 images with many zeros, one-hot t."""
    np.random.seed(2)
    net = TwoLayerNet(16, 6, 3, activation=activation)
    x = sparse_input(rng, (5, 16), zero_frac=0.8).astype(np.float32)
    check_against_book(net, x, one_hot(rng.integers(0, 3, 5), 3))


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("scale", [8.0, 300.0])
def test_two_layer_net_large_inputs_take_fallbacks(activation, scale, rng, restore_global_rng):
    """Larger inputs and weights: steps for the degree-6 Taylor polynomials (scale 8) and
    beyond them (scale 300: ReLU units that switch inside +-h, softmax from the logits)."""
    np.random.seed(3)
    net = TwoLayerNet(6, 5, 3, weight_init_std=3.0, activation=activation)
    x = sparse_input(rng, (4, 6), scale=scale)
    if scale > 100:
        x[0, 0] = -2e4  # big steps for the output layer too
    fast = check_against_book(net, x, rng.integers(0, 3, 4), tol=1e-8, rtol=1e-7)
    assert all(np.all(np.isfinite(g)) for g in fast.values())


def test_two_layer_net_relu_unit_at_the_kink(restore_global_rng):
    """A ReLU pre-activation that crosses zero within +-h: the one-sided change is kept."""
    np.random.seed(4)
    net = TwoLayerNet(3, 2, 2, weight_init_std=1.0)
    x = np.array([[1.0, 0.5, 0.0], [0.2, 0.0, 1.0]])
    # put hidden unit 0 of sample 0 exactly on the kink: a = x W1[:, 0] + b1[0] = 0
    net.params["b1"][0] = -float(x[0] @ net.params["W1"][:, 0])
    check_against_book(net, x, np.array([0, 1]))


def test_two_layer_net_leaves_layers_in_forward_state(rng, restore_global_rng):
    np.random.seed(5)
    net = TwoLayerNet(7, 4, 3)
    x = sparse_input(rng, (3, 7))
    t = np.array([0, 2, 1])
    net.numerical_gradient(x, t)
    expected = TwoLayerNet(7, 4, 3)
    expected.params = net.params
    expected._bind_params()
    assert net.last_layer.loss == expected.loss(x, t)
    # backprop right after works as in the book
    np.testing.assert_allclose(net.gradient(x, t)["W1"], expected.gradient(x, t)["W1"])


def test_results_do_not_depend_on_threads(rng, restore_threads, restore_global_rng):
    np.random.seed(6)
    net = TwoLayerNet(12, 7, 4, weight_init_std=0.3, activation="sigmoid")
    x = sparse_input(rng, (5, 12))
    t = rng.integers(0, 4, 5)
    fastnn.set_num_threads(1)
    one = net.numerical_gradient(x, t)
    fastnn.set_num_threads(restore_threads)
    many = net.numerical_gradient(x, t)
    for key in one:
        np.testing.assert_array_equal(one[key], many[key])


# --------------------------------------------------------------------------- MultiLayerNet
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("weight_decay_lambda", [0, 0.1])
def test_multi_layer_net_matches_book(activation, weight_decay_lambda, rng, restore_global_rng):
    np.random.seed(7)
    net = MultiLayerNet(
        8, [5, 4, 3], 3, activation=activation, weight_decay_lambda=weight_decay_lambda
    )
    x = sparse_input(rng, (5, 8))
    check_against_book(net, x, one_hot(rng.integers(0, 3, 5), 3))


def test_multi_layer_net_without_hidden_layers(rng, restore_global_rng):
    np.random.seed(8)
    net = MultiLayerNet(6, [], 3, weight_decay_lambda=0.05)
    check_against_book(net, sparse_input(rng, (4, 6)), rng.integers(0, 3, 4))


def test_multi_layer_net_deep_tail_threads(rng, restore_threads, restore_global_rng):
    """The hidden-layer kernel (perturbation pushed through several later layers)."""
    np.random.seed(9)
    net = MultiLayerNet(5, [4, 3, 3], 2, activation="relu", weight_init_std=1.0)
    x = sparse_input(rng, (4, 5), scale=2.0)
    t = rng.integers(0, 2, 4)
    fastnn.set_num_threads(1)
    one = check_against_book(net, x, t)
    fastnn.set_num_threads(restore_threads)
    many = net.numerical_gradient(x, t)
    for key in one:
        np.testing.assert_array_equal(one[key], many[key])


# --------------------------------------------------------------------------- MultiLayerNetExtend
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("N", [1, 4])
def test_extend_batchnorm_matches_book(activation, N, rng, restore_global_rng):
    """Batch norm in training mode, as the book's ch06 gradient check (which uses N = 1)."""
    np.random.seed(10)
    net = MultiLayerNetExtend(
        7, [5, 4], 3, activation=activation, use_batchnorm=True, weight_decay_lambda=0.05
    )
    net.params["gamma1"][:] = 1.0 + 0.3 * np.arange(5)
    net.params["beta2"][:] = 0.1 * np.arange(4)
    x = sparse_input(rng, (N, 7))
    fast = check_against_book(net, x, rng.integers(0, 3, N), train_flg=True)
    # the book's key order: W1, b1, gamma1, beta1, W2, ...
    assert list(fast) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    if N == 1:  # a single sample's batch norm output is beta: nothing before it matters
        for key in ("b1", "gamma1", "b2", "gamma2"):
            assert np.all(fast[key] == 0.0), key
        for key in ("W1", "W2"):  # only the weight decay remains
            np.testing.assert_allclose(fast[key], 0.05 * net.params[key], rtol=1e-9, atol=1e-15)


def test_extend_batchnorm_three_hidden_layers(rng, restore_global_rng):
    np.random.seed(11)
    net = MultiLayerNetExtend(5, [4, 3, 3], 2, use_batchnorm=True, activation="sigmoid")
    check_against_book(net, sparse_input(rng, (3, 5)), rng.integers(0, 2, 3), train_flg=True)


def test_extend_without_batchnorm(rng, restore_global_rng):
    np.random.seed(12)
    net = MultiLayerNetExtend(6, [4, 4], 3, weight_decay_lambda=0.2)
    check_against_book(net, sparse_input(rng, (4, 6)), rng.integers(0, 3, 4), train_flg=True)


def test_extend_running_statistics_end_where_the_book_leaves_them(rng, restore_global_rng):
    """The book's 2P training-mode passes end with 2 * 160 passes that perturb nothing
    before the batch norms (W3, b3: 3 x 40 + 40), so its statistics have converged to the
    fixed point of the momentum update that the fast path computes."""
    np.random.seed(13)
    net = MultiLayerNetExtend(6, [4, 3], 40, use_batchnorm=True)
    x = sparse_input(rng, (5, 6))
    t = rng.integers(0, 40, 5)
    book_net = copy.deepcopy(net)
    net.numerical_gradient(x, t)
    numerical_grads(  # the book's loop
        lambda: book_net.loss(x, t, train_flg=True), book_net.params, book_net._param_keys()
    )
    for i in (1, 2):
        fast_bn, book_bn = net.layers[f"BatchNorm{i}"], book_net.layers[f"BatchNorm{i}"]
        for attr in ("running_mean", "running_var"):
            np.testing.assert_allclose(
                getattr(fast_bn, attr), getattr(book_bn, attr), rtol=1e-12, atol=1e-15
            )


def test_extend_with_dropout_keeps_the_fixed_mask_loop(rng, restore_global_rng):
    """Dropout is outside the fast path: the book's loop with the RNG state held fixed."""
    np.random.seed(14)
    net = MultiLayerNetExtend(5, [4], 2, use_dropout=True, dropout_ration=0.3)
    x = sparse_input(rng, (3, 5))
    t = rng.integers(0, 2, 3)
    state = np.random.get_state()
    num = net.numerical_gradient(x, t)
    np.random.set_state(state)
    back = net.gradient(x, t)
    for key in back:
        np.testing.assert_allclose(num[key], back[key], atol=1e-7)


# --------------------------------------------------------------------------- SimpleConvNet
CONV_CASES = [
    # (input_dim, conv_param, hidden, N)
    ((1, 10, 10), {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1}, 5, 1),  # ch07
    ((2, 7, 7), {"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 2}, 4, 3),
    ((1, 9, 8), {"filter_num": 2, "filter_size": 2, "pad": 2, "stride": 1}, 3, 2),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=["ch07", "pad1-stride2", "pad2-odd"])
def test_simple_convnet_matches_book(case, rng, restore_global_rng):
    input_dim, conv_param, hidden, N = case
    np.random.seed(15)
    net = SimpleConvNet(input_dim, conv_param, hidden_size=hidden, output_size=3,
                        weight_init_std=0.3)
    x = sparse_input(rng, (N,) + input_dim, zero_frac=0.3)
    t = rng.integers(0, 3, N).reshape(N, 1)  # the book's ch07 check passes labels (N, 1)
    check_against_book(net, x, t)


def test_simple_convnet_threads(rng, restore_threads, restore_global_rng):
    np.random.seed(16)
    conv = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}
    net = SimpleConvNet((1, 6, 6), conv, 4, 3, 0.5)
    x = sparse_input(rng, (2, 1, 6, 6))
    t = np.array([2, 0])
    fastnn.set_num_threads(1)
    one = net.numerical_gradient(x, t)
    fastnn.set_num_threads(restore_threads)
    many = net.numerical_gradient(x, t)
    for key in one:
        np.testing.assert_array_equal(one[key], many[key])


# --------------------------------------------------------------------------- outside the fast path
def test_float32_net_uses_the_book_loop(rng, restore_global_rng):
    np.random.seed(17)
    net = TwoLayerNet(5, 3, 2, dtype=np.float32)
    x = sparse_input(rng, (3, 5)).astype(np.float32)
    t = np.array([0, 1, 1])
    fast = net.numerical_gradient(x, t)
    book = book_grads(net, x, t)
    for key in book:
        assert fast[key].dtype == np.float32
        np.testing.assert_array_equal(fast[key], book[key])


def test_non_finite_input_uses_the_book_loop(rng, restore_global_rng):
    np.random.seed(18)
    net = TwoLayerNet(4, 3, 2)
    x = sparse_input(rng, (2, 4))
    x[0, 1] = np.nan
    with np.errstate(invalid="ignore"):
        fast = net.numerical_gradient(x, np.array([0, 1]))
        book = book_grads(net, x, np.array([0, 1]))
    for key in book:
        np.testing.assert_array_equal(fast[key], book[key])


def test_bad_targets_raise_the_nets_error(rng, restore_global_rng):
    np.random.seed(19)
    net = TwoLayerNet(4, 3, 2)
    with pytest.raises(ValueError):
        net.numerical_gradient(rng.random((3, 4)), np.array([0, 1]))
    with pytest.raises(ValueError):
        net.numerical_gradient(rng.random((3, 5)), np.array([0, 1, 1]))


# --------------------------------------------------------------------------- gradient_check
@pytest.mark.parametrize(
    "make",
    [
        lambda: TwoLayerNet(6, 4, 3),
        lambda: TwoLayerNet(6, 4, 3, activation="sigmoid"),
        lambda: MultiLayerNetExtend(6, [4, 4], 3, use_batchnorm=True),
        lambda: MultiLayerNetExtend(6, [4], 3, use_dropout=True),
    ],
    ids=["relu", "sigmoid", "batchnorm", "dropout"],
)
def test_gradient_check(make, rng, capsys, restore_global_rng):
    np.random.seed(20)
    net = make()
    x = sparse_input(rng, (3, 6))
    t = one_hot(rng.integers(0, 3, 3), 3)
    diffs = gradient_check(net, x, t)
    assert list(diffs) == list(net.gradient(x, t))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(diffs)
    for line, (key, d) in zip(lines, diffs.items()):
        assert isinstance(d, GradientDiff)
        assert line.startswith(f"{key}:{d.mean}")
        assert 0.0 <= d.mean <= d.max < 1e-5  # O(h**2) truncation, larger with batch norm


def test_gradient_check_reports_a_wrong_backprop(rng, restore_global_rng):
    np.random.seed(21)
    net = TwoLayerNet(5, 3, 2)
    right = net.gradient

    def wrong(x, t):
        g = {k: v.copy() for k, v in right(x, t).items()}
        g["b2"] = g["b2"] + 0.5
        return g

    net.gradient = wrong
    diffs = gradient_check(net, sparse_input(rng, (2, 5)), np.array([1, 0]), verbose=False)
    assert diffs["b2"].mean == pytest.approx(0.5, rel=1e-6)
    assert diffs["W1"].max < 1e-7


def test_gradient_check_rejects_non_nets():
    with pytest.raises(TypeError, match="gradient_check"):
        gradient_check(object(), np.zeros((1, 2)), np.zeros(1))


# --------------------------------------------------------------------------- generic path
@numba.njit
def _cubic(x):
    return np.sum(x**3) + x.ravel()[0] * x.ravel()[-1]


@numba.njit
def _not_scalar(x):
    return x * 2.0


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="bit-equality of compiled code")
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_callable_matches_book(layout, dtype, rng, restore_threads):
    base = rng.standard_normal((6, 10)).astype(dtype)
    if layout == "F":
        x = np.asfortranarray(base)
    elif layout == "strided":
        x = base[:, ::2]
    else:
        x = base
    before = x.copy()
    expected = reference.numerical_gradient(_cubic, x.copy())
    for threads in (1, restore_threads):
        fastnn.set_num_threads(threads)
        g = numerical_gradient(_cubic, x)
        np.testing.assert_array_equal(x, before)
        assert g.dtype == dtype and g.shape == x.shape
        if dtype == np.float64:
            np.testing.assert_array_equal(g, expected)
        else:
            np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-3)
    if layout == "F":
        assert g.flags.f_contiguous


def test_numba_callable_that_cannot_take_x_falls_back_to_the_python_loop():
    x = np.ones((2, 2))
    with pytest.raises((ValueError, TypeError)):
        numerical_gradient(_not_scalar, x)  # the book's loop fails the same way
    np.testing.assert_array_equal(x, np.ones((2, 2)))


def test_python_callable_reading_shared_weights(rng):
    """The book's pattern (f ignores its argument) still goes through the in-place loop."""
    W = rng.standard_normal((3, 4))
    X = rng.standard_normal((5, 3))

    def loss(_):
        return float(np.sum(np.tanh(X @ W) ** 2))

    before = W.copy()
    g = numerical_gradient(loss, W)
    np.testing.assert_array_equal(W, before)
    np.testing.assert_array_equal(g, reference.numerical_gradient(loss, W))


# --------------------------------------------------------------------------- CLI and benchmarks
def _cli(capsys, *argv):
    from fastnn import cli

    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_trains_by_numerical_gradient(capsys, restore_global_rng):
    code, out, err = _cli(
        capsys, "train", "--net", "two_layer", "--grad", "numerical", "--epochs", "1",
        "--train-size", "200", "--test-size", "100", "--eval-samples", "0",
    )
    assert code == 0, err
    assert "numerical gradient" in out and "SGD(lr=0.1), batch 100" in out
    assert "trained 2 iterations" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--net", "simple_conv"], "--grad numerical trains --net two_layer"),
        (["--net", "two_layer", "--dtype", "float32"], "--dtype float64"),
    ],
)
def test_cli_numerical_gradient_usage_errors(argv, needle, capsys):
    code, _, err = _cli(capsys, "train", "--grad", "numerical", *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_bench_numerical_gradient_case(capsys):
    from fastnn import _numgrad_bench

    (res,) = _numgrad_bench.run(["numgrad_ch07"], repeat=1)
    assert res["reference_estimated"] and res["max_abs_diff"] <= TOL
    assert res["parameters"] == 1820 and res["reference_elements"] == 60
    assert res["reference_ms"] > 0 and res["fastnn_ms"] > 0 and res["speedup"] > 0
    code, out, err = _cli(capsys, "bench", "--ops", "numgrad_ch07", "--repeat", "1")
    assert code == 0, err
    assert "gradient check ch07" in out and "reference estimated from 120 of 3,640" in out
    code, out, _ = _cli(capsys, "bench", "--list")
    assert code == 0 and all(k in out for k in _numgrad_bench.KEYS)


def test_asv_numerical_gradient_benchmark():
    import importlib
    import sys
    from pathlib import Path

    asv_dir = Path(__file__).resolve().parents[1] / "asv_bench"
    sys.path.insert(0, str(asv_dir))
    try:
        mod = importlib.import_module("benchmarks.numgrad")
    finally:
        sys.path.remove(str(asv_dir))
    b = mod.NumericalGradient()
    b.setup("numgrad_ch07")
    b.time_fastnn("numgrad_ch07")
    assert b.track_reference_seconds("numgrad_ch07") > 0
    assert mod.NumericalGradient.track_reference_seconds.unit == "seconds"
