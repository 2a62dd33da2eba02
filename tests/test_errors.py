"""Bad input to :mod:`fastnn.functional`: a clear ``ValueError`` / ``TypeError`` naming the op.

Every rule of the validation layer is exercised at least once per op that has it. Each case
asserts that

* the exception type is exactly ``ValueError`` or ``TypeError`` (never a Numba typing or
  lowering error, never an ``IndexError`` from inside a kernel), and
* the message starts with the op's name followed by a colon (``"conv2d: ..."``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnn import functional as F

# Valid baseline inputs: conv 3x3 stride 1 pad 0 on 5x5 images -> 3x3 outputs.
X = np.zeros((2, 3, 5, 5))
W = np.zeros((4, 3, 3, 3))
B = np.zeros(4)
DOUT = np.zeros((2, 4, 3, 3))
COL = np.zeros((2 * 3 * 3, 3 * 9))
# pooling 2x2 stride 2 on 5x5 -> 2x2 outputs
PDOUT = np.zeros((2, 3, 2, 2))
AM = np.zeros((2, 3, 2, 2), np.uint8)
# softmax / loss: N=3, K=4
LOGITS = np.zeros((3, 4))
LABELS = np.array([0, 3, 1])
ONEHOT = np.eye(4)[LABELS]
Y = np.full((3, 4), 0.25)


def f16(a):
    return np.asarray(a).astype(np.float16)


def c128(a):
    return np.asarray(a).astype(np.complex128)


def obj(a):
    return np.asarray(a).astype(object)


def readonly(a):
    a = np.array(a)
    a.setflags(write=False)
    return a


# (case id, op name, expected exception, thunk)
CASES = [
    # ------------------------------------------------------------------ conv2d
    ("x_3d", "conv2d", ValueError, lambda: F.conv2d(X[0], W)),
    ("x_5d", "conv2d", ValueError, lambda: F.conv2d(X[None], W)),
    ("W_3d", "conv2d", ValueError, lambda: F.conv2d(X, W[0])),
    ("channel_mismatch", "conv2d", ValueError, lambda: F.conv2d(X, np.zeros((4, 2, 3, 3)))),
    ("filter_too_big", "conv2d", ValueError, lambda: F.conv2d(X, np.zeros((4, 3, 6, 3)))),
    ("filter_too_big_padded", "conv2d", ValueError, lambda: F.conv2d(X, np.zeros((4, 3, 3, 8)), pad=1)),
    ("stride_0", "conv2d", ValueError, lambda: F.conv2d(X, W, B, stride=0)),
    ("stride_neg", "conv2d", ValueError, lambda: F.conv2d(X, W, B, stride=-1)),
    ("pad_neg", "conv2d", ValueError, lambda: F.conv2d(X, W, B, pad=-1)),
    ("stride_float", "conv2d", TypeError, lambda: F.conv2d(X, W, B, stride=1.5)),
    ("stride_str", "conv2d", TypeError, lambda: F.conv2d(X, W, B, stride="1")),
    ("stride_none", "conv2d", TypeError, lambda: F.conv2d(X, W, B, stride=None)),
    ("stride_bool", "conv2d", TypeError, lambda: F.conv2d(X, W, B, stride=True)),
    ("pad_float", "conv2d", TypeError, lambda: F.conv2d(X, W, B, pad=0.5)),
    ("empty_batch", "conv2d", ValueError, lambda: F.conv2d(np.zeros((0, 3, 5, 5)), W)),
    ("empty_channels", "conv2d", ValueError, lambda: F.conv2d(np.zeros((2, 0, 5, 5)), np.zeros((4, 0, 3, 3)))),
    ("bias_size", "conv2d", ValueError, lambda: F.conv2d(X, W, np.zeros(3))),
    ("x_float16", "conv2d", TypeError, lambda: F.conv2d(f16(X), W)),
    ("W_float16", "conv2d", TypeError, lambda: F.conv2d(X, f16(W))),
    ("b_float16", "conv2d", TypeError, lambda: F.conv2d(X, W, f16(B))),
    ("x_complex", "conv2d", TypeError, lambda: F.conv2d(c128(X), W)),
    ("W_complex", "conv2d", TypeError, lambda: F.conv2d(X, c128(W))),
    ("x_object", "conv2d", TypeError, lambda: F.conv2d(obj(X), W)),
    ("x_str", "conv2d", TypeError, lambda: F.conv2d(np.full((2, 3, 5, 5), "a"), W)),
    ("x_none", "conv2d", TypeError, lambda: F.conv2d(None, W)),
    ("algorithm_unknown", "conv2d", ValueError, lambda: F.conv2d(X, W, B, algorithm="fft")),
    ("algorithm_none", "conv2d", ValueError, lambda: F.conv2d(X, W, B, algorithm=None)),
    ("x_ragged", "conv2d", TypeError, lambda: F.conv2d([[[[1.0, 2.0], [1.0]]]], W)),
    # ------------------------------------------------------------------ conv2d_backward_data
    ("dout_shape", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT[:, :, :2], W, X.shape)),
    ("dout_batch", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT[:1], W, X.shape)),
    ("dout_3d", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT[0], W, X.shape)),
    ("input_shape_3", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT, W, (2, 3, 5))),
    ("input_shape_str", "conv2d_backward_data", TypeError, lambda: F.conv2d_backward_data(DOUT, W, (2, 3, 5, "5"))),
    ("input_shape_neg", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT, W, (2, 3, -5, 5))),
    ("empty_batch", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT[:0], W, (0, 3, 5, 5))),
    ("channel_mismatch", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT, W, (2, 2, 5, 5))),
    ("filter_too_big", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT, W, (2, 3, 2, 5))),
    ("stride_0", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT, W, X.shape, stride=0)),
    ("pad_neg", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT, W, X.shape, pad=-2)),
    ("stride_float", "conv2d_backward_data", TypeError, lambda: F.conv2d_backward_data(DOUT, W, X.shape, stride=0.5)),
    ("algorithm_unknown", "conv2d_backward_data", ValueError, lambda: F.conv2d_backward_data(DOUT, W, X.shape, algorithm="GEMM")),
    ("dout_float16", "conv2d_backward_data", TypeError, lambda: F.conv2d_backward_data(f16(DOUT), W, X.shape)),
    ("W_complex", "conv2d_backward_data", TypeError, lambda: F.conv2d_backward_data(DOUT, c128(W), X.shape)),
    ("dout_object", "conv2d_backward_data", TypeError, lambda: F.conv2d_backward_data(obj(DOUT), W, X.shape)),
    # ------------------------------------------------------------------ conv2d_backward_weight
    ("x_3d", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X[0], DOUT, (3, 3))),
    ("dout_3d", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT[0], (3, 3))),
    ("dout_batch", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT[:1], (3, 3))),
    ("dout_spatial", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT[..., :2], (3, 3))),
    ("filter_size_len", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT, (3, 3, 3))),
    ("filter_too_big", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT, (7, 3))),
    ("filter_zero", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT, (0, 3))),
    ("stride_neg", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT, (3, 3), stride=-1)),
    ("empty_batch", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X[:0], DOUT[:0], (3, 3))),
    ("algorithm_unknown", "conv2d_backward_weight", ValueError, lambda: F.conv2d_backward_weight(X, DOUT, (3, 3), algorithm="im2col")),
    ("x_float16", "conv2d_backward_weight", TypeError, lambda: F.conv2d_backward_weight(f16(X), DOUT, (3, 3))),
    ("dout_complex", "conv2d_backward_weight", TypeError, lambda: F.conv2d_backward_weight(X, c128(DOUT), (3, 3))),
    ("dout_object", "conv2d_backward_weight", TypeError, lambda: F.conv2d_backward_weight(X, obj(DOUT), (3, 3))),
    # ------------------------------------------------------------------ conv2d_backward_bias
    ("dout_2d", "conv2d_backward_bias", ValueError, lambda: F.conv2d_backward_bias(np.zeros((2, 4)))),
    ("empty_batch", "conv2d_backward_bias", ValueError, lambda: F.conv2d_backward_bias(DOUT[:0])),
    ("dout_float16", "conv2d_backward_bias", TypeError, lambda: F.conv2d_backward_bias(f16(DOUT))),
    ("dout_complex", "conv2d_backward_bias", TypeError, lambda: F.conv2d_backward_bias(c128(DOUT))),
    ("dout_object", "conv2d_backward_bias", TypeError, lambda: F.conv2d_backward_bias(obj(DOUT))),
    # ------------------------------------------------------------------ im2col
    ("x_3d", "im2col", ValueError, lambda: F.im2col(X[0], 3, 3)),
    ("FH_0", "im2col", ValueError, lambda: F.im2col(X, 0, 3)),
    ("FW_float", "im2col", TypeError, lambda: F.im2col(X, 3, 2.5)),
    ("filter_too_big", "im2col", ValueError, lambda: F.im2col(X, 6, 3)),
    ("stride_0", "im2col", ValueError, lambda: F.im2col(X, 3, 3, stride=0)),
    ("pad_neg", "im2col", ValueError, lambda: F.im2col(X, 3, 3, pad=-1)),
    ("pad_float", "im2col", TypeError, lambda: F.im2col(X, 3, 3, pad=1.5)),
    ("empty_batch", "im2col", ValueError, lambda: F.im2col(X[:0], 3, 3)),
    ("x_float16", "im2col", TypeError, lambda: F.im2col(f16(X), 3, 3)),
    ("x_complex", "im2col", TypeError, lambda: F.im2col(c128(X), 3, 3)),
    ("x_object", "im2col", TypeError, lambda: F.im2col(obj(X), 3, 3)),
    # ------------------------------------------------------------------ col2im
    ("col_size", "col2im", ValueError, lambda: F.col2im(COL[:-1], X.shape, 3, 3)),
    ("col_size_pad", "col2im", ValueError, lambda: F.col2im(COL, X.shape, 3, 3, pad=1)),
    ("input_shape_3", "col2im", ValueError, lambda: F.col2im(COL, (2, 3, 5), 3, 3)),
    ("empty_batch", "col2im", ValueError, lambda: F.col2im(COL[:0], (0, 3, 5, 5), 3, 3)),
    ("filter_too_big", "col2im", ValueError, lambda: F.col2im(COL, X.shape, 3, 9)),
    ("stride_neg", "col2im", ValueError, lambda: F.col2im(COL, X.shape, 3, 3, stride=-1)),
    ("stride_float", "col2im", TypeError, lambda: F.col2im(COL, X.shape, 3, 3, stride=1.25)),
    ("col_float16", "col2im", TypeError, lambda: F.col2im(f16(COL), X.shape, 3, 3)),
    ("col_complex", "col2im", TypeError, lambda: F.col2im(c128(COL), X.shape, 3, 3)),
    ("col_object", "col2im", TypeError, lambda: F.col2im(obj(COL), X.shape, 3, 3)),
    # ------------------------------------------------------------------ max_pool2d
    ("x_3d", "max_pool2d", ValueError, lambda: F.max_pool2d(X[0], 2, 2)),
    ("pool_0", "max_pool2d", ValueError, lambda: F.max_pool2d(X, 0, 2)),
    ("pool_float", "max_pool2d", TypeError, lambda: F.max_pool2d(X, 2.5, 2)),
    ("pad_eq_window", "max_pool2d", ValueError, lambda: F.max_pool2d(X, 2, 2, 2, pad=2)),
    ("pad_gt_window_w", "max_pool2d", ValueError, lambda: F.max_pool2d(X, 3, 1, 1, pad=1)),
    ("pad_neg", "max_pool2d", ValueError, lambda: F.max_pool2d(X, 2, 2, 2, pad=-1)),
    ("stride_0", "max_pool2d", ValueError, lambda: F.max_pool2d(X, 2, 2, stride=0)),
    ("stride_float", "max_pool2d", TypeError, lambda: F.max_pool2d(X, 2, 2, stride=1.5)),
    ("window_too_big", "max_pool2d", ValueError, lambda: F.max_pool2d(X, 6, 2)),
    ("empty_batch", "max_pool2d", ValueError, lambda: F.max_pool2d(X[:0], 2, 2)),
    ("x_float16", "max_pool2d", TypeError, lambda: F.max_pool2d(f16(X), 2, 2)),
    ("x_complex", "max_pool2d", TypeError, lambda: F.max_pool2d(c128(X), 2, 2)),
    ("x_object", "max_pool2d", TypeError, lambda: F.max_pool2d(obj(X), 2, 2)),
    # ------------------------------------------------------------------ max_pool2d_backward
    ("dout_shape", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT[..., :1], AM[..., :1], X.shape, 2, 2)),
    ("dout_batch", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT[:1], AM[:1], X.shape, 2, 2)),
    ("argmax_shape", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT, AM[:1], X.shape, 2, 2)),
    ("argmax_too_big", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT, AM + 4, X.shape, 2, 2)),
    ("argmax_negative", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT, AM.astype(np.int64) - 1, X.shape, 2, 2)),
    ("argmax_float", "max_pool2d_backward", TypeError, lambda: F.max_pool2d_backward(PDOUT, AM.astype(float), X.shape, 2, 2)),
    ("argmax_bool", "max_pool2d_backward", TypeError, lambda: F.max_pool2d_backward(PDOUT, AM.astype(bool), X.shape, 2, 2)),
    ("pad_eq_window", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT, AM, X.shape, 2, 2, 2, pad=2)),
    ("stride_0", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT, AM, X.shape, 2, 2, stride=0)),
    ("input_shape_3", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT, AM, (2, 3, 5), 2, 2)),
    ("empty_batch", "max_pool2d_backward", ValueError, lambda: F.max_pool2d_backward(PDOUT[:0], AM[:0], (0, 3, 5, 5), 2, 2)),
    ("dout_float16", "max_pool2d_backward", TypeError, lambda: F.max_pool2d_backward(f16(PDOUT), AM, X.shape, 2, 2)),
    ("dout_complex", "max_pool2d_backward", TypeError, lambda: F.max_pool2d_backward(c128(PDOUT), AM, X.shape, 2, 2)),
    ("dout_object", "max_pool2d_backward", TypeError, lambda: F.max_pool2d_backward(obj(PDOUT), AM, X.shape, 2, 2)),
    # ------------------------------------------------------------------ softmax
    ("scalar", "softmax", ValueError, lambda: F.softmax(np.float64(1.0))),
    ("empty_last_axis", "softmax", ValueError, lambda: F.softmax(np.zeros((3, 0)))),
    ("x_float16", "softmax", TypeError, lambda: F.softmax(f16(LOGITS))),
    ("x_complex", "softmax", TypeError, lambda: F.softmax(c128(LOGITS))),
    ("x_object", "softmax", TypeError, lambda: F.softmax(obj(LOGITS))),
    # ------------------------------------------------------------------ cross_entropy
    ("y_3d", "cross_entropy", ValueError, lambda: F.cross_entropy(Y[None], LABELS)),
    ("t_length", "cross_entropy", ValueError, lambda: F.cross_entropy(Y, LABELS[:2])),
    ("t_shape", "cross_entropy", ValueError, lambda: F.cross_entropy(Y, np.zeros((3, 2), int))),
    ("label_too_big", "cross_entropy", ValueError, lambda: F.cross_entropy(Y, np.array([0, 4, 1]))),
    ("label_negative", "cross_entropy", ValueError, lambda: F.cross_entropy(Y, np.array([0, -1, 1]))),
    ("label_fraction", "cross_entropy", TypeError, lambda: F.cross_entropy(Y, np.array([0.0, 1.5, 1.0]))),
    ("label_bool", "cross_entropy", TypeError, lambda: F.cross_entropy(Y, np.array([True, False, True]))),
    ("empty_batch", "cross_entropy", ValueError, lambda: F.cross_entropy(np.zeros((0, 4)), LABELS[:0])),
    ("y_float16", "cross_entropy", TypeError, lambda: F.cross_entropy(f16(Y), LABELS)),
    ("y_complex", "cross_entropy", TypeError, lambda: F.cross_entropy(c128(Y), LABELS)),
    ("y_object", "cross_entropy", TypeError, lambda: F.cross_entropy(obj(Y), LABELS)),
    # ------------------------------------------------------------------ softmax_cross_entropy
    ("x_3d", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS[None], LABELS)),
    ("t_length", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS, LABELS[:2])),
    ("t_length_long", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS, np.zeros(5, int))),
    ("t_shape", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS, np.zeros((3, 2), int))),
    ("label_too_big", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS, np.array([0, 4, 1]))),
    ("label_negative", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS, np.array([-1, 0, 1]))),
    ("label_fraction", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(LOGITS, np.array([0.5, 1.0, 2.0]))),
    ("label_nan", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(LOGITS, np.array([np.nan, 1.0, 2.0]))),
    ("label_bool", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(LOGITS, np.array([True, False, True]))),
    ("label_str", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(LOGITS, np.array(["0", "1", "2"]))),
    ("empty_batch", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(np.zeros((0, 4)), LABELS[:0])),
    ("no_classes", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(np.zeros((3, 0)), LABELS)),
    ("eps_negative", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS, LABELS, eps=-1e-7)),
    ("eps_nan", "softmax_cross_entropy", ValueError, lambda: F.softmax_cross_entropy(LOGITS, LABELS, eps=np.nan)),
    ("x_float16", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(f16(LOGITS), LABELS)),
    ("x_complex", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(c128(LOGITS), LABELS)),
    ("x_object", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(obj(LOGITS), LABELS)),
    ("onehot_complex", "softmax_cross_entropy", TypeError, lambda: F.softmax_cross_entropy(LOGITS, c128(ONEHOT))),
    ("wg_x_3d", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS[None], LABELS)),
    ("wg_t_length", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, LABELS[:2])),
    ("wg_t_length_long", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.zeros(5, int))),
    ("wg_t_shape", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.zeros((3, 2), int))),
    ("wg_label_too_big", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.array([0, 4, 1]))),
    ("wg_label_negative", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.array([-1, 0, 1]))),
    ("wg_label_fraction", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.array([0.5, 1.0, 2.0]))),
    ("wg_label_nan", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.array([np.nan, 1.0, 2.0]))),
    ("wg_label_bool", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.array([True, False, True]))),
    ("wg_label_str", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, np.array(["0", "1", "2"]))),
    # ------------------------------------------------------------------ linear_softmax_cross_entropy_with_grad
    ("lsce_x_1d", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones(5), np.ones((5, 4)), np.ones(4), LABELS)),
    ("lsce_x_3d", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5, 1)), np.ones((5, 4)), np.ones(4), LABELS)),
    ("lsce_W_1d", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones(5), np.ones(4), LABELS)),
    ("lsce_D_mismatch", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((6, 4)), np.ones(4), LABELS)),
    ("lsce_empty_batch", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((0, 5)), np.ones((5, 4)), np.ones(4), LABELS[:0])),
    ("lsce_b_shape", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((5, 4)), np.ones(3), LABELS)),
    ("lsce_W_none", "linear_softmax_cross_entropy_with_grad", TypeError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), None, np.ones(4), LABELS)),
    ("lsce_W_complex", "linear_softmax_cross_entropy_with_grad", TypeError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((5, 4), complex), np.ones(4), LABELS)),
    ("lsce_label_too_big", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((5, 4)), np.ones(4), np.array([0, 4, 1]))),
    ("lsce_t_length", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((5, 4)), np.ones(4), LABELS[:2])),
    ("lsce_label_fraction", "linear_softmax_cross_entropy_with_grad", TypeError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((5, 4)), np.ones(4), np.array([0.5, 1.0, 2.0]))),
    ("lsce_label_bool", "linear_softmax_cross_entropy_with_grad", TypeError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((5, 4)), np.ones(4), np.array([True, False, True]))),
    ("lsce_eps_neg", "linear_softmax_cross_entropy_with_grad", ValueError, lambda: F.linear_softmax_cross_entropy_with_grad(np.ones((3, 5)), np.ones((5, 4)), np.ones(4), LABELS, eps=-1.0)),
    ("wg_empty_batch", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(np.zeros((0, 4)), LABELS[:0])),
    ("wg_no_classes", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(np.zeros((3, 0)), LABELS)),
    ("wg_eps_negative", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, LABELS, eps=-1e-7)),
    ("wg_eps_nan", "softmax_cross_entropy_with_grad", ValueError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, LABELS, eps=np.nan)),
    ("wg_x_float16", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(f16(LOGITS), LABELS)),
    ("wg_x_complex", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(c128(LOGITS), LABELS)),
    ("wg_x_object", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(obj(LOGITS), LABELS)),
    ("wg_onehot_complex", "softmax_cross_entropy_with_grad", TypeError, lambda: F.softmax_cross_entropy_with_grad(LOGITS, c128(ONEHOT))),
    # ------------------------------------------------------------------ softmax_cross_entropy_backward
    ("y_3d", "softmax_cross_entropy_backward", ValueError, lambda: F.softmax_cross_entropy_backward(Y[None], LABELS)),
    ("t_length", "softmax_cross_entropy_backward", ValueError, lambda: F.softmax_cross_entropy_backward(Y, LABELS[:2])),
    ("label_too_big", "softmax_cross_entropy_backward", ValueError, lambda: F.softmax_cross_entropy_backward(Y, np.array([4, 0, 1]))),
    ("label_negative", "softmax_cross_entropy_backward", ValueError, lambda: F.softmax_cross_entropy_backward(Y, np.array([0, 0, -2]))),
    ("label_fraction", "softmax_cross_entropy_backward", TypeError, lambda: F.softmax_cross_entropy_backward(Y, np.array([0.0, 0.1, 1.0]))),
    ("label_bool", "softmax_cross_entropy_backward", TypeError, lambda: F.softmax_cross_entropy_backward(Y, np.array([True, True, False]))),
    ("empty_batch", "softmax_cross_entropy_backward", ValueError, lambda: F.softmax_cross_entropy_backward(np.zeros((0, 4)), LABELS[:0])),
    ("y_float16", "softmax_cross_entropy_backward", TypeError, lambda: F.softmax_cross_entropy_backward(f16(Y), LABELS)),
    ("y_complex", "softmax_cross_entropy_backward", TypeError, lambda: F.softmax_cross_entropy_backward(c128(Y), LABELS)),
    ("onehot_float16", "softmax_cross_entropy_backward", TypeError, lambda: F.softmax_cross_entropy_backward(Y, f16(ONEHOT))),
    ("onehot_complex", "softmax_cross_entropy_backward", TypeError, lambda: F.softmax_cross_entropy_backward(Y, c128(ONEHOT))),
    # ------------------------------------------------------------------ relu / relu_backward
    ("x_float16", "relu", TypeError, lambda: F.relu(f16(LOGITS))),
    ("x_complex", "relu", TypeError, lambda: F.relu(c128(LOGITS))),
    ("x_object", "relu", TypeError, lambda: F.relu(obj(LOGITS))),
    ("x_none", "relu", TypeError, lambda: F.relu(None)),
    ("dout_list", "relu_backward", TypeError, lambda: F.relu_backward([1.0, 2.0], np.array([True, False]))),
    ("shape_mismatch", "relu_backward", ValueError, lambda: F.relu_backward(np.zeros((3, 4)), np.zeros((4, 3), bool))),
    ("dout_readonly", "relu_backward", ValueError, lambda: F.relu_backward(readonly(np.zeros((3, 4))), np.zeros((3, 4), bool))),
    ("dout_float16", "relu_backward", TypeError, lambda: F.relu_backward(f16(LOGITS), np.zeros((3, 4), bool))),
    ("dout_complex", "relu_backward", TypeError, lambda: F.relu_backward(c128(LOGITS), np.zeros((3, 4), bool))),
    ("dout_object", "relu_backward", TypeError, lambda: F.relu_backward(obj(LOGITS), np.zeros((3, 4), bool))),
    # ------------------------------------------------------------------ sigmoid / sigmoid_backward
    ("x_float16", "sigmoid", TypeError, lambda: F.sigmoid(f16(LOGITS))),
    ("x_complex", "sigmoid", TypeError, lambda: F.sigmoid(c128(LOGITS))),
    ("x_object", "sigmoid", TypeError, lambda: F.sigmoid(obj(LOGITS))),
    ("shape_mismatch", "sigmoid_backward", ValueError, lambda: F.sigmoid_backward(np.zeros((3, 4)), np.zeros((3, 3)))),
    ("dout_float16", "sigmoid_backward", TypeError, lambda: F.sigmoid_backward(f16(Y), Y)),
    ("y_complex", "sigmoid_backward", TypeError, lambda: F.sigmoid_backward(Y, c128(Y))),
    ("y_object", "sigmoid_backward", TypeError, lambda: F.sigmoid_backward(Y, obj(Y))),
    ("dropout_ratio", "dropout", ValueError, lambda: F.dropout(np.ones(3), 1.5)),
    ("dropout_complex", "dropout", TypeError, lambda: F.dropout(np.ones(3, complex), 0.5)),
    ("dropout_bwd_shape", "dropout_backward", ValueError, lambda: F.dropout_backward(np.ones(3), np.ones(4, bool))),
    ("dropout_bwd_f16", "dropout_backward", TypeError, lambda: F.dropout_backward(np.ones(3, np.float16), np.ones(3, bool))),
    ("bn_train_ndim", "batch_norm_train", ValueError, lambda: F.batch_norm_train(np.ones((2, 3, 4)), np.ones(3), np.ones(3))),
    ("bn_train_gamma", "batch_norm_train", ValueError, lambda: F.batch_norm_train(np.ones((2, 3)), np.ones(4), np.ones(3))),
    ("bn_train_empty", "batch_norm_train", ValueError, lambda: F.batch_norm_train(np.ones((0, 3)), np.ones(3), np.ones(3))),
    ("bn_train_f16", "batch_norm_train", TypeError, lambda: F.batch_norm_train(np.ones((2, 3), np.float16), np.ones(3), np.ones(3))),
    ("bn_eval_var", "batch_norm_eval", ValueError, lambda: F.batch_norm_eval(np.ones((2, 3)), np.ones(3), np.ones(3), np.ones(3), np.ones(2))),
    ("bn_eval_ndim", "batch_norm_eval", ValueError, lambda: F.batch_norm_eval(np.ones(3), np.ones(3), np.ones(3), np.ones(3), np.ones(3))),
    ("bn_bwd_xn", "batch_norm_backward", ValueError, lambda: F.batch_norm_backward(np.ones((2, 3)), np.ones((3, 3)), np.ones(3), np.ones(3))),
    ("bn_bwd_std", "batch_norm_backward", ValueError, lambda: F.batch_norm_backward(np.ones((2, 3)), np.ones((2, 3)), np.ones(2), np.ones(3))),
]


@pytest.mark.parametrize(
    "op,exc,thunk", [c[1:] for c in CASES], ids=[f"{c[1]}-{c[0]}" for c in CASES]
)
def test_bad_input_raises_clear_error(op, exc, thunk):
    with pytest.raises((ValueError, TypeError)) as info:
        thunk()
    err = info.value
    assert type(err) is exc, f"expected exactly {exc.__name__}, got {type(err).__module__}.{type(err).__name__}: {err}"
    assert str(err).startswith(op + ":"), f"message does not start with {op!r}: {err}"


def test_every_op_has_error_cases():
    ops = {c[1] for c in CASES}
    array_ops = set(F.__all__) - {"choose_conv_algorithm"}  # a pure shape helper
    assert ops == array_ops


def test_validation_leaves_inputs_untouched():
    """A rejected call must not have modified its arguments (relu_backward writes in place)."""
    dout = np.arange(12.0).reshape(3, 4) - 5
    before = dout.copy()
    with pytest.raises(ValueError):
        F.relu_backward(dout, np.zeros((4, 3), bool))
    np.testing.assert_array_equal(dout, before)


# --------------------------------------------------------------------------- argmax into padding
def test_max_pool2d_backward_argmax_into_padding_rejected():
    """An argmax inside [0, ph*pw) can still name a padded cell of its window (max_pool2d never
    produces one). Scattering there must be refused, not wrap around to another pixel.

    2x2 window, stride 2, pad 1 on a 2x2 plane: cell 0 of window (0, 0) is the padded corner
    (-1, -1).
    """
    dout = np.ones((1, 1, 2, 2))
    am = np.zeros((1, 1, 2, 2), np.uint8)
    with pytest.raises(ValueError) as info:
        F.max_pool2d_backward(dout, am, (1, 1, 2, 2), 2, 2, 2, 1)
    assert type(info.value) is ValueError
    assert str(info.value).startswith("max_pool2d_backward:")


def test_max_pool2d_backward_argmax_past_the_edge_rejected():
    """The same past the bottom-right edge: cell 3 of window (1, 1) is pixel (2, 2) of a 2x2
    plane. Without a check the kernel writes out of bounds (a segfault), so this runs in a
    child process."""
    code = textwrap.dedent(
        """
        import numpy as np
        from fastnn import functional as F
        dout = np.ones((1, 2, 2, 2))
        am = np.full((1, 2, 2, 2), 3, np.uint8)
        try:
            F.max_pool2d_backward(dout, am, (1, 2, 2, 2), 2, 2, 2, 1)
        except ValueError as e:
            assert str(e).startswith("max_pool2d_backward:"), e
            print("REJECTED")
        else:
            print("ACCEPTED")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "REJECTED" in proc.stdout, (
        f"returncode {proc.returncode}, stdout {proc.stdout!r}, stderr {proc.stderr[-2000:]!r}"
    )


