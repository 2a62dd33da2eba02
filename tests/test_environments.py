"""fastnn in unusual environments, each in a subprocess with its own environment.

* ``NUMBA_DISABLE_JIT=1``: the kernels run as plain Python (how one debugs them) and a subset
  of the parity tests passes.
* A corrupted Numba cache (garbage ``*.nbi`` / ``*.nbc`` files): the kernels should recompile
  and compute right (fastnn.kernels._jit treats a corrupt cache file as a miss; Numba alone
  raises EOFError/UnpicklingError).
* A read-only installed copy of the package with an uncreatable ``NUMBA_CACHE_DIR``: it imports,
  computes and warns once.

Unwritable cache dirs of the editable install, threads and fork are in tests/test_runtime.py.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The fast subset under NUMBA_DISABLE_JIT=1: every kernel's Python body runs (~1400 tests,
# about a minute; `coverage run --source=kernels` over it: 91 % of kernels/ lines, see README).
# Hypothesis and thread tests are left out (slow in pure Python / nothing to test without JIT).
DISABLE_JIT_FILES = [
    "tests/test_parity.py", "tests/test_layers_kernels.py", "tests/test_numgrad.py",
    "tests/test_optimizers.py", "tests/test_functions.py", "tests/test_layers.py",
    "tests/test_gradcheck.py", "tests/test_data.py",
]
DISABLE_JIT_SUBSET = "not hypothesis and not thread"

#: computes conv2d + max_pool2d (both 3x3/2x2 paths), compares with fastnn.reference, prints ok
CHECK_CODE = """
    import warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        import numpy as np
        import fastnn, fastnn.functional as F
        from fastnn import reference as R
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 3, 7, 7))
        W = rng.standard_normal((4, 3, 3, 3))
        b = rng.standard_normal(4)
        for alg in ("direct", "gemm"):
            np.testing.assert_allclose(F.conv2d(x, W, b, 1, 1, algorithm=alg),
                                       R.conv2d_forward(x, W, b, 1, 1), rtol=1e-10, atol=1e-10)
        for args in ((2, 2, 2, 0), (3, 3, 2, 1)):
            out, am = F.max_pool2d(x, *args, return_argmax=True)
            want, want_am = R.max_pool2d_forward(x, *args)
            np.testing.assert_array_equal(out, want)
            np.testing.assert_array_equal(am, want_am)
    cache_warnings = [str(m.message) for m in w if "cache" in str(m.message).lower()]
    print("ok", len(cache_warnings), fastnn.__file__)
