"""Fast ``numerical_gradient(x, t)`` of the book's nets, around :mod:`fastnn.kernels.numgrad`.

The nets' ``numerical_gradient`` methods call :func:`net_numerical_gradient` first. It returns
the same dict the book's loop would (the central differences ``(f(θ + h eᵢ) - f(θ - h eᵢ)) / 2h``
of the real loss, ``h = 1e-4``, for every parameter), computed by parallel kernels that
recompute only what a perturbation changes (see the kernel module's docstring); or ``None`` when
the net is outside the fast path, and the caller then runs the book's loop:

* ``dtype=np.float32`` nets (a float32 central difference is mostly rounding noise, ~5e-4,
  which only the book's own evaluation order reproduces);
* ``MultiLayerNetExtend`` with ``use_dropout=True``;
* inputs or parameters that are not finite, or inputs of a non-real dtype;
* ``x`` without a batch axis.

Side effects follow the book where a script could observe them: the parameters are never
written (not even temporarily; the book perturbs them in place and restores them bit for bit),
the layers are left holding one forward pass of ``(x, t)`` at the unperturbed parameters, and the
running statistics of batch-norm layers end where the book's ``2 P`` training-mode forward
passes leave them. The last of those passes perturb nothing before the batch norms (the output
layer comes last), so the book's statistics converge to the fixed point of the momentum update
at the batch's own mean and variance; this module iterates that update from the current state.
The two agree to rounding when the output layer has a couple of hundred parameters or more
(``0.9 ** (2 * n) < 1e-16``; any MNIST net). With fewer, the book's statistics keep a trace of
the last perturbed passes (relative size about ``h * 0.9 ** (2 * n)``) that is not reproduced.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba.core.errors import NumbaError

from . import functional as F
from .reference import CROSS_ENTROPY_EPS, NUMERICAL_GRADIENT_H

__all__ = [
    "net_numerical_gradient",
    "fc_numerical_gradient",
    "conv_numerical_gradient",
    "callable_numerical_gradient",
]

_F64 = np.dtype(np.float64)


# --------------------------------------------------------------------------- helpers
def _kern():
    """:mod:`fastnn.kernels.numgrad`, imported on first use (it declares ~30 Numba functions,
    which would add tens of milliseconds to every ``import fastnn.nets``)."""
    from .kernels import numgrad

    return numgrad


def _columns_with_ones(zT):
    """Nonzeros of a layer input, by input unit, plus a last unit of ones (the bias).

    Parameters
    ----------
    zT : ndarray
        The layer input transposed, (D, N).

    Returns
    -------
    ptr : ndarray of int64, (D + 2,)
    idx : ndarray of int64
        Sample of each nonzero.
    val : ndarray of float64
        Its value.
    """
    D, N = zT.shape
    full = np.empty((D + 1, N), dtype=_F64)
    full[:D] = zT
    full[D] = 1.0
    mask = full != 0
    ptr = np.zeros(D + 2, dtype=np.int64)
    np.cumsum(np.count_nonzero(mask, axis=1), out=ptr[1:])
    idx = np.nonzero(mask)[1].astype(np.int64)
    return ptr, idx, full[mask]


def _rows_with_ones(z):
    """Nonzeros of a layer input by sample, plus a last input of ones (the bias).

    Parameters
    ----------
    z : ndarray
        The layer input, (N, D).

    Returns
    -------
    rptr : ndarray of int64, (N + 1,)
    rcol : ndarray of int64
        Input unit of each nonzero.
    rval : ndarray of float64
        Its value.
    xmax : ndarray of float64, (N,)
        Largest ``|value|`` of each sample (at least 1).
    """
    N, D = z.shape
    full = np.empty((N, D + 1), dtype=_F64)
    full[:, :D] = z
    full[:, D] = 1.0
    mask = full != 0
    rptr = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(mask, axis=1), out=rptr[1:])
    rcol = np.nonzero(mask)[1].astype(np.int64)
    return rptr, rcol, full[mask], np.max(np.abs(full), axis=1)


def _labels(t, N, K):
    """The label of each sample, as the book's loss reads ``t`` (arg-max of one-hot rows)."""
    t = np.asarray(t)
    if t.size == N * K:
        return np.ascontiguousarray(np.argmax(t.reshape(N, K), axis=1), dtype=np.int64)
    return np.ascontiguousarray(t.reshape(-1), dtype=np.int64)


