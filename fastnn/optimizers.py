"""Gradient-descent optimizers of *Deep Learning from Scratch* (``common/optimizer.py``).

Drop-in replacements for the book's ``SGD``, ``Momentum``, ``Nesterov``, ``AdaGrad``,
``RMSprop`` and ``Adam``: same constructor arguments and defaults, same attribute names
(``lr``, ``momentum``, ``decay_rate``, ``beta1``, ``beta2``, ``iter`` and the lazily created
state dicts ``v``, ``h``, ``m``), and the same formulas evaluated in the same order, so float64
results are bit-for-bit the book's.

``update(params, grads)`` changes every ``params[key]`` **in place**: the dict keeps the same
array objects, so layers that hold those arrays (``net.params['W1'] is net.layers['Affine1'].W``)
see the new values. Large contiguous parameters are updated by one fused Numba kernel each
(:mod:`fastnn.kernels.optimizers`: a single pass, no temporaries); tiny or non-contiguous ones
use the book's NumPy expressions, in place.

Differences from the book, all deliberate:

* the state arrays are updated in place rather than rebound (same values);
* a parameter key that appears after the first ``update`` gets its state created then (the
  book raises ``KeyError``), and a state array whose parameter changed shape or dtype is
  recreated as zeros;
* a gradient whose dtype differs from its parameter's is cast to the parameter's dtype first
  (the parameter keeps its dtype); float32 parameters are updated in float32 arithmetic;
* inputs are validated: a missing gradient raises ``KeyError`` naming the key, a shape
  mismatch ``ValueError`` naming the key and both shapes, and non-float parameters
  ``TypeError``.

Examples
--------
>>> import numpy as np
>>> from fastnn.optimizers import SGD
>>> W = np.ones(3)
>>> params, grads = {"W": W}, {"W": np.full(3, 2.0)}
>>> SGD(lr=0.1).update(params, grads)
>>> params["W"] is W, W
(True, array([0.8, 0.8, 0.8]))
"""

from __future__ import annotations

import numpy as np

from fastnn.kernels import optimizers as _k

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


#: The book's ``1e-7``, added outside the square root.
EPS = 1e-7

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _to_float(op, name, value):
    """A hyperparameter as a Python float, or a ``TypeError`` naming it."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}") from None


def _check_param(op, key, p):
    """Raise unless ``p`` is a writeable float32/float64 ndarray that can be updated in place."""
    if not isinstance(p, np.ndarray):
        raise TypeError(
            f"{op}.update: params[{key!r}] must be a numpy.ndarray (it is updated in place), "
            f"got {type(p).__name__}"
        )
    if p.dtype not in _FLOATS:
        raise TypeError(
            f"{op}.update: params[{key!r}] has dtype {p.dtype}; parameters must be float32 or "
            f"float64 (convert with .astype(np.float64) before training)"
        )
    if not p.flags.writeable:
        raise ValueError(f"{op}.update: params[{key!r}] is read-only and cannot be updated in place")


def _check_grad(op, key, p, g):
    """``grads[key]`` as an array of ``p``'s dtype and shape, or a clear error."""
    if g is None:
        raise TypeError(f"{op}.update: grads[{key!r}] is None; expected an array")
    try:
        g = np.asarray(g)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{op}.update: grads[{key!r}] cannot be converted to an array ({exc})") from None
    if g.dtype.kind not in "iubf" or g.dtype == np.float16 or g.dtype.itemsize > 8:
        raise TypeError(
            f"{op}.update: grads[{key!r}] has unsupported dtype {g.dtype}; expected a real "
            f"float32/float64 (or integer) array"
        )
    if g.shape != p.shape:
        raise ValueError(
            f"{op}.update: grads[{key!r}] has shape {g.shape} but params[{key!r}] has shape "
            f"{p.shape}"
        )
    return g.astype(p.dtype, copy=False)


def _layout(p):
    """Memory order whose 1-D reshape of ``p`` is a view, or ``None`` (use NumPy)."""
    if not p.flags.aligned:
        return None
    if p.flags.c_contiguous:
        return "C"
    if p.flags.f_contiguous:
        return "F"
    return None


def _state_view(s, p, order):
    """Flat writeable view of state array ``s`` in ``order``, or ``None`` if ``s`` has none."""
    if (
        isinstance(s, np.ndarray)
        and s.dtype == p.dtype
        and s.shape == p.shape
        and s.flags.writeable
        and s.flags.aligned
        and (s.flags.c_contiguous if order == "C" else s.flags.f_contiguous)
    ):
        return s.reshape(-1, order=order)
    return None


