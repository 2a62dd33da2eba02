"""Machinery shared by the nets of :mod:`fastnn.nets`.

Each net of the book repeats the same few pieces of code: weight initialisation from NumPy's
global RNG, the backward sweep through the layers, the ``numerical_gradient`` loop, a
(batched) ``accuracy`` and the ``save_params`` / ``load_params`` pickles. They live here once.

Nothing in this module copies, casts or replaces a parameter array that a layer holds, except
:meth:`NetBase.load_params`, which (as the book's) re-binds the layers to the loaded arrays.
"""

from __future__ import annotations

import numbers
import pickle
from collections.abc import Mapping

import numpy as np

from .. import _checks as ck
from ..gradient import numerical_gradient as _numerical_gradient

__all__ = [
    "NetBase",
    "check_dtype",
    "check_size",
    "check_scale",
    "check_conv_param",
    "window_out",
    "check_input_dim",
    "randn_init",
    "backprop",
    "numerical_grads",
    "accuracy",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------- validation
def check_dtype(op, dtype):
    """``dtype`` as a :class:`numpy.dtype`, which must be float32 or float64.

    Parameters
    ----------
    op : str
        Name used in error messages (e.g. ``"TwoLayerNet"``).
    dtype : dtype_like
        Requested parameter dtype.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    TypeError
        If ``dtype`` is not float32 or float64.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in _FLOATS:
        raise TypeError(f"{op}: dtype must be np.float32 or np.float64, got {dt}")
    return dt


def check_size(op, name, value):
    """``value`` as a positive Python int (a layer width, a filter count, ...).

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If ``value < 1``.
    """
    return ck.as_int(op, name, value, 1)


def check_scale(op, name, value):
    """Check that a weight scale is a real number and return it unchanged.

    The value itself is kept (not converted) so that ``value * np.random.randn(...)`` is
    computed exactly as in the book.

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    if isinstance(value, np.number) and not isinstance(value, (np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")
    return value


def check_conv_param(op, name, conv_param):
    """Validate a book-style ``conv_param`` dict and return ``(filter_num, filter_size, pad,
    stride)`` as Python ints.

    Parameters
    ----------
    op : str
        Net name for error messages.
    name : str
        Argument name (``"conv_param"``, ``"conv_param_3"``, ...).
    conv_param : Mapping
        ``{'filter_num': int, 'filter_size': int, 'pad': int, 'stride': int}``.

    Raises
    ------
    TypeError
        If ``conv_param`` is not a mapping or a value is not an integer.
    ValueError
        If a key is missing or a value is out of range.
    """
    if not isinstance(conv_param, Mapping):
        raise TypeError(
            f"{op}: {name} must be a dict with keys 'filter_num', 'filter_size', 'pad', "
            f"'stride'; got {type(conv_param).__name__}"
        )
    missing = [k for k in ("filter_num", "filter_size", "pad", "stride") if k not in conv_param]
    if missing:
        raise ValueError(f"{op}: {name} is missing key(s) {missing}; got {dict(conv_param)!r}")
    return (
        ck.as_int(op, f"{name}['filter_num']", conv_param["filter_num"], 1),
        ck.as_int(op, f"{name}['filter_size']", conv_param["filter_size"], 1),
        ck.as_int(op, f"{name}['pad']", conv_param["pad"], 0),
        ck.as_int(op, f"{name}['stride']", conv_param["stride"], 1),
    )


def window_out(op, what, hw, window, stride, pad):
    """Output ``(OH, OW)`` of a convolution/pooling window on an ``hw`` input.

    Raises
    ------
    ValueError
        If the window does not fit into the padded input (naming ``what``).
    """
    H, W = hw
    if window > H + 2 * pad or window > W + 2 * pad:
        raise ValueError(
            f"{op}: {what} window {window}x{window} does not fit its {H}x{W} input "
            f"(pad {pad}); use a larger input_dim or smaller filters"
        )
    return (H + 2 * pad - window) // stride + 1, (W + 2 * pad - window) // stride + 1


def check_input_dim(op, input_dim):
    """``input_dim`` as a tuple ``(C, H, W)`` of positive ints."""
    try:
        dims = tuple(input_dim)
    except TypeError:
        raise TypeError(f"{op}: input_dim must be a tuple (C, H, W), got {input_dim!r}") from None
    if len(dims) != 3:
        raise ValueError(f"{op}: input_dim must be a tuple (C, H, W), got {input_dim!r}")
    return tuple(ck.as_int(op, "input_dim", d, 1) for d in dims)


# --------------------------------------------------------------------------- parameters
def randn_init(scale, shape, dtype):
    """``scale * np.random.randn(*shape)`` cast to ``dtype``, the book's draw.

    The draw and the multiplication are float64 exactly as in the book, so after
    ``np.random.seed(s)`` the weights equal the book's bit for bit; only then is the array
    cast (no copy for float64).

    Parameters
    ----------
    scale : float or numpy floating
        Standard deviation.
    shape : tuple of int
        Array shape.
    dtype : numpy.dtype
        float32 or float64.

    Returns
    -------
    ndarray
    """
    return (scale * np.random.randn(*shape)).astype(dtype, copy=False)


# --------------------------------------------------------------------------- training helpers
def backprop(last_layer, layers):
    """The book's backward sweep: ``last_layer.backward(1)`` then every layer in reverse.

    Parameters
    ----------
    last_layer : SoftmaxWithLoss
        The loss layer (its forward must have run).
    layers : iterable of layers
        In forward order.

    Returns
    -------
    ndarray
        Gradient with respect to the network input.
    """
    dout = last_layer.backward(1)
    for layer in reversed(list(layers)):
        dout = layer.backward(dout)
    return dout


def numerical_grads(loss, params, keys, fix_rng=False):
    """Numerical gradients of ``loss()`` with respect to ``params[key]`` for each key.

    Each parameter array is perturbed in place by :func:`fastnn.gradient.numerical_gradient`
    (the book's ``loss_W = lambda W: self.loss(x, t)``), so the layers, which share the
    arrays, see every perturbation.

    Parameters
    ----------
    loss : callable
        ``loss() -> scalar``; reads the shared parameters.
    params : dict
        The net's parameters.
    keys : iterable of str
        Keys to differentiate, in the book's order.
    fix_rng : bool, default False
        If True, NumPy's global RNG state is captured once and restored before every call of
        ``loss``, so that dropout masks are the same in every evaluation (otherwise the
        difference quotients of a net with dropout are noise). The result then equals the
        analytic gradient computed from that same RNG state.

    Returns
    -------
    dict
        ``{key: gradient}``, gradients with the shape and dtype of the parameters.
    """
    if fix_rng:
        state = np.random.get_state()

        def f(_):
            np.random.set_state(state)
            return loss()

    else:

        def f(_):
            return loss()

    return {key: _numerical_gradient(f, params[key]) for key in keys}


def _labels(op, t, N):
    """Class labels ``(N,)`` from one-hot ``(N, K)`` or labels ``(N,)`` / ``(N, 1)``."""
    if t is None:
        raise TypeError(f"{op}: t is None; expected labels or one-hot targets")
    t = np.asarray(t)
    if t.ndim == 2 and t.shape[1] != 1:
        t = np.argmax(t, axis=1)
    elif t.ndim == 2:
        t = t[:, 0]
    elif t.ndim != 1:
        raise ValueError(f"{op}: t must be labels (N,) or one-hot (N, K), got shape {t.shape}")
    if t.shape[0] != N:
        raise ValueError(f"{op}: x has {N} samples but t has {t.shape[0]}")
    return t


def accuracy(op, predict, x, t, batch_size=None):
    """Fraction of samples whose arg-max score equals the label.

    Parameters
    ----------
    op : str
        Name for error messages (``"SimpleConvNet.accuracy"``).
    predict : callable
        ``predict(x_batch) -> scores (n, K)`` (in evaluation mode).
    x : ndarray
        Inputs, first axis = samples.
    t : array_like
        One-hot ``(N, K)`` (its arg-max is the label) or labels ``(N,)`` / ``(N, 1)``.
    batch_size : int or None, default None
        ``None``: one call of ``predict`` on all of ``x``. Otherwise ``x`` is evaluated in
        slices of ``batch_size``, including a final partial slice (the book skips it; this is a
        deliberate fix), and the count is divided by ``N``.

    Returns
    -------
    numpy.float64
        Accuracy in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``x`` is empty, or ``x`` and ``t`` disagree on ``N``.
    """
    shape = np.shape(x)
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"{op}: x must be a non-empty batch, got shape {shape}")
    N = shape[0]
    t = _labels(op, t, N)
    step = N if batch_size is None else ck.as_int(op, "batch_size", batch_size, 1)
    correct = 0
    for start in range(0, N, step):
        y = predict(x[start : start + step])
        correct += int(np.sum(np.argmax(y, axis=1) == t[start : start + step]))
    return np.float64(correct) / N


# --------------------------------------------------------------------------- base class
class NetBase:
    """Common methods of the nets: ``save_params``, ``load_params`` and ``lastLayer``.

    Subclasses set ``self.params`` (a dict of arrays) and ``self.dtype``, and override
    :meth:`_param_slots` to say which layer attribute holds which parameter.
    """

    params: dict
    dtype: np.dtype

    def _param_slots(self):
        """``[(key, layer, attribute), ...]``: the layer attributes that share ``params``.

        Returns
        -------
        list of tuple
            Empty for nets without layer objects.
        """
        return []

    def _bind_params(self):
        """Point every layer attribute at its array in ``self.params`` (the book's
        ``self.layers[...].W = self.params['W1']`` after loading)."""
        for key, layer, attr in self._param_slots():
            setattr(layer, attr, self.params[key])

    @property
    def lastLayer(self):  # noqa: N802 - the ch05 TwoLayerNet's name
        """Alias of ``last_layer`` (ch05's ``TwoLayerNet`` calls it ``lastLayer``)."""
        return self.last_layer

    @lastLayer.setter
    def lastLayer(self, layer):  # noqa: N802
        self.last_layer = layer

    def save_params(self, file_name="params.pkl"):
        """Pickle the parameters as a plain ``{key: ndarray}`` dict, as the book does.

        The file is readable by the book's ``load_params`` (and by :meth:`load_params`).

        Parameters
        ----------
        file_name : str or os.PathLike, default "params.pkl"
            Destination file (overwritten).
        """
        params = {}
        for key, val in self.params.items():
            params[key] = val
        with open(file_name, "wb") as f:
            pickle.dump(params, f)

    def load_params(self, file_name="params.pkl"):
        """Load a pickled ``{key: ndarray}`` dict (the book's format) into the net.

        As in the book, ``self.params[key]`` is replaced by the loaded array and the layers
        are re-bound to it, so ``params`` and layers share memory again. Arrays are cast to
        the net's ``dtype`` (no copy when they already have it, e.g. the book's float64 files
        in a float64 net). Everything is checked before anything is changed.

        Parameters
        ----------
        file_name : str or os.PathLike, default "params.pkl"
            A pickle written by :meth:`save_params` or by the book. Like any pickle, only load
            files you trust.

        Raises
        ------
        TypeError
            If the file does not hold a dict of numeric arrays.
        ValueError
            If an array's shape differs from the net's parameter of the same key.
        """
        op = f"{type(self).__name__}.load_params"
        with open(file_name, "rb") as f:
            params = pickle.load(f)
        if not isinstance(params, Mapping):
            raise TypeError(
                f"{op}: {file_name!r} holds a {type(params).__name__}, expected a dict "
                f"{{key: ndarray}}"
            )
        loaded = {}
        for key, val in params.items():
            arr = np.asarray(val)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{op}: params[{key!r}] has dtype {arr.dtype}; expected floats")
            arr = arr.astype(self.dtype, copy=False)
            if key in self.params and arr.shape != np.shape(self.params[key]):
                raise ValueError(
                    f"{op}: params[{key!r}] in {file_name!r} has shape {arr.shape}, but this "
                    f"net's {key} has shape {np.shape(self.params[key])}"
                )
            loaded[key] = arr
        for key, val in loaded.items():
            self.params[key] = val
        self._bind_params()
