"""Parity of every op of :mod:`fastnn.functional` with the NumPy oracle :mod:`fastnn.reference`.

* float64 results match the reference to ``rtol=1e-10`` (exact where the op is a copy or a max);
  float32 results match the reference evaluated in float64 on the same (float32) inputs to
  ``rtol=1e-4`` with an absolute tolerance scaled by the output's magnitude.
* Output dtypes: float32 stays float32, int/bool become float64, mixed float32/float64 promote.
* Geometry: the shared tables of ``conftest.py`` (odd shapes, strides 1-3, pads 0-2, non-square
  and 1x1 filters, batch 1, single channel) plus hypothesis-generated shapes.
* Pooling corner cases (ties, all-negative padded input, overlapping windows, NaN), softmax
  cross-entropy corner cases (extreme logits, underflowed probabilities, eps=0).
* Non-contiguous inputs (strided, negative strides, transposed, broadcast, read-only,
  non-native byte order) give bit-identical results to contiguous copies.
* The adjoint identity ``<im2col(x), y> == <x, col2im(y)>``.
* Thread-count invariance: bit-identical results at 1 thread and at the maximum.
"""

from __future__ import annotations

from types import SimpleNamespace

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import functional as F
from fastnn import reference as R
from fastnn.kernels import pool2d as KP
from fastnn.kernels import _vexp as KV
from fastnn.kernels import conv2d_3x3 as KC3
from fastnn.kernels import softmax as KS

DTYPES = [np.float64, np.float32]
DTYPE_IDS = ["f64", "f32"]
#: The two convolution algorithms; "auto" picks one of them by size (tiny shapes: "direct").
ALGORITHMS = ["direct", "gemm"]

HYP = settings(deadline=None, max_examples=25)


# --------------------------------------------------------------------------- helpers
def _tols(dtype):
    """(rtol, atol per unit of output magnitude) for comparing with the float64 oracle."""
    return (1e-10, 1e-12) if np.dtype(dtype) == np.float64 else (1e-4, 1e-5)


def assert_close(got, want, dtype):
    """``got`` has ``dtype`` and the shape of ``want`` and matches it within the dtype's tolerance.

    ``want`` comes from the reference evaluated in float64. The absolute tolerance is scaled by
    ``max|want|`` (sums of many terms cancel, so near-zero entries carry absolute error).
    """
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    rtol, atol = _tols(dtype)
    finite = want[np.isfinite(want)]
    scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale)


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def up(a):
    """The exact float64 values of ``a`` (reference input)."""
    return np.asarray(a, dtype=np.float64)


