"""The validated functional API: one function per op, each calling one Numba kernel.

Every function here

* checks shapes, dtypes and parameters and raises :class:`ValueError` / :class:`TypeError`
  whose message starts with the op's name and shows the offending shapes or values;
* picks the compute dtype: float32 stays float32, float64 is the default, integer and bool
  inputs become float64, mixed inputs follow NumPy promotion; float16, complex and object
  arrays are rejected with :class:`TypeError`;
* makes inputs C-contiguous (non-contiguous views work; they are copied once), allocates the
  outputs and calls the kernel in :mod:`fastnn.kernels`.

Reference semantics: :mod:`fastnn.reference`. Shape names: N, C, H, W, FN, FH, FW, OH, OW.
"""

from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np
from numba import get_num_threads as _numba_threads

from . import _checks as ck
from . import _memory as _mem
from ._blas import single_threaded_blas
from .kernels import batchnorm as _bn
from .kernels import conv2d as _conv
from .kernels import conv2d_3x3 as _c3
from .kernels import conv2d_gemm as _gemm
from .kernels import elementwise as _ew
from .kernels import im2col as _im2col
from .kernels import pool2d as _pool
from .kernels import softmax as _softmax

__all__ = [
    "im2col",
    "col2im",
    "conv2d",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "conv2d_backward_bias",
    "choose_conv_algorithm",
    "max_pool2d",
    "max_pool2d_backward",
    "softmax",
    "cross_entropy",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_with_grad",
    "linear_softmax_cross_entropy_with_grad",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "dropout",
    "dropout_backward",
    "batch_norm_train",
    "batch_norm_eval",
    "batch_norm_backward",
]

#: The book's batch-norm epsilon (``10e-7``).
BATCHNORM_EPS = 10e-7

#: Element counts up to which the single-threaded ``*_serial_kernel`` variants run: below it,
#: starting the thread pool (~10 us) costs more than the work (the book's nets use (100, 50)
#: activations and (100, 10) logits). Up to it, the element-wise ops and the fused softmax-CE
#: also allocate their outputs with a plain ``np.empty`` and call the serial kernel directly,
#: not through ``_memory`` and :func:`_kernel`: on the book's (100, 100) layers each of those
#: calls costs 2-3 % of the op (ReLU forward + backward 3.70 -> 2.73 us).
SERIAL_MAX_SIZE = 32768


def _kernel(parallel, serial, size):
    """The parallel kernel, or its serial twin for small inputs."""
    return serial if size <= SERIAL_MAX_SIZE else parallel

CROSS_ENTROPY_EPS = 1e-7

#: Convolution algorithms: "direct" loops, or "gemm" (per-image panels + BLAS), or "auto".
CONV_ALGORITHMS = ("auto", "direct", "gemm")
#: "auto" picks "gemm" from this many multiply-adds per pass on (see choose_conv_algorithm).
CONV_GEMM_MIN_MACS = 2_000_000


def _stride_pad(op, stride, pad):
    return ck.as_int(op, "stride", stride, 1), ck.as_int(op, "pad", pad, 0)


def _images(op, name, x):
    x = ck.as_array(op, name, x)
    ck.check_ndim(op, name, x, 4, "(N, C, H, W)")
    if x.shape[0] == 0:
        raise ValueError(f"{op}: empty batch, {name} has shape {x.shape}")
    ck.check_not_empty(op, name, x)
    return x


# --------------------------------------------------------------------------- im2col / col2im
def im2col(x, FH, FW, stride=1, pad=0):
    """Unfold image patches into rows, in the book's layout.

    Parameters
    ----------
    x : array_like
        Images.
    FH, FW : int
        Window height and width.
    stride : int, default 1
    pad : int, default 0
        Zero padding on every side.

    Returns
    -------
    ndarray
        ``col[(n*OH + oy)*OW + ox, (c*FH + ky)*FW + kx]``, dtype of ``x`` (float32 stays float32).

    Shape
    -----
    x: (N, C, H, W) -> (N*OH*OW, C*FH*FW).
    """
    op = "im2col"
    x = _images(op, "x", x)
    FH, FW = ck.as_int(op, "FH", FH, 1), ck.as_int(op, "FW", FW, 1)
    stride, pad = _stride_pad(op, stride, pad)
    N, C, H, W = x.shape
    OH, OW = ck.window_output_size(op, (H, W), (FH, FW), stride, pad, "filter")
    x = ck.as_float(x, ck.result_dtype(op, x=x))
    out = _mem.empty((N * OH * OW, C * FH * FW), x.dtype)
    _im2col.im2col_forward_kernel(x, FH, FW, stride, pad, out)
    return out


def col2im(col, input_shape, FH, FW, stride=1, pad=0):
    """Fold patch rows back into images: the adjoint of :func:`im2col`.

    Overlapping contributions are summed; the padding is cropped.

    Parameters
    ----------
    col : array_like
        Patch rows; any array with ``N*OH*OW*C*FH*FW`` elements (the book reshapes it).
    input_shape : tuple of int
        ``(N, C, H, W)`` of the images.
    FH, FW, stride, pad : int
        As for :func:`im2col`.

    Shape
    -----
    col: (N*OH*OW, C*FH*FW) -> (N, C, H, W).
    """
    op = "col2im"
    col = ck.as_array(op, "col", col)
    N, C, H, W = ck.as_shape4(op, "input_shape", input_shape)
    if N == 0 or C * H * W == 0:
        raise ValueError(f"{op}: empty input_shape {input_shape}")
    FH, FW = ck.as_int(op, "FH", FH, 1), ck.as_int(op, "FW", FW, 1)
    stride, pad = _stride_pad(op, stride, pad)
    OH, OW = ck.window_output_size(op, (H, W), (FH, FW), stride, pad, "filter")
    rows, cols = N * OH * OW, C * FH * FW
    if col.size != rows * cols:
        raise ValueError(
            f"{op}: col has shape {col.shape} ({col.size} elements); input_shape {input_shape} "
            f"with a {FH}x{FW} filter, stride {stride}, pad {pad} needs ({rows}, {cols})"
        )
    col = ck.as_float(col, ck.result_dtype(op, col=col)).reshape(rows, cols)
    out = _mem.empty((N, C, H, W), col.dtype)
    _im2col.im2col_backward_kernel(col, FH, FW, stride, pad, out)
    return out


# --------------------------------------------------------------------------- convolution
def _conv_filters(op, W, C):
    W = ck.as_array(op, "W", W)
    ck.check_ndim(op, "W", W, 4, "(FN, C, FH, FW)")
    ck.check_not_empty(op, "W", W)
    if W.shape[1] != C:
        raise ValueError(
            f"{op}: channel mismatch, input has C={C} but W has shape {W.shape} (C={W.shape[1]})"
        )
    return W