def _input(x, ndim=None):
    """``x`` as a float64 array, or None if it is outside the fast path."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub" or x.ndim < 2 or x.shape[0] == 0 or x.dtype.itemsize > 8:
        return None
    if ndim is not None and x.ndim != ndim:
        return None
    x = np.ascontiguousarray(x, dtype=_F64)
    if not np.all(np.isfinite(x)):
        return None
    return x


def _finite_float64(arrays):
    return all(
        isinstance(a, np.ndarray) and a.dtype == _F64 and np.all(np.isfinite(a)) for a in arrays
    )


def _softmax_cache(AL):
    E = np.empty_like(AL)
    S = np.empty(AL.shape[0], dtype=_F64)
    _kern().softmax_cache_kernel(AL, E, S)
    return E, S


def _activation(a, act):
    """``act(a)`` for a 2-D C-contiguous array, by the kernels' own scalar formula."""
    out = np.empty_like(a)
    _kern().act_forward_kernel(a, act, out)
    return out


# --------------------------------------------------------------------------- FC nets
class _FCSpec:
    """A fully connected net as the kernels see it.

    Attributes
    ----------
    Ws, bs : list of ndarray
        Affine weights and biases, input to output (the net's own arrays).
    gammas, betas : list of ndarray or None
        Batch-norm parameters of each hidden layer (``None`` without batch norm).
    keys : list of list of str
        Parameter keys of each layer, e.g. ``['W1', 'b1', 'gamma1', 'beta1']``.
    act : int
        Hidden activation code.
    bn_layers : list
        The net's BatchNormalization layers (running statistics are updated).
    lam : float
        Weight-decay strength.
    """

    def __init__(self, Ws, bs, keys, act, gammas=None, betas=None, bn_layers=(), lam=0.0):
        self.Ws, self.bs, self.keys, self.act = Ws, bs, keys, act
        self.gammas, self.betas = gammas, betas
        self.bn_layers = list(bn_layers)
        self.lam = float(lam)

    @property
    def use_bn(self):
        return self.gammas is not None


def _act_code(name):
    return _kern().ACT_SIGMOID if name == "sigmoid" else _kern().ACT_RELU


def _hidden_act(net):
    """Activation of a MultiLayerNet(Extend) from its first activation layer's class."""
    from .layers import Sigmoid

    layer = net.layers.get("Activation_function1")
    return "sigmoid" if isinstance(layer, Sigmoid) else "relu"


def _spec_of(net):
    """The :class:`_FCSpec` of a TwoLayerNet / MultiLayerNet / MultiLayerNetExtend, or None."""
    from .nets import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet

    p = net.params
    if isinstance(net, TwoLayerNet):
        keys = [["W1", "b1"], ["W2", "b2"]]
        return _FCSpec([p["W1"], p["W2"]], [p["b1"], p["b2"]], keys, _act_code(net.activation))
    if isinstance(net, (MultiLayerNet, MultiLayerNetExtend)):
        n = net.hidden_layer_num + 1
        Ws = [p["W" + str(i)] for i in range(1, n + 1)]
        bs = [p["b" + str(i)] for i in range(1, n + 1)]
        act = _act_code(_hidden_act(net))
        lam = net.weight_decay_lambda
        if isinstance(net, MultiLayerNetExtend):
            if net.use_dropout:
                return None
            if net.use_batchnorm:
                keys = [
                    ["W" + str(i), "b" + str(i), "gamma" + str(i), "beta" + str(i)]
                    for i in range(1, n)
                ] + [["W" + str(n), "b" + str(n)]]
                gammas = [p["gamma" + str(i)] for i in range(1, n)]
                betas = [p["beta" + str(i)] for i in range(1, n)]
                bns = [net.layers["BatchNorm" + str(i)] for i in range(1, n)]
                return _FCSpec(Ws, bs, keys, act, gammas, betas, bns, lam)
        keys = [["W" + str(i), "b" + str(i)] for i in range(1, n + 1)]
        return _FCSpec(Ws, bs, keys, act, lam=lam)
    return None