def bits_equal(a, b):
    """Bit-identical arrays (NaN payloads included), same dtype and shape."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- im2col / col2im
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_im2col_parity(conv_case, dtype, rng):
    c = conv_case
    x = randn(rng, c.x_shape, dtype)
    got = F.im2col(x, c.FH, c.FW, c.stride, c.pad)
    want = R.im2col(x, c.FH, c.FW, c.stride, c.pad)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == (c.N * c.out_hw[0] * c.out_hw[1], c.C * c.FH * c.FW)
    np.testing.assert_array_equal(got, want)  # a pure copy: exact


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_col2im_parity(conv_case, dtype, rng):
    c = conv_case
    OH, OW = c.out_hw
    col = randn(rng, (c.N * OH * OW, c.C * c.FH * c.FW), dtype)
    got = F.col2im(col, c.x_shape, c.FH, c.FW, c.stride, c.pad)
    assert_close(got, R.col2im(up(col), c.x_shape, c.FH, c.FW, c.stride, c.pad), dtype)


def test_col2im_accepts_any_shape_with_the_right_size(rng):
    """The book reshapes ``col`` itself: a flat or 6-D col with the right size works."""
    shape, FH, FW = (2, 2, 4, 4), 3, 3
    col = rng.standard_normal((2 * 2 * 2, 2 * 9))
    want = R.col2im(col, shape, FH, FW)
    np.testing.assert_array_equal(F.col2im(col.ravel(), shape, FH, FW), F.col2im(col, shape, FH, FW))
    assert_close(F.col2im(col.reshape(2, 2, 2, 2, 3, 3), shape, FH, FW), want, np.float64)


@pytest.mark.parametrize(
    "shape,FH,FW,stride,pad",
    [
        ((2, 3, 5, 5), 3, 3, 1, 0),
        ((2, 3, 5, 5), 3, 3, 1, 1),
        ((1, 2, 7, 6), 3, 2, 2, 1),
        ((2, 1, 6, 7), 2, 3, 3, 2),
        ((1, 2, 4, 4), 1, 1, 2, 2),
        ((3, 2, 5, 4), 4, 4, 1, 2),
    ],
)
def test_im2col_col2im_adjoint(shape, FH, FW, stride, pad, rng):
    """``<im2col(x), y> == <x, col2im(y)>``: col2im is exactly the adjoint of im2col."""
    x = rng.standard_normal(shape)
    col = F.im2col(x, FH, FW, stride, pad)
    y = rng.standard_normal(col.shape)
    lhs = np.sum(col * y)
    rhs = np.sum(x * F.col2im(y, shape, FH, FW, stride, pad))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


# --------------------------------------------------------------------------- convolution
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_conv2d_parity(conv_case, dtype, with_bias, algorithm, rng):
    c = conv_case
    x, W = randn(rng, c.x_shape, dtype), randn(rng, c.w_shape, dtype)
    b = randn(rng, (c.FN,), dtype) if with_bias else None
    got = F.conv2d(x, W, b, c.stride, c.pad, algorithm=algorithm)
    want = R.conv2d_forward(up(x), up(W), None if b is None else up(b), c.stride, c.pad)
    assert got.shape == c.out_shape
    assert_close(got, want, dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_conv2d_backward_data_parity(conv_case, dtype, algorithm, rng):
    c = conv_case
    W, dout = randn(rng, c.w_shape, dtype), randn(rng, c.out_shape, dtype)
    got = F.conv2d_backward_data(dout, W, c.x_shape, c.stride, c.pad, algorithm=algorithm)
    want = R.conv2d_backward_data(up(dout), up(W), c.x_shape, c.stride, c.pad)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("filter_size", ["hw", "full"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_conv2d_backward_weight_parity(conv_case, dtype, filter_size, algorithm, rng):
    c = conv_case
    x, dout = randn(rng, c.x_shape, dtype), randn(rng, c.out_shape, dtype)
    fs = (c.FH, c.FW) if filter_size == "hw" else c.w_shape
    got = F.conv2d_backward_weight(x, dout, fs, c.stride, c.pad, algorithm=algorithm)
    want = R.conv2d_backward_weight(up(x), up(dout), (c.FH, c.FW), c.stride, c.pad)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_conv2d_backward_bias_parity(conv_case, dtype, rng):
    c = conv_case
    dout = randn(rng, c.out_shape, dtype)
    assert_close(F.conv2d_backward_bias(dout), R.conv2d_backward_bias(up(dout)), dtype)


def test_conv2d_bias_as_row_vector(rng):
    """A ``(1, FN)`` bias (as some scripts keep it) is accepted and broadcast per filter."""
    x, W, b = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((3, 2, 2, 2)), rng.standard_normal(3)
    np.testing.assert_array_equal(F.conv2d(x, W, b.reshape(1, 3)), F.conv2d(x, W, b))


@st.composite
def conv_geometry(draw):
    """(x shape, W shape, stride, pad, seed, dtype) with the filter fitting the padded input."""
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, 2))
    FH, FW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    H = draw(st.integers(max(1, FH - 2 * pad), 8))
    W = draw(st.integers(max(1, FW - 2 * pad), 8))
    N, C, FN = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from(DTYPES))
    return (N, C, H, W), (FN, C, FH, FW), stride, pad, seed, dtype


@HYP
@given(conv_geometry(), st.sampled_from(["auto"] + ALGORITHMS))
def test_conv2d_all_ops_hypothesis(geom, algorithm):
    xs, ws, stride, pad, seed, dtype = geom
    rng = np.random.default_rng(seed)
    x, W, b = randn(rng, xs, dtype), randn(rng, ws, dtype), randn(rng, ws[:1], dtype)
    out = F.conv2d(x, W, b, stride, pad, algorithm=algorithm)
    assert_close(out, R.conv2d_forward(up(x), up(W), up(b), stride, pad), dtype)
    dout = randn(rng, out.shape, dtype)
    assert_close(
        F.conv2d_backward_data(dout, W, xs, stride, pad, algorithm=algorithm),
        R.conv2d_backward_data(up(dout), up(W), xs, stride, pad),
        dtype,
    )
    assert_close(
        F.conv2d_backward_weight(x, dout, ws, stride, pad, algorithm=algorithm),
        R.conv2d_backward_weight(up(x), up(dout), ws[2:], stride, pad),
        dtype,
    )
    assert_close(F.conv2d_backward_bias(dout), R.conv2d_backward_bias(up(dout)), dtype)


# --------------------------------------------------------------------- 3x3 / 5x5 stride-1 kernels
#: Shapes that reach every branch of kernels/conv2d_3x3.py: stacked image groups (small images)
#: with a short last group, few groups (filter blocks split over parallel iterations) and many,
#: filter counts that are not a multiple of the block of 4 (and fewer than 4), one channel,
#: pad 0 to K - 1 (the data gradient runs the forward kernel with pad K - 1 - pad, so both
#: ends), 1-pixel outputs. Run with 3x3 and with 5x5 filters (pads above K - 1 are clipped).
CONV3X3_CASES = [
    ((23, 3, 5, 7), 10, 1),  # 2 images per group, 12 groups, the last one short; FN = 4+4+2
    ((5, 2, 6, 6), 3, 0),  # FN < 4; few groups -> filter blocks split
    ((9, 1, 28, 28), 16, 1),  # one channel (the first layer)
    ((3, 4, 14, 14), 5, 2),  # pad 2: the 3x3 data gradient runs with pad 0
    ((2, 3, 3, 3), 7, 0),  # 1x1 output (3x3)
    ((1, 2, 1, 1), 4, 1),  # a 1x1 image: only the centre tap sees data (3x3)
    ((17, 6, 8, 8), 9, 1),  # 8x8 images (DeepConvNet's last block), many per group
    ((2, 3, 40, 37), 6, 1),  # a row wider than one inner-loop pass (> 1024 wide columns)
    ((4, 2, 5, 6), 7, 4),  # 5x5 pad 4: the data gradient runs with pad 0
    ((6, 1, 28, 28), 30, 0),  # the book's simple_conv layer (5x5, one channel, 30 filters)
    # >= 16 channels and >= 32 filters: the weight gradient's filters-along-vectors blocks, with
    # filter vectors left over from pairs (and 5x5 quads) and lanes past FN
    ((5, 16, 6, 7), 37, 1),
    ((3, 17, 9, 8), 64, 2),
]
CONV_K = [1, 3, 5]


def _conv_k_case(xs, FN, pad, K):
    """The case for K x K filters, or None when the input is too small for them."""
    pad = min(pad, K - 1)
    if xs[2] + 2 * pad < K or xs[3] + 2 * pad < K:
        return None
    return (FN, xs[1], K, K), pad


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("K", CONV_K)
@pytest.mark.parametrize("xs,FN,pad", CONV3X3_CASES)
def test_conv2d_3x3_kernels_parity(xs, FN, pad, K, stride, dtype, rng):
    """The register-blocked kernels ("direct" for 3x3 and 5x5 at stride 1; at stride 2 the
    forward and weight gradient on phase planes) against the reference."""
    case = _conv_k_case(xs, FN, pad, K)
    if case is None:
        return
    ws, pad = case
    x, W, b = randn(rng, xs, dtype), randn(rng, ws, dtype), randn(rng, (FN,), dtype)
    out = F.conv2d(x, W, b, stride, pad, algorithm="direct")
    assert_close(out, R.conv2d_forward(up(x), up(W), up(b), stride, pad), dtype)
    dout = randn(rng, out.shape, dtype)
    assert_close(
        F.conv2d_backward_data(dout, W, xs, stride, pad, algorithm="direct"),
        R.conv2d_backward_data(up(dout), up(W), xs, stride, pad),
        dtype,
    )
    assert_close(
        F.conv2d_backward_weight(x, dout, ws, stride, pad, algorithm="direct"),
        R.conv2d_backward_weight(up(x), up(dout), (K, K), stride, pad),
        dtype,
    )


@HYP
@given(
    st.integers(1, 20), st.integers(1, 5), st.integers(1, 9), st.integers(1, 11),
    st.integers(1, 11), st.integers(0, 4), st.sampled_from(CONV_K), st.integers(0, 2**32 - 1),
    st.sampled_from(DTYPES), st.sampled_from([1, 2]),
)
def test_conv2d_3x3_kernels_hypothesis(N, C, FN, H, W, pad, K, seed, dtype, stride):
    rng = np.random.default_rng(seed)
    test_conv2d_3x3_kernels_parity((N, C, H, W), FN, pad, K, stride, dtype, rng)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("K", CONV_K)
@pytest.mark.parametrize("xs,FN,pad", [((23, 3, 5, 7), 10, 1), ((5, 2, 6, 6), 6, 2),
                                      ((19, 16, 5, 5), 33, 1)])
def test_conv2d_3x3_kernels_thread_count_invariance(xs, FN, pad, K, stride, restore_threads, rng):
    """Same bits at 1 thread and at all threads (both parallel decompositions)."""
    x = rng.standard_normal(xs)
    W = rng.standard_normal((FN, xs[1], K, K))
    results = []
    for n in (1, restore_threads):
        fastnn.set_num_threads(n)
        out = F.conv2d(x, W, None, stride, pad, algorithm="direct")
        results.append((out,
                        F.conv2d_backward_data(out, W, xs, stride, pad, algorithm="direct"),
                        F.conv2d_backward_weight(x, out, W.shape, stride, pad, algorithm="direct")))
    for a, b in zip(*results):
        assert bits_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("K", CONV_K)
@pytest.mark.parametrize("fb", [8, 4, 3, 1])
@pytest.mark.parametrize("C,Wp,L", [(1, 3, 1), (3, 7, 47), (5, 11, 301)])
def test_conv2d_register_block_sums_and_stays_in_its_scratch(C, Wp, L, fb, K, dtype, rng):
    """The generated forward blocks (no bounds checks of their own), 4 filters (8 for 1x1) or
    the 1-filter block for those left over: ``L`` rounded up to whole blocks, they write nothing past the
    accumulator rows the kernel sizes for them, and their sums match float64 ones (also in
    the cells past ``L`` that the kernel drops)."""
    span = KC3._span(np.dtype(dtype).itemsize)
    nb = -(-L // span)
    n = nb * span
    S = n + (K - 1) * (Wp + 1)  # the scratch row the kernel reads: (K - 1) rows and cells past
    xp = randn(rng, (C, S), dtype)
    W = randn(rng, (10, C, K, K), dtype)
    offs = KC3._tap_offsets(K, 1, Wp, 0)
    sentinel = dtype(1234.5)
    store = np.full(8 * n + 8, sentinel, dtype=dtype)
    acc = store[: 8 * n].reshape(8, n)
    acc[...] = randn(rng, (8, n), dtype)
    want = up(acc).copy()
    for i in range(fb):
        for c in range(C):
            for t in range(K * K):
                want[i] += up(W)[2 + i, c, t // K, t % K] * up(xp)[c, offs[t] : offs[t] + n]
    KC3._blocks(xp, W.ravel(), K * K, 2, fb, offs, acc, nb)
    assert (store[8 * n :] == sentinel).all()
    assert_close(acc, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_narrow_rows_stay_in_their_rows(dtype, rng):
    """The generated short-row code of the fused softmax-cross-entropy (no bounds checks of its
    own; a row's whole-vector store runs into the next rows): for every row length it takes
    (one or two vectors of lanes) and blocks of rows at any offset, it writes only rows
    ``i0:i1`` of ``dx``, of a one-hot target's ``labels`` and of ``arg``, ``aux[:i1 - i0]``,
    and its values are the reference's."""

    @numba.njit
    def call(x, labels, t, dx, arg, aux, i0, i1, dense, eps, inv_n):
        N, K = x.shape
        KS._narrow_rows(x.reshape(N * K), labels, t.reshape(t.shape[0] * K), dx.reshape(N * K),
                        arg, aux, i0, i1, K, dense, eps, inv_n)

    lanes = 64 // np.dtype(dtype).itemsize
    sentinel = dtype(1234.5)
    for K in range(1, 2 * lanes + 1):
        for N, i0, i1 in ((1, 0, 1), (5, 0, 5), (7, 2, 5), (9, 8, 9)):
            x = randn(rng, (N, K), dtype) * dtype(3)
            lab = rng.integers(0, K, N)
            y = R.softmax(up(x))
            for dense in (0, 1):
                t = np.eye(K, dtype=dtype)[lab] if dense else np.empty((0, K), dtype)
                store = np.full(N * K + 2 * lanes, sentinel, dtype=dtype)
                dx = store[: N * K].reshape(N, K)
                labels = np.full(N, -7, np.intp) if dense else lab.astype(np.intp)
                arg = np.full(N + 1, sentinel, dtype=dtype)
                aux = np.full(N + 1, sentinel, dtype=dtype)
                call(x, labels, t, dx, arg, aux, i0, i1, dense, dtype(1e-7), dtype(1 / N))
                rows = np.arange(i0, i1)
                assert (store[N * K :] == sentinel).all(), (K, N)
                assert (np.delete(dx, rows, axis=0) == sentinel).all(), (K, N)
                assert (np.delete(arg, rows) == sentinel).all() and (aux[i1 - i0 :] == sentinel).all()
                if dense:
                    assert (np.delete(labels, rows) == -7).all()
                np.testing.assert_array_equal(labels[i0:i1], lab[i0:i1])
                hot = np.eye(K)[lab[i0:i1]]
                assert_close(dx[i0:i1], (y[i0:i1] - hot) / N, dtype)
                assert_close(arg[i0:i1], y[rows, lab[i0:i1]] + 1e-7, dtype)
                assert_close(aux[: i1 - i0], up(x)[rows, lab[i0:i1]] - up(x)[i0:i1].max(axis=1),
                             dtype)


# --------------------------------------------------------------------------- softmax regression
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("eps", [0.0, 1e-7])
@pytest.mark.parametrize("target", ["labels", "labels_n1", "one_hot"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 2), (7, 33, 3), (256, 784, 10), (130, 67, 11)])
def test_linear_softmax_cross_entropy_parity(shape, target, eps, dtype, rng):
    """The fused kernel (serial below SERIAL_MAX_SIZE elements of x, parallel above; odd row
    and class counts hit the 4x2 blocking remainders) against Affine + SoftmaxWithLoss."""
    N, D, K = shape
    x, W, b = randn(rng, (N, D), dtype), randn(rng, (D, K), dtype), randn(rng, (K,), dtype)
    labels = rng.integers(0, K, N)
    t = {"labels": labels, "labels_n1": labels.reshape(N, 1),
         "one_hot": np.eye(K, dtype=dtype)[labels]}[target]
    got = F.linear_softmax_cross_entropy_with_grad(x, W, b, t, eps)
    want = R.linear_softmax_cross_entropy(up(x), up(W), up(b), t, eps)
    for g, w in zip(got, want):
        assert_close(g, w, dtype)