def choose_conv_algorithm(x_shape, W_shape, stride=1, pad=0, op="conv2d"):
    """The algorithm ``algorithm="auto"`` uses for a convolution of these shapes.

    3x3 filters with stride 1 and ``pad <= 2`` (most convnet layers) always take ``"direct"``:
    its register-blocked 3x3 kernels (:mod:`fastnn.kernels.conv2d_3x3`) ran 1.3-2.6x faster
    than the panel + BLAS path on every 3x3 shape of the benchmark set, from 28x28 images with
    1 channel to (32, 64, 56, 56). So do 5x5 filters with stride 1 and ``pad <= 4`` (the same
    kernels, one filter row at a time): forward + backward 1.2-2.9x faster than ``"gemm"`` from
    the book's (100, 1, 28, 28) x (30, 1, 5, 5) to (32, 64, 28, 28) x (64, 64, 5, 5), in both
    dtypes. With stride 2 the same kernels run on the image split in four phase planes (even/odd
    rows and columns), for the forward and the weight gradient, and the 3x3 data gradient
    runs as four stride-1 correlations of ``dout`` with 4, 2, 2 and 1 filter taps (``op``
    names the direction): (32, 64, 56, 56) x (128, 64, 3, 3), stride 2, pad 1, ran 1.5-1.6x
    faster than ``"gemm"`` in each direction (forward 24 -> 15 ms, weight gradient 24 ->
    16 ms, data gradient 39 -> 24 ms float32). 1x1 filters (stride 1, no padding) take the
    same kernels (8 filters per register block) for the forward and the data gradient:
    1.3-2x faster than the per-image BLAS products on five pointwise shapes ((32, 256, 14,
    14) x (64, 256, 1, 1): 1.1 -> 0.75 ms float32); for the weight gradient only from 128
    channels and 32 filters (with 64 channels and 56x56 images its transposed copy of
    ``dout`` made it 1.6-2.5x slower than BLAS). Other shapes: ``"gemm"`` (per-image panels,
    single-threaded BLAS per worker) wins from a few million multiply-adds on; below that,
    calling BLAS costs more than the general direct loops.

    Shape
    -----
    x_shape: (N, C, H, W), W_shape: (FN, C, FH, FW).
    """
    N, C, H, Wd = x_shape
    FN, _, FH, FW = W_shape
    OH = (H + 2 * pad - FH) // stride + 1
    OW = (Wd + 2 * pad - FW) // stride + 1
    if _register_kernels(FH, FW, stride, pad, op):
        # 1x1 weight gradient: the blocks' transposed dout copy pays from 128 channels on
        if not (FH == 1 and op == "conv2d_backward_weight") or (C >= 128 and FN >= 32):
            return "direct"
    macs = N * FN * OH * OW * C * FH * FW
    return "gemm" if macs >= CONV_GEMM_MIN_MACS else "direct"


def _register_kernels(FH, FW, stride, pad, op):
    """3x3 or 5x5 filters, stride 1, pad up to ``FH - 1``, and 1x1 filters, stride 1, no
    padding: the "direct" algorithm uses the register-blocked ``conv2d_3x3_*_kernel`` (the data
    gradient as a convolution of ``dout`` with the filters transposed and rotated, which needs
    ``FH - 1 - pad >= 0``). Stride 2: the same for the forward and the weight gradient (3x3,
    5x5), and the data gradient of 3x3 filters by phases."""
    if FH != FW or FH not in (1, 3, 5) or pad > FH - 1:
        return False
    if stride == 2 and op == "conv2d_backward_data":
        return FH == 3  # by phases: conv2d_3x3_backward_data_s2_kernel
    return stride == 1 or (stride == 2 and FH > 1)


def _pointwise(FH, FW, stride, pad):
    """1x1 filters, stride 1, no padding: the "gemm" algorithm multiplies the images in place
    (``conv2d_1x1_*_kernel``), with no panel to build."""
    return FH == 1 and FW == 1 and stride == 1 and pad == 0


def _algorithm(op, algorithm, x_shape, W_shape, stride, pad):
    if algorithm not in CONV_ALGORITHMS:
        raise ValueError(f"{op}: algorithm must be one of {CONV_ALGORITHMS}, got {algorithm!r}")
    if algorithm == "auto":
        return choose_conv_algorithm(x_shape, W_shape, stride, pad, op)
    return algorithm


def conv2d(x, W, b=None, stride=1, pad=0, algorithm="auto"):
    """2-D convolution (cross-correlation) with bias, as the book's ``Convolution.forward``.

    Parameters
    ----------
    x : array_like
        Input images.
    W : array_like
        Filters.
    b : array_like, optional
        Bias, one per filter; zero when omitted.
    stride : int, default 1
    pad : int, default 0
    algorithm : {"auto", "direct", "gemm"}, default "auto"
        See :func:`choose_conv_algorithm`.

    Returns
    -------
    ndarray
        C-contiguous output.

    Shape
    -----
    x: (N, C, H, W), W: (FN, C, FH, FW), b: (FN,) -> (N, FN, OH, OW).
    """
    op = "conv2d"
    x = _images(op, "x", x)
    W = _conv_filters(op, W, x.shape[1])
    FN, C, FH, FW = W.shape
    if b is not None:
        b = ck.as_array(op, "b", b)
        if b.size != FN or b.ndim > 2:
            raise ValueError(f"{op}: bias b must have {FN} elements (one per filter), got {b.shape}")
    stride, pad = _stride_pad(op, stride, pad)
    N, _, H, Wd = x.shape
    OH, OW = ck.window_output_size(op, (H, Wd), (FH, FW), stride, pad, "filter")
    dt = ck.result_dtype(op, x=x, W=W, b=b)
    x, W = ck.as_float(x, dt), ck.as_float(W, dt)
    b = np.zeros(FN, dtype=dt) if b is None else ck.as_float(b, dt).reshape(FN)
    out = _mem.empty((N, FN, OH, OW), dt)
    if pad and not _finite(W):  # padding zeros must meet the inf/NaN filter taps (see _finite)
        x, pad = _pad_images(x, pad), 0
    if _algorithm(op, algorithm, x.shape, W.shape, stride, pad) == "gemm":
        with single_threaded_blas():
            if _pointwise(FH, FW, stride, pad):
                _gemm.conv2d_1x1_forward_kernel(x, W, b, out)
            else:
                _gemm.conv2d_gemm_forward_kernel(x, W, b, stride, pad, out)
    elif _register_kernels(FH, FW, stride, pad, op):
        _c3.conv2d_3x3_forward_kernel(x, W, b, stride, pad, out)
    else:
        _conv.conv2d_forward_kernel(x, W, b, stride, pad, out)
    return out


# --- inf/NaN: the book multiplies padding zeros (0 * inf = NaN); the fast kernels skip padded
# taps, and the gemm kernels' wide panels multiply extra zero columns (0 * inf = NaN where the
# book has a finite value). When a non-finite value can meet such a zero, the call is redone by
# the direct kernel on an explicitly zero-padded input with pad 0: exactly the book's products.
def _finite(a):
    return bool(np.isfinite(a).all())


def _pad_images(x, pad):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x


def _window_in_padding(H, Wd, FH, FW, stride, pad, OH, OW):
    """True if some output position's whole window lies in the padding."""
    return (FH <= pad or (OH - 1) * stride - pad >= H
            or FW <= pad or (OW - 1) * stride - pad >= Wd)


def _check_dout(op, dout, N, FN, OH, OW, what):
    dout = ck.as_array(op, "dout", dout)
    if dout.shape != (N, FN, OH, OW):
        raise ValueError(f"{op}: dout has shape {dout.shape}, expected {(N, FN, OH, OW)} ({what})")
    return dout


