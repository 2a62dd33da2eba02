"""Activation and loss functions of *Deep Learning from Scratch* (``common/functions.py``).

Same names and semantics as the book, so ``from common.functions import *`` can become
``from fastnn.functions import *``. :func:`sigmoid`, :func:`relu`, :func:`softmax`,
:func:`cross_entropy_error` and :func:`softmax_loss` run on Numba kernels through
:mod:`fastnn.functional`; the others are one-line NumPy expressions, exactly the book's.

dtypes follow the contract: float32 stays float32, float64 is the default, integer and bool
inputs compute in float64, float16 / complex / object inputs raise ``TypeError`` naming the
function. (:func:`identity_function` and :func:`step_function` accept anything, as the book's.)

Differences from the book, all deliberate:

* :func:`relu_grad` works (the book's ``np.zeros(x)`` raises for array input) and returns
  floats;
* :func:`mean_squared_error` averages over the batch (the book's equals
  :func:`sum_squared_error`); for 1-D input the two agree;
* :func:`tanh` and :func:`leaky_relu` are extras, used by the exercises.
"""

from __future__ import annotations

import numpy as np

from fastnn import _checks as ck
from fastnn import functional as F

__all__ = [
    "identity_function",
    "step_function",
    "sigmoid",
    "sigmoid_grad",
    "relu",
    "relu_grad",
    "tanh",
    "leaky_relu",
    "softmax",
    "sum_squared_error",
    "mean_squared_error",
    "cross_entropy_error",
    "softmax_loss",
]


def _float_array(op, name, x):
    """``x`` as an array of its compute dtype (no copy when it already is one)."""
    x = ck.as_array(op, name, x)
    return x.astype(ck.result_dtype(op, **{name: x}), copy=False)


def _unwrap(out, x):
    """NumPy scalar for scalar input, as the book's ufunc expressions return."""
    return out.reshape(())[()] if np.ndim(x) == 0 else out


def identity_function(x):
    """Return ``x`` unchanged (the output activation of regression nets).

    Parameters
    ----------
    x : object
        Anything.

    Returns
    -------
    object
        ``x`` itself.
    """
    return x


