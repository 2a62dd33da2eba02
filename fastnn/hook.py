"""Run the book's scripts unchanged on fastnn: an import hook, a script runner and a report.

``fastnn run SCRIPT [ARGS...]`` (also ``python -m fastnn run`` and ``python -m fastnn.hook``)
runs a script of *Deep Learning from Scratch* as ``python SCRIPT`` would, after putting an
import hook first on :data:`sys.meta_path`. The hook answers the imports of the book's modules
with fastnn's, so the script needs no edits:

=================================  ================================================
module imported by the script      served from
=================================  ================================================
``common``, ``dataset``            empty packages (as the book's ``__init__.py``)
``common.functions``               :mod:`fastnn.functions`
``common.layers``                  :mod:`fastnn.layers` (+ functions, im2col, col2im)
``common.util``                    :mod:`fastnn.util`
``common.gradient``                :mod:`fastnn.gradient`
``common.optimizer``               :mod:`fastnn.optimizers`
``common.multi_layer_net``         :class:`fastnn.nets.MultiLayerNet`
``common.multi_layer_net_extend``  :class:`fastnn.nets.MultiLayerNetExtend`
``common.trainer``                 :class:`fastnn.trainer.Trainer`
``dataset.mnist``                  :func:`fastnn.datasets.load_mnist` (offline)
``two_layer_net``                  :class:`fastnn.nets.TwoLayerNet` (ch04: sigmoid)
``simple_convnet``                 :class:`fastnn.nets.SimpleConvNet`
``deep_convnet``                   :class:`fastnn.nets.DeepConvNet`
=================================  ================================================

Each served module holds the same top-level names as the book's file (``np``, the star-imported
functions of ``common.layers``, ``OrderedDict``...), so ``from common.layers import *`` brings the
same names into the script. The hook is consulted before ``sys.path``: a real ``common/``
directory next to the script (the book's repository) is shadowed, and the script's
``sys.path.append(os.pardir)`` lines keep working (and keep mattering for anything the hook does
not serve).

Fallbacks. When the book's own file is found on ``sys.path``, the hook reads it (with
:mod:`ast`, without running it) and compares it with what fastnn serves. A name fastnn does not
provide, or a function or class whose parameters differ from fastnn's (say, an exercise added
an argument), is taken from the original file instead, with one
:class:`FastnnFallbackWarning` naming the file and line; the rest of the module is still
served. A submodule fastnn does not know (``common.my_layers``) is imported from the original
directory, with one warning. At call time, two argument types fastnn's kernels refuse are
adapted instead of crashing: float16 arrays (ch08's ``half_float_network.py``) are computed in
float64, as the book's NumPy code effectively does, and Python-number parameters given to an
optimizer (ch06's ``optimizer_compare_naive.py``) are updated as 0-d arrays. Each adaptation is
announced once.

``dataset.mnist.load_mnist`` never downloads. Data come from, in order: ``--data PATH`` (or
``install(data=PATH)``), ``$FASTNN_DATA``, the four IDX files in the book's ``dataset/``
directory when a previous run of the book downloaded them there, and otherwise the MNIST-5k
subset bundled with fastnn (4,000 training and 1,000 test digits).

With ``--report`` the runner prints, at exit, the modules served, what fell back, and the wall
time split into time inside fastnn's kernels (the :mod:`fastnn.functional` ops and the
optimizers' ``update`` and the nets' fused numerical gradients; first calls include loading
or compiling the kernels) and everything
else (NumPy matrix products of ``Affine``, Python, data loading, imports).

When there is no display (Linux without ``$DISPLAY``/``$WAYLAND_DISPLAY``) and ``$MPLBACKEND``
is unset, the runner selects matplotlib's Agg backend and makes ``plt.show()`` save the open
figures as ``<script>_figure<N>.png`` in the current directory.

From a notebook, :func:`install` / :func:`uninstall` do the same as the runner for the current
process (imports made after :func:`install`).
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import os
import runpy
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field

__all__ = [
    "install",
    "uninstall",
    "is_installed",
    "served_modules",
    "report",
    "run_script",
    "main",
    "add_run_arguments",
    "run_from_args",
    "FastnnFallbackWarning",
    "SERVED_MODULES",
]


class FastnnFallbackWarning(UserWarning):
    """The import hook used the book's original code, or adapted an argument, for something
    fastnn cannot serve as is."""


# --------------------------------------------------------------------------- state
@dataclass
class _State:
    finder: object = None
    data: str | None = None
    save_figures: bool = False
    figure_stem: str = "figure"
    figure_count: int = 0
    t0: float | None = None
    served: dict = field(default_factory=dict)  # module name -> fastnn source, import order
    fallbacks: list = field(default_factory=list)  # messages, in order
    warned: set = field(default_factory=set)
    stats: dict = field(default_factory=dict)  # op name -> [calls, seconds]
    patched: list = field(default_factory=list)  # (owner, attribute, original)
    originals: dict = field(default_factory=dict)  # module name -> original module object
    data_source: str | None = None
    blas_limiter: object = None  # threadpoolctl limiter while NumPy's BLAS is held to 1 thread


_state = _State()
_tls = threading.local()
_HERE = os.path.dirname(os.path.abspath(__file__))


def _warn_once(key, message, filename=None, lineno=0):
    """Emit ``message`` once per ``key`` as a :class:`FastnnFallbackWarning` and record it."""
    if key in _state.warned:
        return
    _state.warned.add(key)
    _state.fallbacks.append(message)
    if filename is None:
        filename, lineno = _user_site()
    warnings.warn_explicit("fastnn: " + message, FastnnFallbackWarning, filename, lineno)


def _user_site():
    """(filename, lineno) of the innermost caller outside fastnn and the import machinery."""
    frame = sys._getframe(1)
    skip = (_HERE, os.path.dirname(importlib.util.__file__))
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(skip) or name.startswith("<frozen") or name == runpy.__file__):
            return name, frame.f_lineno
        frame = frame.f_back
    return "fastnn", 0


# --------------------------------------------------------------------------- namespaces
# Each builder returns the top-level names of the book's module, bound to fastnn's objects.
def _public(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return {n: getattr(module, n) for n in names}


def _base(*modules):
    import collections
    import os as _os
    import pickle
    import sys as _sys

    import numpy as np

    pool = {"np": np, "sys": _sys, "os": _os, "pickle": pickle,
            "OrderedDict": collections.OrderedDict}
    return {m: pool[m] for m in modules}


def _ns_package(ctx):
    return {}


def _ns_functions(ctx):
    from fastnn import functions

    return {**_base("np"), **_public(functions)}


def _ns_util(ctx):
    from fastnn import util

    return {**_base("np"), **_public(util)}


def _ns_gradient(ctx):
    from fastnn import gradient

    return {
        **_base("np"),
        "_numerical_gradient_1d": gradient._numerical_gradient_1d,
        "numerical_gradient_2d": gradient.numerical_gradient_2d,
        "numerical_gradient": gradient.numerical_gradient,
    }


def _ns_layers(ctx):
    from fastnn import layers, util

    return {**_ns_functions(ctx), "im2col": util.im2col, "col2im": util.col2im,
            **_public(layers)}


def _ns_optimizer(ctx):
    from fastnn import optimizers

    return {**_base("np"), **_public(optimizers)}


def _ns_multi_layer_net(ctx):
    from fastnn.gradient import numerical_gradient
    from fastnn.nets import MultiLayerNet

    return {**_base("sys", "os", "np", "OrderedDict"), **_ns_layers(ctx),
            "numerical_gradient": numerical_gradient, "MultiLayerNet": MultiLayerNet}


def _ns_multi_layer_net_extend(ctx):
    from fastnn.gradient import numerical_gradient
    from fastnn.nets import MultiLayerNetExtend

    return {**_base("sys", "os", "np", "OrderedDict"), **_ns_layers(ctx),
            "numerical_gradient": numerical_gradient, "MultiLayerNetExtend": MultiLayerNetExtend}


def _ns_trainer(ctx):
    from fastnn.trainer import Trainer

    return {**_base("sys", "os", "np"), **_ns_optimizer(ctx), "Trainer": Trainer}


def _ns_two_layer_net(ctx):
    from fastnn.gradient import numerical_gradient

    if _two_layer_variant(ctx.path) == "sigmoid":  # ch04/two_layer_net.py
        return {**_base("sys", "os"), **_ns_functions(ctx),
                "numerical_gradient": numerical_gradient, "TwoLayerNet": _ch04_two_layer_net()}
    from fastnn.nets import TwoLayerNet

    return {**_base("sys", "os", "np"), **_ns_layers(ctx),
            "numerical_gradient": numerical_gradient, **_base("OrderedDict"),
            "TwoLayerNet": TwoLayerNet}


def _ns_simple_convnet(ctx):
    from fastnn.gradient import numerical_gradient
    from fastnn.nets import SimpleConvNet

    return {**_base("sys", "os", "pickle", "np", "OrderedDict"), **_ns_layers(ctx),
            "numerical_gradient": numerical_gradient, "SimpleConvNet": SimpleConvNet}


def _ns_deep_convnet(ctx):
    from fastnn.nets import DeepConvNet

    return {**_base("sys", "os", "pickle", "np", "OrderedDict"), **_ns_layers(ctx),
            "DeepConvNet": DeepConvNet}


def _two_layer_variant(path):
    """'sigmoid' for the book's ch04 ``two_layer_net.py``, else 'relu' (ch05)."""
    where = None
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=path)
        except (OSError, SyntaxError, ValueError):
            tree = None
        if tree is not None:
            used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            if used & {"Relu", "SoftmaxWithLoss", "Affine"}:
                return "relu"
            if "sigmoid" in used:
                return "sigmoid"
        where = path
    else:
        where = getattr(sys.modules.get("__main__"), "__file__", None)
    if where and os.path.basename(os.path.dirname(os.path.abspath(where))) == "ch04":
        return "sigmoid"
    return "relu"