def conv2d_backward_data(dout, W, input_shape, stride=1, pad=0, algorithm="auto"):
    """Gradient of :func:`conv2d` with respect to its input.

    ``algorithm`` as for :func:`conv2d`.

    Shape
    -----
    dout: (N, FN, OH, OW), W: (FN, C, FH, FW), input_shape = (N, C, H, W) -> dx: (N, C, H, W).
    """
    op = "conv2d_backward_data"
    N, C, H, Wd = ck.as_shape4(op, "input_shape", input_shape)
    if N == 0 or C * H * Wd == 0:
        raise ValueError(f"{op}: empty input_shape {input_shape}")
    W = _conv_filters(op, W, C)
    FN, _, FH, FW = W.shape
    stride, pad = _stride_pad(op, stride, pad)
    OH, OW = ck.window_output_size(op, (H, Wd), (FH, FW), stride, pad, "filter")
    dout = _check_dout(op, dout, N, FN, OH, OW, f"input {input_shape}, W {W.shape}")
    dt = ck.result_dtype(op, dout=dout, W=W)
    out = _mem.empty((N, C, H, Wd), dt)
    dout, W = ck.as_float(dout, dt), ck.as_float(W, dt)
    if not _finite(W):  # exact book products (see _finite), cropped as the book's col2im does
        full = _mem.empty((N, C, H + 2 * pad, Wd + 2 * pad), dt)
        _conv.conv2d_backward_data_kernel(dout, W, stride, 0, full)
        out[...] = full[:, :, pad : pad + H, pad : pad + Wd]
        return out
    if _algorithm(op, algorithm, out.shape, W.shape, stride, pad) == "gemm":
        with single_threaded_blas():
            if _pointwise(FH, FW, stride, pad):
                _gemm.conv2d_1x1_backward_data_kernel(dout, W, out)
            else:
                _gemm.conv2d_gemm_backward_data_kernel(dout, W, stride, pad, out)
    elif _register_kernels(FH, FW, stride, pad, op):
        if stride == 2:  # by phases
            _c3.conv2d_3x3_backward_data_s2_kernel(dout, W, pad, out)
        else:  # dx = conv(dout, W') with W'[c, f] = W[f, c] rotated by 180 degrees, padding
            # FH - 1 - pad
            Wt = np.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            _c3.conv2d_3x3_forward_kernel(dout, Wt, np.zeros(C, dtype=dt), 1, FH - 1 - pad, out)
    else:
        _conv.conv2d_backward_data_kernel(dout, W, stride, pad, out)
    return out


def conv2d_backward_weight(x, dout, filter_size, stride=1, pad=0, algorithm="auto"):
    """Gradient of :func:`conv2d` with respect to its filters.

    Parameters
    ----------
    filter_size : tuple of int
        ``(FH, FW)``, or the full filter shape ``(FN, C, FH, FW)``.
    algorithm : {"auto", "direct", "gemm"}
        As for :func:`conv2d`.

    Shape
    -----
    x: (N, C, H, W), dout: (N, FN, OH, OW) -> dW: (FN, C, FH, FW).
    """
    op = "conv2d_backward_weight"
    x = _images(op, "x", x)
    fs = tuple(filter_size)
    full = fs if len(fs) == 4 else None
    if len(fs) == 4:
        fs = fs[2:]
    if len(fs) != 2:
        raise ValueError(f"{op}: filter_size must be (FH, FW) or (FN, C, FH, FW), got {filter_size}")
    FH, FW = ck.as_int(op, "FH", fs[0], 1), ck.as_int(op, "FW", fs[1], 1)
    stride, pad = _stride_pad(op, stride, pad)
    N, C, H, Wd = x.shape
    OH, OW = ck.window_output_size(op, (H, Wd), (FH, FW), stride, pad, "filter")
    dout = ck.as_array(op, "dout", dout)
    ck.check_ndim(op, "dout", dout, 4, "(N, FN, OH, OW)")
    FN = dout.shape[1]
    if full is not None and (full[0] != FN or full[1] != C):
        raise ValueError(
            f"{op}: filter shape {tuple(full)} does not match dout {dout.shape} (FN={FN}) and "
            f"x {x.shape} (C={C})"
        )
    dout = _check_dout(op, dout, N, FN, OH, OW, f"x {x.shape}, filter {FH}x{FW}")
    ck.check_not_empty(op, "dout", dout)
    dt = ck.result_dtype(op, x=x, dout=dout)
    out = np.empty((FN, C, FH, FW), dtype=dt)
    x, dout = ck.as_float(x, dt), ck.as_float(dout, dt)
    if _algorithm(op, algorithm, x.shape, out.shape, stride, pad) == "gemm":
        with single_threaded_blas():
            if _pointwise(FH, FW, stride, pad):
                _gemm.conv2d_1x1_backward_weight_kernel(x, dout, out)
            else:
                _gemm.conv2d_gemm_backward_weight_kernel(x, dout, stride, pad, out)
    elif _register_kernels(FH, FW, stride, pad, op):
        _c3.conv2d_3x3_backward_weight_kernel(x, dout, stride, pad, out)
    else:
        _conv.conv2d_backward_weight_kernel(x, dout, stride, pad, out)
    # an inf/NaN in x or dout shows up in out, except in a window made of padding only
    if not _finite(out) or (
        _window_in_padding(H, Wd, FH, FW, stride, pad, OH, OW) and not _finite(dout)
    ):  # redo with the book's exact products (see _finite)
        _conv.conv2d_backward_weight_kernel(_pad_images(x, pad), dout, stride, 0, out)
    return out


def conv2d_backward_bias(dout):
    """Gradient of :func:`conv2d` with respect to its bias: ``dout`` summed over N, OH, OW.

    Shape
    -----
    dout: (N, FN, OH, OW) -> db: (FN,).
    """
    op = "conv2d_backward_bias"
    dout = _images(op, "dout", dout)
    dt = ck.result_dtype(op, dout=dout)
    out = np.empty(dout.shape[1], dtype=dt)
    _conv.conv2d_backward_bias_kernel(ck.as_float(dout, dt), out)
    return out


# --------------------------------------------------------------------------- max pooling
def _pool_params(op, pool_h, pool_w, stride, pad):
    pool_h, pool_w = ck.as_int(op, "pool_h", pool_h, 1), ck.as_int(op, "pool_w", pool_w, 1)
    stride, pad = _stride_pad(op, stride, pad)
    if pad >= pool_h or pad >= pool_w:
        raise ValueError(
            f"{op}: pad {pad} must be smaller than the window {pool_h}x{pool_w} "
            "(a window of padding only has no maximum)"
        )
    return pool_h, pool_w, stride, pad


def _is_2x2(pool_h, pool_w, stride, pad):
    """The book's pooling (2x2, stride 2, no padding) has its own fast kernels."""
    return pool_h == 2 and pool_w == 2 and stride == 2 and pad == 0


def _argmax_dtype(pool_h, pool_w):
    return np.uint8 if pool_h * pool_w <= 256 else np.int32


