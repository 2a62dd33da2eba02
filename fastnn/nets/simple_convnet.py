"""The book's ``SimpleConvNet`` (``ch07/simple_convnet.py``)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .._numgrad import net_numerical_gradient
from ..layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss
from ._base import (
    NetBase,
    accuracy,
    backprop,
    check_conv_param,
    check_dtype,
    check_input_dim,
    check_scale,
    check_size,
    numerical_grads,
    randn_init,
    window_out,
)

__all__ = ["SimpleConvNet"]

_LAYER_OF = (("Conv1", "1"), ("Affine1", "2"), ("Affine2", "3"))


class SimpleConvNet(NetBase):
    """conv - relu - pool - affine - relu - affine - softmax (ch07).

    Parameters
    ----------
    input_dim : tuple of int, default (1, 28, 28)
        ``(C, H, W)`` of one input image.
    conv_param : dict, default {'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1}
        Convolution settings.
    hidden_size : int, default 100
        Width of the hidden Affine layer.
    output_size : int, default 10
        Number of classes.
    weight_init_std : float, default 0.01
        Every weight is ``weight_init_std * np.random.randn(...)``, drawn from NumPy's global
        RNG in the book's order (W1, W2, W3).
    dtype : {np.float64, np.float32}, default np.float64
        Parameter dtype (weights are drawn in float64, then cast).

    Attributes
    ----------
    params : dict
        ``'W1'`` ``(filter_num, C, filter_size, filter_size)``, ``'b1'``, ``'W2'``
        ``(filter_num * PH * PW, hidden_size)``, ``'b2'``, ``'W3'`` ``(hidden_size,
        output_size)``, ``'b3'``; shared with the layers.
    layers : OrderedDict
        ``'Conv1'``, ``'Relu1'``, ``'Pool1'`` (2x2, stride 2), ``'Affine1'``, ``'Relu2'``,
        ``'Affine2'``.
    last_layer : SoftmaxWithLoss

    Notes
    -----
    The size of W2 is computed from the real conv and pool output sizes (height and width
    separately). The book computes it with float division from ``input_dim[1]`` only; both
    agree whenever the book's net works, so the seeded weights are the same.

    Shape
    -----
    x: (N, C, H, W) -> scores: (N, output_size).
    """

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},  # noqa: B006
        hidden_size=100,
        output_size=10,
        weight_init_std=0.01,
        dtype=np.float64,
    ):
        op = "SimpleConvNet"
        C, H, W = check_input_dim(op, input_dim)
        filter_num, filter_size, filter_pad, filter_stride = check_conv_param(
            op, "conv_param", conv_param
        )
        hidden_size = check_size(op, "hidden_size", hidden_size)
        output_size = check_size(op, "output_size", output_size)
        check_scale(op, "weight_init_std", weight_init_std)
        self.dtype = check_dtype(op, dtype)
        conv_hw = window_out(op, "convolution", (H, W), filter_size, filter_stride, filter_pad)
        pool_h, pool_w = window_out(op, "2x2 pooling", conv_hw, 2, 2, 0)
        pool_output_size = filter_num * pool_h * pool_w

        self.params = {}
        self.params["W1"] = randn_init(
            weight_init_std, (filter_num, C, filter_size, filter_size), self.dtype
        )
        self.params["b1"] = np.zeros(filter_num, dtype=self.dtype)
        self.params["W2"] = randn_init(weight_init_std, (pool_output_size, hidden_size), self.dtype)
        self.params["b2"] = np.zeros(hidden_size, dtype=self.dtype)
        self.params["W3"] = randn_init(weight_init_std, (hidden_size, output_size), self.dtype)
        self.params["b3"] = np.zeros(output_size, dtype=self.dtype)

        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(
            self.params["W1"], self.params["b1"], filter_stride, filter_pad
        )
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.last_layer = SoftmaxWithLoss()

    def _param_slots(self):
        slots = []
        for name, i in _LAYER_OF:
            layer = self.layers[name]
            slots += [("W" + i, layer, "W"), ("b" + i, layer, "b")]
        return slots

    def predict(self, x):
        """Scores (before softmax).

        Shape
        -----
        x: (N, C, H, W) -> (N, output_size).
        """
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        """Mean cross-entropy loss.

        Parameters
        ----------
        x : ndarray
            Images ``(N, C, H, W)``.
        t : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)`` / ``(N, 1)``.

        Returns
        -------
        scalar
        """
        y = self.predict(x)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of samples whose arg-max score equals the label, in batches.

        Every sample is evaluated, including a final partial batch (the book skips it but
        still divides by ``N``; the two agree whenever ``N`` is a multiple of ``batch_size``).

        Parameters
        ----------
        x : ndarray
            Images ``(N, C, H, W)``.
        t : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)``.
        batch_size : int, default 100
            Samples per forward pass.

        Returns
        -------
        float
        """
        return accuracy("SimpleConvNet.accuracy", self.predict, x, t, batch_size)

    def numerical_gradient(self, x, t):
        """Gradients of :meth:`loss` by central differences (``h = 1e-4``), for every parameter.

        The values of the book's loop.
        Computed by :mod:`fastnn._numgrad`'s parallel kernels, which re-evaluate only what each
        perturbation changes: the same central differences as the book's loop (to ~1e-11),
        hundreds to thousands of times faster. float32 nets use the book's loop.

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, ``'W2'``, ``'b2'``, ``'W3'``, ``'b3'``.
        """
        grads = net_numerical_gradient(self, x, t)
        if grads is not None:
            return grads
        keys = ("W1", "b1", "W2", "b2", "W3", "b3")
        return numerical_grads(lambda: self.loss(x, t), self.params, keys)

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation.

        Returns
        -------
        dict
            ``'W1'``, ``'b1'`` (``Conv1``), ``'W2'``, ``'b2'`` (``Affine1``), ``'W3'``,
            ``'b3'`` (``Affine2``): the layers' ``dW`` / ``db`` arrays.
        """
        self.loss(x, t)
        backprop(self.last_layer, self.layers.values())
        grads = {}
        for name, i in _LAYER_OF:
            grads["W" + i], grads["b" + i] = self.layers[name].dW, self.layers[name].db
        return grads