"""


def _env(**extra):
    env = dict(os.environ)
    for k in ("NUMBA_DISABLE_JIT", "NUMBA_CACHE_DIR", "NUMBA_CACHE_LOCATOR_CLASSES"):
        env.pop(k, None)
    env.update(extra)
    return env


def _python(code, env, cwd=ROOT, timeout=600):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_disable_jit_subset_passes():
    r = subprocess.run(
        [sys.executable, "-m", "pytest", *DISABLE_JIT_FILES, "-q", "-x",
         "-p", "no:cacheprovider", "-k", DISABLE_JIT_SUBSET],
        env=_env(NUMBA_DISABLE_JIT="1"), cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def test_disable_jit_softmax_sigmoid():
    code = """
        import numpy as np, fastnn.functional as F
        from fastnn import reference as R
        x = np.linspace(-3, 3, 12).reshape(3, 4)
        np.testing.assert_allclose(F.softmax(x), R.softmax(x), rtol=1e-12)
        np.testing.assert_allclose(F.sigmoid(x), R.sigmoid_forward(x), rtol=1e-12)
        print("ok")
    """
    r = _python(code, _env(NUMBA_DISABLE_JIT="1"))
    assert r.returncode == 0, r.stderr[-3000:]


def test_corrupted_cache_recompiles(tmp_path):
    cache = tmp_path / "numba-cache"
    env = _env(NUMBA_CACHE_DIR=str(cache))
    r = _python(CHECK_CODE, env)
    assert r.returncode == 0, r.stderr[-3000:]
    files = [p for p in cache.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert any(p.suffix == ".nbi" for p in files) and any(p.suffix == ".nbc" for p in files), (
        f"warm-up wrote no cache files under {cache}"
    )
    rng = random.Random(0)  # seeded: a failure must reproduce
    for i, p in enumerate(files):  # truncated, random and empty garbage
        p.write_bytes([b"\x00garbage" * 7, rng.randbytes(100), b""][i % 3])
    r = _python(CHECK_CODE, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[:1] == ["ok"], r.stdout


@pytest.mark.parametrize("seed", range(4))
def test_garbage_cache_files_read_as_a_miss(tmp_path, seed):
    """Whatever bytes a ``.nbi``/``.nbc`` holds, loading it is a miss, never an exception.

    In-process and fast, so it can try many payloads: random bytes of many lengths, valid pickle
    headers with garbage after them, a huge length prefix (``MemoryError`` in ``pickle.load``),
    and truncations of a real index.
    """
    import numba
    from numba.core.caching import IndexDataCacheFile

    import fastnn.kernels._jit  # noqa: F401  (installs the tolerant loaders)

    rng = random.Random(seed)
    real = pickle.dumps(numba.__version__, protocol=-1) + pickle.dumps(("stamp", {"k": "d.nbc"}))
    payloads = [b"", b"\x80", b"\x80\x05\x95" + b"\xff" * 8]  # pickle header, 2**64-1 frame
    payloads += [rng.randbytes(rng.randrange(1, 400)) for _ in range(150)]
    payloads += [real[:k] for k in range(len(real))]
    payloads += [pickle.dumps(numba.__version__, protocol=-1) + rng.randbytes(60) for _ in range(50)]
    cache = IndexDataCacheFile(str(tmp_path), "kern", "stamp")
    for payload in payloads:
        (tmp_path / "kern.nbi").write_bytes(payload)
        (tmp_path / "d.nbc").write_bytes(payload)
        assert cache._load_index() in ({}, {"k": "d.nbc"}), payload
        assert cache.load(("any", "key")) is None, payload
        try:  # a value (bytes that happen to be a pickle) or OSError (a miss), nothing else
            cache._load_data("d.nbc")
        except OSError:
            pass


def test_data_file_that_unpickles_to_junk_is_a_miss(tmp_path):
    """A ``.nbc`` that is a valid pickle of the wrong thing: Numba recompiles, no exception."""
    (tmp_path / "junkmod.py").write_text(
        "import fastnn.kernels._jit\n"
        "import numba\n"
        "@numba.njit(cache=True)\n"
        "def f(x):\n"
        "    return x + 1\n"
    )
    code = "import junkmod; print(junkmod.f(41))"
    env = _env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))
    r = _python(code, env)
    assert (r.returncode, r.stdout.split()) == (0, ["42"]), r.stderr[-3000:]
    data = list((tmp_path / "cache").rglob("*.nbc"))
    assert data, "no cache data file written"
    for p in data:
        p.write_bytes(pickle.dumps((1, "not", "a", "compile result")))
    r = _python(code, env)
    assert (r.returncode, r.stdout.split()) == (0, ["42"]), r.stderr[-3000:]


def _copy_installed_layout(dest: Path) -> Path:
    """``dest/fastnn`` with ``dest/fastnn/kernels`` = kernels/, as a wheel installs it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    pkg = dest / "fastnn"
    shutil.copytree(ROOT / "fastnn", pkg, ignore=ignore)
    shutil.copytree(ROOT / "kernels", pkg / "kernels", ignore=ignore)
    return pkg


def _make_read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_read_only_install_computes_and_warns_once(tmp_path):
    site = tmp_path / "site"
    pkg = _copy_installed_layout(site)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    _make_read_only(site)
    try:
        env = _env(
            PYTHONPATH=str(site),
            PYTHONDONTWRITEBYTECODE="1",
            NUMBA_CACHE_DIR=str(blocker / "cache"),  # uncreatable, even by root
            # root can write into the chmod'ed tree, so allow only the user-provided locator,
            # as for a non-root user with a read-only site-packages
            NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator",
        )
        r = _python(CHECK_CODE, env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        ok, n_warnings, where = r.stdout.split()
        assert ok == "ok"
        assert Path(where).resolve().is_relative_to(pkg.resolve()), where  # the copy, not ROOT
        assert n_warnings == "1", r.stdout
        written = [p for p in site.rglob("*") if p.suffix in (".nbi", ".nbc", ".pyc")]
        assert not written, written
    finally:
        _make_writable(site)