def max_pool2d(x, pool_h, pool_w, stride=2, pad=0, return_argmax=False):
    """Max pooling; padded cells never win; ties go to the first maximum (row-major window).

    Parameters
    ----------
    x : array_like
        Input images.
    pool_h, pool_w : int
        Window size.
    stride : int, default 2
    pad : int, default 0
        Must be smaller than the window.
    return_argmax : bool, default False
        Also return the window-local index ``ky*pool_w + kx`` of each maximum (``uint8`` for
        windows up to 256 cells, else ``int32``), needed by :func:`max_pool2d_backward`.

    Returns
    -------
    out : ndarray
    argmax : ndarray, only if ``return_argmax``

    Shape
    -----
    x: (N, C, H, W) -> out, argmax: (N, C, OH, OW).
    """
    op = "max_pool2d"
    x = _images(op, "x", x)
    pool_h, pool_w, stride, pad = _pool_params(op, pool_h, pool_w, stride, pad)
    N, C, H, W = x.shape
    OH, OW = ck.window_output_size(op, (H, W), (pool_h, pool_w), stride, pad, "window")
    x = ck.as_float(x, ck.result_dtype(op, x=x))
    out = _mem.empty((N, C, OH, OW), x.dtype)
    argmax = _mem.empty((N, C, OH, OW), _argmax_dtype(pool_h, pool_w))
    if _is_2x2(pool_h, pool_w, stride, pad):
        _pool.max_pool2x2_forward_kernel(x, out, argmax)
    else:
        _pool.max_pool2d_forward_kernel(x, pool_h, pool_w, stride, pad, out, argmax)
    return (out, argmax) if return_argmax else out


def max_pool2d_backward(dout, argmax, input_shape, pool_h, pool_w, stride=2, pad=0):
    """Gradient of :func:`max_pool2d`: each ``dout`` goes to its window's maximum.

    Overlapping windows (stride < window) accumulate.

    Shape
    -----
    dout, argmax: (N, C, OH, OW), input_shape = (N, C, H, W) -> dx: (N, C, H, W).
    """
    op = "max_pool2d_backward"
    N, C, H, W = ck.as_shape4(op, "input_shape", input_shape)
    if N == 0 or C * H * W == 0:
        raise ValueError(f"{op}: empty input_shape {input_shape}")
    pool_h, pool_w, stride, pad = _pool_params(op, pool_h, pool_w, stride, pad)
    OH, OW = ck.window_output_size(op, (H, W), (pool_h, pool_w), stride, pad, "window")
    dout = _check_dout(op, dout, N, C, OH, OW, f"input {input_shape}")
    argmax = ck.as_array(op, "argmax", argmax)
    if argmax.shape != dout.shape:
        raise ValueError(f"{op}: argmax has shape {argmax.shape}, dout has {dout.shape}")
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{op}: argmax must be integers, got dtype {argmax.dtype}")
    if argmax.dtype != _argmax_dtype(pool_h, pool_w):  # range-check before the narrowing cast
        if argmax.size and (argmax.min() < 0 or argmax.max() >= pool_h * pool_w):
            raise ValueError(f"{op}: argmax values must be in [0, {pool_h * pool_w})")
    argmax = np.ascontiguousarray(argmax, dtype=_argmax_dtype(pool_h, pool_w))
    dt = ck.result_dtype(op, dout=dout)
    out = _mem.empty((N, C, H, W), dt)
    bad = np.empty(N * C, dtype=np.intp)
    dout = ck.as_float(dout, dt)
    if _is_2x2(pool_h, pool_w, stride, pad):
        _pool.max_pool2x2_backward_kernel(dout, argmax, out, bad)
    else:
        _pool.max_pool2d_backward_kernel(dout, argmax, pool_h, pool_w, stride, pad, out, bad)
    if bad.any():
        raise ValueError(
            f"{op}: {int(bad.sum())} argmax entries point into the padding or past the edge of "
            f"the input {input_shape}; pass the argmax returned by max_pool2d for this input"
        )
    return out


