"""The ``fastnn`` command: ``fastnn train``, ``fastnn bench`` and ``fastnn info``.

Also runs as ``python -m fastnn``. Examples::

    fastnn train                          # SimpleConvNet on the bundled digits, about a minute
    fastnn train --net two_layer --epochs 5 --plot curves.png
    fastnn bench                          # reference vs fastnn on the book's MNIST shapes
    fastnn bench --ops conv2d max_pool2d --shapes book large --dtype float32 --json out.json
    fastnn info                           # versions, threads, threading layer, Numba cache

:func:`main` returns the exit code: 0 on success, 2 for a usage or input error (the message
goes to stderr, without a traceback), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import sys
import time
from importlib import metadata

import numpy as np

__all__ = ["main", "build_parser", "NETS", "DEFAULT_EPOCHS", "DEFAULT_LR"]

#: ``--net`` choices -> (class name in :mod:`fastnn.nets`, images flattened?, description).
NETS = {
    "two_layer": ("TwoLayerNet", True, "TwoLayerNet(784, 50, 10), the book's ch05 network"),
    "multi_layer": ("MultiLayerNet", True, "MultiLayerNet(784, [100]*4, 10), ReLU, He init"),
    "simple_conv": ("SimpleConvNet", False, "SimpleConvNet: conv 30x5x5 - pool - 100 - 10 (ch07)"),
    "deep_conv": ("DeepConvNet", False, "DeepConvNet: six 3x3 convs - 50 - 10 (ch08)"),
    "linear_regression": ("LinearRegression", True,
                          "LinearRegression(2) on synthetic y = 2 x1 - 3.4 x2 + 4.2 + noise "
                          "(d2l 3.2)"),
    "softmax_regression": ("SoftmaxRegression", True,
                           "SoftmaxRegression(784, 10): one affine layer + softmax (d2l 3.6)"),
}

#: Default ``--epochs`` per net. SimpleConvNet (the default net): 12 epochs of the bundled 4,000
#: training digits reach about 96 % test accuracy on the 1,000 test digits (>= 95 % from about
#: the 9th epoch on) in roughly a minute to a minute and a half on 2 cores. The MLPs plateau
#: near 92 % (two_layer) and 94.5 % (multi_layer) within seconds; DeepConvNet costs about
#: 20 s per epoch.
DEFAULT_EPOCHS = {"two_layer": 50, "multi_layer": 30, "simple_conv": 12, "deep_conv": 3,
                  "linear_regression": 3, "softmax_regression": 10}

#: Default ``--lr`` per net (Adam). With the book's ``weight_init_std=0.01`` SimpleConvNet
#: learns too slowly at 0.001 to pass 95 % on the bundled digits (94.5 % after 12 epochs,
#: 94.8 % after 20); 0.002 gets there by epoch 9.
DEFAULT_LR = {"two_layer": 0.001, "multi_layer": 0.001, "simple_conv": 0.002, "deep_conv": 0.001,
              "linear_regression": 0.03, "softmax_regression": 0.001}

#: ``--grad numerical`` (ch04's ``train_neuralnet.py``: sigmoid TwoLayerNet(784, 50, 10), SGD,
#: lr 0.1, batch 100). 17 epochs of the bundled 4,000 digits are 680 iterations, each a full
#: numerical gradient (79,520 loss evaluations in the book's loop, about 40 ms with fastnn):
#: roughly half a minute on 2 cores.
NUMERICAL_EPOCHS = 17
NUMERICAL_DEFAULTS = {"optimizer": "sgd", "lr": 0.1, "batch_size": 100}


class _NumericalGradientNet:
    """A net seen by the Trainer with ``gradient`` = the net's ``numerical_gradient``."""

    def __init__(self, net):
        self.net = net
        self.params = net.params

    def gradient(self, x, t):
        return self.net.numerical_gradient(x, t)

    def loss(self, x, t):
        return self.net.loss(x, t)

    def accuracy(self, x, t):
        return self.net.accuracy(x, t)


#: Nets whose defaults follow *Dive into Deep Learning* chapter 3 (minibatch SGD): optimizer,
#: learning rate and batch size used when --optimizer / --lr / --batch-size are not given.
#: softmax_regression reaches about 87 % test accuracy on the bundled digits in 10 epochs.
D2L_DEFAULTS = {
    "linear_regression": {"optimizer": "sgd", "lr": 0.03, "batch_size": 10},
    "softmax_regression": {"optimizer": "sgd", "lr": 0.1, "batch_size": 256},
}

