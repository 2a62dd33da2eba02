"""Linear and softmax regression of *Dive into Deep Learning*, chapter 3, as book-style nets.

Both nets are one :class:`~fastnn.layers.Affine` layer followed by a loss layer and have the
interface of the book's nets (``params``, ``predict``, ``loss``, ``accuracy``, ``gradient``,
``numerical_gradient``, ``save_params`` / ``load_params``), so :mod:`fastnn.optimizers` and
:class:`fastnn.trainer.Trainer` drive them unchanged.

=====================================  ===================================================
d2l (from scratch)                     fastnn
=====================================  ===================================================
``linreg`` + ``squared_loss`` (3.2)    :class:`LinearRegression` (:class:`SquaredLoss`)
``net`` + ``cross_entropy`` (3.6)      :class:`SoftmaxRegression` (fused softmax + loss)
=====================================  ===================================================
"""

from __future__ import annotations

import numbers
from collections import OrderedDict

import numpy as np

from .. import functional as F
from ..layers import Affine, SoftmaxWithLoss
from ._base import (
    NetBase,
    accuracy,
    check_dtype,
    check_scale,
    check_size,
    numerical_grads,
    randn_init,
)

__all__ = ["LinearRegression", "SoftmaxRegression", "SquaredLoss"]


class SquaredLoss:
    """d2l's squared loss ``0.5 * (y_hat - y)**2``, summed over outputs, averaged over the batch.

    d2l sums ``squared_loss`` over the batch and its ``sgd`` divides by ``batch_size``; the
    mean returned here has the same gradient, so the same learning rate gives the same steps.

    Attributes
    ----------
    loss : scalar
        Loss of the last ``forward``.
    diff : ndarray
        ``y_hat - y`` of the last ``forward``.

    Shape
    -----
    forward: y_hat (N, M), t with N*M elements ((N,), (N, 1), (N, M)) -> scalar;
    backward: -> (N, M).
    """

    def __init__(self):
        self.loss = None
        self.diff = None

    def forward(self, y_hat, t):
        """Mean over the batch of ``0.5 * sum((y_hat - t)**2)``.

        ``t`` is reshaped to ``y_hat``'s shape, as d2l's ``y.reshape(y_hat.shape)`` (so labels
        ``(N,)`` do not broadcast against predictions ``(N, 1)`` into an ``(N, N)`` matrix).

        Raises
        ------
        ValueError
            If ``t`` does not have ``y_hat.size`` elements.
        """
        y_hat = np.asarray(y_hat)
        t = np.asarray(t)
        if t.size != y_hat.size:
            raise ValueError(
                f"SquaredLoss.forward: targets t of shape {t.shape} do not match predictions "
                f"of shape {y_hat.shape}"
            )
        if t.dtype.kind not in "iufb":
            raise TypeError(f"SquaredLoss.forward: targets t must be numeric, got {t.dtype}")
        self.diff = y_hat - t.reshape(y_hat.shape)
        d = self.diff.reshape(-1)
        n = y_hat.shape[0] if y_hat.ndim else 1
        self.loss = np.dot(d, d) * self.diff.dtype.type(0.5) / self.diff.dtype.type(n)
        return self.loss

    def backward(self, dout=1):
        """``dout * (y_hat - t) / N``."""
        n = self.diff.shape[0] if self.diff.ndim else 1
        return self.diff * (self.diff.dtype.type(dout) / self.diff.dtype.type(n))


