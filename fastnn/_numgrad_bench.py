"""Benchmarks of the nets' ``numerical_gradient(x, t)``: the book's loop versus fastnn.

Used by ``fastnn bench --ops numgrad`` (or one key, e.g. ``--ops numgrad_ch04``) and by the asv
benchmarks in ``asv_bench/benchmarks/numgrad.py``. The cases are the book's own uses of
numerical gradients, on the first images of MNIST (the bundled digits unless ``$FASTNN_DATA``
names the full set; their zeros matter, as in the book), float64 nets as in the book.

**The reference column is an estimate.** The book's method (``numerical_gradient(lambda W:
net.loss(x, t), net.params[key])`` for every key: two full loss evaluations per parameter) takes
tens of seconds to minutes for these nets, so it is not run to the end: the book's loop
(:func:`fastnn.reference.numerical_gradient`, perturbing the net's parameters in place) is timed
over :data:`REFERENCE_ELEMENTS_PER_KEY` elements of every parameter array, and that time is
scaled by (number of parameters) / (number of elements timed). Each loss evaluation is a whole
forward pass whose cost does not depend on which element is perturbed, so the scaled time is the
full loop's, up to timing noise. fastnn's column is the complete ``net.numerical_gradient(x, t)``
call. The sampled elements' values are compared with fastnn's (``max_abs_diff`` in the results).
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import reference as R

__all__ = [
    "NumgradCase",
    "CASES",
    "KEYS",
    "REFERENCE_ELEMENTS_PER_KEY",
    "get_case",
    "estimate_reference_seconds",
    "run",
]

#: Elements of each parameter array that the book's loop is timed on.
REFERENCE_ELEMENTS_PER_KEY = 10
#: Seed of the weights (NumPy's global RNG, restored afterwards) and of random inputs.
SEED = 1234


@dataclass(frozen=True)
class NumgradCase:
    """One benchmarked numerical gradient.

    Parameters
    ----------
    key : str
        ``fastnn bench --ops`` name.
    op : str
        Display name.
    desc : str
        Net and batch, shown in the table's shape legend.
    build : callable
        ``build() -> (net, x, t, train_flg)``: the net (weights drawn after
        ``np.random.seed(SEED)``), a batch, and whether the loss runs in training mode.
    forward_flops : callable
        ``forward_flops(net, x) -> float``: multiply-adds x 2 of one forward pass, to express
        the book's method as FLOPs (2 P forward passes).
    """

    key: str
    op: str
    desc: str
    build: Callable[[], tuple]
    forward_flops: Callable[..., float]


def _mnist(n, flatten=True):
    from .datasets import load_mnist

    (x, t), _ = load_mnist(normalize=True, flatten=flatten, one_hot_label=True)
    return x[:n], t[:n]


def _seeded(make):
    """Call ``make()`` after ``np.random.seed(SEED)``, leaving the global RNG as it was."""
    state = np.random.get_state()
    try:
        np.random.seed(SEED)
        return make()
    finally:
        np.random.set_state(state)


def _two_layer(activation, n):
    def build():
        from .nets import TwoLayerNet

        net = _seeded(lambda: TwoLayerNet(784, 50, 10, activation=activation))
        x, t = _mnist(n)
        return net, x, t, None

    return build


def _multi_layer():
    from .nets import MultiLayerNet

    net = _seeded(lambda: MultiLayerNet(784, [100, 100], 10, weight_decay_lambda=0.1))
    x, t = _mnist(10)
    return net, x, t, None


def _ch06():
    from .nets import MultiLayerNetExtend

    net = _seeded(lambda: MultiLayerNetExtend(784, [100, 100], 10, use_batchnorm=True))
    x, t = _mnist(1)
    return net, x, t, True


def _ch07():
    from .nets import SimpleConvNet

    conv = {"filter_num": 10, "filter_size": 3, "pad": 0, "stride": 1}
    net = _seeded(lambda: SimpleConvNet((1, 10, 10), conv, 10, 10, 0.01))
    x = np.random.default_rng(SEED).random(100).reshape((1, 1, 10, 10))
    return net, x, np.array([1]).reshape((1, 1)), None


def _fc_flops(net, x):
    sizes = [net.params[k].size for k in net.params if k.startswith("W")]
    return 2.0 * x.shape[0] * sum(sizes)


def _conv_flops(net, x):
    W1 = net.params["W1"]
    OH, OW = x.shape[2] - W1.shape[2] + 1, x.shape[3] - W1.shape[3] + 1  # stride 1, no pad
    conv_out = x.shape[0] * W1.shape[0] * OH * OW
    fc = net.params["W2"].size + net.params["W3"].size
    return 2.0 * (conv_out * W1[0].size + x.shape[0] * fc)


CASES: tuple[NumgradCase, ...] = (
    NumgradCase("numgrad_ch04", "TwoLayerNet numerical_gradient (ch04, sigmoid)",
                "TwoLayerNet(784, 50, 10, activation='sigmoid'), batch 100: a ch04 training step",
                _two_layer("sigmoid", 100), _fc_flops),
    NumgradCase("numgrad_two_layer", "TwoLayerNet numerical_gradient (ReLU)",
                "TwoLayerNet(784, 50, 10), batch 100", _two_layer("relu", 100), _fc_flops),
    NumgradCase("numgrad_ch05", "gradient check ch05 (TwoLayerNet)",
                "TwoLayerNet(784, 50, 10), 3 samples, as ch05/gradient_check.py",
                _two_layer("relu", 3), _fc_flops),
    NumgradCase("numgrad_multi_layer", "MultiLayerNet numerical_gradient (weight decay)",
                "MultiLayerNet(784, [100, 100], 10, weight_decay_lambda=0.1), batch 10",
                _multi_layer, _fc_flops),
    NumgradCase("numgrad_ch06", "gradient check ch06 (batch norm)",
                "MultiLayerNetExtend(784, [100, 100], 10, use_batchnorm=True), 1 sample, "
                "training mode, as ch06/batch_norm_gradient_check.py", _ch06, _fc_flops),
    NumgradCase("numgrad_ch07", "gradient check ch07 (SimpleConvNet)",
                "SimpleConvNet((1, 10, 10), 10 filters 3x3, hidden 10), 1 sample, as "
                "ch07/gradient_check.py", _ch07, _conv_flops),
)

#: Keys of :data:`CASES`.
KEYS = tuple(c.key for c in CASES)
_BY_KEY = {c.key: c for c in CASES}


def get_case(key):
    """The :class:`NumgradCase` called ``key`` (or ``ValueError`` listing the keys)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise ValueError(
            f"bench: unknown numerical-gradient case {key!r}; known: {', '.join(KEYS)}"
        ) from None