@functools.lru_cache(maxsize=None)
def _ch04_two_layer_net():
    """ch04's ``TwoLayerNet``: fastnn's net with ``activation='sigmoid'`` as the default."""
    import numpy as np

    from fastnn.nets import TwoLayerNet as _Base

    class TwoLayerNet(_Base):
        __doc__ = (
            "ch04's two-layer net (sigmoid hidden layer, softmax + cross_entropy_error "
            "functions): :class:`fastnn.nets.TwoLayerNet` with ``activation='sigmoid'``.\n\n"
            + (_Base.__doc__ or "")
        )

        def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01,
                     activation="sigmoid", dtype=np.float64):
            super().__init__(input_size, hidden_size, output_size, weight_init_std,
                             activation=activation, dtype=dtype)

    TwoLayerNet.__module__ = "two_layer_net"
    return TwoLayerNet


# -- dataset.mnist
_MNIST_KEY_FILE = {
    "train_img": "train-images-idx3-ubyte.gz",
    "train_label": "train-labels-idx1-ubyte.gz",
    "test_img": "t10k-images-idx3-ubyte.gz",
    "test_label": "t10k-labels-idx1-ubyte.gz",
}


def _has_idx_files(directory):
    """True if ``directory`` holds the four MNIST IDX files (gzipped or not)."""
    if not directory or not os.path.isdir(directory):
        return False
    for name in _MNIST_KEY_FILE.values():
        if not any(os.path.isfile(os.path.join(directory, n)) for n in (name, name[:-3])):
            return False
    return True