def test_linear_softmax_cross_entropy_thread_invariant(rng, restore_threads):
    x, W, b = randn(rng, (300, 200)), randn(rng, (200, 7)), randn(rng, (7,))
    t = rng.integers(0, 7, 300)
    numba.set_num_threads(1)
    one = F.linear_softmax_cross_entropy_with_grad(x, W, b, t, 0.0)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    many = F.linear_softmax_cross_entropy_with_grad(x, W, b, t, 0.0)
    for a, c in zip(one, many):
        np.testing.assert_array_equal(a, c)


def test_linear_softmax_cross_entropy_errors():
    f = F.linear_softmax_cross_entropy_with_grad
    x, W, b, t = np.ones((4, 3)), np.ones((3, 2)), np.ones(2), np.zeros(4, int)
    with pytest.raises(ValueError, match="linear_softmax_cross_entropy_with_grad.*x \\(4, 3\\)"):
        f(x, np.ones((5, 2)), b, t)
    with pytest.raises(ValueError, match="linear_softmax_cross_entropy_with_grad.*bias"):
        f(x, W, np.ones(3), t)
    with pytest.raises(ValueError, match="linear_softmax_cross_entropy_with_grad"):
        f(x, W, b, np.array([0, 1, 2, 0]))  # label 2 out of range for K=2
    with pytest.raises(ValueError, match="linear_softmax_cross_entropy_with_grad"):
        f(x, W, b, t, eps=-1)
    with pytest.raises((TypeError, ValueError), match="linear_softmax_cross_entropy_with_grad"):
        f(x, W, b, np.full(4, 0.5))  # labels that are not integers
    with pytest.raises(TypeError, match="linear_softmax_cross_entropy_with_grad"):
        f(x, W, b, np.zeros(4, bool))
    with pytest.raises(ValueError, match="linear_softmax_cross_entropy_with_grad"):
        f(np.ones(3), W, b, t)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("pad", [0, 1, 4])
@pytest.mark.parametrize("where", ["x", "W", "dout"])
def test_conv2d_inf_nan_like_reference(where, pad, algorithm, rng):
    """One inf and one NaN in x, W or dout: every op gives the book's NaN/inf pattern exactly.

    The book multiplies padding zeros (``0 * inf = NaN``); the direct kernels skip padded taps and
    the gemm kernels multiply extra zero columns, so without care NaN appears or goes missing
    next to the padding and at row ends (even with pad 0).
    """
    xs, ws = (2, 2, 6, 7), (3, 2, 3, 3)
    x, W = rng.standard_normal(xs), rng.standard_normal(ws)
    OH, OW = xs[2] + 2 * pad - 2, xs[3] + 2 * pad - 2
    dout = rng.standard_normal((2, 3, OH, OW))
    a = {"x": x, "W": W, "dout": dout}[where]
    a[0, 0, 0, 0] = np.inf  # a corner: next to the padding
    a[1, 1, 2, 0] = -np.inf  # row start: reached by the previous row's extra gemm columns
    a[1, 0, 1, -1] = np.nan
    b = np.zeros(3)
    with np.errstate(all="ignore"):
        pairs = [
            (F.conv2d(x, W, b, 1, pad, algorithm), R.conv2d_forward(x, W, b, 1, pad)),
            (F.conv2d_backward_data(dout, W, xs, 1, pad, algorithm),
             R.conv2d_backward_data(dout, W, xs, 1, pad)),
            (F.conv2d_backward_weight(x, dout, ws, 1, pad, algorithm),
             R.conv2d_backward_weight(x, dout, ws[2:], 1, pad)),
        ]
    for got, want in pairs:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_conv2d_backward_weight_inf_in_an_all_padding_window(algorithm):
    """pad >= filter: an output position sees only padding; the book still gives 0 * inf = NaN."""
    x = np.ones((1, 1, 2, 2))
    dout = np.zeros((1, 1, 6, 6))
    dout[0, 0, 0, 0] = np.inf  # its 1x1 window is padding only
    with np.errstate(all="ignore"):
        got = F.conv2d_backward_weight(x, dout, (1, 1), 1, 2, algorithm)
        want = R.conv2d_backward_weight(x, dout, (1, 1), 1, 2)
    assert np.isnan(want).all()
    np.testing.assert_array_equal(got, want)


@HYP
@given(conv_geometry())
def test_im2col_col2im_hypothesis(geom):
    xs, ws, stride, pad, seed, dtype = geom
    FH, FW = ws[2:]
    rng = np.random.default_rng(seed)
    x = randn(rng, xs, dtype)
    col = F.im2col(x, FH, FW, stride, pad)
    np.testing.assert_array_equal(col, R.im2col(x, FH, FW, stride, pad))
    y = randn(rng, col.shape, dtype)
    back = F.col2im(y, xs, FH, FW, stride, pad)
    assert_close(back, R.col2im(up(y), xs, FH, FW, stride, pad), dtype)
    if dtype == np.float64:
        np.testing.assert_allclose(np.sum(col * y), np.sum(x * back), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- max pooling
def _pool(x, c, **kw):
    return F.max_pool2d(x, c.ph, c.pw, c.stride, c.pad, **kw)


class _Geom:
    def __init__(self, ph, pw, stride, pad):
        self.ph, self.pw, self.stride, self.pad = ph, pw, stride, pad


def _check_pool_forward(x, c):
    """fastnn's values and argmax equal the reference's exactly (both in x's float dtype).

    ``c`` is a pool case (anything with ``ph, pw, stride, pad``).
    """
    out, am = F.max_pool2d(x, c.ph, c.pw, c.stride, c.pad, return_argmax=True)
    ref_out, ref_am = R.max_pool2d_forward(up(x), c.ph, c.pw, c.stride, c.pad)
    assert out.shape == am.shape == ref_out.shape
    assert out.dtype == (x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
    assert am.dtype.kind in "iu"
    np.testing.assert_array_equal(out, ref_out.astype(out.dtype))  # NaN == NaN here
    np.testing.assert_array_equal(am.astype(np.intp), ref_am)
    return out, am


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_max_pool2d_parity(pool_case, dtype, rng):
    _check_pool_forward(randn(rng, pool_case.x_shape, dtype), pool_case)


def test_max_pool2d_default_returns_only_values(rng):
    x = rng.standard_normal((2, 2, 4, 4))
    out = F.max_pool2d(x, 2, 2)
    assert isinstance(out, np.ndarray) and out.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(out, R.max_pool2d_forward(x, 2, 2)[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_max_pool2d_backward_parity(pool_case, dtype, rng):
    c = pool_case
    x = randn(rng, c.x_shape, dtype)
    _, am = _pool(x, c, return_argmax=True)
    dout = randn(rng, c.out_shape, dtype)
    got = F.max_pool2d_backward(dout, am, c.x_shape, c.ph, c.pw, c.stride, c.pad)
    want = R.max_pool2d_backward(up(dout), am.astype(np.intp), c.x_shape, c.ph, c.pw, c.stride, c.pad)
    assert_close(got, want, dtype)


def test_max_pool2d_ties_integer_valued(pool_case, rng):
    """Integer-valued input has many ties: the first maximum (row-major) wins, as np.argmax."""
    x = rng.integers(0, 3, size=pool_case.x_shape).astype(np.float64)
    _check_pool_forward(x, pool_case)


def test_max_pool2d_ties_integer_dtype(pool_case, rng):
    """int64 input: float64 output, same first-maximum rule."""
    x = rng.integers(-2, 2, size=pool_case.x_shape)
    out, _ = _check_pool_forward(x, pool_case)
    assert out.dtype == np.float64


def test_max_pool2d_all_equal_picks_first_real_cell(pool_case):
    """All-equal input: every window's argmax is its first non-padded cell."""
    c = pool_case
    out, am = _check_pool_forward(np.full(c.x_shape, 7.0), c)
    assert np.all(out == 7.0)
    OH, OW = c.out_hw
    ky = np.maximum(0, c.pad - c.stride * np.arange(OH))  # first real row in each window
    kx = np.maximum(0, c.pad - c.stride * np.arange(OW))
    expected = ky[:, None] * c.pw + kx[None, :]
    np.testing.assert_array_equal(am, np.broadcast_to(expected, am.shape))


def test_max_pool2d_padding_never_wins(pool_case, rng):
    """All-negative input: padded cells (zeros in the book) must never be the maximum."""
    c = pool_case
    x = -1.0 - rng.random(c.x_shape)
    out, am = _check_pool_forward(x, c)
    assert np.all(out <= -1.0)
    # and the gradient only reaches real cells: total mass is preserved
    dout = np.ones(c.out_shape)
    dx = F.max_pool2d_backward(dout, am, c.x_shape, c.ph, c.pw, c.stride, c.pad)
    np.testing.assert_allclose(dx.sum(), dout.sum())


def test_max_pool2d_padding_hand_example():
    """2x2 window, stride 1, pad 1 on a 2x2 plane of -1: 3x3 outputs, all -1; argmax points at
    the one real cell of each corner window."""
    x = -np.ones((1, 1, 2, 2))
    out, am = F.max_pool2d(x, 2, 2, stride=1, pad=1, return_argmax=True)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 3, 3)))
    np.testing.assert_array_equal(am[0, 0], [[3, 2, 2], [1, 0, 0], [1, 0, 0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool2d_all_minus_inf_window_padding_still_loses(dtype):
    """A border window whose real cells are all -inf (the reference's padding value): the
    maximum is -inf and the argmax is still a real cell, in the fastnn kernel and the reference
    alike (the fuzz found the reference's first-padded-cell answer, plane [inf, -inf, nan, -inf])."""
    x = np.array([[[[0.8, -1.4, np.inf, -2.9]], [[np.inf, -np.inf, np.nan, -np.inf]]]], dtype)
    out, am = F.max_pool2d(x, 2, 2, stride=1, pad=1, return_argmax=True)
    want_out, want_am = R.max_pool2d_forward(x, 2, 2, stride=1, pad=1)
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(am, want_am)
    assert am[0, 1, 0, 4] == 2 and out[0, 1, 0, 4] == -np.inf  # the window's one real cell
    np.testing.assert_array_equal(am[0, 1, 0], [3, 2, 3, 2, 2])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(100, 64, 8, 8), (3, 7, 8, 8), (2, 3, 16, 16), (1, 1, 6, 8),
                                   (3, 3, 2, 4), (5, 3, 4, 8), (7, 9, 4, 4), (3, 7, 9, 8)],
                         ids=lambda s: "x".join(map(str, s)))
def test_max_pool2x2_packed_rows(shape, dtype, rng):
    """2x2 stride 2 on images of width 2*OW with OW a quarter or half of a vector's lanes
    (8x8 and 16x16 in float32, 4x4 and 8x8 in float64): whole window rows share a vector.
    Chunks that end early (windows not a multiple of the lanes), odd heights (planes not
    stacked), ties, +-inf and NaN: values, argmax and gradient equal the reference's bit for
    bit, and an argmax outside [0, 4) in such a chunk is rejected."""
    for case in ("normal", "ties", "special"):
        x = randn(rng, shape, dtype)
        if case == "ties":
            x = np.round(x)
        elif case == "special":
            x.reshape(-1)[rng.choice(x.size, 5, replace=False)] = [np.nan, np.inf, -np.inf, np.nan, 0]
        c = SimpleNamespace(ph=2, pw=2, stride=2, pad=0)
        _, am = _check_pool_forward(x, c)
        dout = randn(rng, am.shape, dtype)
        got = F.max_pool2d_backward(dout, am, shape, 2, 2, 2, 0)
        np.testing.assert_array_equal(got, R.max_pool2d_backward(dout, am.astype(np.intp), shape, 2, 2, 2, 0))
    am = am.copy()
    am.reshape(-1)[-1] = 4  # the last chunk's last window
    with pytest.raises(ValueError, match="max_pool2d_backward"):
        F.max_pool2d_backward(dout, am, shape, 2, 2, 2, 0)


@pytest.mark.parametrize("stride,pad,peak,windows", [(1, 0, (2, 2), 9), (2, 1, (1, 1), 4)])
def test_max_pool2d_backward_overlapping_windows_accumulate(stride, pad, peak, windows, rng):
    """3x3 windows with stride < 3: a peak shared by several windows collects all their
    gradients (3x3 s1: the centre of a 5x5 is in all 9 windows; 3x3 s2 p1: (1, 1) is in 4)."""
    x = rng.random((1, 1, 5, 5))
    x[0, 0][peak] = 10.0
    out, am = F.max_pool2d(x, 3, 3, stride, pad, return_argmax=True)
    assert out.shape == (1, 1, 3, 3)
    dout = rng.random(out.shape) + 0.5
    dx = F.max_pool2d_backward(dout, am, x.shape, 3, 3, stride, pad)
    contains_peak = out == 10.0
    assert contains_peak.sum() == windows
    np.testing.assert_allclose(dx[0, 0][peak], dout[contains_peak].sum(), rtol=1e-14)
    np.testing.assert_allclose(dx.sum(), dout.sum(), rtol=1e-14)
    want = R.max_pool2d_backward(dout, am.astype(np.intp), x.shape, 3, 3, stride, pad)
    assert_close(dx, want, np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_max_pool2d_backward_all_equal_overlap(dtype):
    """All-equal input, 3x3 stride 1: each window routes to its top-left cell."""
    x = np.zeros((1, 1, 4, 4), dtype)
    out, am = F.max_pool2d(x, 3, 3, 1, 0, return_argmax=True)
    dx = F.max_pool2d_backward(np.ones_like(out), am, x.shape, 3, 3, 1, 0)
    want = np.zeros((4, 4), dtype)
    want[:2, :2] = 1
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx[0, 0], want)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("geom", [(2, 2, 2, 0), (3, 3, 1, 0), (3, 3, 2, 1), (2, 3, 1, 1)])
def test_max_pool2d_nan_like_reference(geom, dtype, rng):
    """A NaN in a window makes the output NaN, and the first NaN is the argmax (NumPy's rule)."""
    ph, pw, stride, pad = geom
    x = randn(rng, (2, 2, 6, 6), dtype)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 1, 2] = np.nan  # two NaNs in one window: the first wins
    x[1, 1, 0, 0] = np.nan  # corner, next to padding
    x[1, 0, 5, 3] = np.nan
    out, _ = _check_pool_forward(x, _Geom(ph, pw, stride, pad))
    assert np.isnan(out).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(7, 5, 4, 6), (3, 50, 2, 2), (2, 3, 7, 5), (1, 1, 130, 4)])