# --------------------------------------------------------------------------- softmax / loss
def softmax(x):
    """Max-subtracted softmax over the last axis.

    Shape
    -----
    x: (..., K) -> (..., K).
    """
    op = "softmax"
    x = ck.as_array(op, "x", x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{op}: x needs a non-empty last axis, got shape {x.shape}")
    x = ck.as_float(x, ck.result_dtype(op, x=x))
    out = _mem.empty_like(x)
    if x.size:
        K = x.shape[-1]
        kernel = _kernel(_softmax.softmax_forward_kernel, _softmax.softmax_forward_serial_kernel, x.size)
        kernel(x.reshape(-1, K), out.reshape(-1, K))
    return out


def _logits_and_target(op, x, t):
    """(x as (N, K) float, t as array, is_one_hot) with the book's one-hot rule."""
    x = ck.as_array(op, "x", x)
    t = ck.as_array(op, "t", t)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise ValueError(f"{op}: x must be (N, K) or (K,), got shape {x.shape}")
    N, K = x.shape
    if N == 0:
        raise ValueError(f"{op}: empty batch, x has shape {x.shape}")
    if K == 0:
        raise ValueError(f"{op}: x has no classes, shape {x.shape}")
    t, one_hot = _target_shape(t, N, K)
    return x, t, one_hot


def _target_shape(t, N, K):
    """``(t, is_one_hot)``: one-hot by the book's rule ``t.size == N*K`` (also for K == 1),
    reshaped to ``(N, K)``; a 0-d label of a single sample as ``(1,)``."""
    one_hot = t.size == N * K
    if one_hot:
        if t.shape != (N, K):
            t = t.reshape(N, K)
    elif t.ndim == 0 and N == 1:
        t = t.reshape(1)
    return t, one_hot


def cross_entropy(y, t, eps=CROSS_ENTROPY_EPS):
    """Mean cross-entropy ``-log(y[t] + eps)`` of probabilities (the book's
    ``cross_entropy_error``).

    ``t`` is one-hot when ``t.size == y.size`` (its argmax is the label, as in the book),
    otherwise integer labels of shape ``(N,)`` or ``(N, 1)``.

    Shape
    -----
    y: (N, K) or (K,), t: (N,) / (N, 1) / (N, K) -> scalar.
    """
    op = "cross_entropy"
    y, t, one_hot = _logits_and_target(op, y, t)
    dt = ck.result_dtype(op, y=y)
    y = ck.as_float(y, dt)
    N, K = y.shape
    labels = np.argmax(t, axis=1) if one_hot else ck.as_labels(op, t, N, K)
    return dt.type(-np.sum(np.log(y[np.arange(N), labels] + dt.type(eps))) / N)


def _loss_inputs(op, x, t, eps):
    """Validated ``(x, labels, dense_t, dtype, eps)`` for the softmax-cross-entropy kernels.

    As in the book, softmax and loss are computed in the logits' dtype ``dtype``; ``dense_t``
    is the one-hot/soft target as an ``(N, K)`` float array in its own dtype (the gradient
    ``y - t`` follows NumPy promotion), or an empty ``(0, K)`` array for integer labels.
    """
    x, t, one_hot = _logits_and_target(op, x, t)
    eps = _loss_eps(op, eps)
    dt = ck.result_dtype(op, x=x)
    labels, dense = _targets(op, t, one_hot, x.shape, dt)
    return ck.as_float(x, dt), labels, dense, dt, eps


def _loss_eps(op, eps):
    eps = float(eps)
    if not (eps >= 0):
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    return eps


def _targets(op, t, one_hot, shape, dt):
    """``(labels, dense_t)``: intp labels (the argmax of a one-hot ``t``) and the dense target
    in its own dtype, or an empty ``(0, K)`` array of ``dt`` for integer labels."""
    N, K = shape
    if one_hot:
        dense = ck.as_float(t, ck.result_dtype(op, t=t))
        return np.ascontiguousarray(np.argmax(dense, axis=1), dtype=np.intp), dense
    return ck.as_labels(op, t, N, K), np.empty((0, K), dtype=dt)


def softmax_cross_entropy(x, t, eps=CROSS_ENTROPY_EPS):
    """Fused softmax + cross-entropy (the book's ``SoftmaxWithLoss.forward``) in one pass.

    Parameters
    ----------
    x : array_like
        Logits.
    t : array_like
        Integer labels ``(N,)`` / ``(N, 1)``, or one-hot ``(N, K)`` (detected by
        ``t.size == x.size``; its argmax is the label, as in the book).
    eps : float, default 1e-7
        ``> 0``: the book's ``-log(y[t] + eps)``. ``0``: the exact ``logsumexp(x) - x[t]``.

    Returns
    -------
    loss : scalar of the compute dtype
        Mean over the batch.
    y : ndarray
        Softmax probabilities (for :func:`softmax_cross_entropy_backward`).

    Shape
    -----
    x: (N, K) or (K,) -> loss: (), y: (N, K).
    """
    x, labels, dense, dt, eps = _loss_inputs("softmax_cross_entropy", x, t, eps)
    y = _mem.empty_like(x)
    row_loss = np.empty(x.shape[0], dtype=dt)
    kernel = _kernel(
        _softmax.softmax_cross_entropy_forward_kernel,
        _softmax.softmax_cross_entropy_forward_serial_kernel,
        x.size,
    )
    loss = kernel(x, labels, dt.type(eps), y, row_loss)
    return dt.type(loss), y


def softmax_cross_entropy_with_grad(x, t, eps=CROSS_ENTROPY_EPS):
    """Mean softmax cross-entropy and its gradient ``(softmax(x) - t) / N`` from one pass.

    Same arguments as :func:`softmax_cross_entropy`; the probabilities are never stored, which
    halves the memory traffic of forward + backward. :class:`fastnn.layers.SoftmaxWithLoss`
    uses it.

    Returns
    -------
    loss : scalar
    dx : ndarray

    Shape
    -----
    x: (N, K) or (K,) -> loss: (), dx: (N, K).
    """
    fast = _sce_fast_args(x, t, eps)
    if fast is not None:  # the common case, checked cheaply (a net calls this every step)
        labels, dense, e = fast
        N, dt = x.shape[0], x.dtype
        row_loss = np.empty(N + 1, dtype=dt)
        if x.size <= SERIAL_MAX_SIZE:  # (the book's (100, 10): every 0.1 us is 3 % of the call)
            dx = np.empty(x.shape, dt)
            bad = _softmax.softmax_cross_entropy_fused_serial_kernel(x, labels, dense, e, dx, row_loss)
        else:
            dx = _mem.empty_like(x)
            bad = _softmax.softmax_cross_entropy_fused_kernel(x, labels, dense, e, dx, row_loss)
        if bad == 0:
            return row_loss[N], dx
        # a label out of range: the full validation below raises the error
    x, labels, dense, dt, eps = _loss_inputs("softmax_cross_entropy_with_grad", x, t, eps)
    row_loss = np.empty(x.shape[0] + 1, dtype=dt)
    if dense.dtype != dt:  # mixed logits/target dtypes: the gradient follows promotion (book)
        y = _mem.empty_like(x)
        loss = _softmax.softmax_cross_entropy_forward_kernel(
            x, labels, dt.type(eps), y, row_loss[:-1]
        )
        gdt = np.result_type(dt, dense.dtype)
        dx = _mem.empty(x.shape, gdt)
        _softmax.softmax_cross_entropy_backward_dense_kernel(
            y.astype(gdt, copy=False), dense.astype(gdt, copy=False), dx
        )
        return dt.type(loss), dx
    dx = _mem.empty_like(x)
    kernel = _kernel(
        _softmax.softmax_cross_entropy_fused_kernel,
        _softmax.softmax_cross_entropy_fused_serial_kernel,
        x.size,
    )
    kernel(x, labels, dense, dt.type(eps), dx, row_loss)  # labels checked above
    return row_loss[-1], dx


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_INTP = np.dtype(np.intp)
_BOOL = np.dtype(np.bool_)
#: the book's eps as a scalar of each dtype (index 0 float32, 1 float64), and
#: (index, eps) -> eps as a scalar for other values
_DEFAULT_EPS = (np.float32(CROSS_ENTROPY_EPS), np.float64(CROSS_ENTROPY_EPS))
_EPS_CACHE = {}
#: K -> the (0, K) "no dense target" placeholder of each dtype (never written)
_NO_TARGET = ({}, {})
#: the "no labels" placeholder of a one-hot call: the kernel keeps its argmax labels itself
_NO_LABELS = np.empty(0, dtype=np.intp)


def _sce_fast_args(x, t, eps):
    """``(labels, dense_t, eps)`` for the fused kernel when the input needs no conversion, else
    None (the caller then validates in full).

    Accepted: ``x`` a writable C-contiguous float32/float64 ``(N, K)`` ndarray with ``N >= 1``
    and ``K >= 2``; ``t`` integer labels ``(N,)`` (range-checked by the kernel) or a one-hot
    ``(N, K)`` ndarray of x's dtype, writable and C-contiguous (its argmax is taken by the
    kernel, which then needs no ``labels`` array: ``_NO_LABELS`` is passed); ``eps`` a
    non-negative Python float or int. Written for speed (about 0.3 us; a net calls it every
    step): dtypes are compared by identity (NumPy's native float32/float64/intp dtypes are
    singletons; anything else takes the full path) and no tuple is built for the common case.
    """
    if type(x) is not np.ndarray or type(t) is not np.ndarray or x.ndim != 2:
        return None
    dt = x.dtype
    if dt is _F64:
        d = 1
    elif dt is _F32:
        d = 0
    else:
        return None
    if not x.flags.carray:  # writable, aligned, C-contiguous: one attribute lookup
        return None
    N, K = x.shape
    if N == 0 or K < 2:
        return None
    if eps == CROSS_ENTROPY_EPS and type(eps) is float:
        e = _DEFAULT_EPS[d]
    else:
        if type(eps) not in (float, int) or not eps >= 0:
            return None
        e = _EPS_CACHE.get((d, eps))
        if e is None:
            e = _EPS_CACHE.setdefault((d, eps), dt.type(eps))
    if t.ndim == 1:
        if t.shape[0] != N:
            return None
        td = t.dtype
        if td is _INTP and t.flags.carray:  # (a read-only one: a copy)
            labels = t
        elif td.kind in "iu":
            labels = t.astype(np.intp)
        else:
            return None
        dense = _NO_TARGET[d].get(K)
        if dense is None:
            dense = _NO_TARGET[d].setdefault(K, np.empty((0, K), dtype=dt))
        return labels, dense, e
    if t.dtype is dt and t.shape == x.shape:
        if t.flags.carray:  # (read-only: another compiled specialisation)
            return _NO_LABELS, t, e
    return None


def softmax_cross_entropy_backward(y, t):
    """Gradient of the mean softmax cross-entropy: ``(y - t) / N``.

    Parameters
    ----------
    y : array_like
        Softmax probabilities from :func:`softmax_cross_entropy`.
    t : array_like
        The same target given to the forward pass (one-hot or labels).

    Shape
    -----
    y: (N, K) -> dx: (N, K).
    """
    op = "softmax_cross_entropy_backward"
    y, t, one_hot = _logits_and_target(op, y, t)
    N, K = y.shape
    out = _mem.empty(y.shape, ck.result_dtype(op, y=y))
    y = ck.as_float(y, out.dtype)
    if one_hot:
        dt = np.result_type(out.dtype, ck.result_dtype(op, t=t))
        if dt != out.dtype:  # float32 y with a float64 one-hot target: NumPy promotion
            out = _mem.empty(y.shape, dt)
            y = ck.as_float(y, dt)
        _softmax.softmax_cross_entropy_backward_dense_kernel(y, ck.as_float(t, dt), out)
    else:
        _softmax.softmax_cross_entropy_backward_kernel(y, ck.as_labels(op, t, N, K), out)
    return out


# --------------------------------------------------------------------------- element-wise
def _flat_float(op, name, x):
    if _ready(x):
        return x
    x = ck.as_array(op, name, x)
    return ck.as_float(x, ck.result_dtype(op, **{name: x}))


def _same_ready(first, *rest):
    """Whether every array is :func:`_ready` and all share one dtype."""
    if not _ready(first):
        return False
    dt = first.dtype
    for a in rest:
        if type(a) is not np.ndarray or a.dtype is not dt or not a.flags.carray:
            return False
    return True


def _ready_masked(a, mask):
    """Whether ``a`` is :func:`_ready` and ``mask`` a C-contiguous bool ndarray of its shape
    (the ReLU and dropout backward passes)."""
    return (_ready(a) and type(mask) is np.ndarray and mask.dtype is _BOOL
            and mask.shape == a.shape and mask.flags.c_contiguous)


def _ready(a):
    """Whether ``a`` goes to a kernel as it is: a writable, aligned, C-contiguous
    float32/float64 ndarray (``flags.carray``, as Numba types it without a new signature).
    Checked first, because the general conversion costs about a microsecond, as much as the
    kernel on the book's (100, 100) layers (dtypes compared by identity: NumPy's native float
    dtypes are singletons; anything else takes the general path)."""
    if type(a) is not np.ndarray:
        return False
    dt = a.dtype
    return (dt is _F32 or dt is _F64) and a.flags.carray


def linear_softmax_cross_entropy_with_grad(x, W, b, t, eps=CROSS_ENTROPY_EPS):
    """Softmax regression's loss and gradients in one kernel: logits ``z = x @ W + b``, the
    mean softmax cross-entropy of ``z`` (as :func:`softmax_cross_entropy_with_grad`) and
    ``dW = x.T @ dz``, ``db = dz.sum(0)`` with ``dz = (softmax(z) - t) / N``.

    With few classes BLAS runs the two skinny products far below peak; the kernel computes
    the logits as blocked dot products of contiguous rows and the weight gradient as a
    vectorised sum over the batch, with no ``(N, D)`` temporary. Everything is computed in
    the dtype NumPy promotion gives ``x``, ``W`` and ``b`` (a one-hot ``t`` is cast to it).

    Parameters
    ----------
    x : array_like
        Inputs.
    W, b : array_like
        Weights and bias.
    t : array_like
        Integer labels ``(N,)`` / ``(N, 1)``, or one-hot ``(N, K)``.
    eps : float, default 1e-7
        Loss mode, as for :func:`softmax_cross_entropy` (``0``: exact log-sum-exp).

    Returns
    -------
    loss : scalar
    z : ndarray
        The logits.
    dW, db : ndarray
        Gradients of the loss.

    Shape
    -----
    x: (N, D), W: (D, K), b: (K,), t: (N,) / (N, 1) / (N, K) -> loss: (), z: (N, K),
    dW: (D, K), db: (K,).
    """
    op = "linear_softmax_cross_entropy_with_grad"
    x = ck.as_array(op, "x", x)
    W = ck.as_array(op, "W", W)
    b = ck.as_array(op, "b", b)
    ck.check_ndim(op, "x", x, 2, "(N, D)")
    ck.check_ndim(op, "W", W, 2, "(D, K)")
    N, D = x.shape
    K = W.shape[1]
    if W.shape[0] != D or N == 0 or K == 0:
        raise ValueError(f"{op}: x {x.shape} and W {W.shape} do not give (N, D) @ (D, K) with "
                         f"N, K > 0")
    if b.shape != (K,):
        raise ValueError(f"{op}: bias b must have shape ({K},) (one per class), got {b.shape}")
    eps = _loss_eps(op, eps)
    t, one_hot = _target_shape(ck.as_array(op, "t", t), N, K)
    dt = ck.result_dtype(op, x=x, W=W, b=b)
    if not one_hot and t.dtype.kind in "iu" and t.shape in ((N,), (N, 1)):
        # integer labels: their range is counted by the kernel (a NumPy min and max cost
        # microseconds per training step); an error is raised from the full check below
        labels, dense = np.ascontiguousarray(t.reshape(N), dtype=np.intp), np.empty((0, K), dt)
    else:
        labels, dense = _targets(op, t, one_hot, (N, K), dt)
    x, b = ck.as_float(x, dt), ck.as_float(b, dt)
    WT = np.ascontiguousarray(W.T, dtype=dt)
    dense = ck.as_float(dense, dt)
    z = np.empty((N, K), dtype=dt)
    dz = np.empty((N, K), dtype=dt)
    row_loss = np.empty(N + 1, dtype=dt)
    dW = np.empty((D, K), dtype=dt)
    db = np.empty(K, dtype=dt)
    args = (x, WT, b, labels, dense, dt.type(eps), z, dz, row_loss, dW, db)
    if x.size <= SERIAL_MAX_SIZE:
        nbad = _softmax.linear_softmax_cross_entropy_fused_serial_kernel(*args)
    else:
        nbad = _softmax.linear_softmax_cross_entropy_fused_kernel(*args, _numba_threads())
    if nbad:
        ck.as_labels(op, t, N, K)  # raises: labels outside [0, K)
    return row_loss[N], z, dW, db


def relu(x):
    """ReLU with the book's mask.

    Returns
    -------
    out : ndarray
        ``0`` where ``x <= 0``, else ``x`` (NaN passes through).
    mask : ndarray of bool
        ``x <= 0``.

    Shape
    -----
    x: any -> out, mask: same shape.
    """
    x = _flat_float("relu", "x", x)
    if x.size <= SERIAL_MAX_SIZE:  # (see SERIAL_MAX_SIZE)
        out, mask = np.empty(x.shape, x.dtype), np.empty(x.shape, _BOOL)
        _ew.relu_forward_serial_kernel(x.ravel(), out.ravel(), mask.ravel())
    else:
        out, mask = _mem.empty_like(x), _mem.empty(x.shape, _BOOL)
        _ew.relu_forward_kernel(x.ravel(), out.ravel(), mask.ravel())
    return out, mask


def relu_backward(dout, mask):
    """Zero ``dout`` where ``mask`` is set, **in place**, and return ``dout`` (the book's
    ``Relu.backward``).

    Shape
    -----
    dout, mask: same shape.
    """
    if _ready_masked(dout, mask):  # the layers' case: no conversion
        kernel = _kernel(_ew.relu_backward_kernel, _ew.relu_backward_serial_kernel, dout.size)
        kernel(dout.ravel(), mask.ravel())
        return dout
    op = "relu_backward"
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"{op}: dout must be a NumPy array (it is modified in place)")
    mask = ck.as_array(op, "mask", mask)
    if mask.shape != dout.shape:
        raise ValueError(f"{op}: dout has shape {dout.shape}, mask has {mask.shape}")
    if not dout.flags.writeable:
        raise ValueError(f"{op}: dout is read-only; the book's Relu.backward writes into it")
    if dout.flags.c_contiguous and dout.dtype in ck._FLOATS and mask.dtype == np.bool_:
        kernel = _kernel(_ew.relu_backward_kernel, _ew.relu_backward_serial_kernel, dout.size)
        kernel(dout.reshape(-1), np.ascontiguousarray(mask).reshape(-1))
    else:
        ck.result_dtype(op, dout=dout)
        dout[mask.astype(bool, copy=False)] = 0
    return dout


