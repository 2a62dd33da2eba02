"""The book's ``DeepConvNet`` (``ch08/deep_convnet.py``)."""

from __future__ import annotations

import numpy as np

from ..layers import Affine, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss
from ._base import (
    NetBase,
    accuracy,
    backprop,
    check_conv_param,
    check_dtype,
    check_input_dim,
    check_size,
    numerical_grads,
    randn_init,
    window_out,
)

__all__ = ["DeepConvNet"]

#: Indices in ``DeepConvNet.layers`` of the layers holding W1/b1 ... W8/b8 (the book's tuple).
PARAM_LAYER_INDICES = (0, 2, 5, 7, 10, 12, 15, 18)


class DeepConvNet(NetBase):
    """The ch08 ConvNet (over 99 % on MNIST once trained).

    ``conv - relu - conv - relu - pool`` three times, then
    ``affine - relu - dropout - affine - dropout - softmax``.

    Parameters
    ----------
    input_dim : tuple of int, default (1, 28, 28)
        ``(C, H, W)`` of one input image.
    conv_param_1 ... conv_param_6 : dict
        Settings of the six 3x3 convolutions, by default 16, 16, 32, 32, 64, 64 filters with
        pad 1 (pad 2 on the fourth), stride 1.
    hidden_size : int, default 50
        Width of the hidden Affine layer.
    output_size : int, default 10
        Number of classes.
    dtype : {np.float64, np.float32}, default np.float64
        Parameter dtype (weights are drawn in float64, then cast).

    Attributes
    ----------
    params : dict
        ``'W1'`` ... ``'W8'``, ``'b1'`` ... ``'b8'``; shared with the layers.
    layers : list
        The book's list of 20 layers; ``layers[i]`` for ``i`` in ``(0, 2, 5, 7, 10, 12, 15,
        18)`` hold W1..W8.
    last_layer : SoftmaxWithLoss

    Notes
    -----
    He initialisation with the book's fixed fan-ins
    ``pre_node_nums = [1*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3, 64*3*3, 64*4*4, hidden_size]``
    (also when other ``conv_param_*`` are given, as in the book), drawn from NumPy's global RNG
    in the book's order. The number of rows of W7 is computed from the actual conv/pool output
    size; the book hard-codes ``64*4*4``, which is the same whenever the book's net works.

    :meth:`loss` and :meth:`gradient` run in training mode (dropout masks drawn), as in the
    book; :meth:`predict` and :meth:`accuracy` default to evaluation mode.

    Shape
    -----
    x: (N, C, H, W) -> scores: (N, output_size).
    """

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param_1={"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        conv_param_2={"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        conv_param_3={"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        conv_param_4={"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},  # noqa: B006
        conv_param_5={"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        conv_param_6={"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        hidden_size=50,
        output_size=10,
        dtype=np.float64,
    ):
        op = "DeepConvNet"
        C, H, W = check_input_dim(op, input_dim)
        conv_params = [conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5,
                       conv_param_6]  # fmt: skip
        convs = [
            check_conv_param(op, f"conv_param_{i + 1}", p) for i, p in enumerate(conv_params)
        ]
        hidden_size = check_size(op, "hidden_size", hidden_size)
        output_size = check_size(op, "output_size", output_size)
        self.dtype = check_dtype(op, dtype)

        # geometry of the feature maps, to size W7 (and to fail early with a clear message)
        hw = (H, W)
        for i, (_, fsize, pad, stride) in enumerate(convs):
            hw = window_out(op, f"convolution {i + 1}", hw, fsize, stride, pad)
            if i % 2 == 1:
                hw = window_out(op, f"pooling after convolution {i + 1}", hw, 2, 2, 0)
        flat_size = convs[5][0] * hw[0] * hw[1]

        # He initialisation with the book's fixed fan-ins
        pre_node_nums = np.array(
            [1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3, 64 * 4 * 4,
             hidden_size]
        )  # fmt: skip
        weight_init_scales = np.sqrt(2.0 / pre_node_nums)

        self.params = {}
        pre_channel_num = C
        for idx, (filter_num, filter_size, _, _) in enumerate(convs):
            shape = (filter_num, pre_channel_num, filter_size, filter_size)
            self.params["W" + str(idx + 1)] = randn_init(weight_init_scales[idx], shape, self.dtype)
            self.params["b" + str(idx + 1)] = np.zeros(filter_num, dtype=self.dtype)
            pre_channel_num = filter_num
        scales, dt = weight_init_scales, self.dtype
        self.params["W7"] = randn_init(scales[6], (flat_size, hidden_size), dt)
        self.params["b7"] = np.zeros(hidden_size, dtype=dt)
        self.params["W8"] = randn_init(scales[7], (hidden_size, output_size), dt)
        self.params["b8"] = np.zeros(output_size, dtype=self.dtype)

        self.layers = []
        for idx, (_, _, pad, stride) in enumerate(convs):
            key = str(idx + 1)
            self.layers.append(Convolution(self.params["W" + key], self.params["b" + key],
                                           stride, pad))  # fmt: skip
            self.layers.append(Relu())
            if idx % 2 == 1:
                self.layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        self.layers.append(Affine(self.params["W7"], self.params["b7"]))
        self.layers.append(Relu())
        self.layers.append(Dropout(0.5))
        self.layers.append(Affine(self.params["W8"], self.params["b8"]))
        self.layers.append(Dropout(0.5))
        self.last_layer = SoftmaxWithLoss()

    def _param_slots(self):
        slots = []
        for i, layer_idx in enumerate(PARAM_LAYER_INDICES):
            layer = self.layers[layer_idx]
            slots += [("W" + str(i + 1), layer, "W"), ("b" + str(i + 1), layer, "b")]
        return slots

    def predict(self, x, train_flg=False):
        """Scores (before softmax).

        Parameters
        ----------
        x : ndarray
            Images ``(N, C, H, W)``.
        train_flg : bool, default False
            Training mode for the Dropout layers (masks drawn from NumPy's global RNG);
            evaluation mode scales by ``1 - 0.5`` instead.

        Shape
        -----
        x: (N, C, H, W) -> (N, output_size).
        """
        for layer in self.layers:
            if isinstance(layer, Dropout):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t):
        """Mean cross-entropy loss in training mode (dropout active), as in the book.

        Parameters
        ----------
        x : ndarray
            Images ``(N, C, H, W)``.
        t : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)``.

        Returns
        -------
        scalar
        """
        y = self.predict(x, train_flg=True)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of samples whose arg-max score (evaluation mode) equals the label.

        Evaluated in batches of ``batch_size``, including a final partial batch (the book
        skips it but still divides by ``N``).

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
        return accuracy(
            "DeepConvNet.accuracy", lambda b: self.predict(b, train_flg=False), x, t, batch_size
        )

    def numerical_gradient(self, x, t):
        """Gradients of :meth:`loss` by central differences (very slow for this net).

        Not in the book (its ``DeepConvNet`` has none). NumPy's RNG state is restored before
        every loss evaluation, so all evaluations use the same dropout masks and the result
        matches :meth:`gradient` called from the same RNG state.

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, ..., ``'W8'``, ``'b8'``.
        """
        keys = [k + str(i) for i in range(1, 9) for k in ("W", "b")]
        return numerical_grads(lambda: self.loss(x, t), self.params, keys, fix_rng=True)

    def gradient(self, x, t):
        """Gradients of :meth:`loss` by backpropagation (training mode).

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, ..., ``'W8'``, ``'b8'``: the ``dW`` / ``db`` of the layers at
            indices ``(0, 2, 5, 7, 10, 12, 15, 18)``.
        """
        self.loss(x, t)
        backprop(self.last_layer, self.layers)
        grads = {}
        for i, layer_idx in enumerate(PARAM_LAYER_INDICES):
            grads["W" + str(i + 1)] = self.layers[layer_idx].dW
            grads["b" + str(i + 1)] = self.layers[layer_idx].db
        return grads