class _AffineNet(NetBase):
    """One ``Affine`` layer (``params['W']``, ``params['b']``) and a loss layer."""

    _op = "_AffineNet"

    def __init__(self, num_inputs, num_outputs, weight_init_std, dtype, last_layer):
        op = self._op
        num_inputs = check_size(op, "num_inputs", num_inputs)
        num_outputs = check_size(op, "num_outputs", num_outputs)
        check_scale(op, "weight_init_std", weight_init_std)
        self.dtype = check_dtype(op, dtype)
        self.num_inputs = num_inputs
        self.num_outputs = num_outputs
        self.params = {}
        self.params["W"] = randn_init(weight_init_std, (num_inputs, num_outputs), self.dtype)
        self.params["b"] = np.zeros(num_outputs, dtype=self.dtype)
        self.layers = OrderedDict()
        self.layers["Affine"] = Affine(self.params["W"], self.params["b"])
        self.last_layer = last_layer

    def _param_slots(self):
        return [("W", self.layers["Affine"], "W"), ("b", self.layers["Affine"], "b")]

    def predict(self, x):
        """``x @ W + b`` (N-D ``x`` is flattened to ``(N, num_inputs)``).

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, num_inputs)`` or ``(N, ...)`` with ``num_inputs`` values per sample.

        Returns
        -------
        ndarray
            ``(N, num_outputs)``.

        Shape
        -----
        x: (N, num_inputs) -> (N, num_outputs).
        """
        return self.layers["Affine"].forward(x)

    def loss(self, x, t):
        """Loss of the batch (see the class docstring).

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, num_inputs)``.
        t : ndarray
            Targets.

        Returns
        -------
        scalar
        """
        return self.last_layer.forward(self.predict(x), t)

    def numerical_gradient(self, x, t):
        """Gradients of :meth:`loss` by central differences (slow; for gradient checks).

        Returns
        -------
        dict
            ``'W'``, ``'b'``.
        """
        return numerical_grads(lambda: self.loss(x, t), self.params, ("W", "b"))

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation.

        The affine layer is the first layer, so the gradient with respect to the input is not
        computed (one matrix product fewer than ``Affine.backward``); ``dW`` and ``db`` are
        stored on the layer as ``Affine.backward`` would.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, num_inputs)``.
        t : ndarray
            Targets.

        Returns
        -------
        dict
            ``'W'`` ``(num_inputs, num_outputs)`` and ``'b'`` ``(num_outputs,)``: the layer's
            ``dW`` / ``db`` arrays.
        """
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        affine = self.layers["Affine"]
        affine.dW = np.dot(affine.x.T, dout)
        affine.db = np.sum(dout, axis=0)
        return {"W": affine.dW, "b": affine.db}


class LinearRegression(_AffineNet):
    """Linear regression with squared loss (d2l 3.2, "from scratch").

    ``predict(x) = x @ W + b``; ``loss`` is d2l's ``0.5 * (y_hat - y)**2`` summed over the
    outputs and averaged over the batch (:class:`SquaredLoss`).

    Parameters
    ----------
    num_inputs : int
        Features per sample.
    num_outputs : int, default 1
        Targets per sample.
    weight_init_std : float, default 0.01
        ``W = weight_init_std * np.random.randn(num_inputs, num_outputs)`` from NumPy's global
        RNG (d2l's ``normal(0, 0.01)``); ``b = 0``.
    dtype : {np.float64, np.float32}, default np.float64
        Parameter dtype (drawn in float64, then cast).

    Attributes
    ----------
    params : dict
        ``'W'`` ``(num_inputs, num_outputs)`` and ``'b'`` ``(num_outputs,)``, the same arrays
        as ``layers['Affine'].W`` / ``.b``.
    layers : OrderedDict
        ``'Affine'``.
    last_layer : SquaredLoss
        Also available as ``lastLayer``.

    Shape
    -----
    x: (N, num_inputs) -> predictions (N, num_outputs); targets t: (N, num_outputs) or (N,).

    Examples
    --------
    >>> from fastnn.datasets import synthetic_linear
    >>> from fastnn.data import DataLoader
    >>> from fastnn.optimizers import SGD
    >>> X, y = synthetic_linear([2, -3.4], 4.2, 1000, seed=0)
    >>> np.random.seed(0)
    >>> net, opt = LinearRegression(2), SGD(lr=0.03)
    >>> for epoch in range(3):
    ...     for xb, yb in DataLoader(X, y, batch_size=10):
    ...         opt.update(net.params, net.gradient(xb, yb))
    >>> np.round(net.params['W'].ravel(), 2), np.round(net.params['b'], 2)
    (array([ 2. , -3.4]), array([4.2]))
    """

    _op = "LinearRegression"

    def __init__(self, num_inputs, num_outputs=1, weight_init_std=0.01, dtype=np.float64):
        super().__init__(num_inputs, num_outputs, weight_init_std, dtype, SquaredLoss())

    def accuracy(self, x, t):
        """Coefficient of determination R² of the predictions (1 is a perfect fit).

        Regression has no class accuracy; this is the score the :class:`~fastnn.trainer.Trainer`
        prints as "acc". ``R² = 1 - SS_res / SS_tot`` with both sums taken over all outputs
        (``SS_tot`` around each output's mean). If the targets are constant, R² is 1 for a
        perfect fit and 0 otherwise.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, num_inputs)``.
        t : ndarray
            Targets with ``N * num_outputs`` elements.

        Returns
        -------
        numpy.float64
        """
        y = self.predict(x)
        t = np.asarray(t)
        if t.size != y.size:
            raise ValueError(
                f"LinearRegression.accuracy: targets t of shape {t.shape} do not match "
                f"predictions of shape {y.shape}"
            )
        t = t.reshape(y.shape).astype(np.float64, copy=False)
        ss_res = float(np.sum((t - y) ** 2))
        ss_tot = float(np.sum((t - t.mean(axis=0)) ** 2))
        if ss_tot == 0.0:
            return np.float64(1.0 if ss_res == 0.0 else 0.0)
        return np.float64(1.0 - ss_res / ss_tot)


class SoftmaxRegression(_AffineNet):
    """Softmax regression (d2l 3.6): one affine layer and the fused softmax cross-entropy.

    ``predict(x)`` returns the logits ``x @ W + b``; ``loss`` is the mean cross-entropy of
    their softmax, computed by :class:`~fastnn.layers.SoftmaxWithLoss` in one pass
    (max-subtracted, so huge logits do not overflow).

    Parameters
    ----------
    num_inputs : int
        Features per sample (784 for 28x28 images; N-D inputs are flattened).
    num_outputs : int
        Number of classes.
    weight_init_std : float, default 0.01
        ``W = weight_init_std * np.random.randn(num_inputs, num_outputs)`` from NumPy's global
        RNG (d2l's ``normal(0, 0.01)``); ``b = 0``.
    eps : float, default 0.0
        Loss mode of the softmax cross-entropy. ``0`` (default): the exact
        ``logsumexp(x) - x[t]``, finite for any finite logits (d2l's lesson: never take the log
        of a softmax that may have underflowed to 0). ``1e-7``: the book's ``-log(y[t] + 1e-7)``
        (:class:`~fastnn.layers.SoftmaxWithLoss`'s default). The gradient ``(y - t) / N`` is the
        same in both modes.
    dtype : {np.float64, np.float32}, default np.float64
        Parameter dtype (drawn in float64, then cast).

    Attributes
    ----------
    params : dict
        ``'W'`` ``(num_inputs, num_outputs)`` and ``'b'`` ``(num_outputs,)``, the same arrays
        as ``layers['Affine'].W`` / ``.b``.
    layers : OrderedDict
        ``'Affine'``.
    last_layer : SoftmaxWithLoss
        Also available as ``lastLayer``.

    Shape
    -----
    x: (N, num_inputs) or (N, ...) -> logits (N, num_outputs); t: labels (N,) or one-hot
    (N, num_outputs).

    Examples
    --------
    >>> np.random.seed(0)
    >>> net = SoftmaxRegression(784, 10)
    >>> net.params['W'] is net.layers['Affine'].W
    True
    """

    _op = "SoftmaxRegression"

    def __init__(self, num_inputs, num_outputs, weight_init_std=0.01, eps=0.0, dtype=np.float64):
        eps_f = _check_eps(self._op, eps)
        super().__init__(num_inputs, num_outputs, weight_init_std, dtype, SoftmaxWithLoss(eps_f))
        self.eps = eps_f

    def accuracy(self, x, t):
        """Fraction of samples whose arg-max logit equals the label.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, num_inputs)``.
        t : ndarray
            Labels ``(N,)`` / ``(N, 1)`` or one-hot ``(N, num_outputs)``.

        Returns
        -------
        numpy.float64
        """
        return accuracy("SoftmaxRegression.accuracy", self.predict, x, t)

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation, in one fused kernel.

        :func:`fastnn.functional.linear_softmax_cross_entropy_with_grad` computes the logits,
        the loss and both gradients in one call (no BLAS, no ``(N, D)`` temporary). The layers
        are left as the book's forward + backward leaves them: ``layers['Affine']`` holds
        ``x``, ``dW`` and ``db``; ``last_layer`` holds ``loss``, ``t`` and (lazily) ``y``.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, num_inputs)`` or ``(N, ...)``.
        t : ndarray
            Labels ``(N,)`` / ``(N, 1)`` or one-hot ``(N, num_outputs)``.

        Returns
        -------
        dict
            ``'W'`` and ``'b'``, in the parameters' dtype.
        """
        affine = self.layers["Affine"]
        shape = np.shape(x)
        x2 = np.reshape(x, (shape[0], -1)) if len(shape) >= 2 else x
        if np.ndim(x2) != 2 or np.shape(x2)[1] != self.num_inputs:
            return super().gradient(x, t)  # Affine.forward raises the clear error
        loss, z, dW, db = F.linear_softmax_cross_entropy_with_grad(
            x2, affine.W, affine.b, t, self.last_layer.eps
        )
        affine.x, affine.original_x_shape, affine.dW, affine.db = x2, shape, dW, db
        self.last_layer._record(z, t, loss, None)
        return {"W": affine.dW, "b": affine.db}


def _check_eps(op, eps):
    """``eps`` as a float ``>= 0``."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (numbers.Real, np.floating)):
        raise TypeError(f"{op}: eps must be a real number >= 0, got {eps!r}")
    value = float(eps)
    if not (value >= 0 and np.isfinite(value)):
        raise ValueError(f"{op}: eps must be a finite number >= 0, got {eps!r}")
    return value