def _ns_mnist(ctx):
    import gzip
    import os as _os
    import pickle
    import urllib.request

    import numpy as np

    book_dir = _os.path.dirname(ctx.path) if ctx.path else None
    if book_dir is None and ctx.parent_locations:
        book_dir = ctx.parent_locations[0]
    if book_dir:
        book_dir = _os.path.abspath(book_dir)

    def load_mnist(normalize=True, flatten=True, one_hot_label=False):
        """The book's ``dataset.mnist.load_mnist``, served offline by fastnn.

        Reads ``--data PATH`` / ``install(data=PATH)``, else ``$FASTNN_DATA``, else the IDX
        files in the book's ``dataset/`` directory if present, else fastnn's bundled
        MNIST-5k subset. See :func:`fastnn.datasets.load_mnist` for the return values.
        """
        from fastnn import datasets

        path = _state.data
        if path is None and not _os.environ.get(datasets.MNIST_ENV) and _has_idx_files(book_dir):
            path = book_dir
        if path is not None:
            _state.data_source = str(path)
        elif _os.environ.get(datasets.MNIST_ENV):
            _state.data_source = "$FASTNN_DATA=" + _os.environ[datasets.MNIST_ENV]
        else:
            _state.data_source = "bundled MNIST-5k subset (4,000 train / 1,000 test)"
        return datasets.load_mnist(normalize=normalize, flatten=flatten,
                                   one_hot_label=one_hot_label, path=path)

    def _convert_numpy():
        """The four arrays as the book pickles them (uint8, images flattened)."""
        (x, t), (xt, tt) = load_mnist(normalize=False, flatten=True, one_hot_label=False)
        return {"train_img": x, "train_label": t, "test_img": xt, "test_label": tt}

    def _key(file_name):
        for key, name in _MNIST_KEY_FILE.items():
            if file_name in (name, name[:-3]):
                return key
        raise ValueError(f"dataset.mnist (fastnn): unknown MNIST file {file_name!r}; expected "
                         f"one of {sorted(_MNIST_KEY_FILE.values())}")

    def _load_img(file_name):
        """Images of one of the four files, ``(N, 784)`` uint8 (served by fastnn)."""
        return _convert_numpy()[_key(file_name)]

    def _load_label(file_name):
        """Labels of one of the four files, ``(N,)`` uint8 (served by fastnn)."""
        return _convert_numpy()[_key(file_name)]

    def _change_one_hot_label(X):
        """Integer labels -> one-hot float64 rows, as the book's helper."""
        X = np.asarray(X)
        T = np.zeros((X.size, 10))
        T[np.arange(X.size), X.reshape(-1)] = 1
        return T

    def _download(file_name):
        """No-op: fastnn never downloads (see :func:`fastnn.datasets.download_mnist`)."""

    def download_mnist():
        """No-op: fastnn never downloads (see :func:`fastnn.datasets.download_mnist`)."""

    def init_mnist():
        """No-op: fastnn reads the IDX files directly; there is no ``mnist.pkl`` to build."""

    dataset_dir = book_dir or ""
    return {
        "urllib": urllib, "os": _os, "gzip": gzip, "pickle": pickle, "np": np,
        "url_base": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "key_file": dict(_MNIST_KEY_FILE),
        "dataset_dir": dataset_dir,
        "save_file": dataset_dir + "/mnist.pkl",
        "train_num": 60000, "test_num": 10000, "img_dim": (1, 28, 28), "img_size": 784,
        "_download": _download, "download_mnist": download_mnist, "_load_label": _load_label,
        "_load_img": _load_img, "_convert_numpy": _convert_numpy, "init_mnist": init_mnist,
        "_change_one_hot_label": _change_one_hot_label, "load_mnist": load_mnist,
    }


# name -> (builder, what fastnn serves it from, is_package)
_SERVED = {
    "common": (_ns_package, "fastnn", True),
    "common.functions": (_ns_functions, "fastnn.functions", False),
    "common.layers": (_ns_layers, "fastnn.layers", False),
    "common.util": (_ns_util, "fastnn.util", False),
    "common.gradient": (_ns_gradient, "fastnn.gradient", False),
    "common.optimizer": (_ns_optimizer, "fastnn.optimizers", False),
    "common.multi_layer_net": (_ns_multi_layer_net, "fastnn.nets.MultiLayerNet", False),
    "common.multi_layer_net_extend": (
        _ns_multi_layer_net_extend, "fastnn.nets.MultiLayerNetExtend", False),
    "common.trainer": (_ns_trainer, "fastnn.trainer.Trainer", False),
    "dataset": (_ns_package, "fastnn", True),
    "dataset.mnist": (_ns_mnist, "fastnn.datasets.load_mnist", False),
    "two_layer_net": (_ns_two_layer_net, "fastnn.nets.TwoLayerNet", False),
    "simple_convnet": (_ns_simple_convnet, "fastnn.nets.SimpleConvNet", False),
    "deep_convnet": (_ns_deep_convnet, "fastnn.nets.DeepConvNet", False),
}

