"""Tests of the benchmark table (fastnn.bench) and the asv benchmarks built on it.

The benchmarks are only worth something if every implementation computes the same thing, so
each case's reference and fastnn callables are checked against each other here (and torch's,
when it is installed). No timings are asserted.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnn import bench

ROOT = Path(__file__).resolve().parents[1]
ASV_DIR = ROOT / "asv_bench"
DTYPES = ["float32", "float64"]


# --------------------------------------------------------------------------- the table
def test_table_is_well_formed():
    assert len(bench.CASE_KEYS) == len(set(bench.CASE_KEYS)) == len(bench.CASES)
    expected = {"conv2d", "conv2d_1x1", "im2col", "col2im", "max_pool2d", "softmax_ce", "softmax_ce_onehot",
                "relu", "sigmoid", "dropout", "batchnorm"}
    assert expected <= set(bench.CASE_KEYS)
    for case in bench.CASES:
        assert tuple(case.shapes)[:3] == bench.SHAPE_NAMES, case.key
        assert case.unit in ("FLOP", "B")
        assert case.shapes["tiny"].small and case.shapes["book"].small
        assert bench.get_case(case.op) is case


def test_book_shapes_are_the_books():
    conv = bench.get_case("conv2d").make("book", "float64")
    assert conv[0].shape == (100, 1, 28, 28) and conv[1].shape == (30, 1, 5, 5)
    assert conv[3].shape == (100, 30, 24, 24)
    pool = bench.get_case("max_pool2d").make("book", "float64")
    assert pool[0].shape == (100, 30, 24, 24) and pool[2:] == (2, 2, 2, 0)
    x, t = bench.get_case("softmax_ce").make("book", "float64")
    assert x.shape == (100, 10) and t.shape == (100,) and t.dtype.kind == "i"
    x, t = bench.get_case("softmax_ce_onehot").make("book", "float32")
    assert t.shape == (100, 10) and np.all(t.sum(axis=1) == 1) and t.dtype == np.float32
    for key in ("relu", "sigmoid"):
        assert bench.get_case(key).make("book", "float32")[0].shape == (100, 30, 24, 24)


def test_issue_shape_sets_are_in_the_table():
    conv = bench.get_case("conv2d")
    geometry = {(a[0].shape, a[1].shape, a[4], a[5]) for a in
                (conv.make(n, "float32") for n in conv.shape_names() if n not in ("large",
                                                                                  "stride2",
                                                                                  "pointwise"))}
    assert geometry == {
        ((100, 1, 28, 28), (30, 1, 5, 5), 1, 0), ((100, 1, 28, 28), (16, 1, 3, 3), 1, 1),
        ((100, 16, 28, 28), (16, 16, 3, 3), 1, 1), ((100, 16, 14, 14), (32, 16, 3, 3), 1, 1),
        ((100, 32, 14, 14), (32, 32, 3, 3), 1, 2), ((100, 32, 8, 8), (64, 32, 3, 3), 1, 1),
        ((100, 64, 8, 8), (64, 64, 3, 3), 1, 1)}
    assert len(conv.shape_names()) == 10 and "tiny" not in conv.shape_names()
    p = conv.shape("stride2").params
    assert (p["N"], p["C"], p["H"], p["FN"], p["stride"], p["pad"]) == (32, 64, 56, 128, 2, 1)
    assert conv.shape("pointwise").params["C"] == 256
    pool = bench.get_case("max_pool2d")
    assert {pool.shape(n).params["C"] for n in pool.shape_names()} == {30, 16, 32, 64}
    assert bench.get_case("softmax_ce").shape("vocab").params["K"] == 32000
    for key in ("relu", "sigmoid", "dropout", "batchnorm"):
        assert "fc" in bench.get_case(key).shapes
    assert bench.get_case("batchnorm").make("book", "float32")[0].shape == (100, 30 * 24 * 24)


_EXTRA_SMALL = [(c.key, n) for c in bench.CASES for n in c.shape_names()
                if n not in bench.SHAPE_NAMES and c.shapes[n].small]


@pytest.mark.parametrize("key, shape", _EXTRA_SMALL)
def test_reference_and_fastnn_agree_on_further_shapes(key, shape):
    case = bench.get_case(key)
    ref = case.reference(*case.make(shape, "float32"))
    fast = case.fastnn(*case.make(shape, "float32"))
    ok, msg = bench.outputs_close(ref, fast, "float32")
    assert ok, f"{key} {shape}: {msg}"


def test_shape_selection_and_geometric_means():
    assert set(bench.SHAPE_NAMES) < set(bench.shape_names())
    assert {"deep1", "deep6", "stride2", "pointwise", "deep_pool1", "vocab", "fc"} <= set(
        bench.shape_names())
    assert bench.asv_shapes("conv2d")[:2] == bench.ASV_SHAPES
    results = bench.run(ops=["relu", "softmax_ce"], shapes=["fc", "tiny"], dtypes=["float64"],
                        repeat=2, impls=["fastnn"])
    assert [(r["key"], r["shape"]) for r in results] == [("relu", "tiny"), ("relu", "fc"),
                                                        ("softmax_ce", "tiny")]
    rows = [dict(key="conv2d", op="conv2d fwd+bwd", shape=s, shape_desc=s, dtype="float32",
                 work=1e9, unit="FLOP", reference_ms=ref, fastnn_ms=1.0, torch_ms=tor)
            for s, ref, tor in (("a", 2.0, 1.0), ("b", 8.0, 4.0), ("c", 4.0, 0.5))]
    (m,) = bench.geometric_means(rows)
    assert m["shapes"] == 3 and m["speedup"] == pytest.approx(4.0)
    assert m["torch_ratio"] == pytest.approx(2.0 ** (-1 / 3) * 2.0 ** (2 / 3) * 1.0)
    assert m["worst_torch_ratio"] == 0.5 and m["worst_shape"] == "c"
    assert bench.geometric_means(rows[:1]) == []
    text = bench.format_table(rows)
    assert "geometric means" in text and "speed-up 4.00x" in text and "worst 0.50x at c" in text
    rows[0]["torch_ms"] = None
    assert bench.geometric_means(rows)[0]["torch_ratio"] is None


@pytest.mark.parametrize("key", bench.CASE_KEYS)
def test_make_is_deterministic_and_typed(key):
    case = bench.get_case(key)
    for dtype in DTYPES:
        a, b = case.make("tiny", dtype), case.make("tiny", dtype)
        floats = [v for v in a if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
        assert floats and all(v.dtype == np.dtype(dtype) for v in floats)
        for u, v in zip(a, b):
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(u, v)
            else:
                assert u == v


@pytest.mark.parametrize(
    "shape, dtype", [("tiny", "float32"), ("tiny", "float64"), ("book", "float64")]
)
@pytest.mark.parametrize("key", bench.CASE_KEYS)
def test_reference_and_fastnn_agree(key, shape, dtype):
    case = bench.get_case(key)
    # fresh arguments for each implementation: relu's backward works in place on dout
    ref = case.reference(*case.make(shape, dtype))
    fast = case.fastnn(*case.make(shape, dtype))
    ok, msg = bench.outputs_close(ref, fast, dtype)
    assert ok, f"{key} {shape} {dtype}: {msg}"
    for out in fast:
        if isinstance(out, np.ndarray) and out.dtype.kind == "f":
            assert out.dtype == np.dtype(dtype), f"{key}: fastnn output dtype {out.dtype}"


def test_relu_backward_results_are_not_trivially_shared():
    case = bench.get_case("relu")
    args = case.make("tiny", "float64")
    out, mask, dx = case.fastnn(*args)
    assert mask.any() and (~mask).any()
    assert np.all(dx[mask] == 0) and np.all(dx[~mask] != 0)


def test_outputs_close_detects_differences():
    case = bench.get_case("conv2d")
    ref = case.reference(*case.make("tiny", "float64"))
    fast = list(case.fastnn(*case.make("tiny", "float64")))
    assert bench.outputs_close(ref, fast, "float64")[0]
    fast[2] = fast[2].copy()
    fast[2].flat[3] += 1e-6 * max(1.0, float(np.abs(fast[2]).max()))
    ok, msg = bench.outputs_close(ref, fast, "float64")
    assert not ok and "output 2" in msg
    ok, msg = bench.outputs_close(ref, fast[:2], "float64")
    assert not ok
    pool = bench.get_case("max_pool2d")
    ref = pool.reference(*pool.make("tiny", "float32"))
    fast = list(pool.fastnn(*pool.make("tiny", "float32")))
    fast[1] = (fast[1] + 1) % 9
    assert not bench.outputs_close(ref, fast, "float32")[0]


def test_work_counts():
    conv = bench.get_case("conv2d")
    gemm = 2 * 100 * 30 * 24 * 24 * 1 * 5 * 5
    assert conv.work("book", "float32") == 3 * gemm + 2 * 100 * 30 * 24 * 24
    assert conv.work("book", "float32") == conv.work("book", "float64")
    assert bench.get_case("conv2d_fwd").work("book") == gemm + 100 * 30 * 24 * 24
    n = 100 * 30 * 24 * 24
    assert bench.get_case("sigmoid").work("book", "float64") == 5 * 8 * n
    assert bench.get_case("sigmoid").work("book", "float32") == 5 * 4 * n
    im = bench.get_case("im2col")
    assert im.work("book", "float32") == 4 * (100 * 28 * 28 + 100 * 24 * 24 * 25)
    for case in bench.CASES:
        for shape in bench.SHAPE_NAMES:
            assert case.work(shape, "float32") > 0


def test_bad_names_raise():
    with pytest.raises(ValueError, match="unknown op"):
        bench.get_case("conv3d")
    with pytest.raises(ValueError, match="no shape"):
        bench.get_case("relu").make("huge", "float32")
    with pytest.raises(ValueError, match="dtype"):
        bench.get_case("relu").make("tiny", "float16")
    with pytest.raises(ValueError, match="implementation"):
        bench.get_case("relu").callable("jax")
    with pytest.raises(ValueError, match="unknown op"):
        bench.run(ops=["nope"], impls=["fastnn"])
    with pytest.raises(ValueError, match="unknown shape"):
        bench.run(ops=["relu"], shapes=["huge"], impls=["fastnn"])
    with pytest.raises(ValueError, match="unknown implementation"):
        bench.run(ops=["relu"], shapes=["tiny"], impls=["jax"])
    with pytest.raises(ValueError, match="repeat"):
        bench.run(ops=["relu"], shapes=["tiny"], repeat=0)
    with pytest.raises(ValueError, match="budget"):
        bench.run(ops=["relu"], shapes=["tiny"], budget=0)


# --------------------------------------------------------------------------- run / table
def test_run_result_records():
    seen = []
    results = bench.run(ops=["relu", "softmax_cross_entropy fwd+bwd (labels)"],
                        shapes=["tiny"], dtypes=["float32", "float64"], repeat=3,
                        impls=["reference", "fastnn"], callback=seen.append)
    assert [(r["key"], r["dtype"]) for r in results] == [
        ("relu", "float32"), ("relu", "float64"), ("softmax_ce", "float32"),
        ("softmax_ce", "float64")]
    assert seen == results
    for r in results:
        assert r["shape"] == "tiny" and r["threads"] >= 1
        assert r["repeats"] == {"reference": 3, "fastnn": 3}
        assert r["reference_ms"] > 0 and r["fastnn_ms"] > 0 and r["torch_ms"] is None
        assert r["speedup"] == pytest.approx(r["reference_ms"] / r["fastnn_ms"])
        assert r["torch_ratio"] is None
        assert r["rate_unit"] == "GB/s"
        assert r["rate"] == pytest.approx(r["work"] / (r["fastnn_ms"] * 1e-3) / 1e9)
    json.dumps(results)  # JSON-serialisable as is


def test_run_adaptive_repeat_and_threads():
    import fastnn

    before = fastnn.get_num_threads()
    results = bench.run(ops=["sigmoid"], shapes=["tiny"], dtypes=["float64"], budget=0.01,
                        max_repeat=7, impls=["fastnn"], threads=1)
    assert fastnn.get_num_threads() == before
    (r,) = results
    assert r["threads"] == 1
    assert 1 <= r["repeats"]["fastnn"] <= 7
    assert r["reference_ms"] is None and r["speedup"] is None


def test_format_table_contains_every_op():
    results = bench.run(shapes=["tiny"], dtypes=["float32"], repeat=1, warmup=True,
                        impls=["reference", "fastnn"])
    text = bench.format_table(results)
    for case in bench.CASES:
        assert case.op in text
        assert case.shapes["tiny"].desc in text
    assert "speed-up" in text and "GFLOP/s" in text and "GB/s" in text
    assert "torch" not in text.splitlines()[0]
    assert len(text.splitlines()) >= len(bench.CASES) + 2


def test_format_table_torch_columns_and_loaded_json():
    rows = [
        {"key": "relu", "op": "relu fwd+bwd", "shape": "book", "shape_desc": "x(1)",
         "dtype": "float32", "work": 2e9, "unit": "B", "reference_ms": 10.0,
         "fastnn_ms": 2.0, "torch_ms": 4.0, "threads": 2},
        {"key": "conv2d", "op": "conv2d fwd+bwd", "shape": "book", "shape_desc": "x(2)",
         "dtype": "float64", "work": 1e9, "unit": "FLOP", "reference_ms": 30.0,
         "fastnn_ms": 10.0, "torch_ms": None, "threads": 2},
    ]
    text = bench.format_table(rows)
    header = text.splitlines()[0]
    assert "torch ms" in header and "torch/fastnn" in header
    relu_line = next(line for line in text.splitlines() if line.startswith("relu"))
    assert "5.00x" in relu_line and "2.00x" in relu_line and "1000.0 GB/s" in relu_line
    conv_line = next(line for line in text.splitlines() if line.startswith("conv2d"))
    assert "3.00x" in conv_line and "100.0 GFLOP/s" in conv_line
    assert bench.format_table([]) == "(no results)"


# --------------------------------------------------------------------------- optional torch
def test_torch_is_optional():
    impls = bench.available_implementations()
    assert impls[:2] == ("reference", "fastnn")
    assert ("torch" in impls) == bench.torch_available()


@pytest.mark.parametrize("key", bench.CASE_KEYS)
def test_torch_agrees_when_installed(key):
    pytest.importorskip("torch")
    case = bench.get_case(key)
    for dtype in DTYPES:
        ref = case.reference(*case.make("tiny", dtype))
        got = case.callable("torch")(*case.make("tiny", dtype))
        assert len(got) == len(ref)
        for i, (e, a) in enumerate(zip(ref, got)):
            if a is None:  # an output torch does not produce (argmax, mask)
                continue
            if key.startswith("softmax_ce") and i == 0:
                continue  # torch's loss is exact; the book's adds 1e-7 inside the log
            tol = 1e-4 if dtype == "float32" else 1e-10
            np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=tol, atol=tol,
                                       err_msg=f"{key} {dtype} output {i}")


# --------------------------------------------------------------------------- asv
@pytest.fixture(scope="module")
def asv_modules():
    sys.path.insert(0, str(ASV_DIR))
    try:
        ops = importlib.import_module("benchmarks.ops")
        startup = importlib.import_module("benchmarks.startup")
    finally:
        sys.path.remove(str(ASV_DIR))
    return ops, startup


def test_asv_config():
    conf = json.loads((ASV_DIR / "asv.conf.json").read_text())
    assert conf["version"] == 1
    assert conf["project"] == "fastnn-numba"
    assert conf["repo"] == ".."
    assert conf["environment_type"] == "existing"
    assert (ASV_DIR / conf["benchmark_dir"] / "__init__.py").is_file()
    assert "--no-index" in conf["build_command"][0]
    assert "--no-index" in conf["install_command"][0]
    for key in ("results_dir", "html_dir", "env_dir"):
        assert not Path(conf[key]).is_absolute() and ".." not in conf[key]


def test_asv_op_classes_cover_the_table(asv_modules):
    ops, _ = asv_modules
    classes = [c for name, c in vars(ops).items()
               if isinstance(c, type) and not name.startswith("_") and hasattr(c, "time_op")]
    assert sorted(c.key for c in classes) == sorted(bench.CASE_KEYS)
    for cls in classes:
        impls, dtypes, shapes = cls.params
        assert impls[:2] == ["reference", "fastnn"]
        assert dtypes == DTYPES
        assert shapes == list(bench.asv_shapes(cls.key)) and shapes[:2] == list(bench.ASV_SHAPES)
        assert "tiny" not in shapes
        assert cls.param_names == ["impl", "dtype", "shape"]


def test_asv_setup_and_one_call(asv_modules):
    ops, _ = asv_modules
    for key in bench.CASE_KEYS:
        cls = next(c for c in vars(ops).values()
                   if isinstance(c, type) and getattr(c, "key", None) == key)
        for impl in ("reference", "fastnn"):
            b = cls()
            b.setup(impl, "float32", "book")
            b.time_op(impl, "float32", "book")
            b.teardown(impl, "float32", "book")


def test_asv_peakmem_and_startup(asv_modules):
    ops, startup = asv_modules
    mem = ops.ConvMemory()
    for impl in ("reference", "fastnn"):
        mem.setup(impl, "float64", "book")
        mem.peakmem_conv2d_fwd_bwd(impl, "float64", "book")
    s = startup.Startup()
    s.setup()
    for name in ("timeraw_import", "timeraw_import_and_first_call",
                 "timeraw_import_numpy_baseline"):
        code = getattr(s, name)()
        assert isinstance(code, str)
        exec(compile(code, name, "exec"), {})  # the code asv runs in a fresh interpreter


def test_asv_discovery_finds_the_benchmarks(asv_modules):
    discovery = pytest.importorskip("asv_runner.discovery")
    sys.path.insert(0, str(ASV_DIR))
    try:
        names = {b.name for b in discovery.disc_benchmarks(str(ASV_DIR / "benchmarks"))}
    finally:
        sys.path.remove(str(ASV_DIR))
    assert "ops.Conv2d.time_op" in names
    assert "ops.ConvMemory.peakmem_conv2d_fwd_bwd" in names
    assert "startup.Startup.timeraw_import_and_first_call" in names
    assert len([n for n in names if n.endswith(".time_op")]) == len(bench.CASES)
