"""The book's layers (``common/layers.py``), drop-in, with the hot paths in Numba kernels.

Same class names, constructor arguments, attributes and in-place semantics as the book (see
``CONTRACT.md``): parameters are the caller's arrays, never copied or cast (optimizers update
them in place and the layer sees the change); gradients are attributes (``dW``, ``db``,
``dgamma``, ``dbeta``); ``Relu.backward`` writes into ``dout``.
"""

from __future__ import annotations

import numpy as np

from . import functional as F
from .reference import CROSS_ENTROPY_EPS

__all__ = [
    "Relu",
    "Sigmoid",
    "Affine",
    "SoftmaxWithLoss",
    "Dropout",
    "BatchNormalization",
    "Convolution",
    "Pooling",
]


class Relu:
    """ReLU. ``mask`` is the book's ``x <= 0``; ``backward`` zeroes ``dout`` in place."""

    def __init__(self):
        self.mask = None

    def forward(self, x):
        out, self.mask = F.relu(x)
        return out

    def backward(self, dout):
        return F.relu_backward(dout, self.mask)


class Sigmoid:
    """Logistic sigmoid; keeps its output ``out`` for ``dx = dout * (1 - out) * out``."""

    def __init__(self):
        self.out = None

    def forward(self, x):
        self.out = F.sigmoid(x)
        return self.out

    def backward(self, dout):
        return F.sigmoid_backward(dout, self.out)


class Affine:
    """Fully connected layer ``x @ W + b``; N-D input is flattened to ``(N, -1)``.

    Parameters
    ----------
    W : ndarray
        Weights, shape ``(D, M)``; kept by reference.
    b : ndarray
        Bias, shape ``(M,)``; kept by reference.

    Shape
    -----
    x: (N, ...) with prod(...) = D -> (N, M).
    """

    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        x = np.asarray(x)
        self.original_x_shape = x.shape
        if x.ndim == 0:
            raise ValueError(f"Affine.forward: x must have a batch axis, got shape {x.shape}")
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.W.shape[0]:
            raise ValueError(
                f"Affine.forward: x {self.original_x_shape} flattens to {x.shape}, which does not "
                f"match W {self.W.shape}"
            )
        self.x = x
        out = np.dot(x, self.W)
        if np.result_type(out, self.b) == out.dtype:
            out += self.b  # one pass, no second (N, M) array
            return out
        return out + self.b  # e.g. float32 x @ W with a float64 bias: NumPy promotion

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SoftmaxWithLoss:
    """Softmax + cross-entropy loss, fused in one kernel.

    Parameters
    ----------
    eps : float, default 1e-7
        The book's ``log(y + 1e-7)``; ``eps=0`` computes the exact log-sum-exp loss.

    Notes
    -----
    ``t`` may be one-hot (``t.size == y.size``) or integer labels ``(N,)`` / ``(N, 1)``.
    ``backward`` ignores ``dout`` and returns ``(y - t) / N``, as in the book. The forward pass
    computes the loss and the gradient together (one read of ``x``); the probabilities ``y`` are
    computed only when the attribute is read.
    """

    def __init__(self, eps=CROSS_ENTROPY_EPS):
        self.eps = eps
        self.loss = None
        self.t = None
        self._x = None
        self._y = None
        self._y_given = False
        self._dx = None

    @property
    def y(self):
        """Softmax probabilities of the last forward input (computed on first access)."""
        if self._y is None and self._x is not None:
            self._y = F.softmax(self._x)
        return self._y

    @y.setter
    def y(self, value):
        self._y = value
        self._y_given = value is not None

    def forward(self, x, t):
        self.t = t
        self._x = x
        self._y = None
        self._y_given = False
        self.loss, self._dx = F.softmax_cross_entropy_with_grad(x, t, self.eps)
        return self.loss

    def _record(self, x, t, loss, dx):
        """The state ``forward(x, t)`` leaves, for a caller that computed it (fused) itself."""
        self.t, self._x, self._y, self.loss, self._dx = t, x, None, loss, dx
        self._y_given = False

    def backward(self, dout=1):
        dx, self._dx = self._dx, None
        if dx is None:
            if self._x is not None and not self._y_given:
                # a second backward of the same forward: the same fused computation again, so
                # the same numbers (the first result may have been modified by the caller)
                dx = F.softmax_cross_entropy_with_grad(self._x, self.t, self.eps)[1]
            else:  # y (and t) set by hand, as the book's attributes allow
                dx = F.softmax_cross_entropy_backward(self.y, self.t)
        return dx.reshape(np.shape(self._x) if self._x is not None else np.shape(self.y))