class _Optimizer:
    """Shared validation and dispatch; subclasses define ``_state_names`` and the two steps."""

    #: Names of the per-parameter state dicts (attributes), created lazily.
    _state_names: tuple = ()
    #: Parameters with fewer elements than this are updated with NumPy expressions in place;
    #: from this size on, the fused kernel beats NumPy despite its thread-pool launch cost
    #: (measured; the more NumPy temporaries a formula makes, the lower the crossover).
    kernel_min_size: int = 4096

    def _prepare(self, params, grads):
        """Validate everything before touching anything; return ``[(key, p, g), ...]``."""
        op = type(self).__name__
        if not hasattr(params, "keys") or not hasattr(grads, "keys"):
            raise TypeError(
                f"{op}.update: params and grads must be dicts of arrays, got "
                f"{type(params).__name__} and {type(grads).__name__}"
            )
        work = []
        for key in params.keys():
            p = params[key]
            _check_param(op, key, p)
            if key not in grads:
                raise KeyError(f"{op}.update: grads has no entry for parameter {key!r}")
            work.append((key, p, _check_grad(op, key, p, grads[key])))
        return work

    def _states(self, key, p):
        """The state arrays of ``key`` (created as ``zeros_like(p)`` when missing or stale)."""
        out = []
        for name in self._state_names:
            d = getattr(self, name)
            s = d.get(key)
            if not isinstance(s, np.ndarray) or s.shape != p.shape or s.dtype != p.dtype:
                s = d[key] = np.zeros_like(p)
            out.append(s)
        return out

    def _init_states(self, params):
        """Create the state dicts on the first call, as the book does."""
        for name in self._state_names:
            if getattr(self, name) is None:
                setattr(self, name, {key: np.zeros_like(val) for key, val in params.items()})

    def _apply(self, work, scalars):
        """Update each parameter with the fused kernel when possible, else with NumPy."""
        for key, p, g in work:
            states = self._states(key, p)
            dt = p.dtype.type
            sc = tuple(dt(s) for s in scalars)
            order = _layout(p) if p.size >= self.kernel_min_size else None
            if order is not None:
                flats = [_state_view(s, p, order) for s in states]
                if all(f is not None for f in flats):
                    pf = p.reshape(-1, order=order)
                    gf = np.ascontiguousarray(g.reshape(-1, order=order))
                    if not (gf.flags.writeable and gf.flags.aligned):
                        gf = gf.copy()  # keep to one compiled signature per dtype
                    self._kernel(pf, gf, *flats, *sc)
                    continue
            self._numpy_step(p, g, *states, *sc)


class SGD(_Optimizer):
    """Stochastic gradient descent: ``params[key] -= lr * grads[key]``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate. Read at every ``update``, so it may be changed between steps.

    Attributes
    ----------
    lr : float
        Learning rate.

    Examples
    --------
    >>> import numpy as np
    >>> p = {"b": np.zeros(2)}
    >>> SGD(lr=0.5).update(p, {"b": np.array([1.0, -2.0])})
    >>> p["b"]
    array([-0.5,  1. ])
    """

    kernel_min_size = 16384

    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        """Apply one step in place.

        Parameters
        ----------
        params : dict of str to ndarray
            Parameters (float32 or float64), updated in place; the dict is not modified.
        grads : dict of str to ndarray
            Gradients with the same keys (extra keys are ignored) and shapes as ``params``.

        Raises
        ------
        KeyError
            If ``grads`` lacks a key of ``params``.
        ValueError
            If a gradient's shape differs from its parameter's, or a parameter is read-only.
        TypeError
            If a parameter is not a float32/float64 ndarray or a gradient is not real.
        """
        work = self._prepare(params, grads)
        self._apply(work, (_to_float("SGD", "lr", self.lr),))

    @staticmethod
    def _kernel(p, g, lr):
        _k.sgd_update_kernel(p, g, lr)

    @staticmethod
    def _numpy_step(p, g, lr):
        p -= lr * g


class Momentum(_Optimizer):
    """Momentum SGD: ``v = momentum * v - lr * g; params[key] += v``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0.9
        Decay factor of the velocity.

    Attributes
    ----------
    lr, momentum : float
        Hyperparameters, read at every ``update``.
    v : dict of str to ndarray or None
        Velocities, one per parameter, created as zeros on the first ``update``.
    """

    _state_names = ("v",)
    kernel_min_size = 8192

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        """Apply one step in place (see :meth:`SGD.update` for arguments and errors)."""
        work = self._prepare(params, grads)
        lr = _to_float("Momentum", "lr", self.lr)
        mom = _to_float("Momentum", "momentum", self.momentum)
        self._init_states(params)
        self._apply(work, (lr, mom))

    @staticmethod
    def _kernel(p, g, v, lr, mom):
        _k.momentum_update_kernel(p, g, v, lr, mom)

    @staticmethod
    def _numpy_step(p, g, v, lr, mom):
        v *= mom
        v -= lr * g
        p += v


