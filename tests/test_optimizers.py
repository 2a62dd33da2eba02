"""fastnn.optimizers against the book's ``common/optimizer.py``, written out inline."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn.optimizers as O
from fastnn.kernels import optimizers as K


# ---------------------------------------------------------------- the book's code (oracle)
class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = {}, {}
            for key, val in params.items():
                self.m[key] = np.zeros_like(val)
                self.v[key] = np.zeros_like(val)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


PAIRS = [
    (O.SGD, BookSGD, {"lr": 0.1}, ()),
    (O.Momentum, BookMomentum, {"lr": 0.05, "momentum": 0.8}, ("v",)),
    (O.Nesterov, BookNesterov, {"lr": 0.05, "momentum": 0.9}, ("v",)),
    (O.AdaGrad, BookAdaGrad, {"lr": 0.1}, ("h",)),
    (O.RMSprop, BookRMSprop, {"lr": 0.01, "decay_rate": 0.9}, ("h",)),
    (O.Adam, BookAdam, {"lr": 0.01, "beta1": 0.8, "beta2": 0.99}, ("m", "v")),
]
IDS = [p[0].__name__ for p in PAIRS]
# kernel: fused Numba kernel for every size; numpy: in-place NumPy path; default: the threshold
PATHS = {"kernel": 0, "numpy": 10**12, "default": None}
SHAPES = {"W1": (6, 5), "b1": (5,), "W2": (2, 3, 2, 2), "s": ()}


def _params(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return {k: np.asarray(rng.standard_normal(s), dtype=dtype) for k, s in shapes.items()}


def _grads(params, step, dtype=None):
    rng = np.random.default_rng(1000 + step)
    out = {}
    for k, p in params.items():
        g = rng.standard_normal(p.shape) * 0.5
        g.flat[0] = 0.0  # exercises the eps in AdaGrad/RMSprop/Adam
        out[k] = np.asarray(g, dtype=dtype or p.dtype)
    return out


def _make(cls, kw, path):
    opt = cls(**kw)
    if PATHS[path] is not None:
        opt.kernel_min_size = PATHS[path]
    return opt


def _close(dtype):
    if dtype == np.float64:
        return np.testing.assert_array_equal  # bit for bit
    return lambda a, b, **k: np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-7)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,book_cls,kw,states", PAIRS, ids=IDS)
def test_matches_book_over_several_steps(cls, book_cls, kw, states, dtype, path):
    params = _params(dtype)
    book_params = {k: v.copy() for k, v in params.items()}
    ids = {k: id(v) for k, v in params.items()}
    opt, book = _make(cls, kw, path), book_cls(**kw)
    for name in states:
        assert getattr(opt, name) is None  # created lazily
    close = _close(dtype)
    for step in range(5):
        grads = _grads(params, step)
        opt.update(params, grads)
        book.update(book_params, {k: g.copy() for k, g in grads.items()})
        for k in params:
            assert id(params[k]) == ids[k]
            assert params[k].dtype == dtype and params[k].shape == SHAPES[k]
            close(params[k], book_params[k], err_msg=f"{k} step {step}")
        for name in states:
            for k in params:
                close(getattr(opt, name)[k], getattr(book, name)[k], err_msg=f"{name}[{k}]")
    if cls is O.Adam:
        assert opt.iter == 5


@pytest.mark.parametrize("cls,book_cls,kw,states", PAIRS, ids=IDS)
def test_default_hyperparameters_match_book(cls, book_cls, kw, states):
    opt, book = cls(), book_cls()
    assert vars(opt) == {k: v for k, v in vars(book).items()}
    params = _params(np.float64, seed=3, shapes={"W": (64, 80)})  # above every threshold
    book_params = {k: v.copy() for k, v in params.items()}
    for step in range(3):
        grads = _grads(params, step)
        opt.update(params, grads)
        book.update(book_params, grads)
    np.testing.assert_array_equal(params["W"], book_params["W"])


class _Layer:
    """Stands for ``Affine``: holds the very arrays the net's params dict holds."""

    def __init__(self, W, b):
        self.W, self.b = W, b


