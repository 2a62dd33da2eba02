"""Hypothesis fuzz cases for the functional API and the layers (run by tests/test_fuzz.py).

Not collected by the default ``pytest`` run (the file name does not match ``test_*.py``):
:mod:`tests.test_fuzz` runs it in a **subprocess**, so a segfault or abort in a kernel is a
test failure instead of a dead test runner. ``FASTNN_FUZZ_EXAMPLES`` sets hypothesis'
``max_examples`` per case (default 25).

Oracle, for every generated case: the fastnn call either

* returns the same as :mod:`fastnn.reference` computed in the documented compute dtype
  (float32 stays float32; ints and bools become float64; NaN positions as NumPy's; tolerance
  by dtype), with that dtype; or
* raises :class:`ValueError` / :class:`TypeError` whose message starts with the op's name
  (``"conv2d: ..."``; for layers, the layer or op name).

Anything else (another exception type, an unprefixed message, wrong values or dtype, a crash)
fails. Inputs cover empty dims, batch 1, 1x1 images, filters larger than the input, huge pads,
strides larger than the input, every NumPy numeric kind (int8..uint64, bool, float16/32/64,
complex, object), Fortran-order, strided, negative-stride and read-only views, NaN/inf values,
and labels that are out of range, negative, float-typed or non-integral.

Run directly: ``FASTNN_FUZZ_EXAMPLES=200 python -m pytest tests/_fuzz_cases.py -q``.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn.functional as F
from fastnn import layers as L
from fastnn import reference as R

EXAMPLES = int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

SUPPORTED = (np.float64, np.float32)
# weighted towards the supported floats so that value paths get most of the examples
DTYPES = (
    [np.float64] * 6 + [np.float32] * 6
    + [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
       np.bool_, np.float16, np.complex64, np.complex128, object, ">f8"]
)
LAYOUTS = ["c"] * 4 + ["f", "strided", "neg", "ro"]


def _exact_matmul(a, b):
    """IEEE-exact matrix product (``0 * nan`` is NaN): NumPy's einsum loop, no BLAS."""
    return np.einsum("ij,jk->ik", a, b)


@pytest.fixture(autouse=True)
def _reference_matmul_exact(monkeypatch):
    """The reference's BLAS may skip zero multipliers (``0 * nan -> 0`` for some shapes); the
    kernels do not. Fuzz inputs hold NaN/inf, so the oracle uses an exact product."""
    monkeypatch.setattr(R, "_matmul", _exact_matmul)


class Rejected(Exception):
    """The call raised an accepted, properly prefixed ValueError/TypeError."""


