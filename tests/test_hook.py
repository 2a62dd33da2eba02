"""Tests of :mod:`fastnn.hook`: ``fastnn run`` on book-style scripts, install/uninstall, fallbacks.

The scripts of ``tests/book_scripts`` (chapters 3-8, in the book's style) are copied to a
temporary tree and each is run once through ``fastnn run`` in a subprocess, from its own
directory as the book's readers do; the tests check their printed results and the
``--report`` summary. In-process tests install the hook around a fake book tree to check the
served namespaces, the fallbacks to the original files, and that :func:`uninstall` restores
everything.
"""

from __future__ import annotations

import ast
import gzip
import math
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastnn.functional as F
import fastnn.optimizers as O
from fastnn import hook
from fastnn.hook import FastnnFallbackWarning

BOOK_SCRIPTS = Path(__file__).parent / "book_scripts"


#: ``fastnn run`` (the CLI subcommand), as the book's readers would type it.
RUN = [sys.executable, "-m", "fastnn", "run"]


def _env():
    env = dict(os.environ)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND", "FASTNN_DATA"):
        env.pop(var, None)
    return env


def run(script, *args, options=("--report",), cwd=None, runner=None):
    """Run ``script`` (a path) with ``fastnn run`` from its directory; return the process."""
    script = Path(script)
    cmd = [*(runner or RUN), *options, script.name, *map(str, args)]
    return subprocess.run(cmd, cwd=cwd or script.parent, env=_env(), capture_output=True,
                          text=True, timeout=600)


def served(proc):
    """Module names of the report's 'served by fastnn' line."""
    m = re.search(r"served by fastnn : (.*)", proc.stderr)
    assert m, proc.stderr
    return set(m.group(1).split(", "))


def value(proc, label):
    """The text after ``label`` on its stdout line."""
    for line in proc.stdout.splitlines():
        if line.startswith(label):
            return line[len(label):].strip()
    raise AssertionError(f"no line starting with {label!r} in:\n{proc.stdout}\n{proc.stderr}")


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr}"
    return proc


# --------------------------------------------------------------------------- book tree
@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    shutil.copytree(BOOK_SCRIPTS, root, dirs_exist_ok=True)
    rng = np.random.default_rng(0)
    weights = {
        "W1": (rng.standard_normal((784, 50)) * 0.1).astype(np.float32),
        "b1": (rng.standard_normal(50) * 0.1).astype(np.float32),
        "W2": (rng.standard_normal((50, 100)) * 0.1).astype(np.float32),
        "b2": (rng.standard_normal(100) * 0.1).astype(np.float32),
        "W3": (rng.standard_normal((100, 10)) * 0.1).astype(np.float32),
        "b3": (rng.standard_normal(10) * 0.1).astype(np.float32),
    }
    with open(root / "ch03" / "sample_weight.pkl", "wb") as f:
        pickle.dump(weights, f)
    return root


class _Runs:
    """Each book script run once (lazily), in dependency order."""

    NEEDS = {"ch07/conv_check.py": "ch07/train_convnet.py",
             "ch08/half_float_network.py": "ch08/train_deepnet.py"}

    def __init__(self, root):
        self.root = root
        self.done = {}

    def __getitem__(self, script):
        if script not in self.done:
            if script in self.NEEDS:
                ok(self[self.NEEDS[script]])
            self.done[script] = run(self.root / script)
        return self.done[script]


@pytest.fixture(scope="module")
def runs(tree):
    return _Runs(tree)


# --------------------------------------------------------------------------- scripts
def test_ch03_pickled_network_per_image(runs, tree):
    proc = ok(runs["ch03/neuralnet_mnist.py"])
    assert served(proc) >= {"common.functions", "dataset.mnist"}
    assert value(proc, "sigmoid from:") == "fastnn.functions"
    # the same inference in plain NumPy
    from fastnn.datasets import load_mnist

    with open(tree / "ch03" / "sample_weight.pkl", "rb") as f:
        w = pickle.load(f)
    _, (x, t) = load_mnist(normalize=True, flatten=True)

    def sig(a):
        return 1 / (1 + np.exp(-a))

    a3 = sig(sig(x @ w["W1"] + w["b1"]) @ w["W2"] + w["b2"]) @ w["W3"] + w["b3"]
    expected = float(np.mean(np.argmax(a3, axis=1) == t))
    assert float(value(proc, "Accuracy:")) == pytest.approx(expected, abs=1.5e-3)
    assert "fell back        : nothing" in proc.stderr