def test_max_pool2x2_grouped_planes(shape, dtype, rng):
    """The 2x2 kernels stack planes of even height into groups (a short last group; odd
    heights one plane per group): forward and backward equal the general kernels', also with a
    NaN in one plane of a group (the group is redone by the NaN path)."""
    x = rng.integers(-3, 4, shape).astype(dtype)
    x[-1, -1, 0, 0] = np.nan
    N, C, H, W = shape
    out, am = F.max_pool2d(x, 2, 2, 2, 0, return_argmax=True)
    g_out = np.empty_like(out)
    g_am = np.empty(am.shape, np.int8)
    KP.max_pool2d_forward_kernel(x, 2, 2, 2, 0, g_out, g_am)
    assert bits_equal(out, g_out)
    np.testing.assert_array_equal(am, g_am)
    dout = randn(rng, out.shape, dtype)
    dx = F.max_pool2d_backward(dout, am, shape, 2, 2, 2, 0)
    assert_close(dx, R.max_pool2d_backward(up(dout), am.astype(np.intp), shape, 2, 2, 2, 0), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_max_pool2x2_fast_path_special_values(dtype, rng):
    """The 2x2 stride-2 kernel (branch-free in float32, planes with NaN or inf redone) against
    the reference, and bit for bit against the general ``max_pool2d_forward_kernel`` on the
    same windows."""
    x = rng.integers(-2, 3, (3, 5, 6, 9)).astype(dtype)  # ties everywhere; odd width
    x[0, 0] = -0.0
    x[0, 0, 2, 3] = 0.0  # +0 after -0 in a window: the first (-0) wins
    x[0, 1, 1, 1] = np.inf  # an inf plane (no NaN): redone, same result
    x[0, 2, 4, 4:6] = -np.inf
    x[1, 3, 0, 1] = np.nan
    x[1, 3, 1, 0] = np.nan  # two NaNs in one window: the first (row-major) wins
    x[2, 4] = np.inf  # a plane of inf only
    out, am = _check_pool_forward(x, _Geom(2, 2, 2, 0))
    OH, OW = 3, 4
    g_out = np.empty((3, 5, OH, OW), dtype)
    g_am = np.empty((3, 5, OH, OW), np.int8)
    KP.max_pool2d_forward_kernel(np.ascontiguousarray(x), 2, 2, 2, 0, g_out, g_am)
    assert bits_equal(out, g_out)
    np.testing.assert_array_equal(am, g_am)
    assert np.signbit(out[0, 0, 0, 0])  # -0.0 kept


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("geom", [(3, 3, 2, 1), (3, 3, 1, 1), (2, 2, 1, 0), (3, 2, 3, 1),
                                  (4, 5, 2, 2), (1, 3, 2, 0)])
def test_max_pool2d_wide_rows_tap_major(geom, dtype, rng):
    """Rows with >= 24 interior windows take the tap-by-tap path: same values and first-maximum
    argmax as the reference, with ties, +-inf, and NaN planes (window by window) beside them."""
    ph, pw, stride, pad = geom
    x = rng.integers(-2, 3, (2, 3, 7, 90)).astype(dtype)  # many ties
    x[0, 1, 3, 10:14] = np.inf  # tied +inf in one window: the first wins
    x[1, 0, 2, 40] = -np.inf
    x[1, 2, 4, 33] = np.nan  # this plane goes window by window
    _check_pool_forward(x, _Geom(ph, pw, stride, pad))
    _check_pool_forward(randn(rng, (1, 2, 5, 61), dtype), _Geom(ph, pw, stride, pad))


@st.composite
def pool_geometry(draw):
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pad = draw(st.integers(0, min(ph, pw) - 1))
    stride = draw(st.integers(1, 3))
    H = draw(st.integers(max(1, ph - 2 * pad), 8))
    W = draw(st.integers(max(1, pw - 2 * pad), 8))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    ties = draw(st.booleans())
    return (N, C, H, W), ph, pw, stride, pad, seed, ties


@HYP
@given(pool_geometry())
def test_max_pool2d_hypothesis(geom):
    xs, ph, pw, stride, pad, seed, ties = geom
    rng = np.random.default_rng(seed)
    # integer values give ties; negative values make the padding matter
    x = rng.integers(-4, 0, size=xs).astype(np.float64) if ties else rng.standard_normal(xs)
    out, am = F.max_pool2d(x, ph, pw, stride, pad, return_argmax=True)
    ref_out, ref_am = R.max_pool2d_forward(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(am.astype(np.intp), ref_am)
    dout = rng.standard_normal(out.shape)
    dx = F.max_pool2d_backward(dout, am, xs, ph, pw, stride, pad)
    assert_close(dx, R.max_pool2d_backward(dout, ref_am, xs, ph, pw, stride, pad), np.float64)


# --------------------------------------------------------------------------- softmax / loss
@pytest.mark.parametrize("shape", [(7,), (4, 7), (2, 3, 5), (1, 1)])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_parity(shape, dtype, rng):
    x = randn(rng, shape, dtype) * 3
    got = F.softmax(x)
    assert_close(got, R.softmax(up(x)), dtype)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_extreme_logits(dtype):
    x = np.array([[1e30, -1e30, 0.0], [-1e30, -1e30, -1e30], [1e30, 1e30, -1e30]], dtype)
    got = F.softmax(x)
    assert np.all(np.isfinite(got))
    assert_close(got, R.softmax(up(x)), dtype)


def _targets(kind, labels, K, dtype=np.float64):
    if kind == "labels":
        return labels
    if kind == "labels_col":
        return labels.reshape(-1, 1)
    return np.eye(K, dtype=dtype)[labels]


TARGET_KINDS = ["labels", "labels_col", "onehot"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_row_max_and_argmax_helpers_special_values(dtype, rng):
    """The softmax kernels' row maximum (integer keys of the bits) and dense-target argmax equal
    NumPy's max / argmax with NaN (either sign), +-inf, signed zeros, ties and huge values."""
    out = np.empty(1, dtype)
    for trial in range(600):
        K = int(rng.integers(1, 70))
        row = (rng.integers(-2, 3, K) * rng.choice([1.0, 1e30, 1e-30])).astype(dtype)
        r = rng.random(K)
        row[(r > 0.1) & (r < 0.2)] = np.inf
        row[(r > 0.2) & (r < 0.3)] = -np.inf
        row[(r > 0.3) & (r < 0.4)] = -0.0
        if trial % 3 == 0:
            row[r < 0.05] = np.nan
        if trial % 5 == 0:
            row[r < 0.05] = -np.nan
        if trial % 7 == 0:
            row[:] = -np.inf
        if trial % 11 == 0:
            row[:] = -0.0
        KS._row_max_into(row, out, 0)
        want = np.max(row)
        assert out[0] == want or (np.isnan(out[0]) and np.isnan(want)), (row, out[0])
        assert KS._argmax_at(row.reshape(1, K), 0) == np.argmax(row), row
        m = KS._max_at(row.reshape(1, K), 0)  # the short-row maximum
        assert m == want or (np.isnan(m) and np.isnan(want)), (row, m)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_vectorised_exp_within_an_ulp_and_special_values(dtype, rng):
    """The kernels' own ``exp`` (range reduction, polynomial, 2**k by a bit cast) against
    NumPy's over the whole range of arguments ``<= 0``: within 1 ulp, exactly 1 at 0, 0 for
    arguments below -87.3 (float32) / -708.3 (float64) (results within 4 % of the smallest
    normal number), NaN kept."""
    info = np.finfo(dtype)
    lo = float(np.log(info.tiny))
    flush = -87.3 if dtype == np.float32 else -708.3
    x = np.concatenate([
        -rng.random(20000) * (-lo),  # the whole normal range
        -rng.random(2000) * 1e-6,  # tiny arguments (results near 1)
        -np.arange(0, int(-lo)) * np.log(2.0),  # k*ln2: range-reduction boundaries
    ]).astype(dtype)
    y = np.empty_like(x)
    s = KV._exp_shifted_row(x, dtype(0), y)
    want = np.exp(x.astype(np.float64))
    kept = x >= dtype(flush)
    ulps = np.abs(y - want)[kept] / np.spacing(want[kept].astype(dtype))
    # under NUMBA_DISABLE_JIT the Python body is NumPy's exp: 2-3 ulp in float32
    assert ulps.max() <= (3.0 if numba.config.DISABLE_JIT else 1.0), ulps.max()
    assert (y[~kept] == 0).all() and (~kept).sum() > 0
    np.testing.assert_allclose(s, want.sum(), rtol=1e-12 if dtype == np.float64 else 1e-5)
    special = np.array([0.0, -0.0, -np.inf, np.nan, lo - 1.0, 2 * lo, -1e30], dtype)
    y = np.empty_like(special)
    KV._exp_shifted_row(special, dtype(0), y)
    assert list(y[:3]) == [1.0, 1.0, 0.0] and np.isnan(y[3])
    assert list(y[4:]) == [0.0, 0.0, 0.0]


def _elementwise(scalar):
    """A compiled loop ``out[i] = scalar(v[i])`` over a 1-D array."""

    @numba.njit(error_model="numpy")
    def run(v, out):
        for i in range(v.shape[0]):
            out[i] = scalar(v[i])

    return run


_exps = _elementwise(KV._exp_core)
_logs = _elementwise(KV._log)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_vectorised_exp_core_both_signs(dtype, rng):
    """``_exp_core`` (the sigmoid's ``exp``, whose caller clamps the argument) over its whole
    domain, positive arguments included: within 1.5 ulp of the extended-precision exp (the
    polynomial's and the final roundings: ~1.15 at most here, NumPy's float32 exp 2.3) up to
    ``(emax - 1/2) * ln2`` (88.38 float32, 709.44 float64), ``inf`` from there to the clamp
    (``2**emax`` is built as inf's bits), NaN kept."""
    lo, top = (-87.3, 89.0) if dtype == np.float32 else (-708.3, 710.0)
    emax = 128 if dtype == np.float32 else 1024
    big = float(np.nextafter(dtype((emax - 0.5) * np.log(2.0)), dtype(0)))
    x = np.concatenate([
        lo + rng.random(40000) * (big - lo),  # the finite results
        np.arange(int(lo), int(big)).astype(np.float64),  # integers
        np.arange(int(lo / np.log(2.0)), int(big / np.log(2.0))) * np.log(2.0),  # k*ln2
        [0.0, -0.0],
    ]).astype(dtype)
    x = x[(x >= dtype(lo)) & (x <= dtype(big))]
    y = np.empty_like(x)
    _exps(x, y)
    want = np.exp(x.astype(np.longdouble))
    fin = want <= np.finfo(dtype).max
    ulps = np.abs(y[fin] - want[fin]) / np.spacing(want[fin].astype(dtype)).astype(np.longdouble)
    assert float(ulps.max()) <= (3.0 if numba.config.DISABLE_JIT else 1.5), float(ulps.max())
    over = np.array([dtype((emax - 0.5) * np.log(2.0)) * dtype(1.0001), dtype(top), np.nan], dtype)
    y = np.empty_like(over)
    with np.errstate(over="ignore"):
        _exps(over, y)
    assert np.isinf(y[:2]).all() and (y[:2] > 0).all() and np.isnan(y[2])




@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_vectorised_log_within_an_ulp_and_special_values(dtype, rng):
    """The kernels' own ``log`` (musl's, branch-free) against the float64 log: within 1 ulp
    over the whole positive range including subnormals, exactly 0 at 1, and NumPy's special
    values (0 -> -inf, inf -> inf, negative and NaN -> NaN)."""
    info = np.finfo(dtype)
    v = np.concatenate([
        np.exp(rng.uniform(np.log(float(info.tiny)), np.log(float(info.max)), 20000)),
        1.0 + (rng.random(2000) - 0.5) * 1e-3,  # near 1, where the result is small
        rng.random(2000) * float(info.tiny),  # subnormals
        [2.0 ** -0.5, 2.0 ** 0.5, 1e-7, 1.0 + 1e-7],
    ]).astype(dtype)
    v = v[v > 0]
    got = np.empty_like(v)
    _logs(v, got)
    want = np.log(v.astype(np.float64))
    ulps = np.abs(got - want) / np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    # under NUMBA_DISABLE_JIT the Python body is NumPy's log: 2-3 ulp on float32 subnormals
    assert ulps.max() <= (3.0 if numba.config.DISABLE_JIT else 1.0), ulps.max()
    special = np.array([1.0, 0.0, -0.0, np.inf, -1.0, -np.inf, np.nan], dtype)
    out = np.empty_like(special)
    _logs(special, out)
    assert list(out[:4]) == [0.0, -np.inf, -np.inf, np.inf] and np.isnan(out[4:]).all()


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_cross_entropy_parity(kind, dtype, rng):
    N, K = 6, 5
    y = R.softmax(rng.standard_normal((N, K))).astype(dtype)
    t = _targets(kind, rng.integers(0, K, N), K)
    got = F.cross_entropy(y, t)
    assert np.asarray(got).dtype == dtype and np.ndim(got) == 0
    assert_close(got, R.cross_entropy(up(y), t), dtype)


@pytest.mark.parametrize("onehot", [False, True])
def test_cross_entropy_single_sample(onehot, rng):
    """1-D ``y`` (one sample): label scalar or 1-D one-hot, as the book's reshape does."""
    y = R.softmax(rng.standard_normal(5))
    t = np.eye(5)[3] if onehot else np.int64(3)
    assert_close(F.cross_entropy(y, t), R.cross_entropy(y, t), np.float64)
    np.testing.assert_allclose(F.cross_entropy(y, t), -np.log(y[3] + 1e-7), rtol=1e-12)


@pytest.mark.parametrize("eps", [1e-7, 0.0], ids=["eps1e-7", "eps0"])
@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_parity(kind, eps, dtype, rng):
    N, K = 7, 4
    x = randn(rng, (N, K), dtype) * 2
    t = _targets(kind, rng.integers(0, K, N), K)
    loss, y = F.softmax_cross_entropy(x, t, eps=eps)
    ref_loss, ref_y = R.softmax_cross_entropy_forward(up(x), t, eps=eps)
    assert np.asarray(loss).dtype == dtype and np.ndim(loss) == 0
    assert_close(y, ref_y, dtype)
    assert_close(loss, ref_loss, dtype)


@pytest.mark.parametrize("eps", [1e-7, 0.0], ids=["eps1e-7", "eps0"])
@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(7, 4), (1, 3), (45, 1000), (3, 1), (100, 10), (33, 200),
                                   (20, 700), (300, 32), (4000, 10)])
def test_softmax_cross_entropy_with_grad_parity(shape, kind, eps, dtype, rng):
    """The fused one-pass loss + gradient equals forward + backward of the reference.

    Rows of up to 32 classes take the transposed narrow path, in passes of 128 rows ((300, 32):
    three passes; (4000, 10): the parallel kernel). As in the book: the loss follows the logits' dtype, the gradient follows NumPy promotion of
    the logits and a dense (one-hot) target.
    """
    N, K = shape
    x = randn(rng, (N, K), dtype) * 3
    t = _targets(kind, rng.integers(0, K, N), K)
    loss, dx = F.softmax_cross_entropy_with_grad(x, t, eps=eps)
    ref_loss, ref_y = R.softmax_cross_entropy_forward(up(x), t, eps=eps)
    ref_dx = R.softmax_cross_entropy_backward(ref_y, t)
    assert np.asarray(loss).dtype == dtype and np.ndim(loss) == 0
    assert dx.dtype == np.result_type(dtype, np.asarray(t).dtype if np.asarray(t).size == x.size else dtype)
    assert_close(loss, ref_loss, dtype)
    rtol, atol = _tols(dtype)
    np.testing.assert_allclose(dx, ref_dx, rtol=rtol, atol=atol)
    # and what the two-pass API gives
    _, y = F.softmax_cross_entropy(x, t, eps=eps)
    np.testing.assert_allclose(dx, F.softmax_cross_entropy_backward(y, t), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_with_grad_fast_path_equals_converted_input(dtype, rng):
    """Inputs taken as they are (C-contiguous x, intp labels, one-hot of x's dtype) and inputs
    converted first (other label dtypes and shapes, read-only or strided x, int eps) give
    the same numbers; the kernel's argmax of a one-hot target is np.argmax's."""
    N, K = 37, 10
    x = randn(rng, (N, K), dtype) * 3
    lab = rng.integers(0, K, N)
    loss, dx = F.softmax_cross_entropy_with_grad(x, lab.astype(np.intp))
    ro = x.copy()
    ro.flags.writeable = False
    wide = np.repeat(x, 2, axis=1)[:, ::2]
    for xi, ti in [(x, lab.astype(np.int8)), (x, lab.astype(np.uint16)), (x, lab.reshape(-1, 1)),
                   (x, lab.astype(np.float64)), (ro, lab), (wide, lab), (x.tolist(), lab.tolist()),
                   (x, np.eye(K, dtype=dtype)[lab]), (x, np.eye(K, dtype=dtype)[lab][::-1][::-1])]:
        if isinstance(xi, list) and dtype == np.float32:
            continue  # a list of floats is float64
        l2, d2 = F.softmax_cross_entropy_with_grad(xi, ti)
        assert l2 == loss and np.array_equal(d2, dx)
    l0, d0 = F.softmax_cross_entropy_with_grad(x, lab, eps=0.0)
    l1, d1 = F.softmax_cross_entropy_with_grad(x, lab, eps=0)
    assert l0 == l1 and np.array_equal(d0, d1)
    # soft / tied / NaN targets: the loss uses the first maximum (the first NaN), as np.argmax
    soft = rng.random((N, K)).astype(dtype)
    soft[0] = 0.5
    soft[1, 3] = np.nan
    soft[2, [2, 6]] = 2.0
    loss, dx = F.softmax_cross_entropy_with_grad(x, soft)
    ref_loss, ref_y = R.softmax_cross_entropy_forward(up(x), soft)
    assert_close(loss, ref_loss, dtype) if not np.isnan(ref_loss) else None
    rows = np.arange(N)
    want = -np.log(ref_y[rows, np.argmax(soft, axis=1)] + 1e-7)
    rtol, atol = _tols(dtype)
    np.testing.assert_allclose(loss, want.mean(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, R.softmax_cross_entropy_backward(ref_y, soft), rtol=rtol,
                               atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_with_grad_extremes(dtype):
    x = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 5.0], [np.nan, 0.0, 1.0]], dtype=dtype)
    t = np.array([1, 0, 2])
    loss, dx = F.softmax_cross_entropy_with_grad(x[:2], t[:2], eps=0.0)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(loss, 2e30, rtol=1e-6)
    np.testing.assert_allclose(dx, [[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0]])
    loss, dx = F.softmax_cross_entropy_with_grad(x, t)
    assert np.isnan(loss) and np.all(np.isnan(dx[2])) and np.all(np.isfinite(dx[:2]))


def test_softmax_cross_entropy_default_eps_is_the_books():
    x = np.array([[0.0, 2000.0]])
    loss, _ = F.softmax_cross_entropy(x, np.array([0]))
    np.testing.assert_allclose(loss, -np.log(1e-7), rtol=1e-12)


def test_softmax_cross_entropy_onehot_equals_labels(rng):
    x = rng.standard_normal((5, 3))
    lab = rng.integers(0, 3, 5)
    for eps in (1e-7, 0.0):
        l1, y1 = F.softmax_cross_entropy(x, lab, eps)
        l2, y2 = F.softmax_cross_entropy(x, np.eye(3)[lab], eps)
        l3, y3 = F.softmax_cross_entropy(x, lab.reshape(-1, 1), eps)
        assert l1 == l2 == l3
        assert bits_equal(y1, y2) and bits_equal(y1, y3)


@pytest.mark.parametrize("eps", [1e-7, 0.0], ids=["eps1e-7", "eps0"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_extreme_logits_finite(eps, dtype):
    x = np.array(
        [[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30], [-1e30, -1e30, -1e30], [1e30, 1e30, 1e30]], dtype
    )
    t = np.array([1, 0, 2, 0])
    loss, y = F.softmax_cross_entropy(x, t, eps=eps)
    assert np.isfinite(loss) and np.all(np.isfinite(y))
    assert np.asarray(loss).dtype == dtype and y.dtype == dtype
    ref_loss, ref_y = R.softmax_cross_entropy_forward(x, t, eps=eps)  # in x's own dtype
    np.testing.assert_allclose(y, ref_y, rtol=1e-6)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    dx = F.softmax_cross_entropy_backward(y, t)
    assert np.all(np.isfinite(dx))


def test_softmax_cross_entropy_eps0_underflow_exact():
    """eps=0 is the exact log-sum-exp loss, also where the true class's probability underflows
    to 0 (row 0: exp(-800) == 0 in float64, the loss is 800, not inf)."""
    x = np.array([[0.0, 800.0, -5.0], [1.0, 2.0, 3.0], [-700.0, 50.0, 49.0], [3.0, 3.0, 3.0]])
    t = np.array([0, 2, 0, 1])
    loss, y = F.softmax_cross_entropy(x, t, eps=0)
    assert y[0, 0] == 0.0 and y[2, 0] == 0.0
    ref_loss, _ = R.softmax_cross_entropy_forward(x, t, eps=0)
    assert np.isfinite(loss)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    # each row individually
    for i in range(4):
        li, _ = F.softmax_cross_entropy(x[i : i + 1], t[i : i + 1], eps=0)
        ri, _ = R.softmax_cross_entropy_forward(x[i : i + 1], t[i : i + 1], eps=0)
        np.testing.assert_allclose(li, ri, rtol=1e-12)
    np.testing.assert_allclose(F.softmax_cross_entropy(x[:1], t[:1], eps=0)[0], 800.0, rtol=1e-12)
    # with the book's eps the same row is capped at -log(1e-7)
    np.testing.assert_allclose(F.softmax_cross_entropy(x[:1], t[:1])[0], -np.log(1e-7), rtol=1e-12)


@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_backward_parity(kind, dtype, rng):
    N, K = 6, 5
    y = R.softmax(rng.standard_normal((N, K))).astype(dtype)
    t = _targets(kind, rng.integers(0, K, N), K, dtype=dtype)
    got = F.softmax_cross_entropy_backward(y, t)
    assert_close(got, R.softmax_cross_entropy_backward(up(y), t), dtype)


# --------------------------------------------------------------------------- element-wise
def _special_values(rng, dtype):
    x = randn(rng, (3, 4, 5), dtype)
    x.flat[:4] = [0.0, -0.0, np.nan, -np.inf]
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_relu_parity(dtype, rng):
    x = _special_values(rng, dtype)
    out, mask = F.relu(x)
    ref_out, ref_mask = R.relu_forward(x)
    assert out.dtype == dtype and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_array_equal(mask, x <= 0)
    np.testing.assert_array_equal(out, ref_out)  # exact, NaN passes through
    assert out is not x


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_relu_backward_parity_in_place(dtype, rng):
    x = randn(rng, (4, 6), dtype)
    mask = x <= 0
    dout = randn(rng, x.shape, dtype)
    want = R.relu_backward(dout, mask)
    got = F.relu_backward(dout, mask)
    assert got is dout
    np.testing.assert_array_equal(dout, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_parity(dtype, rng):
    x = randn(rng, (3, 4, 5), dtype) * 4
    x.flat[:4] = [0.0, 80.0, -80.0, -1000.0]
    got = F.sigmoid(x)
    with np.errstate(over="ignore"):
        want = R.sigmoid_forward(up(x))
    assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_backward_parity(dtype, rng):
    y = rng.random((4, 5)).astype(dtype)
    dout = randn(rng, (4, 5), dtype)
    assert_close(F.sigmoid_backward(dout, y), R.sigmoid_backward(up(dout), up(y)), dtype)


# --------------------------------------------------------------------------- op table
def _op_table(rng):
    """``{name: (fn, float_args, other_args)}``: one small call of every op.

    ``float_args`` are the arrays whose dtype the op follows; ``other_args`` are labels,
    argmax and masks (kept as they are). Geometry: 3x2 filter, stride 2, pad 1 on 6x5 images.
    """
    x = rng.standard_normal((3, 3, 6, 5))
    W = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    dout = rng.standard_normal((3, 4, 3, 3))
    dout1 = rng.standard_normal((3, 4, 6, 6))  # stride 1, pad 1: the "wide panel" gemm path
    col = rng.standard_normal((3 * 3 * 3, 3 * 3 * 2))
    pdout = rng.standard_normal((3, 3, 3, 3))
    _, am = R.max_pool2d_forward(x, 3, 2, 2, 1)
    logits = 2 * rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    onehot = np.eye(4)[labels]
    y = R.softmax(logits)
    mask = x <= 0
    return {
        "im2col": (lambda x: F.im2col(x, 3, 2, 2, 1), dict(x=x), {}),
        "col2im": (lambda col: F.col2im(col, (3, 3, 6, 5), 3, 2, 2, 1), dict(col=col), {}),
        "conv2d": (lambda x, W, b: F.conv2d(x, W, b, 2, 1), dict(x=x, W=W, b=b), {}),
        "conv2d_backward_data": (
            lambda dout, W: F.conv2d_backward_data(dout, W, (3, 3, 6, 5), 2, 1),
            dict(dout=dout, W=W),
            {},
        ),
        "conv2d_backward_weight": (
            lambda x, dout: F.conv2d_backward_weight(x, dout, (4, 3, 3, 2), 2, 1),
            dict(x=x, dout=dout),
            {},
        ),
        "conv2d_gemm": (
            lambda x, W, b: F.conv2d(x, W, b, 2, 1, algorithm="gemm"),
            dict(x=x, W=W, b=b),
            {},
        ),
        "conv2d_backward_data_gemm": (
            lambda dout, W: F.conv2d_backward_data(dout, W, (3, 3, 6, 5), 2, 1, algorithm="gemm"),
            dict(dout=dout, W=W),
            {},
        ),
        "conv2d_backward_weight_gemm": (
            lambda x, dout: F.conv2d_backward_weight(x, dout, (4, 3, 3, 2), 2, 1, algorithm="gemm"),
            dict(x=x, dout=dout),
            {},
        ),
        "conv2d_gemm_stride1": (
            lambda x, W, b: F.conv2d(x, W, b, 1, 1, algorithm="gemm"),
            dict(x=x, W=W, b=b),
            {},
        ),
        "conv2d_backward_data_gemm_stride1": (
            lambda dout, W: F.conv2d_backward_data(dout, W, (3, 3, 6, 5), 1, 1, algorithm="gemm"),
            dict(dout=dout1, W=W),
            {},
        ),
        "conv2d_backward_weight_gemm_stride1": (
            lambda x, dout: F.conv2d_backward_weight(x, dout, (4, 3, 3, 2), 1, 1, algorithm="gemm"),
            dict(x=x, dout=dout1),
            {},
        ),
        "conv2d_backward_bias": (F.conv2d_backward_bias, dict(dout=dout), {}),
        "max_pool2d": (
            lambda x: F.max_pool2d(x, 3, 2, 2, 1, return_argmax=True),
            dict(x=x),
            {},
        ),
        "max_pool2d_backward": (
            lambda dout, am: F.max_pool2d_backward(dout, am, (3, 3, 6, 5), 3, 2, 2, 1),
            dict(dout=pdout),
            dict(am=am),
        ),
        "softmax": (F.softmax, dict(x=logits), {}),
        "cross_entropy": (F.cross_entropy, dict(y=y), dict(t=labels)),
        "softmax_cross_entropy": (F.softmax_cross_entropy, dict(x=logits), dict(t=labels)),
        # the forward pass only takes the argmax of a one-hot t: the loss has x's dtype
        "softmax_cross_entropy_onehot": (F.softmax_cross_entropy, dict(x=logits), dict(t=onehot)),
        "softmax_cross_entropy_backward": (
            F.softmax_cross_entropy_backward,
            dict(y=y),
            dict(t=labels),
        ),
        "softmax_cross_entropy_backward_onehot": (
            F.softmax_cross_entropy_backward,
            dict(y=y, t=onehot),
            {},
        ),
        "relu": (F.relu, dict(x=x), {}),
        "relu_backward": (F.relu_backward, dict(dout=x * 1.5), dict(mask=mask)),
        "sigmoid": (F.sigmoid, dict(x=x), {}),
        "sigmoid_backward": (F.sigmoid_backward, dict(dout=x, y=R.sigmoid_forward(x)), {}),
    }


OP_NAMES = list(_op_table(np.random.default_rng(0)))
_N_FLOATS = {k: len(v[1]) for k, v in _op_table(np.random.default_rng(0)).items()}
DTYPE_KINDS = ["float64", "float32", "int", "bool", "mixed"]
#: (op, dtype kind) pairs that apply: "mixed" needs two float arguments; relu_backward works
#: in place on dout, so int/bool dout stay int/bool (tested separately).
DTYPE_CASES = [
    (name, kind)
    for name in OP_NAMES
    for kind in DTYPE_KINDS
    if not (kind == "mixed" and _N_FLOATS[name] < 2)
    and not (name == "relu_backward" and kind in ("int", "bool"))
]


def _outputs(res):
    """Flatten an op's result into a list of arrays (tuples for (out, argmax) etc.)."""
    items = res if isinstance(res, tuple) else (res,)
    return [np.asarray(r) for r in items]


def _float_outputs(res):
    return [r for r in _outputs(res) if r.dtype.kind in "fc"]


def _convert(kind, arrays):
    """Cast the float arguments: all float32 / all int64 / all bool / first float32, rest float64."""
    out = {}
    for i, (k, a) in enumerate(arrays.items()):
        if kind == "float32":
            out[k] = a.astype(np.float32)
        elif kind == "int":
            out[k] = np.rint(3 * a).astype(np.int64)
        elif kind == "bool":
            out[k] = a > 0.2
        elif kind == "mixed":
            out[k] = a.astype(np.float32 if i == 0 else np.float64)
        else:
            out[k] = a
    return out


@pytest.mark.parametrize("name,kind", DTYPE_CASES)
def test_output_dtype(name, kind, rng):
    fn, floats, others = _op_table(rng)[name]
    args = _convert(kind, floats)
    with np.errstate(all="ignore"):
        res = fn(**args, **others)
    expected = np.float32 if kind == "float32" else np.float64
    outs = _float_outputs(res)
    assert outs, f"{name} returned no float output"
    for o in outs:
        assert o.dtype == expected, f"{name}({kind}) returned {o.dtype}, expected {np.dtype(expected)}"


@pytest.mark.parametrize("name,kind", DTYPE_CASES)
def test_dtype_variants_match_float64(name, kind, rng):
    """Whatever the input dtype, values equal the float64 computation on the same values."""
    fn, floats, others = _op_table(rng)[name]
    args = _convert(kind, floats)
    with np.errstate(all="ignore"):
        got = _outputs(fn(**args, **others))
        want = _outputs(fn(**{k: up(v) for k, v in args.items()}, **others))
    dt = np.float32 if kind == "float32" else np.float64
    for g, w in zip(got, want):
        if w.dtype.kind == "f":
            assert_close(g, w, dt)
        else:
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", [np.int64, np.int32], ids=["i64", "i32"])
def test_relu_backward_int_dout_stays_in_place(dtype):
    dout = np.arange(-3, 3, dtype=dtype).reshape(2, 3)
    mask = dout <= 0
    got = F.relu_backward(dout, mask)
    assert got is dout and dout.dtype == dtype
    np.testing.assert_array_equal(dout, [[0, 0, 0], [0, 1, 2]])


def test_softmax_cross_entropy_backward_float32_y_float64_onehot_promotes(rng):
    y = R.softmax(rng.standard_normal((3, 4))).astype(np.float32)
    t = np.eye(4)[[0, 3, 1]]
    got = F.softmax_cross_entropy_backward(y, t)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, (y - t) / 3, rtol=1e-14)


# --------------------------------------------------------------------------- memory layouts
def _strided(a):
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
    big[..., 1::2] = a
    v = big[..., 1::2]
    assert not v.flags.c_contiguous or a.size <= 1
    return v


def _reversed(a):
    v = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[(slice(None, None, -1),) * a.ndim]
    return v


def _transposed(a):
    return np.asfortranarray(a)


def _readonly(a):
    v = a.copy()
    v.setflags(write=False)
    return v


def _broadcast(a):
    """A zero-stride read-only view: ``a``'s first row repeated along the first axis."""
    return np.broadcast_to(a[:1], a.shape)


def _byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


LAYOUTS = {
    "strided": _strided,
    "negative_strides": _reversed,
    "fortran": _transposed,
    "readonly": _readonly,
    "broadcast": _broadcast,
}


#: relu_backward writes into dout: a read-only dout is an error (see test_errors.py).
LAYOUT_CASES = [
    (name, layout)
    for name in OP_NAMES
    for layout in LAYOUTS
    if not (name == "relu_backward" and layout in ("readonly", "broadcast"))
]


@pytest.mark.parametrize("name,layout", LAYOUT_CASES)
def test_non_contiguous_inputs(name, layout, rng):
    """Views give bit-identical results to C-contiguous copies of the same values."""
    fn, floats, others = _op_table(rng)[name]
    make = LAYOUTS[layout]
    views = {k: make(v) for k, v in floats.items()}
    if layout == "broadcast":  # labels / argmax keep their values (broadcasting would change them)
        other_views = dict(others)
    else:
        other_views = {k: make(v) if np.ndim(v) else v for k, v in others.items()}
    if layout in ("strided", "negative_strides", "fortran"):
        assert any(not v.flags.c_contiguous for v in views.values())
    contiguous = {k: np.ascontiguousarray(v) for k, v in views.items()}
    other_contig = {k: np.ascontiguousarray(v) for k, v in other_views.items()}
    got = _outputs(fn(**views, **other_views))
    want = _outputs(fn(**contiguous, **other_contig))
    for g, w in zip(got, want):
        assert bits_equal(g, w), f"{name} differs for {layout} input"


def test_non_native_byte_order(rng):
    """Big-endian float64/float32 arrays hold ordinary float64/float32 values: every op must
    accept them and give the native results (one test over all ops, listing the failures)."""
    failures = []
    for name, (fn, floats, others) in _op_table(rng).items():
        for dt in (np.float64, np.float32):
            native = {k: v.astype(dt) for k, v in floats.items()}
            swapped = {k: _byteswapped(v) for k, v in native.items()}
            assert all(not v.dtype.isnative for v in swapped.values())
            try:
                got = _outputs(fn(**swapped, **others))
            except (TypeError, ValueError) as exc:
                failures.append(f"{name}[{np.dtype(dt).name}]: {type(exc).__name__}: {exc}")
                continue
            want = _outputs(fn(**{k: v.copy() for k, v in native.items()}, **others))
            for g, w in zip(got, want):
                if not (np.array_equal(g, w, equal_nan=True) and g.dtype.newbyteorder("=") == w.dtype):
                    failures.append(f"{name}[{np.dtype(dt).name}]: wrong result or dtype {g.dtype}")
    assert not failures, "non-native byte order:\n" + "\n".join(failures)


def test_relu_backward_on_strided_view_writes_through(rng):
    """The book's in-place semantics hold for a non-contiguous dout too."""
    base = rng.standard_normal((4, 6))
    untouched = base[:, 1::2].copy()
    dout = base[:, ::2]
    mask = dout <= 0.3
    want = np.where(mask, 0.0, dout)
    got = F.relu_backward(dout, mask)
    assert got is dout
    np.testing.assert_array_equal(base[:, ::2], want)
    np.testing.assert_array_equal(base[:, 1::2], untouched)


def test_transposed_conv_filters(rng):
    """Filters stored transposed (a common result of reshapes) give the reference results."""
    x = rng.standard_normal((2, 3, 5, 5))
    Wt = rng.standard_normal((3, 3, 3, 4)).transpose(3, 2, 1, 0)
    assert not Wt.flags.c_contiguous
    want = R.conv2d_forward(x, np.ascontiguousarray(Wt), None, 1, 1)
    assert_close(F.conv2d(x, Wt, None, 1, 1), want, np.float64)
    dout = rng.standard_normal(want.shape).transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)
    assert not dout.flags.c_contiguous
    assert_close(
        F.conv2d_backward_data(dout, Wt, x.shape, 1, 1),
        R.conv2d_backward_data(np.ascontiguousarray(dout), np.ascontiguousarray(Wt), x.shape, 1, 1),
        np.float64,
    )


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", OP_NAMES)
def test_thread_count_invariance(name, dtype, restore_threads, rng):
    """Every kernel gives bit-identical results at 1 thread and at the maximum."""
    top = restore_threads
    fn, floats, others = _op_table(rng)[name]
    floats = {k: v.astype(dtype) for k, v in floats.items()}

    def run():
        fresh = {k: v.copy() for k, v in floats.items()}  # relu_backward writes into dout
        return _outputs(fn(**fresh, **others))

    fastnn.set_num_threads(1)
    one = run()
    fastnn.set_num_threads(top)
    assert fastnn.get_num_threads() == top == numba.config.NUMBA_NUM_THREADS
    many = run()
    for a, b in zip(one, many):
        assert bits_equal(a, b), f"{name} depends on the thread count"


# Big enough for the gemm kernels to split the batch into several groups and slots (panel
# ~83 KB per image in float64 -> 6 images per group -> 4 groups, the last one short).
MULTI_SLOT_X = (23, 4, 16, 16)
MULTI_SLOT_W = (10, 4, 3, 3)


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 0)])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_thread_count_invariance_larger_conv(algorithm, stride, pad, restore_threads, rng):
    """A conv big enough that every thread gets several planes / gemm slots."""
    x = rng.standard_normal(MULTI_SLOT_X)
    W = rng.standard_normal(MULTI_SLOT_W)
    b = rng.standard_normal(MULTI_SLOT_W[0])
    results = []
    for n in (1, restore_threads):
        fastnn.set_num_threads(n)
        out = F.conv2d(x, W, b, stride, pad, algorithm=algorithm)
        results.append(
            (
                out,
                F.conv2d_backward_data(out, W, x.shape, stride, pad, algorithm=algorithm),
                F.conv2d_backward_weight(x, out, W.shape, stride, pad, algorithm=algorithm),
                F.conv2d_backward_bias(out),
            )
        )
    for a, b in zip(*results):
        assert bits_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("stride,pad", [(1, 1), (1, 0), (2, 0), (3, 2)])