def sigmoid(x):
    """``1 / (1 + exp(-x))``.

    Shape
    -----
    x: any -> same shape.
    """
    x = _flat_float("sigmoid", "x", x)
    if x.size <= SERIAL_MAX_SIZE:  # (see SERIAL_MAX_SIZE)
        out = np.empty(x.shape, x.dtype)
        _ew.sigmoid_forward_serial_kernel(x.ravel(), out.ravel())
    else:
        out = _mem.empty_like(x)
        _ew.sigmoid_forward_kernel(x.ravel(), out.ravel())
    return out


def sigmoid_backward(dout, y):
    """``dout * (1 - y) * y`` with ``y`` the output of :func:`sigmoid`.

    Shape
    -----
    dout, y: same shape -> same shape.
    """
    op = "sigmoid_backward"
    if not (_same_ready(dout, y) and dout.shape == y.shape):
        dout, y = ck.as_array(op, "dout", dout), ck.as_array(op, "y", y)
        if dout.shape != y.shape:
            raise ValueError(f"{op}: dout has shape {dout.shape}, y has {y.shape}")
        dt = ck.result_dtype(op, dout=dout, y=y)
        dout, y = ck.as_float(dout, dt), ck.as_float(y, dt)
    if y.size <= SERIAL_MAX_SIZE:  # (see SERIAL_MAX_SIZE)
        out = np.empty(y.shape, y.dtype)
        _ew.sigmoid_backward_serial_kernel(dout.ravel(), y.ravel(), out.ravel())
    else:
        out = _mem.empty_like(y)
        _ew.sigmoid_backward_kernel(dout.ravel(), y.ravel(), out.ravel())
    return out