class Nesterov(_Optimizer):
    """Nesterov's accelerated gradient, in the book's formulation.

    ``v *= momentum; v -= lr * g; params[key] += momentum * momentum * v;
    params[key] -= (1 + momentum) * lr * g``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    momentum : float, default 0.9
        Decay factor of the velocity.

    Attributes
    ----------
    lr, momentum : float
        Hyperparameters, read at every ``update``.
    v : dict of str to ndarray or None
        Velocities, created as zeros on the first ``update``.
    """

    _state_names = ("v",)
    kernel_min_size = 2048

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        """Apply one step in place (see :meth:`SGD.update` for arguments and errors)."""
        work = self._prepare(params, grads)
        lr = _to_float("Nesterov", "lr", self.lr)
        mom = _to_float("Nesterov", "momentum", self.momentum)
        self._init_states(params)
        # the book evaluates these scalar products first (left to right)
        self._apply(work, (lr, mom, mom * mom, (1 + mom) * lr))

    @staticmethod
    def _kernel(p, g, v, lr, mom, mom_sq, step):
        _k.nesterov_update_kernel(p, g, v, lr, mom, mom_sq, step)

    @staticmethod
    def _numpy_step(p, g, v, lr, mom, mom_sq, step):
        v *= mom
        v -= lr * g
        p += mom_sq * v
        p -= step * g


class AdaGrad(_Optimizer):
    """AdaGrad: ``h += g * g; params[key] -= lr * g / (sqrt(h) + 1e-7)``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.

    Attributes
    ----------
    lr : float
        Learning rate, read at every ``update``.
    h : dict of str to ndarray or None
        Sums of squared gradients, created as zeros on the first ``update``.
    """

    _state_names = ("h",)
    kernel_min_size = 1024

    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        """Apply one step in place (see :meth:`SGD.update` for arguments and errors)."""
        work = self._prepare(params, grads)
        lr = _to_float("AdaGrad", "lr", self.lr)
        self._init_states(params)
        self._apply(work, (lr, EPS))

    @staticmethod
    def _kernel(p, g, h, lr, eps):
        _k.adagrad_update_kernel(p, g, h, lr, eps)

    @staticmethod
    def _numpy_step(p, g, h, lr, eps):
        h += g * g
        p -= lr * g / (np.sqrt(h) + eps)


class RMSprop(_Optimizer):
    """RMSprop: a leaky AdaGrad.

    ``h *= decay_rate; h += (1 - decay_rate) * g * g;
    params[key] -= lr * g / (sqrt(h) + 1e-7)``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate.
    decay_rate : float, default 0.99
        Decay factor of the running mean of squared gradients.

    Attributes
    ----------
    lr, decay_rate : float
        Hyperparameters, read at every ``update``.
    h : dict of str to ndarray or None
        Running means of squared gradients, created as zeros on the first ``update``.
    """

    _state_names = ("h",)
    kernel_min_size = 512

    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None

    def update(self, params, grads):
        """Apply one step in place (see :meth:`SGD.update` for arguments and errors)."""
        work = self._prepare(params, grads)
        lr = _to_float("RMSprop", "lr", self.lr)
        dr = _to_float("RMSprop", "decay_rate", self.decay_rate)
        self._init_states(params)
        self._apply(work, (lr, dr, 1 - dr, EPS))

    @staticmethod
    def _kernel(p, g, h, lr, dr, omd, eps):
        _k.rmsprop_update_kernel(p, g, h, lr, dr, omd, eps)

    @staticmethod
    def _numpy_step(p, g, h, lr, dr, omd, eps):
        h *= dr
        h += omd * g * g
        p -= lr * g / (np.sqrt(h) + eps)


class Adam(_Optimizer):
    """Adam (Kingma & Ba, 2015), with the bias correction folded into the step size.

    Each ``update`` does ``iter += 1;
    lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)`` and, per parameter,
    ``m += (1 - beta1) * (g - m); v += (1 - beta2) * (g**2 - v);
    params[key] -= lr_t * m / (sqrt(v) + 1e-7)``.

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate.
    beta1 : float, default 0.9
        Decay factor of the first-moment estimate.
    beta2 : float, default 0.999
        Decay factor of the second-moment estimate.

    Attributes
    ----------
    lr, beta1, beta2 : float
        Hyperparameters, read at every ``update``.
    iter : int
        Number of ``update`` calls so far.
    m, v : dict of str to ndarray or None
        First and second moment estimates, created as zeros on the first ``update``.
    """

    _state_names = ("m", "v")
    kernel_min_size = 512

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        """Apply one step in place (see :meth:`SGD.update` for arguments and errors)."""
        work = self._prepare(params, grads)
        lr = _to_float("Adam", "lr", self.lr)
        b1 = _to_float("Adam", "beta1", self.beta1)
        b2 = _to_float("Adam", "beta2", self.beta2)
        self._init_states(params)
        self.iter += 1
        lr_t = lr * np.sqrt(1.0 - b2**self.iter) / (1.0 - b1**self.iter)
        self._apply(work, (lr_t, 1 - b1, 1 - b2, EPS))

    @staticmethod
    def _kernel(p, g, m, v, lr_t, omb1, omb2, eps):
        _k.adam_update_kernel(p, g, m, v, lr_t, omb1, omb2, eps)

    @staticmethod
    def _numpy_step(p, g, m, v, lr_t, omb1, omb2, eps):
        m += omb1 * (g - m)
        v += omb2 * (g**2 - v)
        p -= lr_t * m / (np.sqrt(v) + eps)