def test_ch04_sigmoid_two_layer_net_shadows_local_file(runs):
    proc = ok(runs["ch04/train_neuralnet.py"])
    # the chapter's own two_layer_net.py is on sys.path; fastnn's ch04 variant is served
    assert value(proc, "net:") == "two_layer_net sigmoid"
    assert served(proc) >= {"two_layer_net", "dataset.mnist"}
    assert "fell back        : nothing" in proc.stderr
    assert float(value(proc, "last loss:")) < 0.5 * float(value(proc, "first loss:"))
    assert float(value(proc, "final test acc:")) > 0.7


def test_ch04_numerical_gradient(runs):
    proc = ok(runs["ch04/gradient_simplenet.py"])
    assert value(proc, "numerical_gradient from:") == "fastnn.gradient"
    assert float(value(proc, "max abs error:")) < 1e-5
    assert served(proc) == {"common.functions", "common.gradient"}


def test_ch05_gradient_check(runs):
    proc = ok(runs["ch05/gradient_check.py"])
    assert value(proc, "net:") == "fastnn.nets.two_layer_net relu"
    for key in ("W1", "b1", "W2", "b2"):
        assert float(value(proc, key + ":")) < 1e-6


def test_ch05_training(runs):
    proc = ok(runs["ch05/train_neuralnet.py"])
    assert float(value(proc, "final test acc:")) > 0.75


def _book_optimizer_run(name):
    """The book's optimizers on Python floats (ch06/optimizer_compare_naive.py)."""
    x, y = -7.0, 2.0
    lr = {"SGD": 0.95, "Momentum": 0.1, "AdaGrad": 1.5, "Adam": 0.3}[name]
    v = np.zeros(2)
    h = np.zeros(2)
    m = np.zeros(2)
    for it in range(1, 31):
        p = np.array([x, y])
        g = np.array([x / 10.0, 2.0 * y])
        if name == "SGD":
            p = p - lr * g
        elif name == "Momentum":
            v = 0.9 * v - lr * g
            p = p + v
        elif name == "AdaGrad":
            h = h + g * g
            p = p - lr * g / (np.sqrt(h) + 1e-7)
        else:
            lr_t = lr * math.sqrt(1.0 - 0.999**it) / (1.0 - 0.9**it)
            m = m + (1 - 0.9) * (g - m)
            h = h + (1 - 0.999) * (g**2 - h)
            p = p - lr_t * m / (np.sqrt(h) + 1e-7)
        x, y = float(p[0]), float(p[1])
    return x, y


def test_ch06_optimizers_on_python_numbers_and_saved_figure(runs, tree):
    pytest.importorskip("matplotlib")
    proc = ok(runs["ch06/optimizer_compare_naive.py"])
    for name in ("SGD", "Momentum", "AdaGrad", "Adam"):
        got = [float(v) for v in value(proc, name + ":").split()]
        np.testing.assert_allclose(got, _book_optimizer_run(name), rtol=1e-9, atol=1e-12)
    assert proc.stderr.count("FastnnFallbackWarning") == 1
    assert "optimizer_compare_naive.py:" in proc.stderr  # the warning points at the script
    assert (tree / "ch06" / "optimizer_compare_naive_figure1.png").stat().st_size > 1000
    assert served(proc) == {"common.optimizer"}


def test_ch06_batch_norm_gradient_check(runs):
    proc = ok(runs["ch06/batch_norm_gradient_check.py"])
    keys = ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    for key in keys:
        assert float(value(proc, key + ":")) < 1e-5
    assert "common.multi_layer_net_extend" in served(proc)