def step_function(x):
    """Heaviside step: ``1`` where ``x > 0``, else ``0``, as integers.

    Parameters
    ----------
    x : array_like
        Input values.

    Returns
    -------
    ndarray of int
        ``np.array(x > 0, dtype=int)``, the book's definition (a 0-d array for scalar input).

    Shape
    -----
    x: any -> same shape.

    Examples
    --------
    >>> step_function(np.array([-1.0, 0.0, 2.0]))
    array([0, 0, 1])
    """
    return np.array(np.asarray(x) > 0, dtype=int)


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``.

    Parameters
    ----------
    x : array_like
        Input values (float32 stays float32; ints become float64).

    Returns
    -------
    ndarray or scalar
        New array of the same shape (a NumPy scalar for scalar input).

    Shape
    -----
    x: any -> same shape.
    """
    return _unwrap(F.sigmoid(x), x)


def sigmoid_grad(x):
    """Derivative of :func:`sigmoid`: ``(1 - sigmoid(x)) * sigmoid(x)``.

    Parameters
    ----------
    x : array_like
        Pre-activation values (not the sigmoid output).

    Returns
    -------
    ndarray or scalar
        Same shape as ``x``.

    Shape
    -----
    x: any -> same shape.
    """
    s = F.sigmoid(x)
    return _unwrap((1.0 - s) * s, x)


def relu(x):
    """Rectified linear unit ``max(0, x)``.

    Parameters
    ----------
    x : array_like
        Input values.

    Returns
    -------
    ndarray or scalar
        ``x`` where ``x > 0``, else ``0``; NaN passes through (as ``np.maximum(0, x)``).

    Shape
    -----
    x: any -> same shape.
    """
    return _unwrap(F.relu(x)[0], x)


def relu_grad(x):
    """Derivative of :func:`relu` as the book defines it: ``1`` where ``x >= 0``, else ``0``.

    Parameters
    ----------
    x : array_like
        Pre-activation values.

    Returns
    -------
    ndarray
        Floats (dtype of ``x`` if float32/float64, else float64), same shape as ``x``.

    Shape
    -----
    x: any -> same shape.

    Examples
    --------
    >>> relu_grad(np.array([-1.0, 0.0, 3.0]))
    array([0., 1., 1.])
    """
    x = _float_array("relu_grad", "x", x)
    grad = np.zeros_like(x)
    grad[x >= 0] = 1
    return grad


def tanh(x):
    """Hyperbolic tangent ``np.tanh(x)``.

    Parameters
    ----------
    x : array_like
        Input values.

    Returns
    -------
    ndarray or scalar
        Same shape as ``x``.

    Shape
    -----
    x: any -> same shape.
    """
    return np.tanh(_float_array("tanh", "x", x))


def leaky_relu(x, alpha=0.01):
    """Leaky ReLU: ``x`` where ``x > 0``, else ``alpha * x``.

    Parameters
    ----------
    x : array_like
        Input values.
    alpha : float, default 0.01
        Slope for non-positive inputs.

    Returns
    -------
    ndarray or scalar
        Same shape and dtype as ``x`` (ints become float64).

    Shape
    -----
    x: any -> same shape.
    """
    x = _float_array("leaky_relu", "x", x)
    try:
        alpha = x.dtype.type(float(alpha))
    except (TypeError, ValueError):
        raise TypeError(f"leaky_relu: alpha must be a real number, got {alpha!r}") from None
    return _unwrap(np.where(x > 0, x, alpha * x), x)


def softmax(x):
    """Softmax over the last axis, max-subtracted so that large inputs do not overflow.

    Parameters
    ----------
    x : array_like
        Scores; a vector or a batch of rows (any ndim >= 1).

    Returns
    -------
    ndarray
        Probabilities summing to 1 along the last axis.

    Shape
    -----
    x: (..., K) -> (..., K).
    """
    return F.softmax(x)


def _pair(op, y, t):
    y = ck.as_array(op, "y", y)
    t = ck.as_array(op, "t", t)
    dt = ck.result_dtype(op, y=y, t=t)
    return y.astype(dt, copy=False), t.astype(dt, copy=False)


def sum_squared_error(y, t):
    """Sum-of-squares loss ``0.5 * sum((y - t)**2)`` over all elements.

    Parameters
    ----------
    y : array_like
        Predictions.
    t : array_like
        Targets, broadcastable against ``y``.

    Returns
    -------
    scalar
        Not averaged over the batch (the book's definition).
    """
    y, t = _pair("sum_squared_error", y, t)
    return 0.5 * np.sum((y - t) ** 2)


def mean_squared_error(y, t):
    """Squared-error loss averaged over the batch: ``0.5 * sum((y - t)**2) / N``.

    ``N = y.shape[0]`` for a batch (``y.ndim >= 2``); a single sample (``y.ndim <= 1``) has
    ``N = 1`` and the result equals :func:`sum_squared_error`. (The book's
    ``mean_squared_error`` does not divide by ``N``.)

    Parameters
    ----------
    y : array_like
        Predictions.
    t : array_like
        Targets, broadcastable against ``y``.

    Returns
    -------
    scalar

    Shape
    -----
    y: (N, ...) or (K,) -> scalar.
    """
    y, t = _pair("mean_squared_error", y, t)
    N = y.shape[0] if y.ndim >= 2 else 1
    if N == 0:
        raise ValueError(f"mean_squared_error: empty batch, y has shape {y.shape}")
    return 0.5 * np.sum((y - t) ** 2) / N


def cross_entropy_error(y, t):
    """Mean cross-entropy ``-sum(log(y[t] + 1e-7)) / N`` of probabilities ``y``.

    Parameters
    ----------
    y : array_like
        Probabilities, one sample ``(K,)`` or a batch ``(N, K)``.
    t : array_like
        One-hot targets (detected by ``t.size == y.size``, as in the book) or integer labels
        ``(N,)`` / ``(N, 1)`` (a scalar label for a single sample).

    Returns
    -------
    scalar
        Mean over the batch.

    Shape
    -----
    y: (N, K) or (K,); t: (N, K), (N,), (N, 1) or like ``y`` -> scalar.
    """
    return F.cross_entropy(y, t)


def softmax_loss(X, t):
    """Softmax followed by :func:`cross_entropy_error` (one fused kernel).

    Parameters
    ----------
    X : array_like
        Scores, ``(N, K)`` or ``(K,)``.
    t : array_like
        One-hot targets or integer labels, as in :func:`cross_entropy_error`.

    Returns
    -------
    scalar
        Mean loss over the batch; finite even for huge scores.

    Shape
    -----
    X: (N, K) or (K,) -> scalar.
    """
    return F.softmax_cross_entropy(X, t)[0]
