"""The book's ``MultiLayerNet`` (``common/multi_layer_net.py``)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .._numgrad import net_numerical_gradient
from ..layers import Affine, Relu, Sigmoid, SoftmaxWithLoss
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

__all__ = ["MultiLayerNet"]

ACTIVATION_LAYERS = {"sigmoid": Sigmoid, "relu": Relu}
_INIT_NAMES = ("relu", "he", "sigmoid", "xavier")


def check_fc_args(op, input_size, hidden_size_list, output_size, activation, weight_init_std):
    """Validate the arguments shared by the fully connected nets.

    Returns
    -------
    sizes : list of int
        ``[input_size, *hidden_size_list, output_size]``.
    activation_layer : type
        :class:`~fastnn.layers.Relu` or :class:`~fastnn.layers.Sigmoid`.

    Raises
    ------
    TypeError, ValueError
        Naming the net and the bad argument.
    """
    try:
        hidden = list(hidden_size_list)
    except TypeError:
        raise TypeError(
            f"{op}: hidden_size_list must be a list of ints, got {hidden_size_list!r}"
        ) from None
    sizes = [check_size(op, "input_size", input_size)]
    sizes += [check_size(op, "hidden_size_list", h) for h in hidden]
    sizes.append(check_size(op, "output_size", output_size))
    if not isinstance(activation, str) or activation not in ACTIVATION_LAYERS:
        raise ValueError(f"{op}: activation must be 'relu' or 'sigmoid', got {activation!r}")
    if isinstance(weight_init_std, str):
        if weight_init_std.lower() not in _INIT_NAMES:
            raise ValueError(
                f"{op}: weight_init_std must be 'relu', 'he', 'sigmoid', 'xavier' or a number, "
                f"got {weight_init_std!r}"
            )
    else:
        check_scale(op, "weight_init_std", weight_init_std)
    return sizes, ACTIVATION_LAYERS[activation]


def init_fc_weights(params, all_size_list, weight_init_std, dtype):
    """The book's ``__init_weight``: fill ``params`` with ``W1, b1, ..., Wn, bn``.

    ``'relu'``/``'he'`` give the He scale ``sqrt(2 / fan_in)``, ``'sigmoid'``/``'xavier'`` the
    Xavier scale ``sqrt(1 / fan_in)``, a number is used as is. Weights are drawn from NumPy's
    global RNG in the book's order (W1, W2, ...).

    Parameters
    ----------
    params : dict
        Filled in place.
    all_size_list : list of int
        ``[input_size, *hidden_size_list, output_size]``.
    weight_init_std : str or float
        Validated by :func:`check_fc_args`.
    dtype : numpy.dtype
        Parameter dtype (cast after drawing).
    """
    for idx in range(1, len(all_size_list)):
        scale = weight_init_std
        if str(weight_init_std).lower() in ("relu", "he"):
            scale = np.sqrt(2.0 / all_size_list[idx - 1])
        elif str(weight_init_std).lower() in ("sigmoid", "xavier"):
            scale = np.sqrt(1.0 / all_size_list[idx - 1])
        shape = (all_size_list[idx - 1], all_size_list[idx])
        params["W" + str(idx)] = randn_init(scale, shape, dtype)
        params["b" + str(idx)] = np.zeros(all_size_list[idx], dtype=dtype)


def weight_decay_loss(params, n_affine, weight_decay_lambda):
    """``sum_i 0.5 * lambda * sum(W_i**2)`` over ``W1..W{n_affine}`` (the book's loop)."""
    weight_decay = 0
    for idx in range(1, n_affine + 1):
        W = params["W" + str(idx)]
        weight_decay += 0.5 * weight_decay_lambda * np.sum(W**2)
    return weight_decay


class MultiLayerNet(NetBase):
    """Fully connected net with any number of hidden layers (``common/multi_layer_net.py``).

    Layers: ``Affine1 -> Activation_function1 -> ... -> Affine{n+1}`` and a
    :class:`~fastnn.layers.SoftmaxWithLoss`, with optional weight decay (L2).

    Parameters
    ----------
    input_size : int
        Input width (784 for MNIST).
    hidden_size_list : list of int
        Hidden layer widths, e.g. ``[100, 100, 100]``.
    output_size : int
        Number of classes (10 for MNIST).
    activation : {'relu', 'sigmoid'}, default 'relu'
        Hidden activation.
    weight_init_std : {'relu', 'he', 'sigmoid', 'xavier'} or float, default 'relu'
        ``'relu'``/``'he'``: He init ``sqrt(2 / fan_in)``; ``'sigmoid'``/``'xavier'``: Xavier
        init ``sqrt(1 / fan_in)``; a number: that standard deviation. Weights are drawn from
        NumPy's global RNG in the book's order, so ``np.random.seed`` reproduces the book.
    weight_decay_lambda : float, default 0
        L2 strength: :meth:`loss` adds ``0.5 * lambda * sum(W**2)`` for every weight matrix,
        :meth:`gradient` adds ``lambda * W``.
    dtype : {np.float64, np.float32}, default np.float64
        Parameter dtype (weights are drawn in float64, then cast).

    Attributes
    ----------
    params : dict
        ``'W1'``, ``'b1'``, ..., ``'W{n+1}'``, ``'b{n+1}'``; shared with the Affine layers.
    layers : OrderedDict
        ``'Affine1'``, ``'Activation_function1'``, ..., ``'Affine{n+1}'``.
    last_layer : SoftmaxWithLoss

    Shape
    -----
    x: (N, input_size) -> scores: (N, output_size).
    """

    def __init__(
        self,
        input_size,
        hidden_size_list,
        output_size,
        activation="relu",
        weight_init_std="relu",
        weight_decay_lambda=0,
        dtype=np.float64,
    ):
        op = "MultiLayerNet"
        sizes, activation_layer = check_fc_args(
            op, input_size, hidden_size_list, output_size, activation, weight_init_std
        )
        check_scale(op, "weight_decay_lambda", weight_decay_lambda)
        self.dtype = check_dtype(op, dtype)
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(sizes) - 2
        self.weight_decay_lambda = weight_decay_lambda
        self.params = {}

        init_fc_weights(self.params, sizes, weight_init_std, self.dtype)

        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(
                self.params["W" + str(idx)], self.params["b" + str(idx)]
            )
            self.layers["Activation_function" + str(idx)] = activation_layer()
        idx = self.hidden_layer_num + 1
        self.layers["Affine" + str(idx)] = Affine(
            self.params["W" + str(idx)], self.params["b" + str(idx)]
        )
        self.last_layer = SoftmaxWithLoss()

    def _param_slots(self):
        slots = []
        for idx in range(1, self.hidden_layer_num + 2):
            layer = self.layers["Affine" + str(idx)]
            slots += [("W" + str(idx), layer, "W"), ("b" + str(idx), layer, "b")]
        return slots

    def _param_keys(self):
        keys = []
        for idx in range(1, self.hidden_layer_num + 2):
            keys += ["W" + str(idx), "b" + str(idx)]
        return keys

    def predict(self, x):
        """Scores (before softmax).

        Shape
        -----
        x: (N, input_size) -> (N, output_size).
        """
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        """Mean cross-entropy plus the weight-decay term.

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
        y = self.predict(x)
        weight_decay = weight_decay_loss(
            self.params, self.hidden_layer_num + 1, self.weight_decay_lambda
        )
        return self.last_layer.forward(y, t) + weight_decay

    def accuracy(self, x, t):
        """Fraction of samples whose arg-max score equals the label.

        ``t`` may be one-hot or labels (the book's version mishandles one-hot ``t`` here; its
        ``MultiLayerNetExtend`` does it right, and so does this).

        Returns
        -------
        float
        """
        return accuracy("MultiLayerNet.accuracy", self.predict, x, t)

    def numerical_gradient(self, x, t):
        """Gradients of :meth:`loss` (weight decay included) by central differences.

        The values of the book's loop (``h = 1e-4``, every parameter).
        Computed by :mod:`fastnn._numgrad`'s parallel kernels, which re-evaluate only what each
        perturbation changes: the same central differences as the book's loop (to ~1e-11),
        hundreds to thousands of times faster. float32 nets use the book's loop.

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, ..., perturbing each shared parameter array in place.
        """
        grads = net_numerical_gradient(self, x, t)
        if grads is not None:
            return grads
        return numerical_grads(lambda: self.loss(x, t), self.params, self._param_keys())

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation (weight decay included).

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, ...: ``dW + lambda * W`` and ``db`` of each Affine layer.
        """
        self.loss(x, t)
        backprop(self.last_layer, self.layers.values())
        grads = {}
        lam = self.weight_decay_lambda
        for idx in range(1, self.hidden_layer_num + 2):
            layer = self.layers["Affine" + str(idx)]
            W = self.params["W" + str(idx)]
            grads["W" + str(idx)] = layer.dW + W.dtype.type(lam) * W if lam else layer.dW
            grads["b" + str(idx)] = layer.db
        return grads