def _fc_forward(spec, x):
    """Unperturbed forward pass, keeping what the kernels reuse.

    Returns a list of per-hidden-layer dicts (``A`` (N, H), ``aT``, ``zT``, ``xnT`` (H, N),
    ``mean``, ``var``), the logits, and the input of every layer transposed.
    """
    hidden = []
    inputs_T = [np.ascontiguousarray(x.T)]
    z = x
    L = len(spec.Ws)
    N = x.shape[0]
    for li in range(L - 1):
        A = np.ascontiguousarray(np.dot(z, spec.Ws[li]) + spec.bs[li])
        aT = np.ascontiguousarray(A.T)
        H = A.shape[1]
        layer = {"A": A, "aT": aT}
        if spec.use_bn:
            xnT = np.empty_like(aT)
            sT = np.empty_like(aT)
            mean = np.empty(H, dtype=_F64)
            var = np.empty(H, dtype=_F64)
            gamma = np.ascontiguousarray(spec.gammas[li])
            beta = np.ascontiguousarray(spec.betas[li])
            _kern().bn_forward_kernel(aT, gamma, beta, spec.bn_layers[li].EPS, xnT, sT, mean, var)
            layer.update(xnT=xnT, gamma=gamma, beta=beta, mean=mean, var=var)
        else:
            sT = aT
            layer.update(
                xnT=np.empty((H, 0), dtype=_F64),
                gamma=np.ones(H, dtype=_F64),
                beta=np.zeros(H, dtype=_F64),
            )
        zT = _activation(sT, spec.act)
        layer["zT"] = zT
        if spec.act == _kern().ACT_SIGMOID and not spec.use_bn:
            layer["eT"] = np.empty_like(aT)
            layer["omzT"] = np.empty_like(aT)
            _kern().sigmoid_aux_kernel(aT, layer["eT"], layer["omzT"])
        else:
            layer["eT"] = layer["omzT"] = np.empty((H, 0), dtype=_F64)
        layer["Z"] = np.ascontiguousarray(zT.T)
        hidden.append(layer)
        inputs_T.append(zT)
        z = layer["Z"]
    AL = np.ascontiguousarray(np.dot(z, spec.Ws[-1]) + spec.bs[-1])
    assert AL.shape[0] == N
    return hidden, AL, inputs_T


def _pack_tail(Ws, hidden, li):
    """The hidden layers after ``li``, flat-packed for :func:`numgrad_fc_hidden_kernel`:
    ``(tdims, tW, tw_off, tA, tZ, ta_off, tG, tB, tg_off)``."""
    tail = hidden[li + 1 :]
    tWs = Ws[li + 1 : len(Ws) - 1]
    tdims = np.array([Ws[li].shape[1]] + [lay["A"].shape[1] for lay in tail], dtype=np.int64)

    def offsets(sizes):
        return np.cumsum([0] + sizes[:-1]).astype(np.int64)

    return (
        tdims,
        np.concatenate([w.ravel() for w in tWs]),
        offsets([w.size for w in tWs]),
        np.concatenate([lay["A"].ravel() for lay in tail]),
        np.concatenate([lay["Z"].ravel() for lay in tail]),
        offsets([lay["A"].size for lay in tail]),
        np.concatenate([lay["gamma"] for lay in tail]),
        np.concatenate([lay["beta"] for lay in tail]),
        offsets([lay["A"].shape[1] for lay in tail]),
    )


def _weight_decay_term(W, lam, h):
    """``(0.5 lam (w+h)**2 - 0.5 lam (w-h)**2) / 2h``: the decay term's central difference."""
    return (0.5 * lam * (W + h) ** 2 - 0.5 * lam * (W - h) ** 2) / (2 * h)


def fc_numerical_gradient(spec, x, t):
    """Central-difference gradients of a fully connected net.

    Parameters
    ----------
    spec : _FCSpec
        The net (float64 parameters).
    x : ndarray of float64
        Inputs (N, D), C-contiguous and finite.
    t : array_like
        Targets as given to the net's loss (one-hot or labels), already validated.

    Returns
    -------
    dict
        ``{key: gradient}`` in the book's key order.
    """
    h = NUMERICAL_GRADIENT_H
    eps = CROSS_ENTROPY_EPS
    Ws = [np.ascontiguousarray(W) for W in spec.Ws]
    bs = [np.ascontiguousarray(b) for b in spec.bs]
    L = len(Ws)
    N = x.shape[0]
    K = Ws[-1].shape[1]
    labels = _labels(t, N, K)
    hidden, AL, inputs_T = _fc_forward(spec, x)
    E, S = _softmax_cache(AL)
    grads = []
    for li in range(L):
        W, b = Ws[li], bs[li]
        gW = np.empty(W.shape, dtype=_F64)
        gb = np.empty(b.shape, dtype=_F64)
        gg = gbt = None
        out = (AL, E, S, labels, h, eps, gW, gb)
        if li == L - 1:
            _kern().numgrad_fc_output_kernel(*_columns_with_ones(inputs_T[li]), W, b, *out)
        elif li == L - 2 and not spec.use_bn:
            lay = hidden[li]
            _kern().numgrad_fc_last_hidden_sparse_kernel(
                *_rows_with_ones(np.ascontiguousarray(inputs_T[li].T)), W, b, lay["aT"],
                lay["zT"], lay["eT"], lay["omzT"], spec.act, Ws[-1], *out,
            )
        else:
            lay = hidden[li]
            gg = np.empty(b.shape, dtype=_F64)
            gbt = np.empty(b.shape, dtype=_F64)
            layer = (
                *_columns_with_ones(inputs_T[li]), W, b, lay["aT"], lay["zT"], lay["eT"],
                lay["omzT"], spec.act, spec.use_bn, lay["gamma"], lay["beta"], lay["xnT"],
                spec.bn_layers[li].EPS if spec.use_bn else 0.0,
            )
            if li == L - 2:
                _kern().numgrad_fc_last_hidden_kernel(*layer, Ws[-1], *out, gg, gbt)
            else:
                tail = _pack_tail(Ws, hidden, li)
                _kern().numgrad_fc_hidden_kernel(*layer, *tail, Ws[-1], *out, gg, gbt)
        if spec.lam:
            gW += _weight_decay_term(W, spec.lam, h)
        grads.append((gW, gb, gg, gbt))
    if spec.use_bn:
        _update_running_stats(spec, hidden)
    out = {}
    for keys, (gW, gb, gg, gbt) in zip(spec.keys, grads):
        out[keys[0]] = gW
        out[keys[1]] = gb
        if len(keys) == 4:
            out[keys[2]] = gg
            out[keys[3]] = gbt
    return out