#: linear_regression's synthetic data (d2l's true_w, true_b; 1,000 training samples).
LINEAR_TRUE_W = (2.0, -3.4)
LINEAR_TRUE_B = 4.2
LINEAR_SIZES = (1000, 200)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user error: reported as ``fastnn <command>: error: <message>``, exit code 2."""


# --------------------------------------------------------------------------- argument types
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _nonneg_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors raise instead of exiting (so :func:`main` returns)."""

    def error(self, message):
        raise CLIError(f"{message}\n(see '{self.prog} --help')")


# --------------------------------------------------------------------------- parser
def build_parser():
    """Build the argument parser of the ``fastnn`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    from . import __version__

    parser = _Parser(
        prog="fastnn",
        description="fastnn: the NumPy networks of 'Deep Learning from Scratch', compiled "
        "with Numba. Train a network, benchmark the kernels, or show the runtime setup.",
    )
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # ---- train
    p = sub.add_parser(
        "train",
        help="train a network on MNIST digits (bundled subset by default)",
        description="Train one of the book's networks with fastnn.trainer.Trainer on MNIST "
        "(the bundled 4,000/1,000-digit subset unless --data names a directory with the four "
        "IDX files). Prints the book's per-epoch accuracy lines, the final test accuracy, the "
        "training time and the throughput.",
    )
    p.add_argument("--net", choices=list(NETS), default="simple_conv",
                   help="network (default: simple_conv)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (default per net: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items())
                   + "; the simple_conv default takes about a minute on 2 cores and reaches "
                   "~96%% test accuracy on the bundled digits)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="mini-batch size (default: 100; linear_regression 10, "
                   "softmax_regression 256)")
    p.add_argument("--optimizer", default=None,
                   choices=["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"],
                   help="optimizer (default: adam; sgd for linear_regression (lr 0.03) and "
                   "softmax_regression (lr 0.1), as d2l)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default for adam, per net: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_LR.items())
                   + "; other optimizers: the book's default of the class, 0.01)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="parameter and compute dtype (default: float64, as the book)")
    p.add_argument("--grad", choices=["backprop", "numerical"], default="backprop",
                   help="how gradients are computed (default: backprop). 'numerical' (only "
                   "with --net two_layer) trains ch04's sigmoid TwoLayerNet by "
                   "net.numerical_gradient, the central differences the book gives up on "
                   "as too slow, with ch04's settings: sgd, lr 0.1, batch 100, "
                   f"{NUMERICAL_EPOCHS} epochs of the bundled digits")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="directory with the four MNIST IDX files (default: $FASTNN_DATA, else "
                   "the bundled subset); with --dataset fashion, the four Fashion-MNIST files "
                   "(default: $FASTNN_FASHION_DATA)")
    p.add_argument("--dataset", choices=["mnist", "fashion"], default="mnist",
                   help="which images --data holds (default: mnist); not used by "
                   "linear_regression, which trains on synthetic data")
    p.add_argument("--train-size", type=_positive_int, default=None, metavar="N",
                   help="use only the first N training images (quick experiments)")
    p.add_argument("--test-size", type=_positive_int, default=None, metavar="N",
                   help="use only the first N test images (quick experiments)")
    p.add_argument("--eval-samples", type=_nonneg_int, default=1000, metavar="N",
                   help="images of each set used for the per-epoch accuracies, as the book's "
                   "evaluate_sample_num_per_epoch; 0 = all (default: 1000; the final test "
                   "accuracy always uses the whole test set)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for fastnn's kernels (default: all, NUMBA_NUM_THREADS)")
    p.add_argument("--seed", type=_nonneg_int, default=0,
                   help="np.random.seed before building the net (default: 0)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="save the loss and accuracy curves to this file (needs matplotlib)")
    p.add_argument("--save", metavar="PKL", default=None,
                   help="save the trained parameters (net.save_params, the book's pickle format)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--verbose", action="store_true",
                     help="also print the book's per-iteration 'train loss:' lines")
    out.add_argument("--quiet", action="store_true",
                     help="print only the final summary line (no epoch lines, no progress bar)")
    p.set_defaults(func=_cmd_train)

    # ---- bench
    from . import bench

    p = sub.add_parser(
        "bench",
        help="time the NumPy reference against fastnn (and torch, if installed)",
        description="Time each op of the benchmark table (fastnn.bench): the book's NumPy "
        "algorithm, fastnn, and PyTorch when it is installed. Medians of repeated runs after "
        "a warm-up call. Ops: " + ", ".join(bench.CASE_KEYS) + ". Shapes: "
        + ", ".join(bench.SHAPE_NAMES) + ", the issues' further shapes (deep1..deep6, "
        "stride2, pointwise, deep_pool1..3, vocab, fc), or 'all' (see --list).",
    )
    p.add_argument("--ops", nargs="+", metavar="OP", default=None,
                   help="ops to time (default: all; see --list). 'numgrad' adds the nets' "
                   "numerical gradients against the book's loop (fixed book settings, "
                   "float64; the reference time is estimated from a sample of its loss "
                   "evaluations), or name one of them, e.g. numgrad_ch04")
    p.add_argument("--shapes", nargs="+", metavar="SHAPE", default=None,
                   help="shape names: tiny, book, large (default: book, the book's MNIST "
                   "shapes at batch 100)")
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both",
                   help="dtype(s) to time (default: both)")
    p.add_argument("--repeat", type=_positive_int, default=None,
                   help="timed calls per measurement (default: adaptive, about --budget "
                   "seconds each)")
    p.add_argument("--budget", type=_positive_float, default=0.25, metavar="SECONDS",
                   help="time per measurement when --repeat is not given (default: 0.25)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for fastnn and torch (default: all)")
    p.add_argument("--no-torch", action="store_true",
                   help="skip the PyTorch column even when torch is installed")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="also write the results (and versions) as JSON to PATH")
    p.add_argument("--list", action="store_true", help="list the ops and shapes, then exit")
    p.set_defaults(func=_cmd_bench)

    # ---- info
    p = sub.add_parser(
        "info",
        help="versions, threads, threading layer, Numba cache, compiled kernels",
        description="Show versions, the thread count, the threading layer and Numba's cache, "
        "after loading every kernel once (fastnn.warmup).",
    )
    p.add_argument("--json", action="store_true", help="print the information as JSON")
    p.set_defaults(func=_cmd_info)

    # ---- run (fastnn.hook)
    p = sub.add_parser(
        "run",
        help="run a script of the book unchanged, its common.* / dataset.mnist served by fastnn",
        description="Run SCRIPT as 'python SCRIPT ARGS...' would (as __main__, its directory "
        "first on sys.path), after installing an import hook that serves the book's common.*, "
        "dataset.mnist, two_layer_net, simple_convnet and deep_convnet modules from fastnn. "
        "What fastnn cannot serve falls back to the original file with one warning. The exit "
        "status is the script's.",
    )
    from .hook import add_run_arguments

    add_run_arguments(p)
    p.set_defaults(func=_cmd_run)
    return parser


# --------------------------------------------------------------------------- helpers
def _err(command, message):
    prefix = f"fastnn {command}" if command else "fastnn"
    print(f"{prefix}: error: {message}", file=sys.stderr)


def _set_threads(n):
    if n is None:
        return
    from . import _runtime

    try:
        _runtime.set_num_threads(n)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--threads: {exc}") from None


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class _DropLines(io.TextIOBase):
    """Text stream forwarding whole lines to ``stream`` except those starting with ``prefixes``."""

    def __init__(self, stream, prefixes):
        super().__init__()
        self._stream = stream
        self._prefixes = tuple(prefixes)
        self._buf = ""

    def writable(self):
        return True

    def write(self, s):
        self._buf += s
        while "\n" in self._buf:
            line, self._buf = self._buf.split("\n", 1)
            if not line.startswith(self._prefixes):
                self._stream.write(line + "\n")
        return len(s)

    def flush(self):
        self._stream.flush()

    def close_buffer(self):
        """Forward a trailing partial line (if it is not dropped)."""
        if self._buf and not self._buf.startswith(self._prefixes):
            self._stream.write(self._buf)
        self._buf = ""
        self._stream.flush()


# --------------------------------------------------------------------------- train
def _load_data(args, flatten):
    from .datasets import load_fashion_mnist, load_mnist

    fashion = getattr(args, "dataset", "mnist") == "fashion"
    loader, name = (load_fashion_mnist, "Fashion-MNIST") if fashion else (load_mnist, "MNIST")
    try:
        (x_train, t_train), (x_test, t_test) = loader(
            normalize=True, flatten=flatten, one_hot_label=False, path=args.data
        )
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as exc:
        raise CLIError(f"cannot load {name}: {exc}") from None
    for name, size, n in (("--train-size", args.train_size, len(x_train)),
                          ("--test-size", args.test_size, len(x_test))):
        if size is not None and size > n:
            raise CLIError(f"{name} {size} exceeds the {n} images available")
    if args.train_size is not None:
        x_train, t_train = x_train[: args.train_size], t_train[: args.train_size]
    if args.test_size is not None:
        x_test, t_test = x_test[: args.test_size], t_test[: args.test_size]
    dt = np.dtype(args.dtype)
    # float64: the book's float32 images meet float64 weights and promote on every batch;
    # converting once gives the same numbers.
    return (x_train.astype(dt, copy=False), t_train), (x_test.astype(dt, copy=False), t_test)


def _build_net(name, dtype):
    from . import nets

    cls = getattr(nets, NETS[name][0])
    if name == "two_layer":
        return cls(input_size=784, hidden_size=50, output_size=10, dtype=dtype)
    if name == "multi_layer":
        return cls(input_size=784, hidden_size_list=[100, 100, 100, 100], output_size=10,
                   dtype=dtype)
    if name == "simple_conv":
        return cls(input_dim=(1, 28, 28),
                   conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
                   hidden_size=100, output_size=10, weight_init_std=0.01, dtype=dtype)
    if name == "linear_regression":
        return cls(num_inputs=len(LINEAR_TRUE_W), dtype=dtype)
    if name == "softmax_regression":
        return cls(num_inputs=784, num_outputs=10, dtype=dtype)
    return cls(dtype=dtype)


def _apply_net_defaults(args):
    """Fill in --optimizer / --batch-size (d2l's for the chapter-3 nets, ch04's for
    ``--grad numerical``, else adam / 100)."""
    if getattr(args, "grad", "backprop") == "numerical":
        if args.net != "two_layer":
            raise CLIError(f"--grad numerical trains --net two_layer (ch04's network), not "
                           f"--net {args.net}")
        if args.dtype != "float64":
            raise CLIError("--grad numerical needs --dtype float64 (the fast numerical "
                           "gradient is float64; a float32 central difference is mostly "
                           "rounding noise)")
        if args.optimizer is None:
            args.optimizer = NUMERICAL_DEFAULTS["optimizer"]
        if args.batch_size is None:
            args.batch_size = NUMERICAL_DEFAULTS["batch_size"]
        return
    d2l = D2L_DEFAULTS.get(args.net, {})
    if args.optimizer is None:
        args.optimizer = d2l.get("optimizer", "adam")
    if args.batch_size is None:
        args.batch_size = d2l.get("batch_size", 100)


def _synthetic_data(args):
    """linear_regression's data: d2l's synthetic_data for training and test (one draw)."""
    from .datasets import synthetic_linear

    if args.data is not None or getattr(args, "dataset", "mnist") != "mnist":
        raise CLIError("--data / --dataset do not apply to --net linear_regression, which "
                       "trains on synthetic data")
    n_train = args.train_size if args.train_size is not None else LINEAR_SIZES[0]
    n_test = args.test_size if args.test_size is not None else LINEAR_SIZES[1]
    x, t = synthetic_linear(LINEAR_TRUE_W, LINEAR_TRUE_B, n_train + n_test, seed=args.seed,
                            dtype=np.dtype(args.dtype))
    return (x[:n_train], t[:n_train]), (x[n_train:], t[n_train:])


def _check_output_path(option, path):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"{option}: directory {parent!r} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"{option}: {path!r} is a directory")


def _cmd_train(args):
    from . import _runtime
    from .trainer import OPTIMIZER_NAMES, Trainer

    if args.plot is not None:
        _check_output_path("--plot", args.plot)
        try:
            from matplotlib.backend_bases import FigureCanvasBase  # noqa: PLC0415
        except ImportError:
            raise CLIError('--plot needs matplotlib: pip install "fastnn-numba[plot]"') from None
        ext = os.path.splitext(args.plot)[1][1:].lower()
        formats = FigureCanvasBase.get_supported_filetypes()
        if ext and ext not in formats:
            raise CLIError(f"--plot: unknown image format {ext!r}; use one of "
                           f"{', '.join(sorted(formats))}")
    if args.save is not None:
        _check_output_path("--save", args.save)
    _set_threads(args.threads)
    _apply_net_defaults(args)
    numerical = args.grad == "numerical"
    epochs = args.epochs if args.epochs is not None else (
        NUMERICAL_EPOCHS if numerical else DEFAULT_EPOCHS[args.net])
    d2l = NUMERICAL_DEFAULTS if numerical else D2L_DEFAULTS.get(args.net)
    if args.lr is not None:
        optimizer_param = {"lr": args.lr}
    elif d2l is not None and args.optimizer == d2l["optimizer"]:
        optimizer_param = {"lr": d2l["lr"]}
    elif args.optimizer == "adam":
        optimizer_param = {"lr": DEFAULT_LR[args.net]}
    else:
        optimizer_param = {}  # the book's default of that optimizer class
    flatten = NETS[args.net][1]
    linear = args.net == "linear_regression"
    if linear:
        (x_train, t_train), (x_test, t_test) = _synthetic_data(args)
    else:
        (x_train, t_train), (x_test, t_test) = _load_data(args, flatten)
    samples = "samples" if linear else "images"

    t0 = time.perf_counter()
    _runtime.warmup(dtypes=(args.dtype,))
    if numerical:  # compile (or load) the numerical-gradient kernels before the clock starts
        from .nets import TwoLayerNet

        state = np.random.get_state()
        tiny = TwoLayerNet(3, 2, 2, activation="sigmoid")
        np.random.set_state(state)
        tiny.numerical_gradient(np.eye(2, 3), np.array([0, 1]))
    warm = time.perf_counter() - t0

    np.random.seed(args.seed)
    if numerical:
        from .nets import TwoLayerNet

        net = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, activation="sigmoid")
    else:
        net = _build_net(args.net, np.dtype(args.dtype))
    optimizer = OPTIMIZER_NAMES[args.optimizer]
    trainer = Trainer(
        _NumericalGradientNet(net) if numerical else net, x_train, t_train, x_test, t_test,
        epochs=epochs, mini_batch_size=args.batch_size, optimizer=optimizer,
        optimizer_param=optimizer_param,
        evaluate_sample_num_per_epoch=args.eval_samples or None,
        verbose=not args.quiet, progress=False if args.quiet else None,
    )
    say = (lambda *a, **k: None) if args.quiet else print
    lr = getattr(trainer.optimizer, "lr", optimizer_param.get("lr"))
    kind = " (ch04: sigmoid, numerical gradient)" if numerical else ""
    say(f"{NETS[args.net][0]}{kind} ({args.dtype}) on {len(x_train)} training / {len(x_test)} test "
        f"{samples}; {optimizer}(lr={lr}), batch {args.batch_size}, {epochs} "
        f"epoch{'s' if epochs != 1 else ''}, "
        f"{_runtime.get_num_threads()} threads; kernels ready in {warm:.1f} s")
    stdout = sys.stdout
    filt = None if (args.verbose or args.quiet) else _DropLines(stdout, ["train loss:"])
    t0 = time.perf_counter()
    try:
        if filt is not None:
            sys.stdout = filt
        trainer.train()
    finally:
        sys.stdout = stdout
        if filt is not None:
            filt.close_buffer()
    seconds = time.perf_counter() - t0

    test_acc = float(net.accuracy(x_test, t_test))
    images = trainer.max_iter * trainer.batch_size
    if linear:  # accuracy is R^2 here; show the learned parameters against the true ones
        w = np.array2string(net.params["W"].ravel(), precision=4)
        say(f"learned w {w}, true w {np.array(LINEAR_TRUE_W)}; learned b "
            f"{float(net.params['b'][0]):.4f}, true b {LINEAR_TRUE_B}")
        print(f"final test R^2 {test_acc:.6f}, loss {float(net.loss(x_test, t_test)):.3g} "
              f"({len(x_test)} samples); trained {trainer.max_iter} iterations in "
              f"{seconds:.1f} s, {images / seconds:,.0f} samples/s")
    else:
        print(f"final test accuracy {100 * test_acc:.2f} % ({len(x_test)} images); trained "
              f"{trainer.max_iter} iterations in {seconds:.1f} s, "
              f"{images / seconds:,.0f} images/s")
    if args.save is not None:
        try:
            net.save_params(args.save)
        except OSError as exc:
            raise CLIError(f"--save: cannot write {args.save!r}: {exc}") from None
        say(f"parameters saved to {args.save}")
    if args.plot is not None:
        title = f"{NETS[args.net][0]}, {optimizer}, {args.dtype}"
        try:
            trainer.history.plot(args.plot, title=title)
        except (OSError, ValueError) as exc:  # unwritable file, unknown image extension
            raise CLIError(f"--plot: cannot write {args.plot!r}: {exc}") from None
        say(f"curves saved to {args.plot}")
    return EXIT_OK


# --------------------------------------------------------------------------- bench
def _cmd_bench(args):
    from . import __version__, _runtime, bench
    from . import _numgrad_bench as numgrad_bench

    if args.list:
        print("ops:")
        width = max(len(k) for k in bench.CASE_KEYS + numgrad_bench.KEYS)
        for case in bench.CASES:
            print(f"  {case.key.ljust(width)}  {case.op}: {case.note}")
        print("shapes:")
        for case in bench.CASES:
            descs = "; ".join(f"{name} {case.shapes[name].desc}"
                              for name in case.shape_names(include_tiny=True))
            print(f"  {case.key.ljust(width)}  {descs}")
        print("numerical gradients (--ops numgrad for all; book settings, float64, reference "
              "estimated from a sample of its loss evaluations):")
        for case in numgrad_bench.CASES:
            print(f"  {case.key.ljust(width)}  {case.op}: {case.desc}")
        print(f"torch: {'installed' if bench.torch_available() else 'not installed'} (optional)")
        return EXIT_OK

    ops = None
    numgrad_keys = []
    if args.ops is not None:
        ops = []
        for o in (o for item in args.ops for o in item.split(",") if o):
            if o == "numgrad" or o in numgrad_bench.KEYS:
                new = numgrad_bench.KEYS if o == "numgrad" else (o,)
                numgrad_keys += [k for k in new if k not in numgrad_keys]
                continue
            try:
                bench.get_case(o)
            except ValueError:
                raise CLIError(f"--ops: unknown op {o!r}; choose from "
                               f"{', '.join(bench.CASE_KEYS)}, numgrad, "
                               f"{', '.join(numgrad_bench.KEYS)}") from None
            ops.append(o)
    shapes = None
    if args.shapes is not None:
        shapes = [s for item in args.shapes for s in item.split(",") if s]
        known = bench.shape_names() + (bench.ALL_SHAPES,)
        for s in shapes:
            if s not in known:
                raise CLIError(f"--shapes: unknown shape {s!r}; choose from {', '.join(known)}")
    if args.json is not None:
        _check_output_path("--json", args.json)
    _set_threads(args.threads)
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    impls = ["reference", "fastnn"]
    if bench.torch_available() and not args.no_torch:
        impls.append("torch")

    live = sys.stderr.isatty()

    def progress(res):
        if live:
            print(f"  {res['op']} {res['shape']} {res['dtype']}: fastnn "
                  f"{res['fastnn_ms']:.3f} ms", file=sys.stderr)

    results = []
    if ops is None or ops:
        results = bench.run(ops=ops, shapes=shapes, dtypes=dtypes, repeat=args.repeat,
                            budget=args.budget, impls=impls, callback=progress)
    if numgrad_keys:
        results += numgrad_bench.run(numgrad_keys, budget=args.budget, repeat=args.repeat,
                                     callback=progress)
    print(bench.format_table(results))
    if args.json is not None:
        doc = {
            "fastnn": __version__,
            "numpy": np.__version__,
            "numba": _version("numba"),
            "torch": _version("torch") if "torch" in impls else None,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "threads": _runtime.get_num_threads(),
            "threading_layer": _runtime.threading_layer(),
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"results written to {args.json}")
    return EXIT_OK


# --------------------------------------------------------------------------- info
def _cache_facts():
    """Numba cache directory, and kernels loaded from the cache vs compiled, so far."""
    import numba

    from . import kernels
    from .kernels import _jit

    path, hits, misses = None, 0, 0
    for name in kernels.__all__:
        disp = getattr(kernels, name)
        stats = getattr(disp, "stats", None)
        if stats is None:
            continue
        path = path or getattr(stats, "cache_path", None)
        hits += sum(getattr(stats, "cache_hits", {}).values())
        misses += sum(getattr(stats, "cache_misses", {}).values())
    if path is None:
        path = numba.config.CACHE_DIR or os.path.join(os.path.dirname(kernels.__file__),
                                                      "__pycache__")
    return {
        "cache_dir": path,
        "numba_cache_dir_env": numba.config.CACHE_DIR or None,
        "cache_enabled": bool(_jit.cache_enabled()),
        "kernels_loaded_from_cache": hits,
        "kernels_compiled": misses,
    }


_ARRAY_RE = re.compile(r"Array\((\w+), (\d+), '(\w)'(?:, (?:False|True))?, aligned=True\)")


def _short_signature(sig):
    """``(Array(float32, 4, 'C', False, aligned=True), int64)`` -> ``(float32[4d], int64)``."""
    def short(m):
        layout = "" if m.group(3) == "C" else f",{m.group(3)}"
        return f"{m.group(1)}[{m.group(2)}d{layout}]"

    return _ARRAY_RE.sub(short, sig)


def _cmd_run(args):
    from .hook import run_from_args

    return run_from_args(args)


def _cmd_info(args):
    import numba

    from . import __version__, _runtime

    warm = _runtime.warmup()  # every kernel, both dtypes: initialises the threading layer too
    info = {
        "fastnn": __version__,
        "fastnn_path": os.path.dirname(os.path.abspath(__file__)),
        "python": f"{platform.python_version()} ({sys.executable})",
        "numpy": np.__version__,
        "numba": numba.__version__,
        "tbb": _version("tbb"),
        "tqdm": _version("tqdm"),
        "matplotlib": _version("matplotlib"),
        "torch": _version("torch"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": _runtime.get_num_threads(),
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
        "threading_layer": _runtime.threading_layer(),
        "warmup_seconds": round(warm, 3),
        **_cache_facts(),
        "compiled_signatures": _runtime.compiled_signatures(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK

    def row(label, value):
        print(f"{label:<17}{value}")

    opt = "not installed"
    row("fastnn", f"{info['fastnn']} ({info['fastnn_path']})")
    row("python", info["python"])
    row("numpy", info["numpy"])
    row("numba", info["numba"])
    row("tbb", info["tbb"] or "not installed")
    row("tqdm", info["tqdm"] or opt)
    row("matplotlib", (info["matplotlib"] or opt) + "  (optional: --plot)")
    row("torch", (info["torch"] or opt) + "  (optional: bench column)")
    row("platform", info["platform"])
    row("threads", f"{info['threads']} (NUMBA_NUM_THREADS {info['numba_num_threads']}, "
        f"{info['cpu_count']} CPUs)")
    row("threading layer", info["threading_layer"])
    cache = "enabled" if info["cache_enabled"] else "DISABLED (no writable cache directory)"
    row("numba cache", f"{info['cache_dir']} ({cache})")
    row("warm-up", f"{info['warmup_seconds']:.2f} s: {info['kernels_loaded_from_cache']} "
        f"kernel signatures loaded from the cache, {info['kernels_compiled']} compiled")
    print("compiled signatures:")
    for name, sigs in info["compiled_signatures"].items():
        print(f"  {name}: {len(sigs)}")
        for sig in sigs:
            print(f"    {_short_signature(sig)}")
    return EXIT_OK


# --------------------------------------------------------------------------- entry point
def main(argv=None):
    """Run the ``fastnn`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    int
        Exit code: 0 on success, 2 for a usage or input error (message on stderr, no
        traceback), 130 when interrupted with Ctrl-C.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in ("train", "bench", "info", "run")), None)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        from . import _runtime

        threads = _runtime.get_num_threads()
        try:
            return args.func(args)
        finally:
            _runtime.set_num_threads(threads)  # --threads lasts for this command only
    except CLIError as exc:
        _err(command, str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `fastnn info | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the exit flush
        except OSError:
            pass
        return EXIT_OK