def _book_loop(net, x, t, train_flg, per_key):
    """The book's loop over ``per_key`` evenly spread elements of every parameter array.

    Returns ``(values, n_elements)``: ``values[key]`` is ``(flat indices, gradient values)``.
    """
    if train_flg is None:

        def f(_):
            return net.loss(x, t)

    else:

        def f(_):
            return net.loss(x, t, train_flg=train_flg)

    values = {}
    n = 0
    for key, param in net.params.items():
        flat = param.reshape(-1)  # a view: the book's loop perturbs the net's own array
        step = max(1, flat.size // per_key)
        view = flat[::step][:per_key]
        values[key] = (np.arange(0, flat.size, step)[:per_key], R.numerical_gradient(f, view))
        n += view.size
    return values, n


def estimate_reference_seconds(net, x, t, train_flg=None):
    """Seconds the book's loop would take for the whole gradient, from one timed sample.

    The loop is run over :data:`REFERENCE_ELEMENTS_PER_KEY` elements of every parameter array
    and its time scaled by (parameters) / (elements run).

    Returns
    -------
    float
    """
    n_params = sum(p.size for p in net.params.values())
    t0 = time.perf_counter()
    _, n_el = _book_loop(net, x, t, train_flg, REFERENCE_ELEMENTS_PER_KEY)
    return (time.perf_counter() - t0) * n_params / n_el


def _median_time(fn, budget, repeat):
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        t_end = time.perf_counter() + budget
        while True:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            if (repeat is not None and len(times) >= repeat) or (
                repeat is None and time.perf_counter() >= t_end
            ):
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(times), len(times), out


def run(keys=None, budget=0.25, repeat=None, callback=None):
    """Time the numerical-gradient cases.

    Parameters
    ----------
    keys : sequence of str, optional
        Case keys (:data:`KEYS`); all when omitted.
    budget : float, default 0.25
        Seconds per measurement when ``repeat`` is not given (at least one call).
    repeat : int, optional
        Timed calls per measurement.
    callback : callable, optional
        Called with each result as soon as it is measured.

    Returns
    -------
    list of dict
        Records in the format of :func:`fastnn.bench.run` (``op``, ``shape`` = ``'book'``,
        ``shape_desc``, ``dtype`` = ``'float64'``, ``threads``, ``work`` (FLOPs of the book's
        method), ``unit``, ``reference_ms`` (**estimated**, see the module docstring),
        ``fastnn_ms``, ``torch_ms`` = None, ``repeats``, ``speedup``, ``rate``...) plus
        ``reference_estimated`` = True, ``reference_elements`` (elements the book's loop was
        timed on), ``parameters`` and ``max_abs_diff`` (fastnn versus the book's loop on those
        elements).
    """
    from . import _runtime
    from .bench import _derive

    keys = KEYS if keys is None else [get_case(k).key for k in keys]
    results = []
    for key in keys:
        case = get_case(key)
        net, x, t, train_flg = case.build()
        n_params = sum(p.size for p in net.params.values())
        grads = net.numerical_gradient(x, t)  # warm-up (compiles or loads the kernels)
        fast_s, fast_n, grads = _median_time(
            functools.partial(net.numerical_gradient, x, t), budget, repeat
        )
        ref_s, ref_n, (values, n_el) = _median_time(
            functools.partial(_book_loop, net, x, t, train_flg, REFERENCE_ELEMENTS_PER_KEY),
            budget, repeat,
        )
        diff = max(
            float(np.max(np.abs(grads[k].reshape(-1)[idx] - v))) for k, (idx, v) in values.items()
        )
        res = {
            "key": key,
            "op": case.op,
            "shape": "book",
            "shape_desc": f"{case.desc}; reference estimated from {2 * n_el} of "
            f"{2 * n_params:,} loss evaluations",
            "dtype": "float64",
            "threads": _runtime.get_num_threads(),
            "work": 2.0 * n_params * case.forward_flops(net, x),
            "unit": "FLOP",
            "reference_ms": ref_s * 1e3 * n_params / n_el,
            "fastnn_ms": fast_s * 1e3,
            "torch_ms": None,
            "repeats": {"reference": ref_n, "fastnn": fast_n},
            "reference_estimated": True,
            "reference_elements": n_el,
            "parameters": n_params,
            "max_abs_diff": diff,
        }
        _derive(res)
        res["rate"] = None  # a rate of the book's FLOPs per fastnn second would mean nothing
        results.append(res)
        if callback is not None:
            callback(res)
    return results
