"""The d2l chapter-3 examples in ``examples/`` (small budgets) and a Fashion-MNIST-format data
set written by the test itself."""

from __future__ import annotations

import gzip
import re
import runpy
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnn.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run_example(name, argv, monkeypatch):
    """Run ``examples/<name>`` as ``__main__`` with ``argv``; returns its globals."""
    path = EXAMPLES / name
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    return runpy.run_path(str(path), run_name="__main__")


def _write_idx(path, array, magic):
    """Write ``array`` (uint8) as a gzip-compressed IDX file with the given magic number."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fashion_like(directory, n_train=300, n_test=100, seed=0):
    """Write the four Fashion-MNIST files: 28x28 uint8 images of 10 noisy class templates."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, size=(10, 28, 28))

    def split(n):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        noise = rng.integers(-60, 61, size=(n, 28, 28))
        images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
        return images, labels

    directory = Path(directory)
    (x_tr, t_tr), (x_te, t_te) = split(n_train), split(n_test)
    _write_idx(directory / "train-images-idx3-ubyte.gz", x_tr, 0x00000803)
    _write_idx(directory / "train-labels-idx1-ubyte.gz", t_tr, 0x00000801)
    _write_idx(directory / "t10k-images-idx3-ubyte.gz", x_te, 0x00000803)
    _write_idx(directory / "t10k-labels-idx1-ubyte.gz", t_te, 0x00000801)
    return (x_tr, t_tr), (x_te, t_te)


@pytest.fixture
def fashion_dir(tmp_path):
    d = tmp_path / "fashion"
    d.mkdir()
    raw = write_fashion_like(d)
    return d, raw


def test_fashion_format_file_roundtrip(fashion_dir):
    d, ((x_tr, t_tr), (x_te, t_te)) = fashion_dir
    (x_train, t_train), (x_test, t_test) = load_fashion_mnist(d)
    assert x_train.shape == (300, 784) and x_train.dtype == np.float32
    assert x_test.shape == (100, 784)
    np.testing.assert_array_equal(t_train, t_tr)
    np.testing.assert_array_equal(t_test, t_te)
    np.testing.assert_allclose(x_train, x_tr.reshape(300, 784) / np.float32(255.0))
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "t-shirt" and FASHION_MNIST_CLASSES[9] == "ankle boot"


def test_linear_regression_example(monkeypatch, capsys):
    g = _run_example("linear_regression.py", ["--epochs", "3", "--num-examples", "1000"],
                     monkeypatch)
    out = capsys.readouterr().out
    assert re.search(r"epoch 3, loss \d", out)
    errs = re.findall(r"error in estimating w: \[([^\]]*)\]", out)
    assert errs and all(abs(float(v)) < 0.01 for v in errs[0].split())
    err_b = float(re.search(r"error in estimating b: (\S+)", out).group(1))
    assert abs(err_b) < 0.01
    assert "main" in g


def test_softmax_regression_example_bundled_digits(monkeypatch, capsys):
    _run_example(
        "softmax_regression.py", ["--epochs", "2", "--train-size", "1024"], monkeypatch
    )
    out = capsys.readouterr().out
    # the stability demo: naive softmax gives nan, log of an underflowed 0 gives inf,
    # the log-sum-exp loss is finite
    assert "nan" in out.splitlines()[0]
    assert re.search(r"-log\(softmax\)\[y\]:\s+inf", out)
    assert re.search(r"log-sum-exp loss:\s+1600\.0", out)
    accs = [float(a) for a in re.findall(r"test acc (\d\.\d+)", out)]
    assert len(accs) == 2 and accs[-1] > 0.6
    assert "predicted:" in out


def test_softmax_regression_example_fashion_dir(fashion_dir, monkeypatch, capsys):
    d, _ = fashion_dir
    _run_example(
        "softmax_regression.py", ["--data", str(d), "--epochs", "3", "--batch-size", "32"],
        monkeypatch,
    )
    out = capsys.readouterr().out
    accs = [float(a) for a in re.findall(r"test acc (\d\.\d+)", out)]
    assert len(accs) == 3 and accs[-1] > 0.9  # noisy templates are easy to separate
    predicted = re.search(r"predicted: \[(.*)\]", out).group(1)
    assert any(name in predicted for name in FASHION_MNIST_CLASSES)


# --------------------------------------------------------------------------- CLI (tiny budgets)
def _cli(capsys, *argv):
    from fastnn import cli

    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_linear_regression(capsys):
    code, out, err = _cli(capsys, "train", "--net", "linear_regression", "--quiet")
    assert code == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith("final test R^2") and "(200 samples)" in line
    assert float(line.split()[3].rstrip(",")) > 0.999
    code, out, err = _cli(capsys, "train", "--net", "linear_regression", "--epochs", "3")
    assert code == 0, err
    assert "SGD(lr=0.03), batch 10, 3 epochs" in out
    m = re.search(r"learned w \[\s*(\S+)\s+(\S+)\s*\], true w \[\s*2\.\s+-3\.4\]; "
                  r"learned b (\S+), true b 4\.2", out)
    assert m, out
    w1, w2, b = (float(v) for v in m.groups())
    assert abs(w1 - 2.0) < 0.01 and abs(w2 + 3.4) < 0.01 and abs(b - 4.2) < 0.01


def test_cli_softmax_regression_bundled(capsys, tmp_path):
    save = tmp_path / "sr.pkl"
    code, out, err = _cli(capsys, "train", "--net", "softmax_regression", "--epochs", "1",
                          "--train-size", "512", "--test-size", "200", "--eval-samples", "0",
                          "--save", str(save))
    assert code == 0, err
    assert "SoftmaxRegression (float64) on 512 training / 200 test images; SGD(lr=0.1), " \
           "batch 256, 1 epoch" in out
    assert "=== epoch:1, train acc:" in out
    final = [ln for ln in out.splitlines() if ln.startswith("final test accuracy")]
    assert len(final) == 1 and float(final[0].split()[3]) > 25  # 2 SGD steps; chance is 10
    import pickle

    with open(save, "rb") as f:
        params = pickle.load(f)
    assert set(params) == {"W", "b"} and params["W"].shape == (784, 10)


def test_cli_softmax_regression_fashion(fashion_dir, capsys):
    d, _ = fashion_dir
    code, out, err = _cli(capsys, "train", "--net", "softmax_regression", "--dataset",
                          "fashion", "--data", str(d), "--epochs", "3", "--batch-size", "30",
                          "--quiet")
    assert code == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith("final test accuracy") and "(100 images)" in line
    assert float(line.split()[3]) > 90


def test_cli_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    code, out, err = _cli(capsys, "train", "--net", "softmax_regression", "--epochs", "2",
                          "--train-size", "300", "--test-size", "100", "--plot", str(png))
    assert code == 0, err
    assert png.is_file() and png.stat().st_size > 1000
    assert f"curves saved to {png}" in out


def test_cli_errors(fashion_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("FASTNN_FASHION_DATA", raising=False)
    code, _, err = _cli(capsys, "train", "--net", "softmax_regression", "--dataset", "fashion")
    assert code == 2 and "cannot load Fashion-MNIST" in err and "Traceback" not in err
    d, _ = fashion_dir
    code, _, err = _cli(capsys, "train", "--net", "linear_regression", "--data", str(d))
    assert code == 2 and "do not apply to --net linear_regression" in err
    code, _, err = _cli(capsys, "train", "--net", "softmax_regression", "--dataset", "cifar")
    assert code == 2 and "invalid choice" in err
