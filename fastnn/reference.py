"""Pure-NumPy reference implementations: the oracle for every fastnn kernel.

These are the algorithms of *Deep Learning from Scratch* (``common/util.py``,
``common/layers.py``, ``common/functions.py``, ``common/gradient.py``), written out plainly so
that they are obviously correct. Every parity test and every benchmark compares fastnn against
this module. Nothing here is fast, and nothing here validates its input.

Differences from the book, all deliberate and documented where they occur:

* dtypes follow the inputs (the book's ``im2col`` always allocates float64);
* max pooling supports padding, and padded cells never win (the book pads with zeros, and its
  ``Pooling.forward`` crashes for ``pad > 0``);
* integer labels of shape ``(N, 1)`` are treated as ``(N,)``.

Shape names: N batch, C channels, H/W height/width, FN filters, FH/FW filter height/width,
OH/OW output height/width.
"""

from __future__ import annotations

import numpy as np

#: The reference's matrix product: NumPy's (BLAS). BLAS may skip a zero multiplier, so
#: ``0 * nan`` can come out as 0 for some shapes (e.g. matrix-vector products); tests that feed
#: NaN/inf swap in an IEEE-exact product here (``tests/_fuzz_cases.py``).
_matmul = np.matmul

__all__ = [
    "conv_output_size",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "conv2d_backward_bias",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "softmax",
    "cross_entropy",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "dropout_forward",
    "dropout_backward",
    "batch_norm_train",
    "batch_norm_eval",
    "batch_norm_backward",
    "numerical_gradient",
    "CROSS_ENTROPY_EPS",
    "NUMERICAL_GRADIENT_H",
]

#: The book adds this inside the log: ``log(y + 1e-7)``.
CROSS_ENTROPY_EPS = 1e-7
#: Central-difference step of ``common/gradient.py``.
NUMERICAL_GRADIENT_H = 1e-4


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """Output length of a convolution or pooling window along one axis."""
    return (input_size + 2 * pad - filter_size) // stride + 1


# --------------------------------------------------------------------------- im2col / col2im
def im2col(x, FH, FW, stride=1, pad=0):
    """Unfold image patches into rows (the book's layout).

    Parameters
    ----------
    x : ndarray
        Input images.
    FH, FW : int
        Window height and width.
    stride, pad : int
        Window stride and zero padding on every side.

    Returns
    -------
    col : ndarray
        Patches, one row per output pixel; same dtype as ``x``.

    Shape
    -----
    x: (N, C, H, W) -> col: (N*OH*OW, C*FH*FW); rows ordered (n, oy, ox), columns (c, ky, kx).
    """
    N, C, H, W = x.shape
    OH = conv_output_size(H, FH, stride, pad)
    OW = conv_output_size(W, FW, stride, pad)
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant")
    col = np.zeros((N, C, FH, FW, OH, OW), dtype=x.dtype)
    for ky in range(FH):
        y_max = ky + stride * OH
        for kx in range(FW):
            x_max = kx + stride * OW
            col[:, :, ky, kx, :, :] = img[:, :, ky:y_max:stride, kx:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * OH * OW, -1)


def col2im(col, input_shape, FH, FW, stride=1, pad=0):
    """Fold patch rows back into images, summing overlaps and cropping padding.

    The adjoint of :func:`im2col`: ``<im2col(x), y> == <x, col2im(y)>``.

    Shape
    -----
    col: (N*OH*OW, C*FH*FW) -> (N, C, H, W) with ``(N, C, H, W) = input_shape``.
    """
    N, C, H, W = input_shape
    OH = conv_output_size(H, FH, stride, pad)
    OW = conv_output_size(W, FW, stride, pad)
    col = col.reshape(N, OH, OW, C, FH, FW).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=col.dtype)
    for ky in range(FH):
        y_max = ky + stride * OH
        for kx in range(FW):
            x_max = kx + stride * OW
            img[:, :, ky:y_max:stride, kx:x_max:stride] += col[:, :, ky, kx, :, :]
    return img[:, :, pad : H + pad, pad : W + pad]