#: Names of the modules the hook serves.
SERVED_MODULES = tuple(_SERVED)
_PACKAGES = tuple(n for n, e in _SERVED.items() if e[2])


# --------------------------------------------------------------------------- originals
def _original_spec(fullname):
    """Spec of the book's own module on ``sys.path`` (bypassing the hook), or None."""
    parent, dot, _ = fullname.rpartition(".")
    if not dot:
        locations = None
    else:
        locations = _package_locations(parent)
        if not locations:
            return None
    try:
        return importlib.machinery.PathFinder.find_spec(fullname, locations)
    except (ImportError, ValueError, OSError):
        return None


def _package_locations(name):
    """Directories of the book's package ``name``; refreshes a served package's ``__path__``."""
    module = sys.modules.get(name)
    path = getattr(module, "__path__", None)
    if path:
        return list(path)
    spec = _original_spec(name)
    found = list(spec.submodule_search_locations or []) if spec is not None else []
    if path is not None and found and getattr(module, "__fastnn_served__", False):
        path[:] = found  # sys.path changed since the package was served
    return found


def _source_path(spec):
    """The ``.py`` file of ``spec``, or None."""
    origin = getattr(spec, "origin", None) if spec is not None else None
    if origin and origin.endswith(".py") and os.path.isfile(origin):
        return os.path.abspath(origin)
    return None


