"""Tests of fastnn.datasets: IDX parsing, load_mnist / load_fashion_mnist, bundled fallback."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import itertools
import re
import struct

import numpy as np
import pytest

from fastnn import datasets
from fastnn.datasets import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    MNIST_FILES,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)

N_TRAIN, N_TEST = 7, 4


# --------------------------------------------------------------------------- helpers
def idx_bytes(arr, magic=None):
    """Serialise a uint8 array as IDX (optionally forcing the magic number)."""
    arr = np.asarray(arr)
    if magic is None:
        magic = 0x00000800 | arr.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write(path, data, gz=True):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_split(rng, n):
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    t = rng.integers(0, 10, size=n, dtype=np.uint8)
    return x, t


@pytest.fixture
def data_dir(tmp_path):
    """A directory with four tiny gzip IDX files; returns (dir, arrays)."""
    rng = np.random.default_rng(0)
    (xtr, ttr), (xte, tte) = make_split(rng, N_TRAIN), make_split(rng, N_TEST)
    d = tmp_path / "mnist"
    d.mkdir()
    write(d / MNIST_FILES["train_img"], idx_bytes(xtr))
    write(d / MNIST_FILES["train_label"], idx_bytes(ttr))
    write(d / MNIST_FILES["test_img"], idx_bytes(xte))
    write(d / MNIST_FILES["test_label"], idx_bytes(tte))
    return d, (xtr, ttr, xte, tte)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("FASTNN_FASHION_DATA", raising=False)


def check_loaded(result, arrays, normalize=True, flatten=True, one_hot_label=False):
    (x_train, t_train), (x_test, t_test) = result
    for x, t, (x0, t0) in ((x_train, t_train, arrays[:2]), (x_test, t_test, arrays[2:])):
        n = x0.shape[0]
        exp_x = x0.reshape(n, 784) if flatten else x0.reshape(n, 1, 28, 28)
        if normalize:
            assert x.dtype == np.float32
            np.testing.assert_array_equal(x, exp_x.astype(np.float32) / np.float32(255.0))
        else:
            assert x.dtype == np.uint8
            np.testing.assert_array_equal(x, exp_x)
        if one_hot_label:
            assert t.dtype == np.float64 and t.shape == (n, 10)
            np.testing.assert_array_equal(t.argmax(axis=1), t0)
            np.testing.assert_array_equal(t.sum(axis=1), 1.0)
        else:
            assert t.dtype == np.uint8 and t.shape == (n,)
            np.testing.assert_array_equal(t, t0)


# --------------------------------------------------------------------------- bundled data
FLAGS = list(itertools.product([True, False], repeat=3))


@pytest.mark.parametrize("normalize,flatten,one_hot_label", FLAGS)
def test_bundled_flag_combinations(no_env, normalize, flatten, one_hot_label):
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=normalize, flatten=flatten, one_hot_label=one_hot_label
    )
    for x, t, n in ((x_train, t_train, 4000), (x_test, t_test, 1000)):
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        if normalize:
            assert x.dtype == np.float32
            assert 0.0 <= x.min() and x.max() <= 1.0
            assert x.max() == 1.0  # MNIST digits have saturated pixels
        else:
            assert x.dtype == np.uint8
            assert x.max() == 255
        if one_hot_label:
            assert t.dtype == np.float64 and t.shape == (n, 10)
            assert set(np.unique(t)) == {0.0, 1.0}
            np.testing.assert_array_equal(t.sum(axis=1), np.ones(n))
        else:
            assert t.dtype == np.uint8 and t.shape == (n,)
            assert t.min() == 0 and t.max() == 9


def test_bundled_flags_consistent(no_env):
    (xn, tn), (xn_te, _) = load_mnist(normalize=False, flatten=False)
    (xf, tf), (xf_te, _) = load_mnist(normalize=True, flatten=True, one_hot_label=True)
    # normalisation is exactly the book's float32 pixel / 255.0
    np.testing.assert_array_equal(xf, xn.reshape(4000, 784).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(xf_te, xn_te.reshape(1000, 784).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(tf.argmax(axis=1), tn)


def test_bundled_split_and_balance(no_env):
    (_, t_train), (_, t_test) = load_mnist()
    counts_train = np.bincount(t_train, minlength=10)
    counts_test = np.bincount(t_test, minlength=10)
    assert counts_train.size == 10 and counts_test.size == 10
    # 500 per class overall, shuffled: every prefix is roughly balanced
    np.testing.assert_array_equal(counts_train + counts_test, np.full(10, 500))
    assert counts_train.min() >= 320 and counts_train.max() <= 480
    assert counts_test.min() >= 50 and counts_test.max() <= 150


def test_bundled_train_test_are_first_4000_last_1000(no_env):
    root = importlib.resources.files("fastnn._bundled")
    with root.joinpath("mnist5k-images-idx3-ubyte.gz").open("rb") as f:
        images = np.frombuffer(gzip.decompress(f.read())[16:], np.uint8).reshape(5000, 784)
    (x_train, _), (x_test, _) = load_mnist(normalize=False)
    np.testing.assert_array_equal(x_train, images[:4000])
    np.testing.assert_array_equal(x_test, images[4000:])


def test_bundled_files_match_notice_checksums():
    root = importlib.resources.files("fastnn._bundled")
    notice = root.joinpath("NOTICE.md").read_text()
    for kind, name in (("images", "mnist5k-images-idx3-ubyte.gz"),
                       ("labels", "mnist5k-labels-idx1-ubyte.gz")):
        digest = hashlib.sha256(root.joinpath(name).read_bytes()).hexdigest()
        assert re.search(rf"{kind}: {digest}", notice), kind


def test_bundled_message_printed_once(no_env, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "_bundled_message_shown", False)
    load_mnist()
    load_mnist(normalize=False)
    load_mnist(one_hot_label=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "bundled MNIST-5k" in lines[0] and "NOTICE.md" in lines[0]
    assert "FASTNN_DATA" in lines[0]


def test_no_message_when_path_given(data_dir, no_env, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "_bundled_message_shown", False)
    load_mnist(path=data_dir[0])
    assert capsys.readouterr().err == ""


def test_returns_copies(no_env):
    (x1, t1), (x1_te, t1_te) = load_mnist(normalize=False)
    (xf, _), _ = load_mnist()
    keep_x, keep_t, keep_xf = x1.copy(), t1.copy(), xf.copy()
    x1[:] = 0
    t1[:] = 0
    x1_te[:] = 0
    t1_te[:] = 0
    xf[:] = -1
    (x2, t2), (x2_te, t2_te) = load_mnist(normalize=False)
    (xf2, _), _ = load_mnist()
    np.testing.assert_array_equal(x2, keep_x)
    np.testing.assert_array_equal(t2, keep_t)
    np.testing.assert_array_equal(xf2, keep_xf)
    assert x2_te.any() and t2_te.any()
    assert x2.flags.writeable and t2.flags.writeable


def test_class_names():
    assert MNIST_CLASSES == tuple(str(i) for i in range(10))
    assert FASHION_MNIST_CLASSES == (
        "t-shirt", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle boot",
    )


# --------------------------------------------------------------------------- user directories
@pytest.mark.parametrize("normalize,flatten,one_hot_label", FLAGS)
def test_directory_loads(data_dir, no_env, normalize, flatten, one_hot_label):
    d, arrays = data_dir
    result = load_mnist(normalize=normalize, flatten=flatten, one_hot_label=one_hot_label,
                        path=d)
    check_loaded(result, arrays, normalize, flatten, one_hot_label)


def test_directory_as_str_and_positional(data_dir, no_env):
    d, arrays = data_dir
    check_loaded(load_mnist(True, True, False, str(d)), arrays)


def test_fashion_directory_loads(data_dir, no_env):
    d, arrays = data_dir
    check_loaded(load_fashion_mnist(d), arrays)
    check_loaded(load_fashion_mnist(path=d, normalize=False, flatten=False,
                                    one_hot_label=True),
                 arrays, normalize=False, flatten=False, one_hot_label=True)


def test_plain_and_mixed_files(tmp_path, no_env):
    rng = np.random.default_rng(1)
    (xtr, ttr), (xte, tte) = make_split(rng, 5), make_split(rng, 3)
    d = tmp_path / "plain"
    d.mkdir()
    write(d / "train-images-idx3-ubyte", idx_bytes(xtr), gz=False)
    write(d / "train-labels-idx1-ubyte.gz", idx_bytes(ttr))
    write(d / "t10k-images.idx3-ubyte", idx_bytes(xte), gz=False)  # archive spelling
    write(d / "t10k-labels-idx1-ubyte", idx_bytes(tte), gz=False)
    check_loaded(load_mnist(path=d), (xtr, ttr, xte, tte))


def test_env_var_honoured(data_dir, monkeypatch, capsys):
    d, arrays = data_dir
    monkeypatch.setenv("FASTNN_DATA", str(d))
    monkeypatch.setattr(datasets, "_bundled_message_shown", False)
    check_loaded(load_mnist(), arrays)
    assert capsys.readouterr().err == ""  # no bundled notice


def test_path_argument_beats_env_var(data_dir, tmp_path, monkeypatch):
    d, arrays = data_dir
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "does-not-exist"))
    check_loaded(load_mnist(path=d), arrays)
    with pytest.raises(FileNotFoundError, match="FASTNN_DATA"):
        load_mnist()


def test_fashion_env_var_honoured(data_dir, monkeypatch):
    d, arrays = data_dir
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setenv("FASTNN_FASHION_DATA", str(d))
    check_loaded(load_fashion_mnist(), arrays)


def test_fashion_without_data_raises(no_env):
    with pytest.raises(FileNotFoundError, match="FASTNN_FASHION_DATA"):
        load_fashion_mnist()


def test_missing_files_listed(data_dir, no_env):
    d, _ = data_dir
    (d / MNIST_FILES["test_label"]).unlink()
    with pytest.raises(FileNotFoundError) as exc:
        load_mnist(path=d)
    msg = str(exc.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and str(d) in msg
    for name in MNIST_FILES.values():
        assert name in msg
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(path=d)


def test_missing_directory(tmp_path, no_env):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        load_mnist(path=tmp_path / "nope")
    with pytest.raises(TypeError, match="load_mnist"):
        load_mnist(path=42)


def test_cache_sees_changed_files(data_dir, no_env):
    d, (xtr, ttr, xte, tte) = data_dir
    load_mnist(path=d)
    rng = np.random.default_rng(5)
    x_new, t_new = make_split(rng, N_TRAIN + 2)
    write(d / MNIST_FILES["train_img"], idx_bytes(x_new))
    write(d / MNIST_FILES["train_label"], idx_bytes(t_new))
    check_loaded(load_mnist(path=d), (x_new, t_new, xte, tte))


# --------------------------------------------------------------------------- corrupt files
def _expect_value_error(d, bad_name):
    with pytest.raises(ValueError) as exc:
        load_mnist(path=d)
    assert str(d / bad_name) in str(exc.value)
    assert str(exc.value).startswith("load_mnist: ")
    with pytest.raises(ValueError, match="^load_fashion_mnist: ") as exc_f:
        load_fashion_mnist(path=d)
    assert str(d / bad_name) in str(exc_f.value)
    return str(exc.value)


def test_corrupt_gzip(data_dir, no_env):
    d, _ = data_dir
    name = MNIST_FILES["train_img"]
    (d / name).write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip data" * 5)
    assert "gzip" in _expect_value_error(d, name)


def test_truncated_gzip_stream(data_dir, no_env):
    d, _ = data_dir
    name = MNIST_FILES["test_img"]
    raw = (d / name).read_bytes()
    (d / name).write_bytes(raw[: len(raw) // 2])
    _expect_value_error(d, name)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_payload(data_dir, no_env, gz):
    d, (xtr, *_) = data_dir
    name = MNIST_FILES["train_img"]
    (d / name).unlink()
    target = d / (name if gz else name[:-3])
    write(target, idx_bytes(xtr)[:-10], gz=gz)
    with pytest.raises(ValueError, match="truncated") as exc:
        load_mnist(path=d)
    assert str(target) in str(exc.value)


def test_trailing_bytes(data_dir, no_env):
    d, (_, ttr, _, _) = data_dir
    name = MNIST_FILES["train_label"]
    write(d / name, idx_bytes(ttr) + b"\x00\x01")
    assert "trailing" in _expect_value_error(d, name)


def test_truncated_header(data_dir, no_env):
    d, _ = data_dir
    name = MNIST_FILES["test_img"]
    write(d / name, struct.pack(">II", 0x803, 4))
    _expect_value_error(d, name)


def test_wrong_magic_images(data_dir, no_env):
    d, (xtr, *_) = data_dir
    name = MNIST_FILES["train_img"]
    write(d / name, idx_bytes(xtr.reshape(-1), magic=0x00000801))  # a labels file
    msg = _expect_value_error(d, name)
    assert "magic" in msg and "0x00000803" in msg


def test_wrong_magic_labels(data_dir, no_env):
    d, (_, _, _, tte) = data_dir
    name = MNIST_FILES["test_label"]
    write(d / name, b"\x12\x34\x56\x78" + idx_bytes(tte)[4:])
    msg = _expect_value_error(d, name)
    assert "magic" in msg and "0x12345678" in msg


def test_count_mismatch(data_dir, no_env):
    d, (_, ttr, _, _) = data_dir
    name = MNIST_FILES["train_label"]
    write(d / name, idx_bytes(ttr[:-1]))
    msg = _expect_value_error(d, name)
    assert str(d / MNIST_FILES["train_img"]) in msg
    assert str(N_TRAIN) in msg and str(N_TRAIN - 1) in msg


def test_label_out_of_range(data_dir, no_env):
    d, (_, ttr, _, _) = data_dir
    name = MNIST_FILES["train_label"]
    bad = ttr.copy()
    bad[0] = 10
    write(d / name, idx_bytes(bad))
    assert "10" in _expect_value_error(d, name)


# --------------------------------------------------------------------------- read_idx
def test_read_idx_other_types(tmp_path):
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 7
    data = struct.pack(">I", 0x00000B03) + struct.pack(">3I", 2, 3, 4)
    data += arr.astype(">i2").tobytes()
    p = write(tmp_path / "x.idx", data, gz=False)
    out = read_idx(p)
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)

    f = np.linspace(-1, 1, 6, dtype=np.float32)
    data = struct.pack(">I", 0x00000D01) + struct.pack(">I", 6) + f.astype(">f4").tobytes()
    out = read_idx(write(tmp_path / "f.idx.gz", data))
    np.testing.assert_array_equal(out, f)
    out[0] = 5  # writable copy


def test_read_idx_rejects_non_idx(tmp_path):
    p = write(tmp_path / "junk", b"PK\x03\x04 zip file, not IDX", gz=False)
    with pytest.raises(ValueError, match="not an IDX file") as exc:
        read_idx(p)
    assert str(p) in str(exc.value)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_download_is_not_called_at_import(monkeypatch):
    """download_mnist exists but nothing in the loaders refers to urllib."""
    assert callable(datasets.download_mnist)
    import sys

    calls = []
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: calls.append(a))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    load_mnist()
    assert calls == []
    assert "fastnn.datasets" in sys.modules
