"""The book's ``MultiLayerNetExtend`` (``common/multi_layer_net_extend.py``): weight decay,
dropout and batch normalization."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .._numgrad import net_numerical_gradient
from ..layers import Affine, BatchNormalization, Dropout, SoftmaxWithLoss
from ._base import (
    NetBase,
    accuracy,
    backprop,
    check_dtype,
    check_scale,
    numerical_grads,
)
from .multi_layer_net import check_fc_args, init_fc_weights, weight_decay_loss

__all__ = ["MultiLayerNetExtend"]


class MultiLayerNetExtend(NetBase):
    """Fully connected net with weight decay, dropout and batch normalization.

    Layers per hidden block ``i``: ``Affine{i}`` [-> ``BatchNorm{i}``] ->
    ``Activation_function{i}`` [-> ``Dropout{i}``]; then ``Affine{n+1}`` and a
    :class:`~fastnn.layers.SoftmaxWithLoss`.

    Parameters
    ----------
    input_size : int
        Input width (784 for MNIST).
    hidden_size_list : list of int
        Hidden layer widths, e.g. ``[100, 100, 100]``.
    output_size : int
        Number of classes.
    activation : {'relu', 'sigmoid'}, default 'relu'
        Hidden activation.
    weight_init_std : {'relu', 'he', 'sigmoid', 'xavier'} or float, default 'relu'
        He (``sqrt(2 / fan_in)``), Xavier (``sqrt(1 / fan_in)``) or a fixed standard deviation;
        drawn from NumPy's global RNG in the book's order.
    weight_decay_lambda : float, default 0
        L2 strength (``loss`` adds ``0.5 * lambda * sum(W**2)``, ``gradient`` adds
        ``lambda * W``).
    use_dropout : bool, default False
        Insert a :class:`~fastnn.layers.Dropout` after every hidden activation.
    dropout_ration : float, default 0.5
        Dropout ratio (the book's spelling).
    use_batchnorm : bool, default False
        Insert a :class:`~fastnn.layers.BatchNormalization` after every hidden Affine, with
        parameters ``gamma{i}`` (ones) and ``beta{i}`` (zeros).
    dtype : {np.float64, np.float32}, default np.float64
        Parameter dtype (weights are drawn in float64, then cast).

    Attributes
    ----------
    params : dict
        ``'W1'``, ``'b1'``, ..., ``'W{n+1}'``, ``'b{n+1}'``, then ``'gamma1'``, ``'beta1'``, ...
        with batch normalization; shared with the layers.
    layers : OrderedDict
        Named as in the book (``'Affine1'``, ``'BatchNorm1'``, ``'Activation_function1'``,
        ``'Dropout1'``, ...).
    last_layer : SoftmaxWithLoss

    Notes
    -----
    :meth:`gradient` and :meth:`numerical_gradient` run the net in training mode (dropout
    masks drawn, batch statistics used and the running averages updated), as in the book.

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
        use_dropout=False,
        dropout_ration=0.5,
        use_batchnorm=False,
        dtype=np.float64,
    ):
        op = "MultiLayerNetExtend"
        sizes, activation_layer = check_fc_args(
            op, input_size, hidden_size_list, output_size, activation, weight_init_std
        )
        check_scale(op, "weight_decay_lambda", weight_decay_lambda)
        check_scale(op, "dropout_ration", dropout_ration)
        if not 0 <= dropout_ration <= 1:
            raise ValueError(f"{op}: dropout_ration must be in [0, 1], got {dropout_ration!r}")
        self.dtype = check_dtype(op, dtype)
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(sizes) - 2
        self.use_dropout = use_dropout
        self.dropout_ration = dropout_ration
        self.weight_decay_lambda = weight_decay_lambda
        self.use_batchnorm = use_batchnorm
        self.params = {}

        init_fc_weights(self.params, sizes, weight_init_std, self.dtype)

        self.layers = OrderedDict()
        for idx in range(1, self.hidden_layer_num + 1):
            self.layers["Affine" + str(idx)] = Affine(
                self.params["W" + str(idx)], self.params["b" + str(idx)]
            )
            if self.use_batchnorm:
                self.params["gamma" + str(idx)] = np.ones(sizes[idx], dtype=self.dtype)
                self.params["beta" + str(idx)] = np.zeros(sizes[idx], dtype=self.dtype)
                self.layers["BatchNorm" + str(idx)] = BatchNormalization(
                    self.params["gamma" + str(idx)], self.params["beta" + str(idx)]
                )
            self.layers["Activation_function" + str(idx)] = activation_layer()
            if self.use_dropout:
                # a Python float keeps float32 activations float32 in Dropout's eval scaling
                self.layers["Dropout" + str(idx)] = Dropout(float(dropout_ration))
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
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                bn = self.layers["BatchNorm" + str(idx)]
                slots += [("gamma" + str(idx), bn, "gamma"), ("beta" + str(idx), bn, "beta")]
        return slots

    def _param_keys(self):
        return [key for key, _, _ in self._param_slots()]

    def predict(self, x, train_flg=False):
        """Scores (before softmax).

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, input_size)``.
        train_flg : bool, default False
            Training mode for the Dropout and BatchNorm layers (masks drawn, batch statistics
            used); evaluation mode otherwise.

        Shape
        -----
        x: (N, input_size) -> (N, output_size).
        """
        for key, layer in self.layers.items():
            if "Dropout" in key or "BatchNorm" in key:
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        """Mean cross-entropy plus the weight-decay term.

        Parameters
        ----------
        x : ndarray
            Inputs ``(N, input_size)``.
        t : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)``.
        train_flg : bool, default False
            Passed to :meth:`predict`.

        Returns
        -------
        scalar
        """
        y = self.predict(x, train_flg)
        weight_decay = weight_decay_loss(
            self.params, self.hidden_layer_num + 1, self.weight_decay_lambda
        )
        return self.last_layer.forward(y, t) + weight_decay

    def accuracy(self, X, T):
        """Fraction of samples whose arg-max score (evaluation mode) equals the label.

        Parameters
        ----------
        X : ndarray
            Inputs ``(N, input_size)``.
        T : ndarray
            One-hot ``(N, output_size)`` or labels ``(N,)``.

        Returns
        -------
        float
        """
        return accuracy(
            "MultiLayerNetExtend.accuracy", lambda x: self.predict(x, train_flg=False), X, T
        )

    def numerical_gradient(self, X, T):
        """Gradients of ``loss(X, T, train_flg=True)`` by central differences.

        The values of the book's loop (``h = 1e-4``, every parameter, batch norm in training
        mode). Without dropout they are computed by :mod:`fastnn._numgrad`'s parallel kernels
        (hundreds to thousands of times faster; float32 nets use the book's loop); the batch
        norms' running statistics end where the book's loop leaves them. With ``use_dropout``
        the book's loop runs, and the RNG state is restored before every loss evaluation, so
        all evaluations use the same dropout masks (in the book each one draws new masks,
        which makes the result noise); the result then matches :meth:`gradient` called from
        the same RNG state.

        Returns
        -------
        dict
            ``'W1'``, ``'b1'``, (``'gamma1'``, ``'beta1'``,) ...
        """
        grads = net_numerical_gradient(self, X, T)
        if grads is not None:
            return grads
        return numerical_grads(
            lambda: self.loss(X, T, train_flg=True),
            self.params,
            self._param_keys(),
            fix_rng=bool(self.use_dropout),
        )

    def gradient(self, x, t):
        """Gradients of ``loss(x, t, train_flg=True)`` by backpropagation.

        Returns
        -------
        dict
            ``'W1'``: ``dW + lambda * W``, ``'b1'``: ``db``, and with batch normalization
            ``'gamma1'``: ``dgamma``, ``'beta1'``: ``dbeta``, ...
        """
        self.loss(x, t, train_flg=True)
        backprop(self.last_layer, self.layers.values())
        grads = {}
        lam = self.weight_decay_lambda
        for idx in range(1, self.hidden_layer_num + 2):
            layer = self.layers["Affine" + str(idx)]
            W = self.params["W" + str(idx)]
            grads["W" + str(idx)] = layer.dW + W.dtype.type(lam) * W if lam else layer.dW
            grads["b" + str(idx)] = layer.db
            if self.use_batchnorm and idx != self.hidden_layer_num + 1:
                bn = self.layers["BatchNorm" + str(idx)]
                grads["gamma" + str(idx)] = bn.dgamma
                grads["beta" + str(idx)] = bn.dbeta
        return grads
