"""Tests of the ``fastnn`` command line (fastnn.cli, ``python -m fastnn``)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli

# A tiny training run: a couple of seconds even on a busy 2-core machine.
TINY_TRAIN = ["train", "--net", "two_layer", "--epochs", "1", "--train-size", "300",
              "--test-size", "200", "--batch-size", "50", "--eval-samples", "0"]


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- top level
def test_version_help_and_no_command(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and fastnn.__version__ in out
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and "--epochs" in out and "--train-size" in out
    code, _, err = run_cli(capsys)
    assert code == 2 and "train" in err and "bench" in err


def test_usage_errors_exit_2_without_traceback(capsys):
    for argv, needle in [
        (["frobnicate"], "invalid choice"),
        (["train", "--epochs", "0"], "positive integer"),
        (["train", "--lr", "-1"], "positive number"),
        (["train", "--net", "resnet"], "invalid choice"),
        (["bench", "--ops", "conv3d"], "unknown op 'conv3d'"),
        (["bench", "--shapes", "huge"], "unknown shape 'huge'"),
        (["bench", "--threads", "100000", "--ops", "relu"], "--threads"),
    ]:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert needle in err, (argv, err)
        assert "Traceback" not in err


# --------------------------------------------------------------------------- info
def test_info(capsys):
    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    for needle in ("fastnn", "numpy", "numba", "threads", "threading layer", "numba cache",
                   "compiled signatures", "conv2d_forward_kernel", "float32[4d]"):
        assert needle in out, needle
    assert fastnn.threading_layer() in out


def test_info_json(capsys):
    code, out, _ = run_cli(capsys, "info", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["fastnn"] == fastnn.__version__
    assert info["numpy"] == np.__version__
    assert info["threads"] == fastnn.get_num_threads()
    assert isinstance(info["cache_enabled"], bool) and info["cache_dir"]
    sigs = info["compiled_signatures"]
    assert any("float32" in s for s in sigs["conv2d_forward_kernel"])
    assert any("float64" in s for s in sigs["conv2d_forward_kernel"])


def test_python_dash_m_info():
    proc = subprocess.run([sys.executable, "-m", "fastnn", "info"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "threading layer" in proc.stdout and "numba cache" in proc.stdout


# --------------------------------------------------------------------------- bench
def test_bench_json(capsys, tmp_path):
    path = tmp_path / "out.json"
    code, out, _ = run_cli(capsys, "bench", "--ops", "relu", "softmax_ce", "--shapes", "tiny",
                           "--dtype", "float32", "--repeat", "2", "--no-torch",
                           "--json", str(path))
    assert code == 0
    assert "relu fwd+bwd" in out and "softmax_cross_entropy fwd+bwd (labels)" in out
    assert "speed-up" in out and str(path) in out
    doc = json.loads(path.read_text())
    assert doc["fastnn"] == fastnn.__version__ and doc["threads"] >= 1
    assert [(r["key"], r["shape"], r["dtype"]) for r in doc["results"]] == [
        ("relu", "tiny", "float32"), ("softmax_ce", "tiny", "float32")]
    for r in doc["results"]:
        assert r["reference_ms"] > 0 and r["fastnn_ms"] > 0 and r["torch_ms"] is None
        assert r["repeats"] == {"reference": 2, "fastnn": 2}


def test_bench_threads_are_restored(capsys):
    before = fastnn.get_num_threads()
    code, out, _ = run_cli(capsys, "bench", "--ops", "sigmoid", "--shapes", "tiny", "--dtype",
                           "float64", "--repeat", "1", "--threads", "1", "--no-torch")
    assert code == 0 and "threads: 1" in out
    assert fastnn.get_num_threads() == before


def test_bench_list(capsys):
    code, out, _ = run_cli(capsys, "bench", "--list")
    assert code == 0
    for key in ("conv2d", "max_pool2d", "softmax_ce_onehot", "relu", "sigmoid"):
        assert key in out
    assert "x(100,1,28,28) W(30,1,5,5)" in out


# --------------------------------------------------------------------------- train
def test_train_tiny(capsys, tmp_path):
    save = tmp_path / "params.pkl"
    code, out, _ = run_cli(capsys, *TINY_TRAIN, "--save", str(save))
    assert code == 0
    assert "=== epoch:1, train acc:" in out
    assert "train loss:" not in out  # per-iteration lines hidden unless --verbose
    assert "test acc:" in out
    final = [line for line in out.splitlines() if line.startswith("final test accuracy")]
    assert len(final) == 1 and "images/s" in final[0] and "(200 images)" in final[0]
    acc = float(final[0].split()[3])
    assert 0 <= acc <= 100
    with open(save, "rb") as fh:
        params = pickle.load(fh)
    assert set(params) == {"W1", "b1", "W2", "b2"} and params["W1"].shape == (784, 50)
    assert params["W1"].dtype == np.float64


def test_train_is_seeded_and_verbose_shows_losses(capsys):
    code, out1, _ = run_cli(capsys, *TINY_TRAIN, "--verbose", "--dtype", "float32")
    assert code == 0
    losses = [line for line in out1.splitlines() if line.startswith("train loss:")]
    assert len(losses) == 6  # 300 images / batch 50, one epoch
    code, out2, _ = run_cli(capsys, *TINY_TRAIN, "--verbose", "--dtype", "float32")
    assert [line for line in out2.splitlines() if line.startswith("train loss:")] == losses


def test_train_quiet(capsys):
    code, out, _ = run_cli(capsys, *TINY_TRAIN, "--quiet")
    assert code == 0
    assert out.strip().startswith("final test accuracy") and len(out.strip().splitlines()) == 1


def test_train_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    code, out, _ = run_cli(capsys, *TINY_TRAIN, "--plot", str(png))
    assert code == 0 and png.stat().st_size > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_input_errors(capsys, tmp_path):
    missing = tmp_path / "nope"
    code, _, err = run_cli(capsys, *TINY_TRAIN, "--data", str(missing))
    assert code == 2 and "cannot load MNIST" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "train", "--train-size", "10000000")
    assert code == 2 and "--train-size" in err
    code, _, err = run_cli(capsys, *TINY_TRAIN, "--save", str(tmp_path / "no" / "p.pkl"))
    assert code == 2 and "--save" in err
    code, _, err = run_cli(capsys, *TINY_TRAIN, "--threads", "100000")
    assert code == 2 and "--threads" in err
    code, out, err = run_cli(capsys, *TINY_TRAIN, "--plot", str(tmp_path / "curves.xyz"))
    assert code == 2 and "--plot" in err and "final test accuracy" not in out  # before training


def test_train_reads_idx_directory(capsys, tmp_path):
    """--data DIR reads the four standard IDX files (written here from the bundled digits)."""
    import gzip

    from fastnn.datasets import load_mnist

    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False)

    def write(name, arr, magic, dims):
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
        with gzip.open(tmp_path / name, "wb") as fh:
            fh.write(header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes())

    write("train-images-idx3-ubyte.gz", x_train[:120], 0x803, (120, 28, 28))
    write("train-labels-idx1-ubyte.gz", t_train[:120], 0x801, (120,))
    write("t10k-images-idx3-ubyte.gz", x_test[:60], 0x803, (60, 28, 28))
    write("t10k-labels-idx1-ubyte.gz", t_test[:60], 0x801, (60,))
    code, out, err = run_cli(capsys, "train", "--net", "two_layer", "--epochs", "1",
                             "--data", str(tmp_path), "--quiet")
    assert code == 0, err
    assert "(60 images)" in out


@pytest.mark.skipif(os.environ.get("FASTNN_SLOW_TESTS") != "1",
                    reason="full default run (~1 min); set FASTNN_SLOW_TESTS=1")
@pytest.mark.slow
def test_default_train_reaches_95_percent(capsys):
    code, out, _ = run_cli(capsys, "train")
    assert code == 0
    final = next(line for line in out.splitlines() if line.startswith("final test accuracy"))
    assert float(final.split()[3]) >= 95.0