@pytest.mark.parametrize("path", ["kernel", "numpy"])
@pytest.mark.parametrize("cls,book_cls,kw,states", PAIRS, ids=IDS)
def test_layer_sees_update(cls, book_cls, kw, states, path):
    params = _params(np.float64, shapes={"W": (4, 3), "b": (3,)})
    layer = _Layer(params["W"], params["b"])
    before = layer.W.copy()
    opt = _make(cls, kw, path)
    opt.update(params, _grads(params, 0))
    assert params["W"] is layer.W and params["b"] is layer.b
    assert not np.array_equal(layer.W, before)


@pytest.mark.parametrize("cls,book_cls,kw,states", PAIRS, ids=IDS)
def test_non_contiguous_param_written_through(cls, book_cls, kw, states):
    base = np.random.default_rng(4).standard_normal((5, 8))
    view = base[:, ::2]
    book_base = base.copy()
    params = {"W": view}
    book_params = {"W": book_base[:, ::2]}
    opt, book = _make(cls, kw, "kernel"), book_cls(**kw)
    for step in range(3):
        grads = _grads(params, step)
        opt.update(params, grads)
        book.update(book_params, grads)
    assert params["W"] is view
    np.testing.assert_array_equal(base, book_base)  # untouched columns too


@pytest.mark.parametrize("cls,book_cls,kw,states", PAIRS, ids=IDS)
def test_fortran_ordered_param_uses_kernel_and_matches(cls, book_cls, kw, states):
    W = np.asfortranarray(np.random.default_rng(5).standard_normal((6, 7)))
    params, book_params = {"W": W}, {"W": W.copy(order="F")}
    opt, book = _make(cls, kw, "kernel"), book_cls(**kw)
    for step in range(3):
        grads = _grads(params, step)  # C-ordered grads
        opt.update(params, grads)
        book.update(book_params, grads)
    assert params["W"] is W and W.flags.f_contiguous
    np.testing.assert_array_equal(W, book_params["W"])


@pytest.mark.parametrize("path", ["kernel", "numpy"])
@pytest.mark.parametrize("cls,book_cls,kw,states", PAIRS, ids=IDS)
def test_float32_param_float64_grad(cls, book_cls, kw, states, path):
    params = _params(np.float32, shapes={"W": (5, 4)})
    W = params["W"]
    book_params = {"W": W.copy()}
    opt, book = _make(cls, kw, path), book_cls(**kw)
    for step in range(3):
        grads = _grads(params, step, dtype=np.float64)
        opt.update(params, grads)
        book.update(book_params, {k: g.astype(np.float32) for k, g in grads.items()})
    assert params["W"] is W and W.dtype == np.float32
    for name in states:
        assert getattr(opt, name)["W"].dtype == np.float32
    np.testing.assert_allclose(W, book_params["W"], rtol=2e-6, atol=2e-7)


def test_int_grads_are_cast():
    params = {"W": np.ones(3)}
    O.SGD(lr=0.5).update(params, {"W": np.array([1, 2, 0])})
    np.testing.assert_array_equal(params["W"], [0.5, 0.0, 1.0])


@pytest.mark.parametrize("path", ["kernel", "numpy"])
def test_lr_changed_between_steps_is_used(path):
    params = {"W": np.zeros(4)}
    opt = _make(O.SGD, {"lr": 1.0}, path)
    g = {"W": np.ones(4)}
    opt.update(params, g)
    opt.lr = 0.25
    opt.update(params, g)
    np.testing.assert_array_equal(params["W"], -1.25)


def test_extra_grads_ignored_and_new_params_get_state():
    params = {"W": np.ones(3)}
    opt = O.Momentum()
    opt.update(params, {"W": np.ones(3), "unused": np.ones(7)})
    assert set(opt.v) == {"W"}
    params["b"] = np.zeros(2)
    opt.update(params, {"W": np.ones(3), "b": np.ones(2)})
    assert set(opt.v) == {"W", "b"}
    np.testing.assert_allclose(params["b"], -0.01)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("cls", [p[0] for p in PAIRS], ids=IDS)