class Dropout:
    """Dropout as in the book: training mask ``np.random.rand(*x.shape) > ratio`` from NumPy's
    global RNG; at test time the input is scaled by ``1 - ratio`` (not inverted dropout)."""

    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        out, mask = F.dropout(x, self.dropout_ratio, train=train_flg)
        if train_flg:
            self.mask = mask
        return out

    def backward(self, dout):
        return F.dropout_backward(dout, self.mask)


class BatchNormalization:
    """Batch normalization with per-activation statistics, as in the book.

    4-D input is flattened to ``(N, C*H*W)``; eps is ``10e-7``; running statistics are updated
    with ``momentum`` in training (new arrays, as the book) and used when ``train_flg=False``.
    ``xc`` (``x - mean``) is derived from ``xn * std`` when read.
    """

    EPS = F.BATCHNORM_EPS

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    @property
    def xc(self):
        """``x - mean`` of the last training batch."""
        return None if self.xn is None else self.xn * self.std

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        x = np.asarray(x)
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        if self.running_mean is None:
            D = x.shape[1]
            dt = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
            self.running_mean = np.zeros(D, dtype=dt)
            self.running_var = np.zeros(D, dtype=dt)
        if train_flg:
            out, self.xn, mu, var, self.std = F.batch_norm_train(x, self.gamma, self.beta, self.EPS)
            self.batch_size = x.shape[0]
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            out = F.batch_norm_eval(
                x, self.gamma, self.beta, self.running_mean, self.running_var, self.EPS
            )
        return out.reshape(*self.input_shape)

    def backward(self, dout):
        dout = np.asarray(dout)
        if dout.ndim != 2:
            dout = dout.reshape(dout.shape[0], -1)
        dx, self.dgamma, self.dbeta = F.batch_norm_backward(dout, self.xn, self.std, self.gamma)
        return dx.reshape(*self.input_shape)


class Convolution:
    """2-D convolution layer with the book's interface, computed by direct Numba kernels.

    Parameters
    ----------
    W : ndarray
        Filters ``(FN, C, FH, FW)``; kept by reference (updates in place are seen).
    b : ndarray
        Bias ``(FN,)``; kept by reference.
    stride, pad : int
    algorithm : {"auto", "direct", "gemm"}, default "auto"
        fastnn addition: force one convolution algorithm (see
        :func:`fastnn.functional.choose_conv_algorithm`).

    Shape
    -----
    x: (N, C, H, W) -> (N, FN, OH, OW), ``OH = (H + 2*pad - FH)//stride + 1``.
    """

    def __init__(self, W, b, stride=1, pad=0, algorithm="auto"):
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.algorithm = algorithm
        self.x = None
        self.dW = None
        self.db = None

    def forward(self, x):
        self.x = x
        return F.conv2d(x, self.W, self.b, self.stride, self.pad, self.algorithm)

    def backward(self, dout):
        s, p, alg = self.stride, self.pad, self.algorithm
        self.db = F.conv2d_backward_bias(dout)
        self.dW = F.conv2d_backward_weight(self.x, dout, self.W.shape, s, p, alg)
        return F.conv2d_backward_data(dout, self.W, self.x.shape, s, p, alg)


class Pooling:
    """Max pooling with the book's interface; padding is supported (padded cells never win).

    Ties send the gradient to the first maximum in row-major window order, as the book's
    ``np.argmax``. ``arg_max`` holds the window-local index of each maximum.

    Shape
    -----
    x: (N, C, H, W) -> (N, C, OH, OW).
    """

    def __init__(self, pool_h, pool_w, stride=2, pad=0):
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x = None
        self.arg_max = None

    def forward(self, x):
        self.x = x
        out, self.arg_max = F.max_pool2d(
            x, self.pool_h, self.pool_w, self.stride, self.pad, return_argmax=True
        )
        return out

    def backward(self, dout):
        return F.max_pool2d_backward(
            dout, self.arg_max, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad
        )