def dropout(x, ratio, train=True):
    """The book's dropout: training mask ``np.random.rand(*x.shape) > ratio``, drawn from
    NumPy's global RNG (so ``np.random.seed`` reproduces the book), applied in one fused pass;
    at inference ``x * (1 - ratio)`` (not inverted dropout).

    When NumPy's global generator is its default MT19937, the draws are made by our kernel
    from that generator's state, in place and under its lock: the same numbers np.random.rand
    would return, leaving the generator where np.random.rand would, 3-4x faster than calling
    it (:func:`_global_mt19937_state`).

    Returns
    -------
    out : ndarray
    mask : ndarray of bool, or None when ``train`` is false

    Shape
    -----
    x: any -> out, mask: same shape.
    """
    op = "dropout"
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{op}: ratio must be in [0, 1], got {ratio}")
    if not _ready(x):
        x = ck.as_array(op, "x", x)
        x = ck.as_float(x, ck.result_dtype(op, x=x))
    if not train:
        return x * (1.0 - ratio), None
    if x.size <= SERIAL_MAX_SIZE:  # (see SERIAL_MAX_SIZE)
        out, mask = np.empty(x.shape, x.dtype), np.empty(x.shape, _BOOL)
    else:
        out, mask = _mem.empty_like(x), _mem.empty(x.shape, _BOOL)
    stream = _global_mt19937_state()
    if stream is None:
        return _dropout_with_rand(x, ratio, out, mask)
    # the draws np.random.rand(*x.shape) would make, from the generator's own stream
    if x.size == 0:
        return out, mask  # np.random.rand(0) draws nothing
    lock, key, pos = stream
    buf = _dropout_buffer()
    with lock:  # the lock np.random holds while drawing: concurrent draws stay distinct
        start = int(pos[0])
        if x.size <= SERIAL_MAX_SIZE:
            pos[0] = _ew.dropout_mt19937_forward_serial_kernel(
                x.ravel(), key, start, ratio, out.ravel(), mask.ravel(), buf)
        else:
            pos[0] = _ew.dropout_mt19937_forward_kernel(
                x.ravel(), key, start, ratio, out.ravel(), mask.ravel(), buf,
                2 * _numba_threads())
    return out, mask


#: 624-word blocks per chunk of the MT19937 dropout kernel: a chunk's words are ~1 MB (one
#: L2), and the ~14 chunks of the book's (100, 30, 24, 24) keep the prange launches cheap
#: (measured: 200 blocks 480 us, 400 blocks 440 us, 800 blocks 455 us per forward)
_DROPOUT_BLOCKS = 400
_DROPOUT_BUFFERS = threading.local()


def _dropout_buffer():
    """The kernel's two chunk slots, ``(2, 624 * (_DROPOUT_BLOCKS + 1))`` uint32, kept per
    thread (2 MB, allocated at the thread's first dropout: a fresh one per call would be paged
    in at every call). The kernel generates only the blocks a call needs."""
    shape = (2, _ew._MT_N * (_DROPOUT_BLOCKS + 1))
    buf = getattr(_DROPOUT_BUFFERS, "buf", None)
    if buf is None or buf.shape != shape:
        buf = _DROPOUT_BUFFERS.buf = np.empty(shape, dtype=np.uint32)
    return buf


def _dropout_with_rand(x, ratio, out, mask):
    """:func:`dropout`'s training pass with the draws from ``np.random.rand`` itself (when the
    global generator's state cannot be used in place)."""
    r = np.asarray(np.random.rand(*x.shape))  # 0-d input: rand() returns a float
    kernel = _kernel(_ew.dropout_forward_kernel, _ew.dropout_forward_serial_kernel, x.size)
    kernel(x.reshape(-1), r.reshape(-1), ratio, out.reshape(-1), mask.reshape(-1))
    return out, mask


_MT_STATE_VIEWS = {}  # id(bit generator) -> (generator, (lock, key, pos) or None)