def test_gemm_multi_slot_parity(stride, pad, dtype, rng):
    """Several gemm groups (with a short last one) and per-slot partial weight gradients."""
    x = randn(rng, MULTI_SLOT_X, dtype)
    W = randn(rng, MULTI_SLOT_W, dtype)
    b = randn(rng, MULTI_SLOT_W[0], dtype)
    out = F.conv2d(x, W, b, stride, pad, algorithm="gemm")
    assert_close(out, R.conv2d_forward(up(x), up(W), up(b), stride, pad), dtype)
    dout = randn(rng, out.shape, dtype)
    assert_close(
        F.conv2d_backward_data(dout, W, x.shape, stride, pad, algorithm="gemm"),
        R.conv2d_backward_data(up(dout), up(W), x.shape, stride, pad),
        dtype,
    )
    assert_close(
        F.conv2d_backward_weight(x, dout, W.shape, stride, pad, algorithm="gemm"),
        R.conv2d_backward_weight(up(x), up(dout), W.shape[2:], stride, pad),
        dtype,
    )


def test_choose_conv_algorithm_and_auto(rng):
    """Tiny convolutions run "direct"; large ones "gemm"; "auto" is exactly the chosen one."""
    assert F.choose_conv_algorithm((2, 3, 5, 5), (4, 3, 3, 3)) == "direct"
    # 3x3 stride 1 pad <= 2: always the register-blocked direct kernels
    assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 3, 3), 1, 1) == "direct"
    assert F.choose_conv_algorithm((32, 64, 56, 56), (64, 64, 3, 3), 1, 2) == "direct"
    # 3x3 stride 2: direct (phase planes) in every direction; 5x5 stride 2's data gradient of
    # a large layer takes panels + BLAS
    for op in ("conv2d", "conv2d_backward_weight", "conv2d_backward_data"):
        assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 3, 3), 2, 1, op) == "direct"
    assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 5, 5), 2, 1,
                                   "conv2d_backward_data") == "gemm"
    assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 3, 3), 3, 1) == "gemm"
    # 1x1: register blocks forward and data gradient; weight gradient from 128 channels
    pw_x, pw_w = (32, 256, 14, 14), (64, 256, 1, 1)
    assert F.choose_conv_algorithm(pw_x, pw_w, 1, 0) == "direct"
    assert F.choose_conv_algorithm(pw_x, pw_w, 1, 0, "conv2d_backward_data") == "direct"
    assert F.choose_conv_algorithm(pw_x, pw_w, 1, 0, "conv2d_backward_weight") == "direct"
    assert F.choose_conv_algorithm((32, 64, 56, 56), (256, 64, 1, 1), 1, 0,
                                   "conv2d_backward_weight") == "gemm"
    # other large shapes: panels + BLAS
    assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 3, 3), 1, 3) == "gemm"
    assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 7, 7), 1, 3) == "gemm"
    # 5x5 stride 1 pad <= 4: the register-blocked kernels too (the book's simple_conv layer)
    assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 5, 5), 1, 2) == "direct"
    assert F.choose_conv_algorithm((100, 1, 28, 28), (30, 1, 5, 5), 1, 0) == "direct"
    assert F.choose_conv_algorithm((100, 16, 28, 28), (32, 16, 5, 5), 1, 5) == "gemm"
    for xs, ws in [((2, 3, 5, 5), (4, 3, 3, 3)), (MULTI_SLOT_X, MULTI_SLOT_W)]:
        x, W = rng.standard_normal(xs), rng.standard_normal(ws)
        chosen = F.choose_conv_algorithm(xs, ws, 1, 1)
        out = F.conv2d(x, W, None, 1, 1)
        assert bits_equal(out, F.conv2d(x, W, None, 1, 1, algorithm=chosen))
        assert bits_equal(
            F.conv2d_backward_data(out, W, xs, 1, 1),
            F.conv2d_backward_data(out, W, xs, 1, 1, algorithm=chosen),
        )
        assert bits_equal(
            F.conv2d_backward_weight(x, out, ws, 1, 1),
            F.conv2d_backward_weight(x, out, ws, 1, 1, algorithm=chosen),
        )
    assert F.choose_conv_algorithm(MULTI_SLOT_X, MULTI_SLOT_W, 1, 1) == "direct"
