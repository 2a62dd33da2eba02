"""Runtime behaviour: threads, fork, thread counts, cache fallback, warm-up, packaging."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastnn
import fastnn.functional as F
from fastnn import reference as R

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, env_extra: dict | None = None, timeout: int = 300):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _conv_case(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3, 11, 9)).astype(dtype)
    W = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    return x, W, b


def test_threading_layer_is_tbb():
    F.conv2d(*_conv_case())  # initialise the layer
    assert fastnn.threading_layer() == "tbb"


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="set_num_threads"):
        fastnn.set_num_threads(0)
    with pytest.raises(TypeError, match="set_num_threads"):
        fastnn.set_num_threads(1.5)
    old = fastnn.get_num_threads()
    fastnn.set_num_threads(1)
    assert fastnn.get_num_threads() == 1
    fastnn.set_num_threads(old)


def test_two_python_threads_at_once():
    x, W, b = _conv_case()
    expected = R.conv2d_forward(x, W, b, 1, 1)
    errors = []

    def work(nthreads):
        try:
            fastnn.set_num_threads(nthreads)  # per-thread setting, inside the thread
            for _ in range(30):
                for algorithm in ("direct", "gemm"):
                    out = F.conv2d(x, W, b, 1, 1, algorithm)
                    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
                F.max_pool2d(x, 2, 2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, fastnn.get_num_threads())]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def _child_conv(algorithm):
    x, W, b = _conv_case()
    return float(F.conv2d(x, W, b, 1, 1, algorithm).sum())


def test_fork_after_parallel_call():
    x, W, b = _conv_case()
    # the parent runs parallel kernels (and BLAS inside them) before forking
    expected = [float(F.conv2d(x, W, b, 1, 1, a).sum()) for a in ("direct", "gemm")]
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        res = pool.map_async(_child_conv, ["direct", "gemm"]).get(timeout=120)
    assert res == expected


def test_blas_limit_is_restored_after_threads():
    """Two threads in the GEMM path at once: BLAS gets its original thread count back."""
    from threadpoolctl import threadpool_info

    from fastnn import _blas

    _blas._get_controller()
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    x, W, b = _conv_case()

    def work():
        for _ in range(20):
            F.conv2d(x, W, b, 1, 1, "gemm")

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert after == before


def test_same_result_one_and_max_threads():
    x, W, b = _conv_case(dtype=np.float32)
    old = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
        one = F.conv2d(x, W, b, 2, 1)
        fastnn.set_num_threads(old)
        many = F.conv2d(x, W, b, 2, 1)
    finally:
        fastnn.set_num_threads(old)
    assert np.array_equal(one, many)


def test_sixteen_threads_subprocess():
    """More Numba threads than cores: every kernel still matches the 1-thread result."""
    code = """
        import numpy as np, fastnn, fastnn.functional as F, numba
        assert numba.config.NUMBA_NUM_THREADS == 16, numba.config.NUMBA_NUM_THREADS
        rng = np.random.default_rng(3)
        x = rng.standard_normal((5, 4, 13, 12)); W = rng.standard_normal((6, 4, 3, 2))
        b = rng.standard_normal(6); t = rng.integers(0, 7, 33); z = rng.standard_normal((33, 7))
        def run():
            out = F.conv2d(x, W, b, 2, 1)
            res = [out, F.conv2d_backward_data(out, W, x.shape, 2, 1),
                   F.conv2d_backward_weight(x, out, W.shape, 2, 1), F.conv2d_backward_bias(out),
                   F.conv2d(x, W, b, 1, 1, "gemm"), F.conv2d(x, W, b, 2, 1, "gemm"),
                   F.conv2d_backward_data(out, W, x.shape, 2, 1, "gemm"),
                   F.conv2d_backward_weight(x, out, W.shape, 2, 1, "gemm"),
                   F.im2col(x, 3, 3, 1, 2), F.col2im(F.im2col(x, 3, 3, 1, 2), x.shape, 3, 3, 1, 2)]
            W1 = W[:, :, :1, :1].copy(); o1 = F.conv2d(x, W1, b, 1, 0, "gemm")  # 1x1 kernels
            res += [o1, F.conv2d_backward_data(o1, W1, x.shape, 1, 0, "gemm"),
                    F.conv2d_backward_weight(x, o1, W1.shape, 1, 0, "gemm")]
            p, a = F.max_pool2d(x, 3, 3, 2, 1, return_argmax=True)
            res += [p, F.max_pool2d_backward(p, a, x.shape, 3, 3, 2, 1)]
            loss, y = F.softmax_cross_entropy(z, t)
            res += [np.array(loss), F.softmax_cross_entropy_backward(y, t), F.relu(x)[0], F.sigmoid(x)]
            return res
        fastnn.set_num_threads(16); many = run()
        fastnn.set_num_threads(1); one = run()
        assert all(np.array_equal(a, b) for a, b in zip(one, many))
        print("ok", fastnn.threading_layer())
    """
    r = _run(code, {"NUMBA_NUM_THREADS": "16"})
    assert r.returncode == 0, r.stderr
    assert "ok tbb" in r.stdout


def test_unwritable_cache_dir_falls_back(tmp_path):
    """Unusable cache dir and no other locator: import works, warns once, computes."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    code = """
        import warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            import fastnn, fastnn.functional as F
            import numpy as np
            out = F.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))
        msgs = [str(x.message) for x in w if "cache" in str(x.message).lower()]
        from fastnn.kernels import _jit
        print(len(msgs), _jit.cache_enabled(), float(out.sum()))
    """
    env = {
        "NUMBA_CACHE_DIR": str(blocker / "cache"),  # cannot be created, even by root
        # only the (unwritable) user-provided locator: simulates a read-only install
        "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator",
    }
    r = _run(code, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "False", "36.0"]


def test_cache_fallback_mechanism(monkeypatch):
    """The njit wrapper retries without cache when Numba finds no cache locator."""
    import numba

    from fastnn.kernels import _jit

    real = numba.njit
    calls = []

    def fake_njit(**flags):
        calls.append(flags)
        if flags.get("cache"):
            def boom(fn):
                raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
            return boom
        return real(**flags)

    monkeypatch.setattr(_jit.numba, "njit", fake_njit)
    monkeypatch.setattr(_jit, "_warned_cache", False)
    monkeypatch.setattr(_jit, "_cache_ok", True)
    with pytest.warns(_jit.CacheFallbackWarning):
        f = _jit.njit(cache=True, nogil=True)(lambda a: a + 1)
    assert f(1) == 2
    assert calls[-1]["cache"] is False
    assert not _jit.cache_enabled()


def test_warmup_compiles_every_kernel():
    """After warmup of both dtypes every kernel has float32 and float64 signatures (the
    numerical-gradient kernels are net-specific, float64 only, and compile on first use)."""
    code = """
        import json, fastnn
        fastnn.warmup()
        print(json.dumps(fastnn.compiled_signatures()))
    """
    r = _run(code)
    assert r.returncode == 0, r.stderr
    sigs = json.loads(r.stdout.strip().splitlines()[-1])
    from fastnn.kernels import numgrad

    for name, found in sigs.items():
        if hasattr(numgrad, name):
            continue
        text = " ".join(found)
        assert "float64" in text and "float32" in text, (name, found)
    with pytest.raises(ValueError, match="warmup"):
        fastnn.warmup(dtypes=("float16",))


def test_warm_import_subprocess_uses_cache():
    """Second process: kernels load from the on-disk cache (no recompilation)."""
    code = """
        import json
        import fastnn, fastnn.kernels as K
        fastnn.warmup(dtypes=("float64",))
        hits = misses = 0
        for name in K.__all__:
            stats = getattr(K, name).stats
            hits += sum(stats.cache_hits.values())
            misses += sum(stats.cache_misses.values())
        print(json.dumps({"hits": hits, "misses": misses}))
    """
    _run(code)  # make sure the cache is warm
    r = _run(code)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout.strip().splitlines()[-1])
    assert counts["hits"] > 0 and counts["misses"] == 0, counts


@pytest.mark.slow
def test_wheel_contents(tmp_path):
    """The wheel ships fastnn/kernels/*.py and the bundled data, and no top-level `kernels`."""
    pytest.importorskip("build")
    r = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = tmp_path.glob("fastnn_numba-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastnn/kernels/conv2d.py" in names
    assert "fastnn/kernels/_jit.py" in names
    assert "fastnn/_bundled/mnist5k-images-idx3-ubyte.gz" in names
    assert "fastnn/_bundled/mnist5k-labels-idx1-ubyte.gz" in names
    assert "fastnn/_bundled/NOTICE.md" in names
    assert not any(n.startswith("kernels/") for n in names)


def test_numpy_blas_limited_at_import_and_settable():
    """Importing fastnn holds NumPy's BLAS to one thread (its spinning workers fight Numba's);
    FASTNN_BLAS_THREADS=keep opts out; set_blas_threads changes it later."""
    code = """
        import numpy as np
        from threadpoolctl import threadpool_info, threadpool_limits
        threadpool_limits(2, user_api="blas")
        import fastnn
        print([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        fastnn.set_blas_threads(2)
        print([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        fastnn.set_blas_threads(None)
        print([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
    """
    r = _run(code)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert set(eval(lines[0])) == {1}
    assert set(eval(lines[1])) == {2}
    assert set(eval(lines[2])) == {2}
    r = _run(code, {"FASTNN_BLAS_THREADS": "keep"})
    assert set(eval(r.stdout.strip().splitlines()[0])) == {2}
    with pytest.raises(ValueError, match="set_blas_threads"):
        fastnn.set_blas_threads(0)
