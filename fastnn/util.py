"""The book's ``common/util.py``: ``im2col``, ``col2im``, ``conv_output_size``,
``shuffle_dataset``, ``smooth_curve``.

``im2col`` / ``col2im`` run as parallel Numba kernels (:mod:`fastnn.functional`); the layout is
the book's: rows ordered (n, oy, ox), columns (c, ky, kx).
"""

from __future__ import annotations

import numpy as np

from . import functional as F

__all__ = ["im2col", "col2im", "conv_output_size", "shuffle_dataset", "smooth_curve"]


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Unfold ``(N, C, H, W)`` images into ``(N*OH*OW, C*filter_h*filter_w)`` patch rows.

    float32 input gives float32 output (the book always returns float64); other inputs follow
    :mod:`fastnn.functional`'s dtype policy.

    Shape
    -----
    input_data: (N, C, H, W) -> (N*OH*OW, C*FH*FW).
    """
    return F.im2col(input_data, filter_h, filter_w, stride, pad)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Fold patch rows back into images, summing overlaps and cropping the padding.

    Shape
    -----
    col: (N*OH*OW, C*FH*FW) -> input_shape = (N, C, H, W).
    """
    return F.col2im(col, input_shape, filter_h, filter_w, stride, pad)


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """``(input_size + 2*pad - filter_size) / stride + 1``.

    As in the book this uses true division, so it returns a float (e.g. ``24.0``).
    """
    return (input_size + 2 * pad - filter_size) / stride + 1


def shuffle_dataset(x, t):
    """Shuffle ``x`` and ``t`` with the same ``np.random.permutation`` (NumPy's global RNG).

    Shape
    -----
    x: (N, ...), t: (N, ...) -> same shapes.
    """
    permutation = np.random.permutation(x.shape[0])
    return x[permutation], t[permutation]


def smooth_curve(x):
    """Smooth a loss curve with an 11-point Kaiser window (beta 2), as the book's plots do.

    Reference: http://glowingpython.blogspot.jp/2012/02/convolution-with-numpy.html
    """
    window_len = 11
    x = np.asarray(x)
    s = np.r_[x[window_len - 1 : 0 : -1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5 : len(y) - 5]