# --------------------------------------------------------------------------- convolution
def conv2d_forward(x, W, b=None, stride=1, pad=0):
    """Cross-correlation with bias, as the book's ``Convolution.forward``.

    Shape
    -----
    x: (N, C, H, W), W: (FN, C, FH, FW), b: (FN,) -> (N, FN, OH, OW).
    """
    FN, C, FH, FW = W.shape
    N = x.shape[0]
    OH = conv_output_size(x.shape[2], FH, stride, pad)
    OW = conv_output_size(x.shape[3], FW, stride, pad)
    col = im2col(x, FH, FW, stride, pad)
    out = _matmul(col, W.reshape(FN, -1).T)
    if b is not None:
        out = out + b
    return np.ascontiguousarray(out.reshape(N, OH, OW, FN).transpose(0, 3, 1, 2))


def _dout_rows(dout):
    """(N, FN, OH, OW) -> (N*OH*OW, FN), the book's ``dout.transpose(0,2,3,1).reshape(-1, FN)``."""
    return dout.transpose(0, 2, 3, 1).reshape(-1, dout.shape[1])


def conv2d_backward_data(dout, W, input_shape, stride=1, pad=0):
    """Gradient of the convolution with respect to its input.

    Shape
    -----
    dout: (N, FN, OH, OW), W: (FN, C, FH, FW) -> dx: ``input_shape`` = (N, C, H, W).
    """
    FN, C, FH, FW = W.shape
    dcol = _matmul(_dout_rows(dout), W.reshape(FN, -1))
    return col2im(dcol, input_shape, FH, FW, stride, pad)


def conv2d_backward_weight(x, dout, filter_size, stride=1, pad=0):
    """Gradient of the convolution with respect to its filters.

    Parameters
    ----------
    filter_size : tuple of int
        ``(FH, FW)``.

    Shape
    -----
    x: (N, C, H, W), dout: (N, FN, OH, OW) -> dW: (FN, C, FH, FW).
    """
    FH, FW = filter_size
    FN = dout.shape[1]
    C = x.shape[1]
    col = im2col(x, FH, FW, stride, pad)
    dW = _matmul(col.T, _dout_rows(dout))
    return np.ascontiguousarray(dW.T.reshape(FN, C, FH, FW))


def conv2d_backward_bias(dout):
    """Gradient of the convolution with respect to its bias.

    Shape
    -----
    dout: (N, FN, OH, OW) -> db: (FN,).
    """
    return _dout_rows(dout).sum(axis=0)


# --------------------------------------------------------------------------- max pooling
def max_pool2d_forward(x, pool_h, pool_w, stride=2, pad=0):
    """Max pooling, as the book's ``Pooling.forward``, with padding that never wins.

    Returns
    -------
    out : ndarray
        Maxima.
    argmax : ndarray of intp
        Window-local index ``ky * pool_w + kx`` of the first maximum in row-major window
        order (the book's ``np.argmax`` tie rule). NaN counts as the maximum, as in NumPy.

    Shape
    -----
    x: (N, C, H, W) -> out: (N, C, OH, OW), argmax: (N, C, OH, OW).
    """
    N, C, H, W = x.shape
    OH = conv_output_size(H, pool_h, stride, pad)
    OW = conv_output_size(W, pool_w, stride, pad)
    if np.issubdtype(x.dtype, np.floating):
        fill = -np.inf
    else:
        fill = np.iinfo(x.dtype).min
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant", constant_values=fill)
    col = im2col(xp, pool_h, pool_w, stride, 0).reshape(-1, pool_h * pool_w)
    out = np.max(col, axis=1)
    if pad == 0:
        argmax = np.argmax(col, axis=1)
    else:
        # the first real cell equal to the maximum (or the first NaN): a padding cell must not
        # win even when every real cell of the window is -inf (the padding value)
        real = np.pad(np.ones((1, 1, H, W)), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
        real = im2col(real, pool_h, pool_w, stride, 0) > 0  # (OH*OW, pool_h*pool_w)
        real = np.broadcast_to(real[None, :, None, :], (N, OH * OW, C, real.shape[1]))
        real = real.reshape(col.shape)  # col's rows are (n, oy, ox, c)
        hit = (col == out[:, None]) | (np.isnan(col) & np.isnan(out)[:, None])
        argmax = np.argmax(hit & real, axis=1)
    out = out.reshape(N, OH, OW, C).transpose(0, 3, 1, 2)
    argmax = argmax.reshape(N, OH, OW, C).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), np.ascontiguousarray(argmax)