def test_ch06_weight_decay_loop(runs):
    proc = ok(runs["ch06/overfit_weight_decay.py"])
    assert proc.stdout.count("epoch:") == 11
    assert int(value(proc, "smoothed loss points:")) == 31
    assert served(proc) >= {"common.multi_layer_net", "common.optimizer", "common.util"}


def test_ch06_dropout_with_trainer(runs):
    proc = ok(runs["ch06/overfit_dropout.py"])
    assert proc.stdout.count("=== epoch:") == 3
    assert "=============== Final Test Accuracy ===============" in proc.stdout
    assert value(proc, "epochs evaluated:") == "3"
    assert served(proc) >= {"common.multi_layer_net_extend", "common.trainer"}


def test_ch07_train_save_and_reload(runs):
    train = ok(runs["ch07/train_convnet.py"])
    assert value(train, "losses:") == "3"  # 300 images, batch 100, one epoch
    final_acc = float(value(train, "test acc:"))
    check = ok(runs["ch07/conv_check.py"])
    assert float(value(check, "conv max abs diff:")) < 1e-12
    assert float(value(check, "pool max abs diff:")) == 0.0
    assert float(value(check, "softmax sum:")) == pytest.approx(1.0)
    # params.pkl written by the first script and loaded by the second: same accuracy
    assert float(value(check, "reloaded test acc:")) == pytest.approx(final_acc)
    assert served(check) >= {"common.layers", "common.util", "simple_convnet", "dataset.mnist"}
    # the report splits the wall time
    m = re.search(r"fastnn kernels\s*:\s*([\d.]+) s", train.stderr)
    assert m and float(m.group(1)) > 0
    assert re.search(r"conv2d\s+[\d.]+ s\s+\d+ calls", train.stderr)


def test_ch07_gradient_check(runs):
    proc = ok(runs["ch07/gradient_check.py"])
    for key in ("W1", "b1", "W2", "b2", "W3", "b3"):
        assert float(value(proc, key + " ")) < 1e-4
    assert served(proc) == {"simple_convnet"}


def test_ch08_half_float_falls_back_once(runs):
    proc = ok(runs["ch08/half_float_network.py"])
    lines = proc.stdout.splitlines()
    acc64 = float(lines[lines.index("caluculate accuracy (float64) ... ") + 1])
    acc16 = float(lines[lines.index("caluculate accuracy (float16) ... ") + 1])
    assert abs(acc64 - acc16) <= 0.05
    assert proc.stderr.count("FastnnFallbackWarning") == 1
    assert "float16" in proc.stderr
    assert served(proc) >= {"deep_convnet", "dataset.mnist"}


def test_every_served_module_is_exercised(runs):
    seen = set()
    for script in ("ch03/neuralnet_mnist.py", "ch04/train_neuralnet.py",
                   "ch04/gradient_simplenet.py", "ch05/gradient_check.py",
                   "ch06/batch_norm_gradient_check.py", "ch06/overfit_weight_decay.py",
                   "ch06/overfit_dropout.py", "ch07/conv_check.py",
                   "ch08/half_float_network.py"):
        seen |= served(ok(runs[script]))
    expected = set(hook.SERVED_MODULES) - {"common", "dataset"}
    assert seen == expected