def test_missing_grad_is_key_error_and_nothing_changes(cls):
    params = {"W1": np.ones((2, 2)), "b1": np.ones(2)}
    with pytest.raises(KeyError, match="b1"):
        cls().update(params, {"W1": np.ones((2, 2))})
    np.testing.assert_array_equal(params["W1"], 1.0)  # validated before any update


@pytest.mark.parametrize("cls", [p[0] for p in PAIRS], ids=IDS)
def test_shape_mismatch_is_value_error(cls):
    params = {"W1": np.ones((2, 3)), "b1": np.ones(3)}
    grads = {"W1": np.ones((2, 3)), "b1": np.ones((1, 3))}
    opt = cls()
    with pytest.raises(ValueError, match=r"b1.*\(1, 3\).*\(3,\)"):
        opt.update(params, grads)
    np.testing.assert_array_equal(params["W1"], 1.0)
    if cls is O.Adam:
        assert opt.iter == 0


@pytest.mark.parametrize("cls", [p[0] for p in PAIRS], ids=IDS)
def test_bad_params_rejected(cls):
    with pytest.raises(TypeError, match=r"params\['W'\].*int64"):
        cls().update({"W": np.ones(3, dtype=np.int64)}, {"W": np.ones(3)})
    with pytest.raises(TypeError, match="float16"):
        cls().update({"W": np.ones(3, dtype=np.float16)}, {"W": np.ones(3)})
    with pytest.raises(TypeError, match=r"params\['W'\].*ndarray"):
        cls().update({"W": 1.0}, {"W": 1.0})
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        cls().update({"W": ro}, {"W": np.ones(3)})


def test_bad_grads_rejected():
    params = {"W": np.ones(3)}
    with pytest.raises(TypeError, match=r"grads\['W'\].*complex128"):
        O.SGD().update(params, {"W": np.ones(3, dtype=complex)})
    with pytest.raises(TypeError, match=r"grads\['W'\] is None"):
        O.SGD().update(params, {"W": None})
    with pytest.raises(TypeError, match="lr"):
        O.SGD(lr="fast").update(params, {"W": np.ones(3)})
    with pytest.raises(TypeError, match="dicts"):
        O.SGD().update([np.ones(3)], [np.ones(3)])


# ---------------------------------------------------------------- kernels and module alias
@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="counts compiled signatures")
def test_read_only_grad_and_signatures_stay_few():
    for dt in (np.float32, np.float64):
        g = np.ones(50, dtype=dt)
        g.flags.writeable = False
        opt = O.Adam()
        opt.kernel_min_size = 0
        opt.update({"W": np.ones(50, dtype=dt)}, {"W": g})
    kernels = [getattr(K, n) for n in K.__all__]
    for kern in kernels:
        for sig in kern.signatures:
            arrays = [a for a in sig if hasattr(a, "ndim")]
            assert arrays, sig
            for a in arrays:
                assert a.ndim == 1 and a.layout == "C" and a.mutable, sig
                assert str(a.dtype) in ("float32", "float64"), sig
            scalars = [a for a in sig if not hasattr(a, "ndim")]
            assert all(str(s) == str(arrays[0].dtype) for s in scalars), sig
    assert len(K.adam_update_kernel.signatures) <= 2


@settings(max_examples=25, deadline=None)
@given(
    idx=st.integers(0, len(PAIRS) - 1),
    n=st.integers(1, 40),
    steps=st.integers(1, 4),
    scale=st.sampled_from([1e-8, 1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_kernel_bit_exact_property(idx, n, steps, scale, seed):
    cls, book_cls, kw, states = PAIRS[idx]
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(n)
    params, book_params = {"W": W}, {"W": W.copy()}
    opt, book = _make(cls, kw, "kernel"), book_cls(**kw)
    for _ in range(steps):
        g = {"W": rng.standard_normal(n) * scale}
        opt.update(params, g)
        book.update(book_params, g)
    np.testing.assert_array_equal(W, book_params["W"])


def test_optimizer_alias_module():
    import fastnn.optimizer as alias
    from fastnn.optimizer import Adam, SGD  # noqa: F401

    assert Adam is O.Adam
    assert set(alias.__all__) == {"SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"}
    for name in alias.__all__:
        assert getattr(alias, name) is getattr(O, name)
