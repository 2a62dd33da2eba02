"""Fuzz the functional API and the layers with hypothesis, in a subprocess.

The cases live in ``tests/_fuzz_cases.py`` (see its docstring for the oracle). They run in a
child ``pytest`` so that a segfault, abort or bounds violation inside a Numba kernel is reported
as a failure of this test (with the child's output) instead of killing the test runner.

* ``test_fuzz_quick``: a small profile (``FASTNN_FUZZ_EXAMPLES``, default 25 per case, 16
  cases), part of the default run.
* ``test_fuzz_10k``: >= 10,000 examples in total; marked ``slow`` and skipped unless
  ``FASTNN_SLOW_TESTS=1``.

Repro of a failure: the child prints hypothesis' falsifying example and a
``@reproduce_failure`` blob; rerun with
``FASTNN_FUZZ_EXAMPLES=... python -m pytest tests/_fuzz_cases.py -k <case>``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "_fuzz_cases.py"
N_CASES = 16  # test functions in _fuzz_cases.py (checked below)
CRASH_MARKERS = ("Fatal Python error", "Segmentation fault", "core dumped", "Aborted")


def _run_fuzz(examples: int, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, FASTNN_FUZZ_EXAMPLES=str(examples), PYTHONFAULTHANDLER="1")
    cmd = [
        sys.executable, "-m", "pytest", str(CASES), "-q", "-p", "no:cacheprovider",
        "-W", "ignore::RuntimeWarning", "-W", "ignore::DeprecationWarning",
        "--hypothesis-show-statistics",
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _check(r: subprocess.CompletedProcess, examples: int) -> None:
    out = r.stdout + r.stderr
    tail = out[-6000:]
    assert r.returncode >= 0, f"fuzz child killed by signal {-r.returncode}:\n{tail}"
    for marker in CRASH_MARKERS:
        assert marker not in out, f"fuzz child crashed ({marker}):\n{tail}"
    assert r.returncode == 0, f"fuzz child failed (rc {r.returncode}):\n{tail}"
    m = re.search(r"(\d+) passed", out)
    assert m and int(m.group(1)) == N_CASES, f"expected {N_CASES} fuzz cases to pass:\n{tail}"
    # hypothesis' statistics: every case really ran its examples (none silently filtered away)
    ran = [int(n) for n in re.findall(r"- (\d+) passing(?: examples|,)", out)]  # old and new hypothesis
    assert len(ran) >= N_CASES, f"no hypothesis statistics for every case:\n{tail}"
    assert sum(ran) >= N_CASES * examples * 0.9, f"only {sum(ran)} examples ran:\n{tail}"


def test_fuzz_quick():
    examples = int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "25"))
    _check(_run_fuzz(examples, timeout=600), examples)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FASTNN_SLOW_TESTS") != "1",
                    reason="set FASTNN_SLOW_TESTS=1 to run the 10,000-example fuzz")
def test_fuzz_10k():
    examples = -(-10_000 // N_CASES)  # >= 10,000 in total
    _check(_run_fuzz(examples, timeout=3600), examples)
