"""The book's ``TwoLayerNet`` (ch05 with ReLU layers; ch04 with sigmoid functions)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import _checks as ck
from .._numgrad import net_numerical_gradient
from ..functions import cross_entropy_error, sigmoid, sigmoid_grad, softmax
from ..layers import Affine, Relu, SoftmaxWithLoss
from ._base import (
    NetBase,
    accuracy,
    backprop,
    check_dtype,
    check_scale,
    check_size,
    numerical_grads,
    randn_init,
)

__all__ = ["TwoLayerNet"]

_ACTIVATIONS = ("relu", "sigmoid")


class TwoLayerNet(NetBase):
    """Two-layer fully connected net of chapters 4 and 5.

    ``activation='relu'`` (default) is ch05's ``TwoLayerNet``: layers
    ``Affine1 -> Relu1 -> Affine2`` and a :class:`~fastnn.layers.SoftmaxWithLoss`, gradients
    by backpropagation. ``activation='sigmoid'`` is ch04's: ``predict`` returns
    ``softmax(sigmoid(x @ W1 + b1) @ W2 + b2)`` (probabilities), ``loss`` is
    ``cross_entropy_error(predict(x), t)`` and ``gradient`` is ch04's hand-written
    backpropagation with ``sigmoid_grad``; that variant has no ``layers``.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        Layer widths (784, 50/100, 10 for MNIST).
    weight_init_std : float, default 0.01
        Weights are ``weight_init_std * np.random.randn(...)``, drawn from NumPy's global RNG in
        the book's order (W1 then W2), so ``np.random.seed`` reproduces the book's net.
    activation : {'relu', 'sigmoid'}, default 'relu'
        Which chapter's net.
    dtype : {np.float64, np.float32}, default np.float64
        Parameter dtype. The weights are drawn in float64 and then cast, so the seed gives the
        same (rounded) values.

    Attributes
    ----------
    params : dict
        ``'W1'`` ``(input_size, hidden_size)``, ``'b1'``, ``'W2'`` ``(hidden_size,
        output_size)``, ``'b2'``; the same arrays as the layers' ``W`` / ``b``.
    layers : OrderedDict
        ``'Affine1'``, ``'Relu1'``, ``'Affine2'`` (ReLU variant only).
    last_layer : SoftmaxWithLoss
        Also available as ``lastLayer``, the ch05 name (ReLU variant only).

    Shape
    -----
    x: (N, input_size) -> scores: (N, output_size).

    Examples
    --------
    >>> np.random.seed(0)
    >>> net = TwoLayerNet(input_size=4, hidden_size=3, output_size=2)
    >>> net.params['W1'] is net.layers['Affine1'].W
    True
    """

    def __init__(
        self,
        input_size,
        hidden_size,
        output_size,
        weight_init_std=0.01,
        activation="relu",
        dtype=np.float64,
    ):
        op = "TwoLayerNet"
        input_size = check_size(op, "input_size", input_size)
        hidden_size = check_size(op, "hidden_size", hidden_size)
        output_size = check_size(op, "output_size", output_size)
        check_scale(op, "weight_init_std", weight_init_std)
        if not isinstance(activation, str) or activation.lower() not in _ACTIVATIONS:
            raise ValueError(f"{op}: activation must be 'relu' or 'sigmoid', got {activation!r}")
        self.activation = activation.lower()
        self.dtype = check_dtype(op, dtype)

        self.params = {}
        self.params["W1"] = randn_init(weight_init_std, (input_size, hidden_size), self.dtype)
        self.params["b1"] = np.zeros(hidden_size, dtype=self.dtype)
        self.params["W2"] = randn_init(weight_init_std, (hidden_size, output_size), self.dtype)
        self.params["b2"] = np.zeros(output_size, dtype=self.dtype)

        if self.activation == "relu":
            self.layers = OrderedDict()
            self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
            self.layers["Relu1"] = Relu()
            self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
            self.last_layer = SoftmaxWithLoss()

    def _param_slots(self):
        if self.activation != "relu":
            return []
        return [
            ("W1", self.layers["Affine1"], "W"),
            ("b1", self.layers["Affine1"], "b"),
            ("W2", self.layers["Affine2"], "W"),
            ("b2", self.layers["Affine2"], "b"),
        ]

    def predict(self, x):
        """Forward pass.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, input_size)``.

        Returns
        -------
        ndarray
            ReLU variant: scores before softmax. Sigmoid variant (ch04): softmax
            probabilities.

        Shape
        -----
        x: (N, input_size) -> (N, output_size).
        """
        if self.activation == "relu":
            for layer in self.layers.values():
                x = layer.forward(x)
            return x
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        return softmax(a2)

    def loss(self, x, t):
        """Mean cross-entropy loss over the batch.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, input_size)``.
        t : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)``.

        Returns
        -------
        scalar
        """
        if self.activation == "relu":
            y = self.predict(x)
            return self.last_layer.forward(y, t)
        return cross_entropy_error(self.predict(x), t)

    def accuracy(self, x, t):
        """Fraction of samples whose arg-max score equals the label.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, input_size)``.
        t : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)``.

        Returns
        -------
        float
        """
        return accuracy("TwoLayerNet.accuracy", self.predict, x, t)

    def numerical_gradient(self, x, t):
        """Gradients of :meth:`loss` by central differences (``h = 1e-4``), for every parameter.

        The values of the book's ``numerical_gradient(lambda W: self.loss(x, t),
        self.params['W1'])`` for each key (``W + h`` and ``W - h`` as the book stores them).
        Computed by :mod:`fastnn._numgrad`'s parallel kernels, which re-evaluate only what each
        perturbation changes: the same central differences as the book's loop (to ~1e-11),
        hundreds to thousands of times faster. float32 nets use the book's loop.
        The parameters are not modified.

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, ``'W2'``, ``'b2'``.
        """
        grads = net_numerical_gradient(self, x, t)
        if grads is not None:
            return grads
        return numerical_grads(lambda: self.loss(x, t), self.params, ("W1", "b1", "W2", "b2"))

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, input_size)``.
        t : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)``.

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, ``'W2'``, ``'b2'``, shaped like ``params``. In the ReLU
            variant these are the layers' ``dW`` / ``db`` arrays, as in the book.
        """
        if self.activation == "relu":
            self.loss(x, t)
            backprop(self.last_layer, self.layers.values())
            grads = {}
            grads["W1"], grads["b1"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
            grads["W2"], grads["b2"] = self.layers["Affine2"].dW, self.layers["Affine2"].db
            return grads
        return self._sigmoid_gradient(x, t)

    def _sigmoid_gradient(self, x, t):
        """ch04's hand-written backpropagation (sigmoid hidden layer, softmax output)."""
        W1, W2 = self.params["W1"], self.params["W2"]
        b1, b2 = self.params["b1"], self.params["b2"]
        grads = {}
        batch_num = x.shape[0]

        # forward
        a1 = np.dot(x, W1) + b1
        z1 = sigmoid(a1)
        a2 = np.dot(z1, W2) + b2
        y = softmax(a2)

        # backward
        dy = (y - self._one_hot(t, y)) / batch_num
        grads["W2"] = np.dot(z1.T, dy)
        grads["b2"] = np.sum(dy, axis=0)

        da1 = np.dot(dy, W2.T)
        dz1 = sigmoid_grad(a1) * da1
        grads["W1"] = np.dot(x.T, dz1)
        grads["b1"] = np.sum(dz1, axis=0)
        return grads

    @staticmethod
    def _one_hot(t, y):
        """``t`` as one-hot targets shaped like ``y`` (the book's ch04 expects one-hot; labels
        ``(N,)`` / ``(N, 1)`` are converted rather than broadcast into a wrong result)."""
        t = np.asarray(t)
        if t.size == y.size:
            return t.reshape(y.shape)
        N, K = y.shape
        labels = ck.as_labels("TwoLayerNet.gradient", t, N, K)
        one_hot = np.zeros_like(y)
        one_hot[np.arange(N), labels] = 1
        return one_hot