def _bound_names(body):
    """Top-level names bound by ``body``: name -> (kind, node); star imports are skipped."""
    out = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = ("def", node)
        elif isinstance(node, ast.ClassDef):
            out[node.name] = ("class", node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        out[n.id] = ("value", node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out[alias.asname or alias.name.split(".")[0]] = ("import", node)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    out[alias.asname or alias.name] = ("import", node)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for part in ("body", "orelse", "finalbody"):
                out.update(_bound_names(getattr(node, part, [])))
            for handler in getattr(node, "handlers", []):
                out.update(_bound_names(handler.body))
    return out


_SIMPLE = (int, float, str, bool, type(None))


def _signature_mismatch(obj, args, method):
    """Why ``obj`` cannot be called as the book's definition with ``args`` is, or None."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    P = inspect.Parameter
    positional = [a.arg for a in args.posonlyargs + args.args]
    if method and positional:
        positional = positional[1:]
        if params and params[0].kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            params = params[1:]
    ours = {p.name: p for p in params}
    ours_pos = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    var_pos = any(p.kind is P.VAR_POSITIONAL for p in params)
    var_kw = any(p.kind is P.VAR_KEYWORD for p in params)
    for i, name in enumerate(positional):
        if i < len(ours_pos):
            if ours_pos[i].name != name:
                return (f"parameter {i + 1} is {name!r} in the original but "
                        f"{ours_pos[i].name!r} in fastnn")
        elif not var_pos:
            return f"fastnn's version has no parameter {name!r}"
    kwonly = [a.arg for a in args.kwonlyargs]
    for name in kwonly:
        if name not in ours and not var_kw:
            return f"fastnn's version has no parameter {name!r}"
    if args.vararg is not None and not var_pos:
        return f"the original takes *{args.vararg.arg}"
    if args.kwarg is not None and not var_kw:
        return f"the original takes **{args.kwarg.arg}"
    given = set(positional) | set(kwonly)
    for p in params:
        if p.default is P.empty and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD) \
                and p.name not in given:
            return f"fastnn's version requires {p.name!r}"
    all_pos = [a.arg for a in args.posonlyargs + args.args]
    defaults = dict(zip(all_pos[len(all_pos) - len(args.defaults):], args.defaults))
    defaults.update((a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None)
    for name, node in defaults.items():
        p = ours.get(name)
        if p is None:
            continue
        if p.default is P.empty:
            return f"{name!r} has a default in the original but not in fastnn"
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, _SIMPLE) and isinstance(p.default, _SIMPLE) and (
            type(value) is bool) == (type(p.default) is bool) and value != p.default:
            return f"the default of {name!r} is {value!r} in the original, {p.default!r} in fastnn"
    return None


def _is_static(node):
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)


def _is_property(node):
    return any(
        (isinstance(d, ast.Name) and d.id in ("property", "cached_property"))
        or (isinstance(d, ast.Attribute) and d.attr in ("setter", "getter", "deleter"))
        for d in node.decorator_list
    )


def _mismatch(obj, kind, node):
    """Why the served ``obj`` does not match the book's definition ``node``, or None."""
    if kind == "def":
        if not callable(obj) or inspect.isclass(obj):
            return "fastnn's object of that name is not a function"
        return _signature_mismatch(obj, node.args, method=False)
    if kind == "class":
        if not inspect.isclass(obj):
            return "fastnn's object of that name is not a class"
        for item in node.body:
            if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            name = item.name
            if name.startswith("_") and name != "__init__":
                continue
            if inspect.getattr_static(obj, name, None) is None:
                return f"fastnn's {obj.__name__} has no {name}()"
            if _is_property(item):
                continue
            reason = _signature_mismatch(getattr(obj, name), item.args,
                                         method=not _is_static(item))
            if reason is not None:
                return f"{name}(): {reason}"
    return None


def _plan_fallbacks(fullname, namespace, path):
    """Names of the book's file ``path`` that fastnn cannot serve: name -> (reason, kind, line)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return {}
    plan = {}
    for name, (kind, node) in _bound_names(tree.body).items():
        if name.startswith("__"):
            continue
        if name not in namespace:
            plan[name] = ("not provided by fastnn", kind, node)
        elif kind in ("def", "class"):
            reason = _mismatch(namespace[name], kind, node)
            if reason is not None:
                plan[name] = (reason, kind, node)
    return plan


def _load_original(fullname, path):
    """Run the book's file ``path`` as a private module (its imports are served by the hook)."""
    module = _state.originals.get(fullname)
    if module is None:
        private = "_fastnn_original_" + fullname.replace(".", "_")
        spec = importlib.util.spec_from_file_location(private, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(private, None)
            raise
        _state.originals[fullname] = module
    return module


def _import_binding(node, name):
    """Value of ``name`` bound by the import statement ``node`` (absolute imports only)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (alias.asname or alias.name.split(".")[0]) == name:
                mod = importlib.import_module(alias.name)
                return mod if alias.asname else sys.modules[alias.name.split(".")[0]]
    if isinstance(node, ast.ImportFrom) and not node.level:
        for alias in node.names:
            if (alias.asname or alias.name) == name:
                mod = importlib.import_module(node.module)
                try:
                    return getattr(mod, alias.name)
                except AttributeError:
                    return importlib.import_module(f"{node.module}.{alias.name}")
    raise LookupError(name)


def _make_getattr(fullname, plan, path):
    """Module ``__getattr__`` that takes the names in ``plan`` from the book's file."""

    def __getattr__(name):
        entry = plan.get(name)
        if entry is None:
            raise AttributeError(f"module {fullname!r} has no attribute {name!r}")
        reason, kind, node = entry
        module = sys.modules.get(fullname)
        if kind == "import":
            try:
                value = _import_binding(node, name)
            except LookupError:
                value = getattr(_load_original(fullname, path), name)
        else:
            value = getattr(_load_original(fullname, path), name)
            _warn_once(
                ("name", fullname, name),
                f"{fullname}.{name}: {reason}; using the original {kind} from "
                f"{path}:{node.lineno} (its own calls into common.* are still served by "
                "fastnn)",
                path,
                node.lineno,
            )
        if module is not None:
            setattr(module, name, value)
        return value

    return __getattr__


# --------------------------------------------------------------------------- finder
@dataclass
class _Context:
    fullname: str
    path: str | None  # the book's .py file, if found
    parent_locations: list


class _ServedLoader(importlib.abc.Loader):
    """Builds a served module from fastnn's objects."""

    def __init__(self, builder, source, path):
        self.builder = builder
        self.source = source
        self.path = path

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        parent = name.rpartition(".")[0]
        ctx = _Context(name, self.path, _package_locations(parent) if parent else [])
        namespace = self.builder(ctx)
        plan = _plan_fallbacks(name, namespace, self.path) if self.path else {}
        for n in plan:
            namespace.pop(n, None)
        module.__dict__.update(namespace)
        module.__fastnn_served__ = True
        module.__fastnn_source__ = self.source
        public_fallbacks = [n for n in plan if not n.startswith("_")]
        if public_fallbacks:  # star imports must reach the original's extra names
            module.__all__ = sorted({n for n in namespace if not n.startswith("_")}
                                    | set(public_fallbacks))
        if plan:
            module.__getattr__ = _make_getattr(name, plan, self.path)
        _state.served[name] = self.source


class _PostExecLoader(importlib.abc.Loader):
    """Wraps a loader to run ``callback(module)`` after the module executed."""

    def __init__(self, loader, callback):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """The meta-path finder of :func:`install`; first on ``sys.meta_path``."""

    def find_spec(self, fullname, path=None, target=None):
        entry = _SERVED.get(fullname)
        if entry is not None:
            builder, source, is_package = entry
            original = _original_spec(fullname)
            spec = importlib.machinery.ModuleSpec(
                fullname,
                _ServedLoader(builder, source, _source_path(original)),
                origin=f"served by fastnn from {source}",
                is_package=is_package,
            )
            if is_package:
                locations = original.submodule_search_locations if original else None
                spec.submodule_search_locations = list(locations or [])
            return spec
        parent, dot, _ = fullname.rpartition(".")
        if dot and parent in _PACKAGES and getattr(sys.modules.get(parent),
                                                   "__fastnn_served__", False):
            return self._unknown_child(fullname, parent)
        if fullname == "matplotlib.pyplot" and _state.save_figures:
            return self._pyplot(fullname, path, target)
        return None

    def _unknown_child(self, fullname, parent):
        locations = _package_locations(parent)
        if not locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, locations)
        if spec is not None:
            _warn_once(
                ("module", fullname),
                f"{fullname} is not provided by fastnn; importing the original "
                f"{os.path.normpath(spec.origin or '?')} (its imports of common.* are still "
                "served by fastnn)",
            )
        return spec

    def _pyplot(self, fullname, path, target):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _PostExecLoader(spec.loader, _patch_pyplot)
                return spec
        return None


# --------------------------------------------------------------------------- figures
def _has_display():
    if sys.platform.startswith("win") or sys.platform == "darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _patch_pyplot(plt):
    """Make ``plt.show()`` save the open figures (no display)."""
    if getattr(plt.show, "__fastnn_saves__", False):
        return

    def show(*args, **kwargs):
        """Save every open figure as ``<script>_figure<N>.png`` (fastnn run, no display)."""
        for num in plt.get_fignums():
            _state.figure_count += 1
            path = f"{_state.figure_stem}_figure{_state.figure_count}.png"
            plt.figure(num).savefig(path)
            print(f"fastnn: no display; figure saved to {os.path.abspath(path)}",
                  file=sys.stderr)
        plt.close("all")

    show.__fastnn_saves__ = True
    plt.show = show


# --------------------------------------------------------------------------- kernel timing
_NO_RETRY = object()


def _no_retry(name, fn, args, kwargs):
    return _NO_RETRY


def _is_float16(a):
    import numpy as np

    return isinstance(a, np.ndarray) and a.dtype == np.float16


def _retry_float16(name, fn, args, kwargs):
    """Rerun a functional op with float16 arrays upcast to float64 (the book's NumPy does)."""
    if not (any(map(_is_float16, args)) or any(map(_is_float16, kwargs.values()))):
        return _NO_RETRY
    import numpy as np

    _warn_once(
        ("float16",),
        f"{name} got float16 input, which fastnn's kernels do not compute in; float16 "
        "arrays are computed in float64 from here on (the book's NumPy code also ends up in "
        "float64 once im2col / np.dot mix them with float64 weights)",
    )

    def up(a):
        return a.astype(np.float64) if _is_float16(a) else a

    return fn(*map(up, args), **{k: up(v) for k, v in kwargs.items()})


def _is_scalar(v):
    import numpy as np

    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _retry_scalars(name, fn, args, kwargs):
    """Rerun ``Optimizer.update`` with Python-number parameters held in 0-d arrays."""
    if kwargs or len(args) != 3:
        return _NO_RETRY
    self, params, grads = args
    if not hasattr(params, "items") or not hasattr(grads, "items"):
        return _NO_RETRY
    keys = [k for k, v in params.items() if _is_scalar(v)]
    if not keys:
        return _NO_RETRY
    import numpy as np

    _warn_once(
        ("scalars",),
        f"{name} got Python numbers as parameters (fastnn updates arrays in place); "
        "optimizers update such parameters as 0-d float64 arrays, which gives the book's "
        "numbers",
    )
    p2 = dict(params)
    g2 = dict(grads)
    for k in keys:
        p2[k] = np.array(params[k], dtype=np.float64)
        if _is_scalar(g2.get(k)):
            g2[k] = np.array(g2[k], dtype=np.float64)
    out = fn(self, p2, g2)
    for k in keys:
        params[k] = p2[k][()]
    return out


def _wrap_op(name, fn, retry):
    """``fn`` timed into ``_state.stats[name]`` (outermost calls only), with ``retry``."""
    stat = _state.stats.setdefault(name, [0, 0.0])
    perf = time.perf_counter
    tls = _tls

    @functools.wraps(fn)
    def op(*args, **kwargs):
        if getattr(tls, "busy", False):
            try:
                return fn(*args, **kwargs)
            except TypeError:
                out = retry(name, fn, args, kwargs)
                if out is _NO_RETRY:
                    raise
                return out
        tls.busy = True
        t0 = perf()
        try:
            try:
                return fn(*args, **kwargs)
            except TypeError:
                out = retry(name, fn, args, kwargs)
                if out is _NO_RETRY:
                    raise
                return out
        finally:
            tls.busy = False
            stat[0] += 1
            stat[1] += perf() - t0

    op.__fastnn_unwrapped__ = fn
    return op


def _patch(owner, attr, new):
    _state.patched.append((owner, attr, owner.__dict__[attr] if isinstance(owner, type)
                           else getattr(owner, attr)))
    setattr(owner, attr, new)


def _instrument():
    """Wrap fastnn.functional's ops and the optimizers' ``update`` (undone by uninstall)."""
    from fastnn import functional, optimizers

    for name, fn in list(vars(functional).items()):
        if (not name.startswith("_") and inspect.isfunction(fn)
                and fn.__module__ == functional.__name__):
            _patch(functional, name, _wrap_op(name, fn, _retry_float16))
    for cname in optimizers.__all__:
        cls = getattr(optimizers, cname)
        fn = vars(cls).get("update") if inspect.isclass(cls) else None
        if inspect.isfunction(fn):
            _patch(cls, "update", _wrap_op(f"{cname}.update", fn, _retry_scalars))
    try:  # the nets' fused numerical gradients (called through module globals)
        from fastnn import _numgrad
    except ImportError:
        return
    for name in ("fc_numerical_gradient", "conv_numerical_gradient"):
        fn = getattr(_numgrad, name, None)
        if inspect.isfunction(fn):
            _patch(_numgrad, name, _wrap_op(name, fn, _no_retry))


# --------------------------------------------------------------------------- public API
def is_installed():
    """Whether the import hook is active in this process.

    Returns
    -------
    bool
    """
    return _state.finder is not None and _state.finder in sys.meta_path


_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _limit_blas():
    """Hold every BLAS to one thread unless the user chose a BLAS thread count.

    NumPy's multi-threaded BLAS (the ``Affine`` products) and Numba's worker pool (the
    kernels) otherwise fight for the cores: on 2 cores a ``(100, 4320) @ (4320, 100)`` product
    right after a parallel kernel measured 130-200 ms instead of 4-7 ms single-threaded.
    """
    if _state.blas_limiter is not None or any(os.environ.get(v) for v in _BLAS_ENV):
        return
    try:
        from threadpoolctl import threadpool_limits

        _state.blas_limiter = threadpool_limits(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - an optimisation only; never fail the install
        _state.blas_limiter = None


def install(data=None, save_figures=False):
    """Serve the book's ``common.*``, ``dataset.mnist`` and chapter modules from fastnn.

    Call it at the top of a notebook (before the cells that import ``common.layers``...).
    Modules of those names imported before are dropped from ``sys.modules`` so that the next
    import gets fastnn's; objects already bound to names in your namespace are not replaced.
    Calling it again only updates ``data`` and ``save_figures``.

    While the hook is installed, :mod:`fastnn.functional`'s ops, the optimizers' ``update``
    and the nets' fused numerical gradients go through thin timing wrappers (for
    :func:`report`; well under a microsecond per call), which also adapt float16 arrays and
    Python-number optimizer parameters (see the module docstring). BLAS is held to one thread
    unless ``$OPENBLAS_NUM_THREADS`` / ``$MKL_NUM_THREADS`` / ``$OMP_NUM_THREADS`` is set:
    NumPy's BLAS threads and Numba's workers otherwise fight for the cores (a ``(100, 4320) @
    (4320, 100)`` product measured 130-200 ms instead of 4-7 ms on 2 cores).

    Parameters
    ----------
    data : str or os.PathLike, optional
        Directory of the four MNIST IDX files for ``dataset.mnist.load_mnist`` (see
        :func:`fastnn.datasets.load_mnist`). Default: ``$FASTNN_DATA``, the book's
        ``dataset/`` directory if it holds the files, else the bundled MNIST-5k subset.
    save_figures : bool, default False
        Make ``matplotlib.pyplot.show()`` save the open figures as PNG files instead (what
        ``fastnn run`` does when there is no display).

    Raises
    ------
    FileNotFoundError
        If ``data`` is given and is not a directory.

    Examples
    --------
    >>> import fastnn.hook
    >>> fastnn.hook.install()                      # doctest: +SKIP
    >>> from common.layers import Convolution      # doctest: +SKIP
    >>> Convolution.__module__                     # doctest: +SKIP
    'fastnn.layers'
    """
    if data is not None:
        data = os.fspath(data)
        if not os.path.isdir(data):
            raise FileNotFoundError(f"fastnn.hook.install: data directory {data!r} does not "
                                    "exist (it must hold the four MNIST IDX files)")
    _state.data = data
    _state.save_figures = bool(save_figures)
    if is_installed():
        return
    _state.t0 = time.perf_counter()
    _state.served.clear()
    _state.fallbacks.clear()
    _state.warned.clear()
    _state.stats.clear()
    _state.data_source = None
    _evict()
    _instrument()
    _limit_blas()
    _state.finder = _Finder()
    sys.meta_path.insert(0, _state.finder)
    if save_figures and "matplotlib.pyplot" in sys.modules:
        _patch_pyplot(sys.modules["matplotlib.pyplot"])


def _evict():
    """Drop the served names (and their submodules) and the private originals from sys.modules."""
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if name in _SERVED or top in _PACKAGES or name.startswith("_fastnn_original_"):
            del sys.modules[name]
    _state.originals.clear()


def uninstall():
    """Undo :func:`install`: remove the hook and the timing wrappers, forget served modules.

    Afterwards ``import common.layers`` finds the book's files again. Objects already imported
    from served modules stay fastnn's. Does nothing if the hook is not installed.
    """
    if _state.finder is None:
        return
    try:
        sys.meta_path.remove(_state.finder)
    except ValueError:
        pass
    _state.finder = None
    for owner, attr, original in reversed(_state.patched):
        setattr(owner, attr, original)
    _state.patched.clear()
    if _state.blas_limiter is not None:
        _state.blas_limiter.restore_original_limits()
        _state.blas_limiter = None
    _evict()


def served_modules():
    """Names of the modules the hook has served so far, in import order.

    Returns
    -------
    list of str
    """
    return list(_state.served)


def report(wall=None, file=None):
    """Summary of the hook's work: served modules, fallbacks, time in fastnn kernels.

    Parameters
    ----------
    wall : float, optional
        Wall time to report, in seconds. Default: the time since :func:`install`.
    file : file-like, optional
        If given, the text is also written there.

    Returns
    -------
    str
        The report (several lines).
    """
    if wall is None:
        wall = time.perf_counter() - _state.t0 if _state.t0 is not None else 0.0
    lines = ["fastnn report"]
    served = [n for n in _state.served if n not in _PACKAGES]
    lines.append("  served by fastnn : " + (", ".join(served) if served else "nothing"))
    if _state.data_source is not None:
        lines.append(f"  MNIST data       : {_state.data_source}")
    if _state.fallbacks:
        lines.append(f"  fell back ({len(_state.fallbacks)})    :")
        lines.extend("    - " + m for m in _state.fallbacks)
    else:
        lines.append("  fell back        : nothing")
    ops = sorted(((s[1], s[0], n) for n, s in _state.stats.items() if s[0]), reverse=True)
    kernel = sum(t for t, _, _ in ops)
    share = 100.0 * kernel / wall if wall > 0 else 0.0
    process = _process_seconds()
    lines.append(f"  wall time        : {wall:8.2f} s" + (
        f"   (whole process {process:.2f} s, with Python's and the CLI's start-up)"
        if process is not None and process > wall else ""))
    lines.append(f"  fastnn kernels   : {kernel:8.2f} s ({share:4.1f} %, includes loading "
                 "the compiled kernels on first use)")
    for t, calls, name in ops[:6]:
        lines.append(f"      {name:<32s} {t:8.3f} s {calls:8d} calls")
    lines.append(f"  elsewhere        : {max(wall - kernel, 0.0):8.2f} s ({100.0 - share:4.1f} %, "
                 "NumPy matmuls, Python, imports, data loading)")
    try:
        import fastnn

        lines.append(f"  threads          : {fastnn.get_num_threads()}")
    except Exception:  # noqa: BLE001 - the report must never fail
        pass
    text = "\n".join(lines)
    if file is not None:
        print(text, file=file)
        file.flush()
    return text


_report = report  # run_script's parameter ``report`` shadows the function


def _process_seconds():
    """Seconds since this process started (Linux ``/proc``), or None elsewhere."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


# --------------------------------------------------------------------------- runner
def _exit_code(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _print_script_error(exc):
    """Print the traceback of ``exc`` without the runner's own frames."""
    tb = exc.__traceback__
    skip = {os.path.abspath(runpy.__file__), os.path.abspath(__file__), "<frozen runpy>"}

    def ours(filename):
        return filename in skip or os.path.abspath(filename) in skip

    while tb is not None and ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def run_script(script, args=(), report=False, data=None, save_figures=None):
    """Run ``script`` as ``__main__`` on fastnn, as ``python script args...`` would.

    ``sys.argv`` becomes ``[script, *args]`` and ``sys.path[0]`` the script's directory; the
    hook is installed first (see :func:`install`).

    Parameters
    ----------
    script : str or os.PathLike
        Path of the Python file.
    args : sequence of str
        The script's command-line arguments.
    report : bool, default False
        Print :func:`report` on stderr when the script ends (also after an error).
    data : str or os.PathLike, optional
        MNIST directory for ``dataset.mnist.load_mnist`` (see :func:`install`).
    save_figures : bool, optional
        Make ``plt.show()`` save figures. Default: when there is no display and
        ``$MPLBACKEND`` is unset (then ``MPLBACKEND=Agg`` is set too).

    Returns
    -------
    int
        Exit status: 0, the script's ``sys.exit`` code, 1 after an uncaught exception, 2 if
        the script cannot be read.
    """
    t0 = time.perf_counter()
    script = os.fspath(script)
    path = os.path.abspath(script)
    if not os.path.isfile(path):
        print(f"fastnn run: {script}: no such file", file=sys.stderr)
        return 2
    if save_figures is None:
        save_figures = not _has_display() and not os.environ.get("MPLBACKEND")
    if save_figures and not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = "Agg"
    try:
        install(data=data, save_figures=save_figures)
    except FileNotFoundError as err:
        print(f"fastnn run: {err}", file=sys.stderr)
        return 2
    _state.t0 = t0
    _state.figure_stem = os.path.splitext(os.path.basename(path))[0]
    sys.argv = [script, *map(str, args)]
    if sys.path:
        sys.path[0] = os.path.dirname(path)
    else:
        sys.path.insert(0, os.path.dirname(path))
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")  # sets argv[0] and __file__ to script
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt as exc:
        _print_script_error(exc)
        code = 130
    except BaseException as exc:  # noqa: BLE001 - reported like the interpreter does
        _print_script_error(exc)
        code = 1
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        if report:
            _report(wall=time.perf_counter() - t0, file=sys.stderr)
    return code


def add_run_arguments(parser):
    """Add the ``run`` arguments (``--report``, ``--data``, ``SCRIPT``, ``ARGS``) to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.add_argument("--report", action="store_true",
                        help="at exit, print the modules served by fastnn, what fell back, and "
                             "the time in fastnn kernels vs elsewhere (on stderr)")
    parser.add_argument("--data", metavar="PATH",
                        help="directory of the four MNIST IDX files for dataset.mnist."
                             "load_mnist (default: $FASTNN_DATA, the book's dataset/ files, "
                             "else the bundled MNIST-5k subset)")
    parser.add_argument("script", metavar="SCRIPT", help="the book-style script to run")
    parser.add_argument("args", metavar="ARGS", nargs=argparse.REMAINDER,
                        help="arguments passed to the script (its sys.argv[1:])")


def run_from_args(args):
    """Run the script described by parsed :func:`add_run_arguments` arguments.

    Returns
    -------
    int
        Exit status (see :func:`run_script`).
    """
    return run_script(args.script, args.args, report=args.report, data=args.data)


def main(argv=None):
    """``python -m fastnn.hook [--report] [--data PATH] SCRIPT [ARGS...]``.

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m fastnn.hook",
        description="Run a Deep Learning from Scratch script unchanged, with its common.*, "
                    "dataset.mnist and chapter modules served by fastnn.",
    )
    add_run_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    from fastnn.hook import main as _main  # the package's copy holds the hook's state

    sys.exit(_main())