# --------------------------------------------------------------------------- accepted edge cases
def test_integral_float_stride_and_labels_accepted():
    """Float values that are exact integers are accepted (e.g. labels loaded as float64)."""
    x = np.arange(2 * 3 * 5 * 5, dtype=float).reshape(2, 3, 5, 5)
    np.testing.assert_array_equal(F.im2col(x, 3, 3, 2.0, 1.0), F.im2col(x, 3, 3, 2, 1))
    loss_f, _ = F.softmax_cross_entropy(LOGITS, LABELS.astype(float))
    loss_i, _ = F.softmax_cross_entropy(LOGITS, LABELS)
    assert loss_f == loss_i
    for lab in (LABELS.astype(np.uint8), LABELS.astype(np.int32), np.int64(2)):
        if np.ndim(lab) == 0:
            F.softmax_cross_entropy(LOGITS[:1], lab)
        else:
            F.softmax_cross_entropy(LOGITS, lab)


def test_max_pool2x2_backward_bad_argmax_rejected():
    """The 2x2 stride-2 fast path also rejects window indices outside [0, 4)."""
    dout = np.ones((1, 2, 2, 2))
    argmax = np.zeros((1, 2, 2, 2), np.uint8)
    argmax[0, 1, 1, 1] = 4
    with pytest.raises(ValueError, match="max_pool2d_backward"):
        F.max_pool2d_backward(dout, argmax, (1, 2, 4, 4), 2, 2, 2, 0)