# --------------------------------------------------------------------------- inputs
@st.composite
def arrays(draw, shape, dtypes=DTYPES, special=True, low=-3.0, high=3.0):
    """An array of ``shape`` with a drawn dtype, layout and (possibly non-finite) values."""
    dt = np.dtype(draw(st.sampled_from(dtypes)))
    layout = draw(st.sampled_from(LAYOUTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = rng.uniform(low, high, size=shape)
    if special and v.size and draw(st.integers(0, 5)) == 0:
        k = int(rng.integers(1, v.size + 1))
        idx = rng.integers(0, v.size, size=k)
        v.reshape(-1)[idx] = rng.choice([np.nan, np.inf, -np.inf], size=k)
    if dt.kind in "iu":
        v = np.nan_to_num(np.round(v), nan=0, posinf=3, neginf=-3)
        if dt.kind == "u":
            v = np.abs(v)
        a = v.astype(dt)
    elif dt.kind == "b":
        a = v > 0
    elif dt.kind == "c":
        a = (v + 0.5j * v).astype(dt)
    elif dt.kind == "O":
        a = v.astype(object)
    else:
        a = v.astype(dt)
    return _layout(a, layout)


def _layout(a, layout):
    if a.ndim == 0:
        return a
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "neg":
        return a[::-1].copy()[::-1]
    if layout == "ro":
        a = a.copy()
        a.flags.writeable = False
        return a
    return a


def _kind_ok(a):
    a = np.asarray(a)
    return a.dtype.kind in "iub" or a.dtype in (np.dtype(np.float32), np.dtype(np.float64)) or (
        a.dtype.kind == "f" and a.dtype.itemsize in (4, 8)
    )


def compute_dtype(*arrs):
    """The documented compute dtype, or None when fastnn must reject some input's dtype."""
    dts = []
    for a in arrs:
        if a is None:
            continue
        a = np.asarray(a)
        if not _kind_ok(a):
            return None
        dts.append(np.float64 if a.dtype.kind in "iub" else a.dtype.newbyteorder("="))
    return np.result_type(*dts)


def ff(a, dt):
    """``a`` as a C-contiguous array of the compute dtype (the reference's input)."""
    return np.array(np.asarray(a).astype(dt), order="C")  # 0-d stays 0-d


def call(op, fn, *args, **kw):
    """Call ``fn``; map a proper ValueError/TypeError to :class:`Rejected`, re-raise others."""
    try:
        return fn(*args, **kw)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        names = (op,) if isinstance(op, str) else op
        if not any(msg.startswith(n + ":") or msg.startswith(n + ".") for n in names):
            raise AssertionError(
                f"{type(exc).__name__} not prefixed with {names}: {msg!r}"
            ) from exc
        raise Rejected(msg) from None


#: True while checking a case with a float32 input: results computed in float64 from float32
#: data (mixed promotion) only agree to float32 precision with the reference's order of ops.
_LOWP = [False]


def _has_f32(inputs):
    return any(a is not None and np.asarray(a).dtype == np.float32 for a in inputs)


def tol(dt):
    if np.dtype(dt) == np.float64 and not _LOWP[0]:
        return dict(rtol=1e-10, atol=1e-10)
    return dict(rtol=2e-4, atol=2e-5)


def close(got, want, dt, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == np.dtype(dt), f"{what}: dtype {got.dtype} != {np.dtype(dt)}"
    scale = 1.0
    fin = np.isfinite(want)
    if fin.any():
        scale = max(1.0, float(np.max(np.abs(want[fin]))))
    t = tol(dt)
    np.testing.assert_allclose(got, want, rtol=t["rtol"], atol=t["atol"] * scale,
                               equal_nan=True, err_msg=what)


def expect(op, run, ref, *inputs):
    """The oracle: ``run()`` rejects properly, or matches ``ref(dt)`` for the compute dtype."""
    dt = compute_dtype(*inputs)
    try:
        got = call(op, run)
    except Rejected:
        return None
    assert dt is not None, f"{op}: accepted unsupported dtypes {[np.asarray(a).dtype for a in inputs if a is not None]}"
    _LOWP[0] = _has_f32(inputs)
    try:
        with np.errstate(all="ignore"):
            ref(got, dt)
    finally:
        _LOWP[0] = False
    return got


def grad_dtype(x_dt, t):
    """The gradient dtype of softmax cross-entropy with target ``t`` and logits dtype ``x_dt``."""
    tt = np.asarray(t)
    tdt = compute_dtype(tt)
    odt = np.result_type(x_dt, tdt)
    return odt


def ints(lo, hi):
    return st.integers(lo, hi)


# --------------------------------------------------------------------------- convolution
conv_geom = st.fixed_dictionaries(dict(
    N=ints(0, 2), C=ints(0, 2), H=ints(0, 5), W=ints(0, 5), FN=ints(0, 2),
    FH=ints(0, 6), FW=ints(1, 6), stride=ints(0, 6), pad=ints(0, 7),
    algorithm=st.sampled_from(["direct", "gemm", "auto"]),
))


def _out_hw(g):
    OH = (g["H"] + 2 * g["pad"] - g["FH"]) // max(g["stride"], 1) + 1
    OW = (g["W"] + 2 * g["pad"] - g["FW"]) // max(g["stride"], 1) + 1
    return max(OH, 0), max(OW, 0)


@FUZZ
@given(g=conv_geom, data=st.data())
def test_conv2d(g, data):
    x = data.draw(arrays((g["N"], g["C"], g["H"], g["W"])))
    Wc = g["C"] if data.draw(st.integers(0, 9)) else g["C"] + 1  # sometimes mismatched
    Wt = data.draw(arrays((g["FN"], Wc, g["FH"], g["FW"])))
    b = data.draw(st.one_of(st.none(), arrays((g["FN"],))))

    def ref(got, dt):
        bb = np.zeros(g["FN"], dt) if b is None else ff(b, dt)
        want = R.conv2d_forward(ff(x, dt), ff(Wt, dt), bb, g["stride"], g["pad"])
        close(got, want, dt, "conv2d")

    expect("conv2d", lambda: F.conv2d(x, Wt, b, g["stride"], g["pad"], g["algorithm"]),
           ref, x, Wt, b)


@FUZZ
@given(g=conv_geom, data=st.data())
def test_conv2d_backward(g, data):
    OH, OW = _out_hw(g)
    shape = (g["N"], g["C"], g["H"], g["W"])
    x = data.draw(arrays(shape))
    Wt = data.draw(arrays((g["FN"], g["C"], g["FH"], g["FW"])))
    dshape = (g["N"], g["FN"], OH, OW) if data.draw(st.integers(0, 9)) else (g["N"], g["FN"], OH + 1, OW)
    dout = data.draw(arrays(dshape))
    s, p, alg = g["stride"], g["pad"], g["algorithm"]

    def ref_data(got, dt):
        close(got, R.conv2d_backward_data(ff(dout, dt), ff(Wt, dt), shape, s, p), dt, "bwd_data")

    expect("conv2d_backward_data",
           lambda: F.conv2d_backward_data(dout, Wt, shape, s, p, alg), ref_data, dout, Wt)

    full = data.draw(st.booleans())
    fs = (g["FN"], g["C"], g["FH"], g["FW"]) if full else (g["FH"], g["FW"])

    def ref_w(got, dt):
        want = R.conv2d_backward_weight(ff(x, dt), ff(dout, dt), (g["FH"], g["FW"]), s, p)
        close(got, want, dt, "bwd_weight")

    expect("conv2d_backward_weight",
           lambda: F.conv2d_backward_weight(x, dout, fs, s, p, alg), ref_w, x, dout)

    expect("conv2d_backward_bias", lambda: F.conv2d_backward_bias(dout),
           lambda got, dt: close(got, R.conv2d_backward_bias(ff(dout, dt)), dt, "bwd_bias"), dout)


@FUZZ
@given(g=conv_geom, data=st.data())
def test_im2col_col2im(g, data):
    shape = (g["N"], g["C"], g["H"], g["W"])
    x = data.draw(arrays(shape))
    s, p = g["stride"], g["pad"]
    expect("im2col", lambda: F.im2col(x, g["FH"], g["FW"], s, p),
           lambda got, dt: close(got, R.im2col(ff(x, dt), g["FH"], g["FW"], s, p), dt, "im2col"), x)
    OH, OW = _out_hw(g)
    rows, cols = g["N"] * OH * OW, g["C"] * g["FH"] * g["FW"]
    if data.draw(st.integers(0, 9)) == 0:
        rows += 1
    col = data.draw(arrays((rows, cols)))
    expect("col2im", lambda: F.col2im(col, shape, g["FH"], g["FW"], s, p),
           lambda got, dt: close(got, R.col2im(ff(col, dt), shape, g["FH"], g["FW"], s, p),
                                 dt, "col2im"), col)


# --------------------------------------------------------------------------- pooling
pool_geom = st.fixed_dictionaries(dict(
    N=ints(0, 2), C=ints(0, 2), H=ints(0, 6), W=ints(0, 6),
    ph=ints(0, 4), pw=ints(1, 4), stride=ints(0, 5), pad=ints(0, 3),
))


@FUZZ
@given(g=pool_geom, data=st.data())
def test_max_pool2d(g, data):
    shape = (g["N"], g["C"], g["H"], g["W"])
    x = data.draw(arrays(shape))
    args = (g["ph"], g["pw"], g["stride"], g["pad"])
    res = {}

    def ref(got, dt):
        out, am = got
        want, want_am = R.max_pool2d_forward(ff(x, dt), *args)
        close(out, want, dt, "max_pool2d")
        np.testing.assert_array_equal(am.astype(np.intp), want_am, err_msg="argmax")
        res["am"] = am

    expect("max_pool2d", lambda: F.max_pool2d(x, *args, return_argmax=True), ref, x)
    if "am" not in res:
        return
    am = res["am"]
    OH, OW = am.shape[2:]
    dout = data.draw(arrays((g["N"], g["C"], OH, OW)))
    mode = data.draw(st.sampled_from(["same", "same", "random", "int64", "float"]))
    if mode == "random":
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        am = rng.integers(-1, g["ph"] * g["pw"] + 1, size=am.shape).astype(np.int64)
    elif mode == "int64":
        am = am.astype(np.int64)
    elif mode == "float":
        am = am.astype(np.float64)

    def ref_b(got, dt):
        close(got, R.max_pool2d_backward(ff(dout, dt), np.asarray(am, np.intp), shape, *args),
              dt, "max_pool2d_backward")

    expect("max_pool2d_backward", lambda: F.max_pool2d_backward(dout, am, shape, *args),
           ref_b, dout)


# --------------------------------------------------------------------------- softmax / loss
@st.composite
def targets(draw, N, K):
    """Labels (N,) / (N, 1) possibly out of range or float, or one-hot / soft (N, K)."""
    kind = draw(st.sampled_from(["labels", "labels", "col", "onehot", "float", "bad", "shape"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "onehot":
        t = np.zeros((N, K), dtype=draw(st.sampled_from([np.float64, np.float32, np.int64, np.uint8])))
        if K:
            t[np.arange(N), rng.integers(0, K, size=N)] = 1
        return t
    lab = rng.integers(0, max(K, 1), size=N)
    if kind == "col":
        return lab.reshape(N, 1).astype(draw(st.sampled_from([np.int32, np.int64, np.uint8])))
    if kind == "float":
        f = lab.astype(np.float64)
        if N and draw(st.booleans()):
            f[0] = draw(st.sampled_from([0.5, np.nan, np.inf, -1.0]))
        return f
    if kind == "bad":
        lab = lab.copy()
        if N:
            lab[0] = draw(st.sampled_from([-1, K, K + 5, -(2**40)]))
        return lab.astype(draw(st.sampled_from([np.int64, np.int8, np.bool_, object, np.complex128])))
    if kind == "shape":
        return rng.integers(0, max(K, 1), size=(N + 1,))
    return lab.astype(draw(st.sampled_from([np.int64, np.int32, np.int8, np.uint16, np.uint64])))


def _ref_labels_ok(t, N, K):
    """True when the reference can index with ``t`` (otherwise fastnn must reject it)."""
    t = np.asarray(t)
    if t.size == N * K:
        return True
    if t.size != N or t.dtype.kind not in "iuf":
        return False
    if t.dtype.kind == "f":  # integral floats are accepted as labels (fastnn._checks.as_labels)
        if not (np.all(np.isfinite(t)) and np.all(t == np.round(t))):
            return False
    return bool(t.size == 0 or (t.min() >= 0 and t.max() < K))


loss_geom = st.fixed_dictionaries(dict(N=ints(0, 4), K=ints(0, 5), one_d=st.booleans()))


@FUZZ
@given(g=loss_geom, data=st.data())
def test_softmax(g, data):
    ndim = data.draw(ints(0, 3))
    shape = tuple(data.draw(ints(0, 3)) for _ in range(ndim))
    x = data.draw(arrays(shape))
    expect("softmax", lambda: F.softmax(x),
           lambda got, dt: close(got, R.softmax(ff(x, dt)), dt, "softmax"), x)


def _loss_case(g, data, probs):
    N, K = (1 if g["one_d"] else g["N"]), g["K"]
    shape = (K,) if g["one_d"] else (N, K)
    x = data.draw(arrays(shape, low=0.0 if probs else -3.0, high=1.0 if probs else 3.0))
    t = data.draw(targets(N, K))
    if g["one_d"] and np.asarray(t).size != K and np.asarray(t).size == 1:
        t = np.asarray(t).reshape(())  if data.draw(st.booleans()) else t
    return x, t, N, K


@FUZZ
@given(g=loss_geom, data=st.data())
def test_cross_entropy(g, data):
    x, t, N, K = _loss_case(g, data, probs=True)

    def ref(got, dt):
        assert _ref_labels_ok(t, N, K), f"accepted bad labels {t!r}"
        close(got, R.cross_entropy(ff(x, dt), np.asarray(t)), dt, "cross_entropy")

    expect("cross_entropy", lambda: F.cross_entropy(x, t), ref, x)


@FUZZ
@given(g=loss_geom, data=st.data(), eps=st.sampled_from([1e-7, 0.0, 1e-7, -1.0]))
def test_softmax_cross_entropy(g, data, eps):
    x, t, N, K = _loss_case(g, data, probs=False)
    x2 = np.asarray(x).reshape(N, K) if np.asarray(x).size == N * K else x

    def ref(got, dt):
        assert _ref_labels_ok(t, N, K), f"accepted bad labels {t!r}"
        loss, y = got
        want_loss, want_y = R.softmax_cross_entropy_forward(ff(x2, dt), np.asarray(t), eps)
        close(y, want_y, dt, "y")
        close(np.asarray(loss), np.asarray(want_loss, dtype=dt), dt, "loss")

    expect("softmax_cross_entropy", lambda: F.softmax_cross_entropy(x, t, eps), ref, x)

    def ref_g(got, dt):
        assert _ref_labels_ok(t, N, K), f"accepted bad labels {t!r}"
        loss, dx = got
        want_loss, y = R.softmax_cross_entropy_forward(ff(x2, dt), np.asarray(t), eps)
        tt = np.asarray(t)
        if tt.size == N * K:  # one-hot target keeps its own dtype in the gradient (NumPy)
            tdt = compute_dtype(tt)
            want = R.softmax_cross_entropy_backward(y.astype(np.result_type(dt, tdt)), ff(tt, tdt))
            close(dx, want.astype(grad_dtype(dt, tt)), grad_dtype(dt, tt), "dx")
        else:
            close(dx, R.softmax_cross_entropy_backward(y, tt), dt, "dx")
        close(np.asarray(loss), np.asarray(want_loss, dtype=dt), dt, "loss")

    expect("softmax_cross_entropy_with_grad",
           lambda: F.softmax_cross_entropy_with_grad(x, t, eps), ref_g, x)

    # softmax regression's fused gradient: x as (N, D=K) inputs, a square (K, K) W, bias (K,)
    Wl = data.draw(arrays((K, K)))
    bl = data.draw(arrays((K,)))

    def ref_l(got, dt):
        assert _ref_labels_ok(t, N, K), f"accepted bad labels {t!r}"
        tt = np.asarray(t)
        tt = ff(tt, dt) if tt.size == N * K else tt
        want = R.linear_softmax_cross_entropy(ff(x, dt), ff(Wl, dt), ff(bl, dt), tt, eps)
        for g_, w_, name in zip(got, want, ("loss", "z", "dW", "db")):
            close(np.asarray(g_), np.asarray(w_, dtype=dt), dt, name)

    expect("linear_softmax_cross_entropy_with_grad",
           lambda: F.linear_softmax_cross_entropy_with_grad(x, Wl, bl, t, eps), ref_l, x, Wl, bl)


@FUZZ
@given(g=loss_geom, data=st.data())
def test_softmax_cross_entropy_backward(g, data):
    y, t, N, K = _loss_case(g, data, probs=True)
    y2 = np.asarray(y).reshape(N, K) if np.asarray(y).size == N * K else y

    def ref(got, dt):
        assert _ref_labels_ok(t, N, K), f"accepted bad labels {t!r}"
        tt = np.asarray(t)
        if tt.size == N * K:
            tdt = compute_dtype(tt)
            odt = np.result_type(dt, tdt)
            close(got, R.softmax_cross_entropy_backward(ff(y2, odt), ff(tt, tdt)), odt, "dx")
        else:
            close(got, R.softmax_cross_entropy_backward(ff(y2, dt), tt), dt, "dx")

    expect("softmax_cross_entropy_backward",
           lambda: F.softmax_cross_entropy_backward(y, t), ref, y)


# --------------------------------------------------------------------------- element-wise
shapes = st.lists(ints(0, 4), min_size=0, max_size=4).map(tuple)


@FUZZ
@given(shape=shapes, data=st.data())
def test_relu_sigmoid(shape, data):
    x = data.draw(arrays(shape))

    def ref_relu(got, dt):
        out, mask = got
        want, want_mask = R.relu_forward(ff(x, dt))
        close(out, want, dt, "relu")
        np.testing.assert_array_equal(mask, want_mask)

    expect("relu", lambda: F.relu(x), ref_relu, x)
    expect("sigmoid", lambda: F.sigmoid(x),
           lambda got, dt: close(got, R.sigmoid_forward(ff(x, dt)), dt, "sigmoid"), x)

    dout = data.draw(arrays(shape))
    y = data.draw(arrays(shape, low=0.0, high=1.0))
    expect("sigmoid_backward", lambda: F.sigmoid_backward(dout, y),
           lambda got, dt: close(got, R.sigmoid_backward(ff(dout, dt), ff(y, dt)), dt, "sig_b"),
           dout, y)

    mask = data.draw(arrays(shape, dtypes=[np.bool_, np.bool_, np.int64, np.float64]))
    before = np.array(dout, copy=True)
    try:
        got = call("relu_backward", F.relu_backward, dout, mask)
    except Rejected:
        return
    assert got is dout, "relu_backward must return dout itself (in place)"
    assert compute_dtype(before) is not None, f"relu_backward accepted {before.dtype}"
    want = before.copy()
    want[np.asarray(mask).astype(bool)] = 0
    if before.dtype.kind == "f":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_array_equal(got, want)


@FUZZ
@given(shape=shapes, data=st.data(),
       ratio=st.sampled_from([0.0, 0.5, 1.0, 0.15, -0.1, 1.5, np.nan]), train=st.booleans())
def test_dropout(shape, data, ratio, train):
    x = data.draw(arrays(shape))
    seed = data.draw(st.integers(0, 2**32 - 1))

    def run():
        np.random.seed(seed)
        return F.dropout(x, ratio, train)

    def ref(got, dt):
        assert 0.0 <= ratio <= 1.0
        np.random.seed(seed)
        out, mask = got
        want, want_mask = R.dropout_forward(ff(x, dt), ratio, train)
        close(out, np.asarray(want, dtype=np.result_type(dt, np.asarray(want).dtype)),
              np.result_type(dt, np.asarray(want).dtype), "dropout")
        if train:
            np.testing.assert_array_equal(mask, want_mask)
            dout = data.draw(arrays(shape))
            expect("dropout_backward", lambda: F.dropout_backward(dout, mask),
                   lambda g2, d2: close(g2, R.dropout_backward(ff(dout, d2), mask), d2, "dbwd"),
                   dout)

    expect("dropout", run, ref, x)


# --------------------------------------------------------------------------- batch norm
bn_geom = st.fixed_dictionaries(dict(N=ints(0, 4), D=ints(0, 4), x3=st.integers(0, 9)))


@FUZZ
@given(g=bn_geom, data=st.data())
def test_batch_norm(g, data):
    N, D = g["N"], g["D"]
    xshape = (N, D) if g["x3"] else (N, D, 1)
    x = data.draw(arrays(xshape))
    Dg = D if data.draw(ints(0, 9)) else D + 1
    gamma, beta = data.draw(arrays((Dg,))), data.draw(arrays((D,)))
    res = {}

    def ref(got, dt):
        want = R.batch_norm_train(ff(x, dt), ff(gamma, dt), ff(beta, dt))
        for name, a, w in zip(("out", "xn", "mean", "var", "std"), got, want):
            close(a, w, dt, name)
        res["xn"], res["std"] = got[1], got[4]

    with np.errstate(all="ignore"):
        expect("batch_norm_train", lambda: F.batch_norm_train(x, gamma, beta), ref, x, gamma, beta)
        rm = data.draw(arrays((D,)))
        rv = data.draw(arrays((D,), low=0.0, high=2.0))
        expect("batch_norm_eval", lambda: F.batch_norm_eval(x, gamma, beta, rm, rv),
               lambda got, dt: close(got, R.batch_norm_eval(ff(x, dt), ff(gamma, dt), ff(beta, dt),
                                                              ff(rm, dt), ff(rv, dt)), dt, "eval"),
               x, gamma, beta, rm, rv)
        if "xn" not in res:
            return
        dout = data.draw(arrays((N, D)))
        xn, std = res["xn"], res["std"]

        def ref_b(got, dt):
            want = R.batch_norm_backward(ff(dout, dt), ff(xn, dt), ff(std, dt), ff(gamma, dt))
            for name, a, w in zip(("dx", "dgamma", "dbeta"), got, want):
                close(a, w, dt, name)

        expect("batch_norm_backward", lambda: F.batch_norm_backward(dout, xn, std, gamma),
               ref_b, dout, xn, std, gamma)


# --------------------------------------------------------------------------- layers
LAYER_NAMES = ("Convolution", "Pooling", "Affine", "Relu", "Sigmoid", "SoftmaxWithLoss",
               "BatchNormalization", "Dropout", "conv2d", "conv2d_backward_data",
               "conv2d_backward_weight", "conv2d_backward_bias", "max_pool2d",
               "max_pool2d_backward", "relu", "relu_backward", "sigmoid", "sigmoid_backward",
               "softmax_cross_entropy_with_grad", "softmax_cross_entropy_backward", "softmax",
               "dropout", "dropout_backward", "batch_norm_train", "batch_norm_eval",
               "batch_norm_backward")
FLOATS_MOSTLY = [np.float64, np.float64, np.float32, np.float32, np.int64, np.float16, object]


def lexpect(run, check, *inputs):
    dt = compute_dtype(*inputs)
    try:
        got = call(LAYER_NAMES, run)
    except Rejected:
        return
    assert dt is not None, f"layer accepted {[np.asarray(a).dtype for a in inputs]}"
    _LOWP[0] = _has_f32(inputs)
    try:
        with np.errstate(all="ignore"):
            check(got, dt)
    finally:
        _LOWP[0] = False


@FUZZ
@given(g=conv_geom, data=st.data())
def test_layer_convolution(g, data):
    x = data.draw(arrays((g["N"], g["C"], g["H"], g["W"]), dtypes=FLOATS_MOSTLY))
    Wt = data.draw(arrays((g["FN"], g["C"], g["FH"], g["FW"]), dtypes=FLOATS_MOSTLY))
    b = data.draw(arrays((g["FN"],), dtypes=FLOATS_MOSTLY, special=False))
    s, p = g["stride"], g["pad"]
    layer = L.Convolution(Wt, b, s, p, g["algorithm"])

    def check(out, dt):
        close(out, R.conv2d_forward(ff(x, dt), ff(Wt, dt), ff(b, dt), s, p), dt, "Conv.forward")
        dout = data.draw(arrays(out.shape, dtypes=[dt], special=False))
        dx = call(LAYER_NAMES, layer.backward, dout)
        close(dx, R.conv2d_backward_data(ff(dout, dt), ff(Wt, dt), x.shape, s, p), dt, "dx")
        close(layer.dW, R.conv2d_backward_weight(ff(x, dt), ff(dout, dt), (g["FH"], g["FW"]), s, p),
              dt, "dW")
        close(layer.db, R.conv2d_backward_bias(ff(dout, dt)), dt, "db")

    lexpect(lambda: layer.forward(x), check, x, Wt, b)


@FUZZ
@given(g=pool_geom, data=st.data())
def test_layer_pooling(g, data):
    x = data.draw(arrays((g["N"], g["C"], g["H"], g["W"]), dtypes=FLOATS_MOSTLY))
    args = (g["ph"], g["pw"], g["stride"], g["pad"])
    layer = L.Pooling(*args)

    def check(out, dt):
        want, am = R.max_pool2d_forward(ff(x, dt), *args)
        close(out, want, dt, "Pool.forward")
        dout = data.draw(arrays(out.shape, dtypes=[dt], special=False))
        dx = call(LAYER_NAMES, layer.backward, dout)
        close(dx, R.max_pool2d_backward(ff(dout, dt), am, x.shape, *args), dt, "Pool.backward")

    lexpect(lambda: layer.forward(x), check, x)


@FUZZ
@given(N=ints(1, 3), D=ints(0, 4), M=ints(0, 3), four_d=st.booleans(), data=st.data())
def test_layer_affine_relu_sigmoid(N, D, M, four_d, data):
    # N >= 1 for Affine: like the book's, it reshapes with -1, which NumPy refuses for N == 0
    xshape = (N, D, 1, 1) if four_d else (N, D)
    fl = [np.float64, np.float32]
    x = data.draw(arrays(xshape, dtypes=fl))
    Wt = data.draw(arrays((D, M), dtypes=fl, special=False))
    b = data.draw(arrays((M,), dtypes=fl, special=False))
    aff = L.Affine(Wt, b)

    def check(out, dt):
        want = np.dot(np.asarray(x).reshape(N, -1), Wt) + b
        close(out, want, want.dtype, "Affine.forward")
        dout = np.ones_like(want)
        dx = aff.backward(dout)
        close(dx, np.dot(dout, Wt.T).reshape(xshape), want.dtype, "Affine.backward")

    lexpect(lambda: aff.forward(x), check, x, Wt, b)

    for cls, fwd in ((L.Relu, lambda a: R.relu_forward(a)[0]), (L.Sigmoid, R.sigmoid_forward)):
        layer = cls()
        xx = data.draw(arrays(xshape, dtypes=FLOATS_MOSTLY))

        def check2(out, dt, layer=layer, xx=xx, fwd=fwd):
            with np.errstate(all="ignore"):
                close(out, fwd(ff(xx, dt)), dt, f"{type(layer).__name__}.forward")
                dout = np.ones(out.shape, dtype=dt)
                dx = layer.backward(dout.copy())
                if isinstance(layer, L.Relu):
                    want = R.relu_backward(dout, np.asarray(ff(xx, dt)) <= 0)
                else:
                    want = R.sigmoid_backward(dout, fwd(ff(xx, dt)))
                close(dx, want, dt, "backward")

        lexpect(lambda layer=layer, xx=xx: layer.forward(xx), check2, xx)


@FUZZ
@given(g=loss_geom, data=st.data())
def test_layer_softmax_with_loss(g, data):
    x, t, N, K = _loss_case(g, data, probs=False)
    layer = L.SoftmaxWithLoss()
    x2 = np.asarray(x).reshape(N, K) if np.asarray(x).size == N * K else x

    def check(loss, dt):
        assert _ref_labels_ok(t, N, K), f"accepted bad labels {t!r}"
        want_loss, y = R.softmax_cross_entropy_forward(ff(x2, dt), np.asarray(t))
        close(np.asarray(loss), np.asarray(want_loss, dtype=dt), dt, "loss")
        dx = layer.backward()
        tt = np.asarray(t)
        if tt.size == N * K:
            tdt = compute_dtype(tt)
            odt = grad_dtype(dt, tt)
            want = R.softmax_cross_entropy_backward(y.astype(np.result_type(dt, tdt)), ff(tt, tdt))
            want = want.astype(odt)
        else:
            odt, want = dt, R.softmax_cross_entropy_backward(y, tt)
        close(dx, np.asarray(want).reshape(np.shape(x)), odt, "dx")

    lexpect(lambda: layer.forward(x, t), check, x)


@FUZZ
@given(N=ints(0, 4), D=ints(0, 4), four_d=st.booleans(), train=st.booleans(), data=st.data())
def test_layer_batchnorm_dropout(N, D, four_d, train, data):
    if four_d:  # the book's layer reshapes 4-D input with -1: NumPy refuses that for N == 0
        N = max(N, 1)
    xshape = (N, D, 1, 1) if four_d else (N, D)
    x = data.draw(arrays(xshape, dtypes=FLOATS_MOSTLY))
    gamma = np.ones(max(D, 0))
    beta = np.zeros(max(D, 0))
    bn = L.BatchNormalization(gamma, beta)

    def check(out, dt):
        x2 = ff(x, dt).reshape(N, -1)
        if train:
            want = R.batch_norm_train(x2, gamma, beta)[0]
        else:
            want = R.batch_norm_eval(x2, gamma, beta, np.zeros(D), np.zeros(D))
        wdt = np.result_type(dt, np.float64)
        close(np.asarray(out, dtype=wdt).reshape(N, -1), want, wdt, "BatchNorm.forward")
        dout = np.ones(np.shape(out), dtype=np.asarray(out).dtype)
        if train:
            call(LAYER_NAMES, bn.backward, dout)

    with np.errstate(all="ignore"):
        lexpect(lambda: bn.forward(x, train), check, x)

    ratio = data.draw(st.sampled_from([0.0, 0.5, 1.0]))
    drop = L.Dropout(ratio)
    seed = data.draw(st.integers(0, 2**32 - 1))

    def run():
        np.random.seed(seed)
        return drop.forward(x, train)

    def check_d(out, dt):
        np.random.seed(seed)
        want = R.dropout_forward(ff(x, dt), ratio, train)[0]
        close(np.asarray(out, dtype=want.dtype), want, want.dtype, "Dropout.forward")
        if train:
            dx = drop.backward(np.ones(np.shape(out), dtype=dt))
            np.testing.assert_array_equal(dx, drop.mask.astype(dt))

    lexpect(run, check_d, x)