# --------------------------------------------------------------------------- runner
def _write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_runner_argv_exit_code_and_traceback(tmp_path):
    script = _write(tmp_path / "sub" / "prog.py", """\
        import os, sys
        print("argv:", sys.argv)
        print("name:", __name__)
        print("path0:", os.path.basename(sys.path[0]))
        if sys.argv[1] == "raise":
            def inner():
                raise ValueError("boom from the script")
            inner()
        sys.exit(int(sys.argv[1]))
        """)
    proc = run(script, "3", "--report", options=())
    assert proc.returncode == 3
    assert value(proc, "argv:") == "['prog.py', '3', '--report']"
    assert value(proc, "name:") == "__main__"
    assert value(proc, "path0:") == "sub"
    assert "fastnn report" not in proc.stderr  # --report after SCRIPT belongs to the script

    proc = run(script, "raise")
    assert proc.returncode == 1
    assert "ValueError: boom from the script" in proc.stderr
    assert "prog.py" in proc.stderr and "runpy" not in proc.stderr
    assert "fastnn report" in proc.stderr  # printed after an error too

    proc = run(tmp_path / "missing.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "missing.py" in proc.stderr


def test_python_m_fastnn_hook_entry_point(tmp_path):
    script = _write(tmp_path / "ch05" / "p.py", """\
        import sys, os
        sys.path.append(os.pardir)
        from common.layers import Relu
        print("relu:", Relu.__module__)
        """)
    proc = ok(run(script, runner=[sys.executable, "-m", "fastnn.hook"]))
    assert value(proc, "relu:") == "fastnn.layers"


def _write_idx(directory, n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + labels.tobytes())


def test_data_sources(tmp_path):
    script = _write(tmp_path / "book" / "ch03" / "shapes.py", """\
        import sys, os
        sys.path.append(os.pardir)
        from dataset.mnist import load_mnist
        (x, t), (xt, tt) = load_mnist()
        print("shapes:", x.shape, xt.shape)
        """)
    # the book's dataset/ directory holding a previous download is used...
    _write(tmp_path / "book" / "dataset" / "__init__.py", "")
    _write(tmp_path / "book" / "dataset" / "mnist.py", "raise RuntimeError('not to be run')\n")
    _write_idx(tmp_path / "book" / "dataset", 30, 10)
    proc = ok(run(script))
    assert value(proc, "shapes:") == "(30, 784) (10, 784)"
    assert "MNIST data       : " + os.path.abspath(tmp_path / "book" / "dataset") in proc.stderr
    # ... unless --data says otherwise
    _write_idx(tmp_path / "other", 20, 5)
    proc = ok(run(script, options=("--report", "--data", str(tmp_path / "other"))))
    assert value(proc, "shapes:") == "(20, 784) (5, 784)"
    proc = run(script, options=("--data", str(tmp_path / "nowhere")))
    assert proc.returncode == 2 and "nowhere" in proc.stderr


# --------------------------------------------------------------------------- in process
@pytest.fixture
def installed(monkeypatch):
    """The hook installed in this process, uninstalled (and sys.path restored) afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    hook.install()
    try:
        yield hook
    finally:
        hook.uninstall()


def test_install_serves_book_namespaces_and_uninstall_restores(installed):
    import fastnn.layers
    import fastnn.nets

    original_conv2d = F.conv2d.__fastnn_unwrapped__
    original_adam = O.Adam.update.__fastnn_unwrapped__
    assert sys.meta_path[0] is hook._state.finder and hook.is_installed()

    import common.layers
    import common.multi_layer_net
    import simple_convnet

    assert common.layers.Relu is fastnn.layers.Relu
    assert common.multi_layer_net.MultiLayerNet is fastnn.nets.MultiLayerNet
    assert simple_convnet.SimpleConvNet is fastnn.nets.SimpleConvNet
    ns = {}
    exec("from common.layers import *", ns)
    # the book's common/layers.py star-exports numpy, the functions and im2col/col2im too
    for name in ("np", "softmax", "cross_entropy_error", "im2col", "col2im", "Convolution",
                 "BatchNormalization", "Dropout"):
        assert name in ns
    ns = {}
    exec("from common.multi_layer_net import *", ns)
    assert {"OrderedDict", "numerical_gradient", "MultiLayerNet", "Affine"} <= set(ns)
    assert hook.served_modules()[:2] == ["common", "common.layers"]

    hook.uninstall()
    assert not hook.is_installed()
    assert F.conv2d is original_conv2d
    assert O.Adam.update is original_adam
    assert "common.layers" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        import common.layers  # noqa: F401,F811 - no book tree on sys.path
    hook.install()  # the fixture uninstalls again


def test_dataset_mnist_has_the_book_names(installed):
    import inspect

    import dataset.mnist as m

    assert str(inspect.signature(m.load_mnist)) == (
        "(normalize=True, flatten=True, one_hot_label=False)")
    assert m.key_file["train_img"] == "train-images-idx3-ubyte.gz"
    assert m.img_size == 784 and m.img_dim == (1, 28, 28)
    assert m.init_mnist() is None and m.download_mnist() is None
    np.testing.assert_array_equal(m._change_one_hot_label(np.array([2, 0])),
                                  [[0, 0, 1, 0, 0, 0, 0, 0, 0, 0], [1] + [0] * 9])
    (x, t), (xt, tt) = m.load_mnist(flatten=False, one_hot_label=True)
    assert x.shape[1:] == (1, 28, 28) and x.dtype == np.float32 and t.shape[1] == 10
    assert m._load_label("t10k-labels-idx1-ubyte.gz").shape == (xt.shape[0],)


@pytest.fixture
def fake_book(tmp_path, monkeypatch):
    """A book tree whose common/ was edited: an extra layer, a changed signature, a new module."""
    root = tmp_path / "book"
    _write(root / "common" / "__init__.py", "")
    _write(root / "common" / "functions.py", """\
        import numpy as np

        def sigmoid(x):
            return 1 / (1 + np.exp(-x))

        def softmax(x):
            x = x - np.max(x, axis=-1, keepdims=True)
            return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)

        raise RuntimeError("the original functions.py must not run: all of it is served")
        """)
    _write(root / "common" / "layers.py", """\
        import numpy as np
        from common.functions import *
        from common.util import im2col, col2im

        class Relu:
            def __init__(self):
                self.mask = None
            def forward(self, x):
                return np.maximum(x, 0)
            def backward(self, dout):
                return dout

        class Convolution:
            def __init__(self, W, b, stride=1, pad=0, groups=1):
                self.W, self.b, self.groups = W, b, groups

        class MyLayer:
            def forward(self, x):
                return sigmoid(x) * 2

        def helper(x):
            return x + 1
        """)
    _write(root / "common" / "extra.py", """\
        from common.layers import Relu
        VALUE = 42
        """)
    _write(root / "ch05" / "two_layer_net.py", """\
        from common.layers import *
        class TwoLayerNet:
            def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
                self.layers = {'Relu1': Relu()}
            def predict(self, x): pass
        """)
    monkeypatch.chdir(root / "ch05")
    monkeypatch.setattr(sys, "path", [str(root / "ch05"), *sys.path, os.pardir])
    return root


def test_fallbacks_to_an_edited_book_tree(fake_book, installed):
    import fastnn.functions
    import fastnn.layers

    with warnings.catch_warnings():
        warnings.simplefilter("error", FastnnFallbackWarning)
        import common.functions
        import common.layers
        import two_layer_net

        assert common.functions.sigmoid is fastnn.functions.sigmoid  # served, file not run
        assert common.layers.Relu is fastnn.layers.Relu  # compatible: served
        assert two_layer_net.TwoLayerNet.__module__ == "fastnn.nets.two_layer_net"

    with pytest.warns(FastnnFallbackWarning, match=r"Convolution.*groups"):
        conv = common.layers.Convolution
    assert conv is not fastnn.layers.Convolution
    assert conv(np.ones((1, 1, 1, 1)), np.zeros(1), groups=2).groups == 2
    with pytest.warns(FastnnFallbackWarning) as record:
        ns = {}
        exec("from common.layers import *", ns)
    messages = {str(w.message).split(":")[1].strip(): str(w.message) for w in record}
    assert sorted(messages) == ["common.layers.MyLayer", "common.layers.helper"]
    assert "not provided by fastnn" in messages["common.layers.MyLayer"]
    assert str(fake_book / "common" / "layers.py") + ":21" in messages["common.layers.helper"]
    assert ns["MyLayer"]().forward(np.zeros(2)).tolist() == [1.0, 1.0]
    assert ns["helper"](1) == 2
    assert ns["Relu"] is fastnn.layers.Relu and ns["softmax"] is fastnn.functions.softmax
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastnnFallbackWarning)
        assert common.layers.MyLayer is ns["MyLayer"]  # warned once only

    with pytest.warns(FastnnFallbackWarning, match=r"common\.extra is not provided by fastnn"):
        import common.extra
    assert common.extra.VALUE == 42
    assert common.extra.Relu is fastnn.layers.Relu  # its own imports are served
    with pytest.raises(ModuleNotFoundError):
        import common.nonexistent  # noqa: F401

    text = hook.report()
    assert "fell back (4)" in text
    for what in ("Convolution", "MyLayer", "helper", "common.extra"):
        assert what in text


def test_two_layer_net_variant_by_chapter(tmp_path, installed, monkeypatch):
    main = _write(tmp_path / "ch04" / "main.py", "")
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(main), raising=False)
    import two_layer_net

    net = two_layer_net.TwoLayerNet(4, 3, 2)
    assert net.activation == "sigmoid" and type(net).__name__ == "TwoLayerNet"
    assert two_layer_net.sigmoid is not None and "Affine" not in vars(two_layer_net)
    ch05 = _write(tmp_path / "ch05" / "two_layer_net.py", "class TwoLayerNet:\n    pass\n")
    assert hook._two_layer_variant(str(ch05)) == "relu"
    relu_file = _write(tmp_path / "x" / "two_layer_net.py", "Relu()\n")
    sig_file = _write(tmp_path / "y" / "two_layer_net.py", "sigmoid(1)\n")
    assert hook._two_layer_variant(str(relu_file)) == "relu"
    assert hook._two_layer_variant(str(sig_file)) == "sigmoid"


def test_float16_and_python_number_adapters(installed):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float16)
    W = rng.standard_normal((3, 1, 3, 3))
    with pytest.warns(FastnnFallbackWarning, match="float16"):
        out = F.conv2d(x, W)
    np.testing.assert_allclose(out, F.conv2d(x.astype(np.float64), W), rtol=1e-12)
    with pytest.raises(TypeError, match="complex"):  # other type errors are not masked
        F.conv2d(x.astype(np.complex128), W)

    params = {"x": -7.0, "y": np.array([2.0, 1.0])}
    grads = {"x": -0.7, "y": np.array([4.0, 2.0])}
    with pytest.warns(FastnnFallbackWarning, match="Python numbers"):
        O.SGD(lr=0.5).update(params, grads)
    assert params["x"] == pytest.approx(-6.65) and isinstance(params["x"], np.floating)
    np.testing.assert_allclose(params["y"], [0.0, 0.0])
    with pytest.raises(TypeError):  # still an error when nothing can be adapted
        O.SGD().update({"x": "text"}, {"x": 1.0})
    assert {"conv2d", "SGD.update"} <= {n for n, s in hook._state.stats.items() if s[0]}


def _args(src):
    return ast.parse(textwrap.dedent(src)).body[0].args


@pytest.mark.parametrize(
    "book, ours, expected",
    [
        ("def f(x, t): pass", lambda x, t: 0, None),
        ("def f(x, t, batch_size=100): pass", lambda x, t, batch_size=100, dtype=None: 0, None),
        ("def f(x, t, batch_size=100): pass", lambda x, t: 0, "no parameter 'batch_size'"),
        ("def f(x, y): pass", lambda x, t: 0, "'y' in the original but 't'"),
        ("def f(lr=0.01): pass", lambda lr=0.1: 0, "default of 'lr'"),
        ("def f(lr=0.01): pass", lambda lr: 0, "has a default in the original"),
        ("def f(x): pass", lambda x, y: 0, "requires 'y'"),
        ("def f(*args): pass", lambda x: 0, "takes *args"),
        ("def f(x, **kw): pass", lambda x: 0, "takes **kw"),
        ("def f(x, *, k=1): pass", lambda x, **kw: 0, None),
        ("def f(x, c={'a': 1}): pass", lambda x, c=None: 0, None),
    ],
)
def test_signature_comparison(book, ours, expected):
    reason = hook._signature_mismatch(ours, _args(book), method=False)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_install_rejects_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        hook.install(data=tmp_path / "nowhere")
    assert not hook.is_installed()