def _global_mt19937_state():
    """``(lock, key, pos)`` of NumPy's global bit generator when it is MT19937 (what
    np.random.rand draws from), else None: ``key`` (624 uint32) and ``pos`` (1 int32) view its
    C state in place (``MT19937.ctypes.state_address``, the struct ``{uint32 key[624]; int
    pos;}``), so a draw costs no state copy (``bg.state`` costs ~90 us a round trip, as much as
    np.random.rand of 18,000 doubles). The view is checked against ``bg.state`` once per
    generator; if it does not match (another layout, a big-endian machine: the kernel reads
    word pairs as little-endian uint64), None and dropout calls np.random.rand."""
    get = getattr(np.random, "get_bit_generator", None)  # NumPy >= 1.25
    if get is None:
        return None
    bg = get()
    cached = _MT_STATE_VIEWS.get(id(bg))
    if cached is not None and cached[0] is bg:
        return cached[1]
    view = None
    if isinstance(bg, np.random.MT19937) and sys.byteorder == "little":
        try:
            raw = np.ctypeslib.as_array(
                (ctypes.c_uint32 * 625).from_address(bg.ctypes.state_address)
            )
            state = bg.state["state"]
            key, pos = raw[:624], raw[624:].view(np.int32)
            if np.array_equal(key, state["key"]) and int(pos[0]) == state["pos"]:
                view = (bg.lock, key, pos)
        except Exception:  # no ctypes, or an unexpected layout: np.random.rand instead
            view = None
    _MT_STATE_VIEWS.clear()  # one generator at a time: set_bit_generator replaces it
    _MT_STATE_VIEWS[id(bg)] = (bg, view)
    return view


def dropout_backward(dout, mask):
    """``dout * mask``.

    Shape
    -----
    dout, mask: same shape -> same shape.
    """
    op = "dropout_backward"
    if not _ready_masked(dout, mask):
        dout, mask = ck.as_array(op, "dout", dout), ck.as_array(op, "mask", mask)
        if dout.shape != mask.shape:
            raise ValueError(f"{op}: dout has shape {dout.shape}, mask has {mask.shape}")
        dout = ck.as_float(dout, ck.result_dtype(op, dout=dout))
        mask = np.ascontiguousarray(mask, dtype=np.bool_)
    if dout.size <= SERIAL_MAX_SIZE:  # (see SERIAL_MAX_SIZE)
        out = np.empty(dout.shape, dout.dtype)
        _ew.dropout_backward_serial_kernel(dout.ravel(), mask.ravel(), out.ravel())
    else:
        out = _mem.empty_like(dout)
        _ew.dropout_backward_kernel(dout.ravel(), mask.ravel(), out.ravel())
    return out


def _features(op, name, v, D):
    v = ck.as_array(op, name, v)
    if v.size != D:
        raise ValueError(f"{op}: {name} must have {D} elements (one per feature), got {v.shape}")
    return v


def _bn_input(op, x):
    x = ck.as_array(op, "x", x)
    ck.check_ndim(op, "x", x, 2, "(N, D)")
    if x.shape[0] == 0:
        raise ValueError(f"{op}: empty batch, x has shape {x.shape}")
    return x


def batch_norm_train(x, gamma, beta, eps=BATCHNORM_EPS):
    """Batch normalization with batch statistics (the book's training forward).

    Returns
    -------
    out, xn : ndarray
        Output and normalised input ``(x - mean) / std``.
    mean, var, std : ndarray
        Per-feature batch statistics, ``std = sqrt(var + eps)``.

    Shape
    -----
    x: (N, D), gamma, beta: (D,) -> out, xn: (N, D); mean, var, std: (D,).
    """
    op = "batch_norm_train"
    if (_same_ready(x, gamma, beta) and x.ndim == 2 and x.shape[0]
            and gamma.shape == beta.shape == x.shape[1:]):
        D, dt = x.shape[1], x.dtype  # (the book's layers' case, checked cheaply)
    else:
        x = _bn_input(op, x)
        D = x.shape[1]
        gamma, beta = _features(op, "gamma", gamma, D), _features(op, "beta", beta, D)
        dt = ck.result_dtype(op, x=x, gamma=gamma, beta=beta)
        x = ck.as_float(x, dt)
        gamma, beta = ck.as_float(gamma, dt).reshape(D), ck.as_float(beta, dt).reshape(D)
    out, xn = _mem.empty_like(x), _mem.empty_like(x)
    mean, var, std = np.empty(D, dtype=dt), np.empty(D, dtype=dt), np.empty(D, dtype=dt)
    kernel = _kernel(
        _bn.batchnorm_forward_train_kernel, _bn.batchnorm_forward_train_serial_kernel, x.size
    )
    kernel(x, gamma, beta, dt.type(eps), out, xn, mean, var, std)
    return out, xn, mean, var, std


def batch_norm_eval(x, gamma, beta, running_mean, running_var, eps=BATCHNORM_EPS):
    """Batch normalization with running statistics (the book's inference forward).

    Shape
    -----
    x: (N, D), gamma, beta, running_mean, running_var: (D,) -> (N, D).
    """
    op = "batch_norm_eval"
    x = _bn_input(op, x)
    D = x.shape[1]
    vs = {k: _features(op, k, v, D) for k, v in
          dict(gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var).items()}
    dt = ck.result_dtype(op, x=x, **vs)
    x = ck.as_float(x, dt)
    out = _mem.empty_like(x)
    g, b, m, v = (ck.as_float(a, dt).reshape(D) for a in vs.values())
    _bn.batchnorm_forward_eval_kernel(x, g, b, m, v, dt.type(eps), out)
    return out


def batch_norm_backward(dout, xn, std, gamma):
    """Gradients of :func:`batch_norm_train`.

    Returns
    -------
    dx : ndarray
    dgamma, dbeta : ndarray

    Shape
    -----
    dout, xn: (N, D), std, gamma: (D,) -> dx: (N, D), dgamma, dbeta: (D,).
    """
    op = "batch_norm_backward"
    if (_same_ready(dout, xn, std, gamma) and dout.ndim == 2 and dout.shape[0]
            and xn.shape == dout.shape and std.shape == gamma.shape == dout.shape[1:]):
        N, D = dout.shape  # (the book's layers' case, checked cheaply)
        dt = dout.dtype
    else:
        dout = _bn_input(op, dout)
        N, D = dout.shape
        xn = ck.as_array(op, "xn", xn)
        if xn.shape != dout.shape:
            raise ValueError(f"{op}: xn has shape {xn.shape}, dout has {dout.shape}")
        std, gamma = _features(op, "std", std, D), _features(op, "gamma", gamma, D)
        dt = ck.result_dtype(op, dout=dout, xn=xn, std=std, gamma=gamma)
        dout, xn = ck.as_float(dout, dt), ck.as_float(xn, dt)
        std, gamma = ck.as_float(std, dt).reshape(D), ck.as_float(gamma, dt).reshape(D)
    dx = _mem.empty((N, D), dt)
    dgamma, dbeta = np.empty(D, dtype=dt), np.empty(D, dtype=dt)
    kernel = _kernel(_bn.batchnorm_backward_kernel, _bn.batchnorm_backward_serial_kernel, dx.size)
    kernel(dout, xn, std, gamma, dx, dgamma, dbeta)
    return dx, dgamma, dbeta