def max_pool2d_backward(dout, argmax, input_shape, pool_h, pool_w, stride=2, pad=0):
    """Route each output gradient to its window's first maximum; overlaps accumulate.

    Shape
    -----
    dout, argmax: (N, C, OH, OW) -> dx: ``input_shape`` = (N, C, H, W).
    """
    pool_size = pool_h * pool_w
    d = dout.transpose(0, 2, 3, 1)
    a = argmax.transpose(0, 2, 3, 1)
    dmax = np.zeros((d.size, pool_size), dtype=dout.dtype)
    dmax[np.arange(a.size), a.ravel()] = d.ravel()
    dcol = dmax.reshape(d.shape[0] * d.shape[1] * d.shape[2], -1)
    return col2im(dcol, input_shape, pool_h, pool_w, stride, pad)


# --------------------------------------------------------------------------- softmax / loss
def softmax(x):
    """Max-subtracted softmax over the last axis (the book's ``softmax``)."""
    x = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=-1, keepdims=True)


def _labels(t, y):
    """The book's label rule: one-hot when ``t.size == y.size`` (argmax), else integer labels."""
    if t.size == y.size:
        return t.reshape(y.shape).argmax(axis=1)
    return t.reshape(-1).astype(np.intp)


def cross_entropy(y, t, eps=CROSS_ENTROPY_EPS):
    """Mean cross-entropy ``-log(y[t] + eps)`` of probabilities ``y`` (the book's
    ``cross_entropy_error``).

    Shape
    -----
    y: (N, K) or (K,); t: labels (N,) / (N, 1) or one-hot like ``y`` -> scalar.
    """
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = np.asarray(t).reshape(1, -1) if np.asarray(t).size == y.size else np.asarray(t).reshape(1)
    labels = _labels(np.asarray(t), y)
    N = y.shape[0]
    return -np.sum(np.log(y[np.arange(N), labels] + eps)) / N


def softmax_cross_entropy_forward(x, t, eps=CROSS_ENTROPY_EPS):
    """Softmax followed by cross-entropy, as the book's ``SoftmaxWithLoss.forward``.

    With ``eps=0`` the loss is computed exactly as ``logsumexp(x) - x[t]`` (no log of an
    underflowed probability).

    Returns
    -------
    loss : scalar
        Mean over the batch.
    y : ndarray
        Softmax probabilities, kept for the backward pass.

    Shape
    -----
    x: (N, K); t: labels (N,) / (N, 1) or one-hot (N, K) -> loss: (), y: (N, K).
    """
    y = softmax(x)
    if eps == 0:
        labels = _labels(np.asarray(t), x)
        m = np.max(x, axis=1)
        log_sum = np.log(np.sum(np.exp(x - m[:, None]), axis=1))
        # logsumexp(x) - x[t], written so that huge equal logits do not cancel catastrophically
        loss = np.mean(log_sum - (x[np.arange(x.shape[0]), labels] - m))
        return loss, y
    return cross_entropy(y, t, eps), y


def softmax_cross_entropy_backward(y, t):
    """``(y - t) / N`` with ``t`` one-hot, or with 1 subtracted at the labels.

    Shape
    -----
    y: (N, K); t: labels (N,) / (N, 1) or one-hot (N, K) -> dx: (N, K).
    """
    N = y.shape[0]
    t = np.asarray(t)
    if t.size == y.size:
        return (y - t.reshape(y.shape)) / N
    dx = y.copy()
    dx[np.arange(N), t.reshape(-1).astype(np.intp)] -= 1
    return dx / N


