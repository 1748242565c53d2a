"""Degenerate, unreadable and edge-case dataset files are refused at load time with a
DataError naming the cause and the fix, never an assert or traceback (issue parts 5, 8, 9).
Each case was accepted, then crashed (or was mislabelled) before these checks."""

from __future__ import annotations

import builtins
import gzip
import io
import math
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from genbench.cli import main
from genbench.data import load_dataset
from genbench.data.base import probe_dataset
from genbench.data.files import safe_unpickle
from genbench.errors import ConfigError, DataError

CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def idx(dims, data=None, magic=0x0803) -> bytes:
    body = bytes(math.prod(dims)) if data is None else data
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + body


def write_mnist(directory, train=(3, 28, 28), test=(2, 28, 28), train_images=None):
    directory.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": train_images or idx(train),
             "train-labels-idx1-ubyte": idx(train[:1], magic=0x0801),
             "t10k-images-idx3-ubyte": idx(test), "t10k-labels-idx1-ubyte": idx(test[:1], magic=0x0801)}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def write_cifar(root, sizes=(2, 2, 2, 2, 2, 2), protocol=2):
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    for name, n in zip(CIFAR_BATCHES, sizes):
        batch = {b"batch_label": b"", b"data": np.zeros((n, 3072), np.uint8), b"labels": [0] * n}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return directory


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return f"npz:{path}"


def refused(spec, *words):
    with pytest.raises(DataError) as info:
        load_dataset(spec)
    for word in words:
        assert word in str(info.value), str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- empty splits, single images, 0x0 (part 5)

def test_empty_mnist_training_split(tmp_path):
    refused(f"mnist:{write_mnist(tmp_path, train=(0, 28, 28))}", "0 training and 2 test examples",
            "training split is empty")


def test_mnist_train_and_test_of_different_shapes(tmp_path):
    """Was an AssertionError from genbench's own layout check."""
    refused(f"mnist:{write_mnist(tmp_path, test=(2, 20, 20))}", "(1, 28, 28)", "(1, 20, 20)", "one size")


def test_mnist_images_of_0x0(tmp_path):
    refused(f"mnist:{write_mnist(tmp_path, train=(3, 0, 0))}", "(1, 0, 0)", "zero-sized side")


def test_idx_header_whose_sizes_overflow_int64(tmp_path):
    """2**31 x 2**31 x 4 = 2**64 wraps to 0 in numpy's int64 product: an empty data section
    passed the size check and reshape then failed with a traceback."""
    directory = write_mnist(tmp_path, train_images=idx([2**31, 2**31, 4], data=b""))
    refused(f"mnist:{directory}", "holds 0 bytes", str(2**64))


@pytest.mark.parametrize("arrays, words", [
    ({"x": np.zeros((0, 8, 8), np.uint8)}, ["0 training and 0 test", "empty"]),
    ({"x": np.zeros((1, 8, 8), np.uint8)}, ["1 training and 0 test", "test split is empty"]),  # a single image
    ({"x": np.zeros((4, 0, 0), np.uint8)}, ["(1, 0, 0)", "zero-sized side"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "x_test": np.zeros((0, 8, 8), np.uint8)}, ["test split is empty"]),
    ({"x": np.zeros((4, 8, 8), np.uint8), "x_test": np.zeros((4, 6, 6), np.uint8)}, ["(1, 8, 8)", "(1, 6, 6)"]),
    ({"x": np.zeros((4, 2)), "x_test": np.zeros((4, 8, 8), np.uint8)}, ["(2,)", "(1, 8, 8)"]),
])
def test_degenerate_npz(tmp_path, arrays, words):
    refused(write_npz(tmp_path / "d.npz", **arrays), *words)


def test_empty_cifar_training_batches(tmp_path):
    """An empty array pickled at protocol 2 holds b"", which asks for __builtin__.bytes:
    it was refused as 'could run arbitrary code' instead of as an empty split."""
    directory = write_cifar(tmp_path, sizes=(0, 0, 0, 0, 0, 2))
    message = refused(f"cifar10:{directory}", "0 training and 2 test examples")
    assert "arbitrary code" not in message


def test_single_image_folder_has_no_test_split(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "only.png")
    refused(f"folder:{tmp_path}", "1 training and 0 test examples", "test split is empty")


def test_generated_data_needs_a_test_example():
    with pytest.raises(ConfigError, match="n_test must be between 1"):
        load_dataset("toy2d-ring8?n_test=0")


def test_degenerate_data_exits_2_before_any_run(tmp_path, capsys):
    spec = write_npz(tmp_path / "one.npz", x=np.zeros((1, 8, 8), np.uint8))
    assert main(["run", "--model", "vae", "--dataset", spec, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "test split is empty" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec", ["digits?size=8", "shapes?n=50&size=16", "photos?n_train=3&n_test=2", "toy2d-grid25",
                                  "waves?n_train=5&n_test=3&length=64"])
