"""MNIST and Fashion-MNIST loaders: the drop-in replacement for the book's ``dataset/mnist.py``.

:func:`load_mnist` has the book's signature and return values. Instead of downloading and
pickling on first use, it reads the standard IDX files (gzip-compressed or plain) from a
directory the user names, and otherwise falls back to the MNIST-5k subset shipped inside the
package (5,000 real MNIST digits; see ``fastnn/_bundled/NOTICE.md``), saying so once per process
on stderr.

Where the data come from, in order:

1. the ``path`` argument,
2. the ``$FASTNN_DATA`` environment variable (``$FASTNN_FASHION_DATA`` for Fashion-MNIST),
3. the bundled MNIST-5k subset: the first 4,000 samples are the training set, the last 1,000 the
   test set (MNIST only; Fashion-MNIST has no bundled fallback).

A directory must hold the four standard files::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

(each may also be un-gzipped, e.g. ``train-images-idx3-ubyte``, or use the
``train-images.idx3-ubyte`` spelling of some archives). Parsed files are cached in memory per
process, keyed by path, size and modification time; every call returns fresh arrays, so callers
may modify them freely.

Nothing in this module touches the network, except :func:`download_mnist` when called
explicitly.
"""

from __future__ import annotations

import gzip
import importlib.resources
import os
import sys
import threading
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "load_mnist",
    "load_fashion_mnist",
    "download_mnist",
    "read_idx",
    "synthetic_linear",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "MNIST_FILES",
    "DEFAULT_MIRROR",
]

#: Class names of MNIST, index = label.
MNIST_CLASSES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")

#: Class names of Fashion-MNIST, index = label.
FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

#: The four standard file names (shared by MNIST and Fashion-MNIST), gzip-compressed form.
MNIST_FILES = {
    "train_img": "train-images-idx3-ubyte.gz",
    "train_label": "train-labels-idx1-ubyte.gz",
    "test_img": "t10k-images-idx3-ubyte.gz",
    "test_label": "t10k-labels-idx1-ubyte.gz",
}

#: Mirror used by :func:`download_mnist` when none is given (the URL the book's own
#: ``dataset/mnist.py`` uses today).
DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: Environment variables naming a data directory.
MNIST_ENV = "FASTNN_DATA"
FASHION_ENV = "FASTNN_FASHION_DATA"

_NUM_CLASSES = 10
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_BUNDLED_PACKAGE = "fastnn._bundled"
_BUNDLED_IMAGES = "mnist5k-images-idx3-ubyte.gz"
_BUNDLED_LABELS = "mnist5k-labels-idx1-ubyte.gz"
_BUNDLED_TRAIN_SIZE = 4000

_BUNDLED_MESSAGE = (
    "fastnn: using the bundled MNIST-5k subset (4,000 train / 1,000 test images of real MNIST "
    "digits; see fastnn/_bundled/NOTICE.md). For the full MNIST, pass load_mnist(path=DIR) or "
    "set $FASTNN_DATA to a directory holding the four IDX files."
)
_bundled_message_shown = False

# (cache key) -> (images uint8 (N, rows, cols), labels uint8 (N,)), both read-only.
_cache: dict = {}
_lock = threading.Lock()


# --------------------------------------------------------------------------- IDX parsing
def _decompress(raw, name, func="read_idx"):
    """Return the IDX bytes of ``raw``, gunzipping it when it starts with the gzip magic."""
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{func}: {name}: corrupt gzip data ({err})") from None
    return raw