def linear_softmax_cross_entropy(x, W, b, t, eps=CROSS_ENTROPY_EPS):
    """Softmax regression's loss and gradients: ``Affine`` then ``SoftmaxWithLoss``, forward
    and backward (d2l 3.6).

    Returns
    -------
    loss, z, dW, db
        Mean loss, logits ``x @ W + b`` and the gradients of the loss w.r.t. ``W`` and ``b``.

    Shape
    -----
    x: (N, D), W: (D, K), b: (K,), t: labels (N,) / (N, 1) or one-hot (N, K) ->
    loss: (), z: (N, K), dW: (D, K), db: (K,).
    """
    z = _matmul(x, W) + b
    loss, y = softmax_cross_entropy_forward(z, t, eps)
    dz = softmax_cross_entropy_backward(y, t)
    return loss, z, _matmul(x.T, dz), np.sum(dz, axis=0)


# --------------------------------------------------------------------------- element-wise
def relu_forward(x):
    """ReLU; returns ``(out, mask)`` with the book's mask ``x <= 0``."""
    mask = x <= 0
    out = x.copy()
    out[mask] = 0
    return out, mask


def relu_backward(dout, mask):
    """Zero the gradient where the input was ``<= 0`` (returns a new array)."""
    dx = dout.copy()
    dx[mask] = 0
    return dx


def sigmoid_forward(x):
    """``1 / (1 + exp(-x))``."""
    return 1 / (1 + np.exp(-x))


def sigmoid_backward(dout, y):
    """``dout * (1 - y) * y`` with ``y`` the forward output."""
    return dout * (1.0 - y) * y


def dropout_forward(x, ratio, train=True):
    """The book's ``Dropout.forward``: returns ``(out, mask)`` (mask ``None`` at inference).

    The mask draws ``np.random.rand(*x.shape)`` from NumPy's global RNG.
    """
    if train:
        mask = np.random.rand(*x.shape) > ratio
        return x * mask, mask
    return x * (1.0 - ratio), None


def dropout_backward(dout, mask):
    """``dout * mask``."""
    return dout * mask


#: The book's batch-norm epsilon (``10e-7``).
BATCHNORM_EPS = 10e-7


def batch_norm_train(x, gamma, beta, eps=BATCHNORM_EPS):
    """The book's ``BatchNormalization.__forward`` with ``train_flg=True``.

    Returns
    -------
    out, xn, mean, var, std

    Shape
    -----
    x: (N, D), gamma, beta: (D,) -> out, xn: (N, D); mean, var, std: (D,).
    """
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc**2, axis=0)
    std = np.sqrt(var + eps)
    xn = xc / std
    return gamma * xn + beta, xn, mu, var, std


def batch_norm_eval(x, gamma, beta, running_mean, running_var, eps=BATCHNORM_EPS):
    """The book's inference forward with running statistics."""
    xc = x - running_mean
    xn = xc / np.sqrt(running_var + eps)
    return gamma * xn + beta


def batch_norm_backward(dout, xn, std, gamma):
    """The book's ``BatchNormalization.__backward``; returns ``(dx, dgamma, dbeta)``."""
    N = dout.shape[0]
    xc = xn * std
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / N) * xc * dvar
    dmu = np.sum(dxc, axis=0)
    dx = dxc - dmu / N
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- numerical gradient
def numerical_gradient(f, x, h=NUMERICAL_GRADIENT_H):
    """Central difference ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every element of ``x``.

    ``x`` is perturbed in place, one element at a time, and restored afterwards (the book's
    semantics: ``f`` usually ignores its argument and reads shared weights).

    Shape
    -----
    x: any -> grad: same shape as ``x``.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        tmp = x[idx]
        x[idx] = tmp + h
        fxh1 = f(x)
        x[idx] = tmp - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp
        it.iternext()
    return grad