def test_probes_of_embedded_data_agree_with_what_loads(spec):
    """The checks before training read a dataset's Header; it must be what loading gives."""
    header, data = probe_dataset(spec), load_dataset(spec)
    assert (header.kind, header.n_train, header.n_test, header.shape) == (
        data.info.kind, len(data.train), len(data.test), data.info.shape)


def test_probes_of_files_agree_with_what_loads(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 5, 7, 3), dtype=np.uint8)  # channels-last, non-square
    (tmp_path / "folder" / "a").mkdir(parents=True)
    (tmp_path / "folder" / "b").mkdir()
    for i in range(7):
        Image.fromarray(rgb[i]).save(tmp_path / "folder" / "ab"[i % 2] / f"{i}.png")
    Image.fromarray(rgb[0, :, :, 0]).save(tmp_path / "folder" / "a" / "gray.png")  # gray beside RGB: RGB
    specs = [write_npz(tmp_path / "d.npz", x=rgb, y=np.arange(12)) + "?limit=9",
             write_npz(tmp_path / "p.npz", x=np.zeros((6, 2)), x_test=np.ones((3, 2))),
             f"mnist:{write_mnist(tmp_path / 'mnist')}?limit=2", f"cifar10:{write_cifar(tmp_path / 'c')}?limit=3",
             f"folder:{tmp_path / 'folder'}", f"folder:{tmp_path / 'folder'}?size=4&test_fraction=0.5"]
    for spec in specs:
        header, data = probe_dataset(spec), load_dataset(spec)
        assert (header.kind, header.n_train, header.n_test, header.shape) == (
            data.info.kind, len(data.train), len(data.test), data.info.shape), spec


# ---------------------------------------------------------------- protocol-2 pickles of b"" (part 9)

def test_protocol_2_empty_bytes_unpickle_and_bytes_with_arguments_do_not(tmp_path):
    path = tmp_path / "p"
    path.write_bytes(pickle.dumps(b"", protocol=2))
    assert b"__builtin__\nbytes" in path.read_bytes()  # what Python 3 writes for b"" at protocol 2
    assert safe_unpickle(path) == b""
    path.write_bytes(pickle.dumps([b"", b"ab", b""], protocol=2))  # non-empty bytes: _codecs.encode
    assert safe_unpickle(path) == [b"", b"ab", b""]

    class Alloc:  # bytes(n) allocates n bytes: refused
        def __reduce__(self):
            return bytes, (2**40,)

    path.write_bytes(pickle.dumps(Alloc(), protocol=2))
    with pytest.raises(DataError, match="bytes\\(\\) with arguments"):
        safe_unpickle(path)


def test_protocol_2_cifar_with_empty_byte_strings_loads(tmp_path):
    directory = write_cifar(tmp_path, protocol=2)  # each batch_label is b""
    assert len(load_dataset(f"cifar10:{directory}").train) == 10


# ---------------------------------------------------------------- unreadable files (part 8)

@pytest.fixture
def unreadable(monkeypatch):
    """Make opening one path fail as it does without read permission (the tests may run as
    root, who can read anything, so chmod alone would not do)."""
    real_open = builtins.open

    def deny(path):
        def guarded(file, *args, **kwargs):
            if os.fspath(file) == os.fspath(path):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded)
        monkeypatch.setattr(io, "open", guarded)
    return deny


def assert_permission_message(spec, path):
    message = refused(spec, str(path), "permission denied", "chmod")
    assert "corrupt" not in message and "download" not in message


@pytest.mark.parametrize("gz", [False, True])
def test_unreadable_idx_file_says_permission_not_corrupt(tmp_path, unreadable, gz):
    directory = write_mnist(tmp_path)
    target = directory / "train-labels-idx1-ubyte"
    if gz:
        target.with_suffix(".gz").write_bytes(gzip.compress(target.read_bytes()))
        target.unlink()
        target = target.with_suffix(".gz")
    unreadable(target)
    assert_permission_message(f"mnist:{directory}", target)


def test_unreadable_cifar_batch_says_permission_not_corrupt(tmp_path, unreadable):
    directory = write_cifar(tmp_path)
    unreadable(directory / "test_batch")
    assert_permission_message(f"cifar10:{directory}", directory / "test_batch")


def test_unreadable_npz_and_image_say_permission(tmp_path, unreadable):
    spec = write_npz(tmp_path / "d.npz", x=np.zeros((4, 8, 8), np.uint8))
    unreadable(tmp_path / "d.npz")
    assert_permission_message(spec, tmp_path / "d.npz")
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"{i}.png")
    unreadable(tmp_path / "1.png")
    assert_permission_message(f"folder:{tmp_path}", tmp_path / "1.png")


def test_unreadable_suite_file_exits_2_with_path_and_cause(tmp_path, unreadable, capsys):
    suite = tmp_path / "mine.toml"
    suite.write_text('[[runs]]\nmodel = "vae"\n')
    unreadable(suite)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(suite) in err and "permission denied" in err and "chmod" in err and "Traceback" not in err


def test_suite_path_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "x.toml").mkdir()
    assert main(["run", "--suite", str(tmp_path / "x.toml"), "--dry-run"]) == 2
    assert "is not a file" in capsys.readouterr().err