def _parse_idx(data, name, func="read_idx"):
    """Parse IDX bytes into an array; ``name`` is used in error messages."""
    if len(data) < 4:
        raise ValueError(
            f"{func}: {name}: file too short for an IDX header ({len(data)} bytes)"
        )
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{func}: {name}: not an IDX file (magic number 0x{data[:4].hex()}; expected "
            "0x00000803 for images or 0x00000801 for labels)"
        )
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"{func}: {name}: truncated header (magic announces {ndim} dimensions, "
            f"file has {len(data)} bytes)"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_len
    if payload != expected:
        what = "truncated payload" if payload < expected else "trailing bytes after payload"
        raise ValueError(
            f"{func}: {name}: {what}: header dims {dims} need {expected} bytes of data, "
            f"file has {payload}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path):
    """Read one IDX file (gzip-compressed or plain) into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        File to read. Gzip compression is detected from the content, not the name.

    Returns
    -------
    numpy.ndarray
        Array with the shape given by the IDX header and the dtype given by its type code
        (``uint8`` for MNIST), in native byte order. The array is a fresh, writable copy.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is corrupt gzip, is not IDX (wrong magic number), or its payload size does
        not match its header (truncated file or trailing bytes). The message names the file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    return _parse_idx(_decompress(raw, path), path)


def _check_magic(data, magic, name, func):
    """Raise ``ValueError`` unless the (decompressed) IDX bytes start with ``magic``."""
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        kind = "images" if magic == _IMAGES_MAGIC else "labels"
        shown = "none (file shorter than 4 bytes)" if found is None else f"0x{found:08x}"
        raise ValueError(
            f"{func}: {name}: wrong magic number {shown}; expected 0x{magic:08x} "
            f"(uint8 {kind})"
        )


def _parse_pair(img_raw, img_name, lbl_raw, lbl_name, func):
    """Parse and cross-check one images file and one labels file (raw file bytes)."""
    img_data = _decompress(img_raw, img_name, func)
    _check_magic(img_data, _IMAGES_MAGIC, img_name, func)
    images = _parse_idx(img_data, img_name, func)
    lbl_data = _decompress(lbl_raw, lbl_name, func)
    _check_magic(lbl_data, _LABELS_MAGIC, lbl_name, func)
    labels = _parse_idx(lbl_data, lbl_name, func)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{func}: count mismatch: {img_name} holds {images.shape[0]} images but "
            f"{lbl_name} holds {labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise ValueError(
            f"{func}: {lbl_name}: label {int(labels.max())} out of range 0..9"
        )
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- sources
def _find_file(directory, gz_name):
    """Path of the standard file ``gz_name`` in ``directory`` (any accepted spelling) or None."""
    plain = gz_name[: -len(".gz")]
    dotted = plain.replace("-idx", ".idx")  # train-images.idx3-ubyte (some archives)
    for candidate in (gz_name, plain, dotted + ".gz", dotted):
        p = directory / candidate
        if p.is_file():
            return p
    return None


def _resolve_dir(path, env_var, func):
    """Return the data directory named by ``path`` or ``$env_var`` (or None if neither)."""
    source = "path"
    if path is None:
        env = os.environ.get(env_var, "")
        if not env:
            return None
        path, source = env, f"${env_var}"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{func}: path must be a str or os.PathLike, got {type(path).__name__}"
        )
    directory = Path(os.fspath(path)).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{func}: data directory {str(directory)!r} (from {source}) does not exist or is "
            "not a directory; expected a directory holding " + ", ".join(MNIST_FILES.values())
        )
    return directory


def _load_dir(directory, func):
    """Load (and cache) the four standard files of ``directory``."""
    files = {key: _find_file(directory, name) for key, name in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] for k, p in files.items() if p is None]
    if missing:
        raise FileNotFoundError(
            f"{func}: {str(directory)!r} is missing {', '.join(missing)} "
            f"(expected the four files {', '.join(MNIST_FILES.values())}, gzip-compressed or "
            "plain)"
        )
    out = {}
    for split in ("train", "test"):
        img_path, lbl_path = files[f"{split}_img"], files[f"{split}_label"]
        key = []
        for p in (img_path, lbl_path):
            st = p.stat()
            key.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
        key = tuple(key)
        with _lock:
            pair = _cache.get(key)
        if pair is None:
            pair = _parse_pair(
                _read_bytes(img_path), str(img_path), _read_bytes(lbl_path), str(lbl_path), func
            )
            with _lock:
                _cache[key] = pair
        out[split] = pair
    return out["train"], out["test"]


def _load_bundled():
    """Load (and cache) the bundled MNIST-5k subset, split 4,000 / 1,000."""
    global _bundled_message_shown
    key = ("bundled",)
    with _lock:
        pair = _cache.get(key)
    if pair is None:
        root = importlib.resources.files(_BUNDLED_PACKAGE)
        img_res, lbl_res = root.joinpath(_BUNDLED_IMAGES), root.joinpath(_BUNDLED_LABELS)
        pair = _parse_pair(
            img_res.read_bytes(),
            f"fastnn/_bundled/{_BUNDLED_IMAGES}",
            lbl_res.read_bytes(),
            f"fastnn/_bundled/{_BUNDLED_LABELS}",
            "load_mnist",
        )
        with _lock:
            _cache[key] = pair
    with _lock:
        show = not _bundled_message_shown
        _bundled_message_shown = True
    if show:
        print(_BUNDLED_MESSAGE, file=sys.stderr, flush=True)
    images, labels = pair
    n = _BUNDLED_TRAIN_SIZE
    return (images[:n], labels[:n]), (images[n:], labels[n:])


# --------------------------------------------------------------------------- formatting
def _one_hot(labels):
    """The book's ``_change_one_hot_label``: float64 ``(N, 10)`` with a 1 at each label."""
    t = np.zeros((labels.size, _NUM_CLASSES))
    t[np.arange(labels.size), labels] = 1
    return t


def _format(images, labels, normalize, flatten, one_hot_label):
    """Turn cached uint8 arrays into the book's output arrays (always new arrays)."""
    n = images.shape[0]
    if flatten:
        x = images.reshape(n, -1)
    else:
        x = images.reshape(n, 1, *images.shape[1:])
    if normalize:
        x = x.astype(np.float32)
        x /= np.float32(255.0)
    else:
        x = x.copy()
    t = _one_hot(labels) if one_hot_label else labels.copy()
    return x, t


def _output(train, test, normalize, flatten, one_hot_label):
    return (
        _format(*train, normalize, flatten, one_hot_label),
        _format(*test, normalize, flatten, one_hot_label),
    )


# --------------------------------------------------------------------------- public loaders
def load_mnist(normalize=True, flatten=True, one_hot_label=False, path=None):
    """Load MNIST as the book's ``dataset.mnist.load_mnist`` does.

    Parameters
    ----------
    normalize : bool, default True
        Scale pixels to ``[0, 1]`` as float32 (``pixel / 255.0``); otherwise keep uint8
        ``0..255``.
    flatten : bool, default True
        Return images as rows of 784 values; otherwise as ``(N, 1, 28, 28)``.
    one_hot_label : bool, default False
        Return labels one-hot encoded (float64, ``(N, 10)``); otherwise as uint8 class indices.
    path : str or os.PathLike, optional
        Directory holding the four standard IDX files (``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
        ``t10k-labels-idx1-ubyte.gz``; gzip-compressed or plain). Defaults to
        ``$FASTNN_DATA``; if that is unset too, the bundled MNIST-5k subset is used (first
        4,000 samples = training set, last 1,000 = test set) and a one-time notice is printed
        on stderr.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of numpy.ndarray
        Images and labels. Each call returns new arrays; modifying them does not affect later
        calls.

    Raises
    ------
    FileNotFoundError
        If ``path`` (or ``$FASTNN_DATA``) is not a directory or lacks one of the four files;
        the message lists the expected files.
    ValueError
        If a file is corrupt (bad gzip, wrong magic number, header/payload size mismatch), if
        an images file and its labels file hold different numbers of samples, or if a label is
        outside ``0..9``. The message names the file.

    Shape
    -----
    - ``x``: ``(N, 784)`` if ``flatten`` else ``(N, 1, 28, 28)``; float32 in ``[0, 1]`` if
      ``normalize`` else uint8.
    - ``t``: ``(N,)`` uint8 if not ``one_hot_label`` else ``(N, 10)`` float64.

    Examples
    --------
    >>> from fastnn.datasets import load_mnist
    >>> (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True)  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype  # doctest: +SKIP
    ((4000, 784), dtype('float32'))
    """
    directory = _resolve_dir(path, MNIST_ENV, "load_mnist")
    if directory is None:
        train, test = _load_bundled()
    else:
        train, test = _load_dir(directory, "load_mnist")
    return _output(train, test, normalize, flatten, one_hot_label)


def load_fashion_mnist(path=None, normalize=True, flatten=True, one_hot_label=False):
    """Load Fashion-MNIST from a user directory, in the same format as :func:`load_mnist`.

    Fashion-MNIST (Zalando Research) uses the same four file names and IDX format as MNIST.
    Class names are in :data:`FASHION_MNIST_CLASSES`. Nothing is bundled and nothing is
    downloaded.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding the four standard IDX files (gzip-compressed or plain). Defaults to
        ``$FASTNN_FASHION_DATA``.
    normalize : bool, default True
        Scale pixels to ``[0, 1]`` as float32; otherwise keep uint8.
    flatten : bool, default True
        Return images as ``(N, 784)``; otherwise as ``(N, 1, 28, 28)``.
    one_hot_label : bool, default False
        Return labels one-hot encoded (float64, ``(N, 10)``); otherwise uint8 ``(N,)``.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of numpy.ndarray
        As for :func:`load_mnist`.

    Raises
    ------
    FileNotFoundError
        If neither ``path`` nor ``$FASTNN_FASHION_DATA`` is given, or the directory lacks one
        of the four files.
    ValueError
        If a file is corrupt or the image and label counts differ (the message names the
        file).

    Shape
    -----
    As for :func:`load_mnist`.
    """
    directory = _resolve_dir(path, FASHION_ENV, "load_fashion_mnist")
    if directory is None:
        raise FileNotFoundError(
            "load_fashion_mnist: no data directory: pass path=DIR or set "
            f"${FASHION_ENV} to a directory holding the four Fashion-MNIST files "
            f"{', '.join(MNIST_FILES.values())} (fastnn bundles no Fashion-MNIST data; get the "
            "files from github.com/zalandoresearch/fashion-mnist)"
        )
    train, test = _load_dir(directory, "load_fashion_mnist")
    return _output(train, test, normalize, flatten, one_hot_label)


def download_mnist(path, base_url=DEFAULT_MIRROR, overwrite=False, timeout=60):
    """Download the four standard IDX files into ``path``.

    Never called implicitly: fastnn does not touch the network unless you call this. Each file
    is fetched with :mod:`urllib`, checked with the IDX reader, and moved into place
    atomically. Works for any mirror with the standard file names, e.g. Fashion-MNIST's
    ``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination directory (created if needed). Afterwards use ``load_mnist(path=path)`` or
        set ``$FASTNN_DATA``.
    base_url : str, default DEFAULT_MIRROR
        Mirror URL; the file names are appended to it.
    overwrite : bool, default False
        Re-download files that already exist.
    timeout : float, default 60
        Per-request timeout in seconds.

    Returns
    -------
    pathlib.Path
        The destination directory.

    Raises
    ------
    OSError
        On network or file-system errors (``urllib.error.URLError`` is an ``OSError``).
    ValueError
        If a downloaded file is not a valid IDX file.
    """
    import urllib.request

    directory = Path(os.fspath(path)).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    if not base_url.endswith("/"):
        base_url += "/"
    for name in MNIST_FILES.values():
        dest = directory / name
        if dest.exists() and not overwrite:
            continue
        url = base_url + name
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            raw = resp.read()
        _parse_idx(_decompress(raw, url, "download_mnist"), url, "download_mnist")
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(raw)
        os.replace(tmp, dest)
    return directory


# --------------------------------------------------------------------------- synthetic data
def synthetic_linear(w, b, num_examples, noise=0.01, seed=None, dtype=np.float64):
    """Synthetic linear-regression data: d2l's ``synthetic_data(w, b, num_examples)``.

    Draws features ``X ~ N(0, 1)`` of shape ``(num_examples, len(w))`` and targets
    ``y = X @ w + b + N(0, noise**2)``, in that order (all of ``X`` first, then the noise), as
    *Dive into Deep Learning*, chapter 3.2.

    Parameters
    ----------
    w : array_like
        True weights, 1-D of length ``D`` (a scalar means ``D = 1``).
    b : float
        True bias.
    num_examples : int
        Number of samples ``N`` (positive).
    noise : float, default 0.01
        Standard deviation of the Gaussian noise added to ``y`` (``0`` for exact targets).
    seed : None, int or numpy.random.Generator, default None
        ``None`` draws from NumPy's global RNG (``np.random.normal``), so ``np.random.seed(s)``
        reproduces the data; an int seeds a private ``np.random.default_rng(seed)`` (the global
        RNG is left untouched); a ``Generator`` or ``RandomState`` is used as given.
    dtype : {np.float64, np.float32}, default np.float64
        dtype of the returned arrays (everything is computed in float64, then cast).

    Returns
    -------
    X : ndarray
        Features ``(N, D)``.
    y : ndarray
        Targets ``(N, 1)`` (d2l's ``y.reshape((-1, 1))``).

    Raises
    ------
    TypeError
        If an argument has the wrong type (non-numeric ``w``, non-integer ``num_examples``,
        unsupported ``dtype`` or ``seed``).
    ValueError
        If ``w`` is not 1-D or empty, ``num_examples < 1``, or ``noise`` is negative or not
        finite.

    Shape
    -----
    w: (D,) -> X: (N, D), y: (N, 1).

    Examples
    --------
    >>> X, y = synthetic_linear([2, -3.4], 4.2, 1000, seed=0)
    >>> X.shape, y.shape
    ((1000, 2), (1000, 1))
    """
    import numbers

    op = "synthetic_linear"
    try:
        w_arr = np.asarray(w)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{op}: w must be a 1-D array of real numbers ({exc})") from None
    if w_arr.dtype.kind not in "iuf" or w_arr.dtype.kind == "b":
        raise TypeError(f"{op}: w must hold real numbers, got dtype {w_arr.dtype}")
    w_arr = w_arr.astype(np.float64).reshape(-1) if w_arr.ndim == 0 else w_arr.astype(np.float64)
    if w_arr.ndim != 1 or w_arr.size == 0:
        raise ValueError(f"{op}: w must be a non-empty 1-D array, got shape {np.shape(w)}")
    b_arr = np.asarray(b)
    if b_arr.ndim != 0 and b_arr.size != 1:
        raise ValueError(f"{op}: b must be a scalar, got shape {b_arr.shape}")
    if b_arr.dtype.kind not in "iuf":
        raise TypeError(f"{op}: b must be a real number, got {b!r}")
    b_val = float(b_arr.reshape(()))
    if isinstance(num_examples, (bool, np.bool_)) or not isinstance(
        num_examples, (numbers.Integral, np.integer)
    ):
        raise TypeError(f"{op}: num_examples must be an integer, got {num_examples!r}")
    if num_examples < 1:
        raise ValueError(f"{op}: num_examples must be positive, got {num_examples}")
    if isinstance(noise, (bool, np.bool_)) or not isinstance(noise, (numbers.Real, np.number)):
        raise TypeError(f"{op}: noise must be a real number, got {noise!r}")
    noise = float(noise)
    if not (noise >= 0 and np.isfinite(noise)):
        raise ValueError(f"{op}: noise must be a finite number >= 0, got {noise}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{op}: dtype must be np.float32 or np.float64, got {dt}")
    if seed is None:
        normal = np.random.normal
    elif isinstance(seed, (np.random.Generator, np.random.RandomState)):
        normal = seed.normal
    elif isinstance(seed, (numbers.Integral, np.integer)) and not isinstance(
        seed, (bool, np.bool_)
    ):
        if seed < 0:
            raise ValueError(f"{op}: seed must be non-negative, got {seed}")
        normal = np.random.default_rng(int(seed)).normal
    else:
        raise TypeError(
            f"{op}: seed must be None, a non-negative int or a numpy.random.Generator; "
            f"got {seed!r}"
        )
    n = int(num_examples)
    X = normal(0.0, 1.0, (n, w_arr.size))
    y = X @ w_arr + b_val
    y += normal(0.0, noise, y.shape)
    return X.astype(dt, copy=False), y.reshape(-1, 1).astype(dt, copy=False)