def _update_running_stats(spec, hidden):
    """Bring the batch norms' running statistics to where the book's loop leaves them.

    The caller has run one training-mode forward pass (one update); the book runs ``2 P``.
    """
    n_params = sum(W.size + b.size for W, b in zip(spec.Ws, spec.bs))
    n_params += sum(g.size + b.size for g, b in zip(spec.gammas, spec.betas))
    count = 2 * n_params - 1
    for layer, lay in zip(spec.bn_layers, hidden):
        momentum = float(layer.momentum)
        for attr, batch in (("running_mean", lay["mean"]), ("running_var", lay["var"])):
            run = getattr(layer, attr)
            if run is None or np.shape(run) != batch.shape:
                continue
            new = np.empty(batch.shape, dtype=np.result_type(run, _F64))
            _kern().running_stat_kernel(np.asarray(run, dtype=_F64), batch, momentum, count, new)
            setattr(layer, attr, new.astype(np.asarray(run).dtype, copy=False))


# --------------------------------------------------------------------------- SimpleConvNet
def conv_numerical_gradient(net, x, t):
    """Central-difference gradients of a float64 :class:`~fastnn.nets.SimpleConvNet`.

    Parameters
    ----------
    net : SimpleConvNet
    x : ndarray of float64
        Images (N, C, H, W), C-contiguous and finite.
    t : array_like
        Targets, already validated by the net's loss.

    Returns
    -------
    dict
        ``'W1'``, ``'b1'``, ``'W2'``, ``'b2'``, ``'W3'``, ``'b3'``.
    """
    h = NUMERICAL_GRADIENT_H
    eps = CROSS_ENTROPY_EPS
    p = {k: np.ascontiguousarray(v) for k, v in net.params.items()}
    conv = net.layers["Conv1"]
    stride, pad = int(conv.stride), int(conv.pad)
    N = x.shape[0]
    A1 = np.ascontiguousarray(F.conv2d(x, p["W1"], p["b1"], stride, pad))
    Z1 = _activation(A1.reshape(A1.shape[0] * A1.shape[1], -1), _kern().ACT_RELU).reshape(A1.shape)
    P = np.ascontiguousarray(F.max_pool2d(Z1, 2, 2, 2, 0))
    Pf = P.reshape(N, -1)
    A2 = np.ascontiguousarray(np.dot(Pf, p["W2"]) + p["b2"])
    A2T = np.ascontiguousarray(A2.T)
    Z2T = _activation(A2T, _kern().ACT_RELU)
    Z2 = np.ascontiguousarray(Z2T.T)
    AL = np.ascontiguousarray(np.dot(Z2, p["W3"]) + p["b3"])
    E, S = _softmax_cache(AL)
    labels = _labels(t, N, AL.shape[1])
    xpad = np.ascontiguousarray(np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)]))

    g = {k: np.empty(v.shape, dtype=_F64) for k, v in p.items()}
    _kern().numgrad_conv_kernel(
        xpad, p["W1"], p["b1"], stride, A1, P, p["W2"], A2, Z2, p["W3"], AL, E, S, labels,
        h, eps, g["W1"], g["b1"],
    )
    empty = np.empty((A2.shape[1], 0), dtype=_F64)
    _kern().numgrad_fc_last_hidden_sparse_kernel(
        *_rows_with_ones(Pf), p["W2"], p["b2"], A2T, Z2T, empty, empty, _kern().ACT_RELU,
        p["W3"], AL, E, S, labels, h, eps, g["W2"], g["b2"],
    )
    ptr, idx, val = _columns_with_ones(Z2T)
    _kern().numgrad_fc_output_kernel(
        ptr, idx, val, p["W3"], p["b3"], AL, E, S, labels, h, eps, g["W3"], g["b3"]
    )
    return {k: g[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3")}


# --------------------------------------------------------------------------- entry point
def net_numerical_gradient(net, x, t):
    """Fast path of ``net.numerical_gradient(x, t)``, or ``None`` when it does not apply.

    Runs one forward pass of ``net.loss`` first (which validates ``x`` and ``t`` with the
    net's own error messages and, for batch norm, is the first of the book's training-mode
    passes), then the kernels.

    Parameters
    ----------
    net : TwoLayerNet, MultiLayerNet, MultiLayerNetExtend or SimpleConvNet
    x, t : array_like
        As for ``net.loss``.

    Returns
    -------
    dict or None
        Gradients by parameter key (float64, shaped like ``net.params``), or ``None``.
    """
    from .nets import MultiLayerNetExtend, SimpleConvNet

    if getattr(net, "dtype", None) != _F64:
        return None
    if isinstance(net, SimpleConvNet):
        keys = ("W1", "b1", "W2", "b2", "W3", "b3")
        if not _finite_float64([net.params[k] for k in keys]):
            return None
        if type(net.layers.get("Pool1")).__name__ != "Pooling":
            return None
        net.loss(x, t)
        x64 = _input(x, ndim=4)
        if x64 is None:
            return None
        return conv_numerical_gradient(net, x64, t)
    spec = _spec_of(net)
    if spec is None:
        return None
    arrays = spec.Ws + spec.bs + (spec.gammas + spec.betas if spec.use_bn else [])
    if not _finite_float64(arrays):
        return None
    if isinstance(net, MultiLayerNetExtend):
        net.loss(x, t, train_flg=True)
    else:
        net.loss(x, t)
    x64 = _input(x)
    if x64 is None or (getattr(net, "activation", "relu") == "sigmoid" and x64.ndim != 2):
        return None  # ch04's sigmoid net applies np.dot to N-D input as is
    x64 = x64.reshape(x64.shape[0], -1)
    if x64.shape[1] != spec.Ws[0].shape[0]:
        return None
    return fc_numerical_gradient(spec, x64, t)


# --------------------------------------------------------------------------- generic f(x)
def callable_numerical_gradient(f, x):
    """The book's central differences of a Numba-compiled ``f`` at ``x``, in parallel.

    The elements of ``x`` are split into ``numba.get_num_threads()`` contiguous slices; each
    thread runs :func:`fastnn.kernels.numgrad.numgrad_callable_kernel` (compiled, GIL-free)
    on its own copy of ``x``. ``x`` is not modified. The values are those of the book's loop
    and do not depend on the number of threads.

    Parameters
    ----------
    f : numba dispatcher
        ``f(x) -> scalar``.
    x : ndarray of float32 or float64
        Validated by the caller; any layout (non-contiguous input is copied first).

    Returns
    -------
    ndarray or None
        The gradient, shaped and laid out like ``np.zeros_like(x)``; ``None`` if Numba cannot
        compile ``f`` for ``x`` (the caller then runs the Python loop, which reports the
        problem as the book's would).
    """
    if not x.dtype.isnative or x.ndim == 0:
        return None
    xc = np.ascontiguousarray(x)
    out = np.zeros(xc.shape, dtype=xc.dtype)
    h = NUMERICAL_GRADIENT_H
    args = (h, xc.dtype.type(h), 2 * h, out)
    try:  # compile (and type-check f) on this thread, with an empty slice
        _kern().numgrad_callable_kernel(f, xc, 0, 0, *args)
    except NumbaError:
        return None
    n = xc.size
    n_threads = max(1, min(numba.get_num_threads(), n))
    if n_threads == 1:
        _kern().numgrad_callable_kernel(f, xc, 0, n, *args)
    else:
        bounds = [n * c // n_threads for c in range(n_threads + 1)]
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            jobs = [
                pool.submit(_kern().numgrad_callable_kernel, f, xc, lo, hi, *args)
                for lo, hi in zip(bounds[:-1], bounds[1:])
            ]
            for job in jobs:
                job.result()
    if out.flags.c_contiguous and np.zeros_like(x).flags.c_contiguous:
        return out
    grad = np.zeros_like(x)
    grad[...] = out
    return grad
