"""On-disk sources: tiny files written here load back exactly; bad files fail clearly."""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.data import load_dataset
from genbench.data.base import holdout_split
from genbench.utils.pixels import images_to_uint8
from genbench.errors import DataError

RNG = np.random.default_rng(123)


def as_u8(x: torch.Tensor) -> np.ndarray:
    return images_to_uint8(x).numpy()


@contextlib.contextmanager
def raises_naming(path, *words):
    """Expect a DataError whose message names `path` (a file path or name) and `words`."""
    with pytest.raises(DataError) as info:
        yield info
    message = str(info.value)
    for part in (str(path), *words):
        assert part in message, message


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory, gz: bool, n_train=6, n_test=4, overrides=None):
    """Write the four IDX files; `overrides` maps a file name to raw bytes to write instead."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_NAMES[0]: RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: RNG.integers(0, 10, n_train, dtype=np.uint8),
        IDX_NAMES[2]: RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: RNG.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        data = (overrides or {}).get(name, idx_bytes(array))
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_round_trip(tmp_path, gz, name):
    arrays = write_idx_dir(tmp_path / "raw", gz)
    data = load_dataset(f"{name}:{tmp_path / 'raw'}")
    assert data.info.shape == (1, 28, 28) and data.info.kind == "image"
    assert np.array_equal(as_u8(data.train.x)[:, 0], arrays[IDX_NAMES[0]])
    assert np.array_equal(data.train.y.numpy(), arrays[IDX_NAMES[1]])
    assert np.array_equal(as_u8(data.test.x)[:, 0], arrays[IDX_NAMES[2]])
    assert np.array_equal(data.test.y.numpy(), arrays[IDX_NAMES[3]])
    assert data.train.y.dtype == torch.int64
    assert data.info.classes[0] == ("0" if name == "mnist" else "T-shirt/top")
    assert len(data.info.classes) == 10 and "source split" in data.info.split
    limited = load_dataset(f"{name}:{tmp_path / 'raw'}?limit=3")
    assert len(limited.train) == 3 and len(limited.test) == 3
    assert torch.equal(limited.train.x, data.train.x[:3])


def test_idx_missing_directory_and_file(tmp_path):
    with raises_naming(tmp_path / "nope", "does not exist"):
        load_dataset(f"mnist:{tmp_path / 'nope'}")
    write_idx_dir(tmp_path, gz=False)
    (tmp_path / IDX_NAMES[3]).unlink()
    with raises_naming(IDX_NAMES[3], "missing", *IDX_NAMES):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_wrong_magic(tmp_path):
    labels = RNG.integers(0, 10, 6, dtype=np.uint8)
    write_idx_dir(tmp_path, gz=True, overrides={IDX_NAMES[1]: idx_bytes(labels, magic=0x00000803)})
    with raises_naming(f"{IDX_NAMES[1]}.gz", "0x00000803", "expected 0x00000801"):
        load_dataset(f"fashion-mnist:{tmp_path}")


def test_idx_truncated_and_oversized(tmp_path):
    images = RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    good = idx_bytes(images)
    write_idx_dir(tmp_path / "short", gz=False, overrides={IDX_NAMES[0]: good[:-100]})
    with raises_naming(tmp_path / "short" / IDX_NAMES[0], str(6 * 28 * 28), str(6 * 28 * 28 - 100)):
        load_dataset(f"mnist:{tmp_path / 'short'}")
    write_idx_dir(tmp_path / "long", gz=False, overrides={IDX_NAMES[0]: good + b"\0"})
    with raises_naming(IDX_NAMES[0], str(6 * 28 * 28 + 1)):
        load_dataset(f"mnist:{tmp_path / 'long'}")
    write_idx_dir(tmp_path / "tiny", gz=False, overrides={IDX_NAMES[2]: b"\0\0"})
    with raises_naming(IDX_NAMES[2], "magic"):
        load_dataset(f"mnist:{tmp_path / 'tiny'}")


def test_idx_count_mismatch(tmp_path):
    labels = RNG.integers(0, 10, 5, dtype=np.uint8)  # 6 images, 5 labels
    write_idx_dir(tmp_path, gz=False, overrides={IDX_NAMES[1]: idx_bytes(labels)})
    with raises_naming(IDX_NAMES[0], "6 images", "5 labels"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_corrupt_gzip(tmp_path):
    write_idx_dir(tmp_path, gz=True)
    (tmp_path / f"{IDX_NAMES[0]}.gz").write_bytes(b"not gzip at all")
    with raises_naming(f"{IDX_NAMES[0]}.gz", "cannot be read"):
        load_dataset(f"mnist:{tmp_path}")


# ---------------------------------------------------------------- CIFAR-10

CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar(root, protocol, str_keys=False, per_batch=2):
    """A tiny cifar-10-batches-py: `per_batch` images per batch. Returns {name: (data, labels)}."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    written = {}
    for name in CIFAR_BATCHES:
        data = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, per_batch).tolist()
        key = (lambda k: k) if str_keys else (lambda k: k.encode())
        batch = {key("batch_label"): b"tiny", key("labels"): labels, key("data"): data,
                 key("filenames"): [b"a.png"] * per_batch}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = (data, labels)
    return directory, written


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar_round_trip(tmp_path, protocol, str_keys):
    directory, written = write_cifar(tmp_path, protocol, str_keys)
    for spec_path in (directory, tmp_path):  # the batches directory or its parent
        data = load_dataset(f"cifar10:{spec_path}")
        assert data.info.shape == (3, 32, 32) and len(data.train) == 10 and len(data.test) == 2
        train_u8 = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
        assert np.array_equal(as_u8(data.train.x).reshape(10, 3072), train_u8)
        assert np.array_equal(as_u8(data.test.x).reshape(2, 3072), written["test_batch"][0])
        train_labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
        assert data.train.y.tolist() == train_labels
        assert data.info.classes[0] == "airplane" and data.info.classes[9] == "truck"
    # layout: each 3072 row is the R plane, then G, then B, each 32x32 row-major
    first = written["data_batch_1"][0][0]
    assert as_u8(data.train.x)[0, 1, 0, 5] == first[1024 + 5]
    assert as_u8(data.train.x)[0, 2, 3, 0] == first[2048 + 3 * 32]
    limited = load_dataset(f"cifar10:{directory}?limit=3")
    assert torch.equal(limited.train.x, data.train.x[:3]) and len(limited.test) == 2
    (directory / "data_batch_5").write_bytes(b"never read with limit=3")
    assert len(load_dataset(f"cifar10:{directory}?limit=3").train) == 3


def test_cifar_numpy1_pickle(tmp_path):
    """Pickles written by numpy 1 name numpy.core.multiarray (the original files do)."""
    directory, written = write_cifar(tmp_path, protocol=2)
    for name in CIFAR_BATCHES:
        path = directory / name
        old = path.read_bytes()
        path.write_bytes(old.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    data = load_dataset(f"cifar10:{directory}")
    assert np.array_equal(as_u8(data.test.x).reshape(2, 3072), written["test_batch"][0])


def test_cifar_missing_batches(tmp_path):
    directory, _ = write_cifar(tmp_path, protocol=2)
    (directory / "data_batch_3").unlink()
    (directory / "test_batch").unlink()
    with raises_naming(directory, "data_batch_3", "test_batch"):
        load_dataset(f"cifar10:{tmp_path}")
    with raises_naming(tmp_path / "absent", "does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'absent'}")


def test_cifar_wrong_structure(tmp_path):
    directory, _ = write_cifar(tmp_path, protocol=2)
    bad = {b"data": [[0] * 3072, [1] * 3072], b"labels": [0, 1]}  # a list, not an array
    (directory / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    with raises_naming(directory / "data_batch_2", "'data'"):
        load_dataset(f"cifar10:{directory}")
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    (directory / "data_batch_2").write_bytes(pickle.dumps(good, protocol=2))
    cases = [
        [1, 2, 3],  # not a dict
        {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},  # wrong dtype
        {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},  # wrong shape
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},  # count mismatch
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},  # label out of range
        {b"data": np.zeros((2, 3072), np.uint8)},  # no labels
    ]
    for case in cases:
        (directory / "test_batch").write_bytes(pickle.dumps(case, protocol=4))
        with raises_naming(directory / "test_batch"):
            load_dataset(f"cifar10:{directory}")
    (directory / "test_batch").write_bytes(b"\x80\x02garbage")
    with raises_naming(directory / "test_batch", "not a readable pickle"):
        load_dataset(f"cifar10:{directory}")


class _Shell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Exec:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.mark.parametrize("kind", ["system", "exec", "nested"])
def test_cifar_refuses_malicious_pickle(tmp_path, kind):
    directory, _ = write_cifar(tmp_path, protocol=2)
    marker = tmp_path / "pwned"
    payload = {
        "system": _Shell(f"touch {marker}"),
        "exec": _Exec(f"open({str(marker)!r}, 'w').write('x')"),
        "nested": {b"data": _Shell(f"touch {marker}"), b"labels": [0, 1]},
    }[kind]
    (directory / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with raises_naming(directory / "data_batch_1", "refuses to load") as info:
        load_dataset(f"cifar10:{directory}")
    assert ("system" in str(info.value)) or ("exec" in str(info.value))
    assert not marker.exists()


# ---------------------------------------------------------------- image folders

def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def undo_holdout(train, test, n, fraction=0.1):
    """All images in their original (sorted-file) order, from a seed-0 holdout."""
    train_idx, test_idx = holdout_split(n, fraction, 0)
    out = torch.empty((n, *train.x.shape[1:]))  # (n, C, H, W)
    out[train_idx], out[test_idx] = train.x, test.x
    return out


def test_folder_flat_rgb(tmp_path):
    images = RNG.integers(0, 256, (12, 9, 7, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        save_png(tmp_path / f"img{i:02d}.PNG", im)  # upper-case extension is fine
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.info.shape == (3, 9, 7) and data.info.classes is None
    assert data.train.y is None and len(data.train) == 11 and len(data.test) == 1
    everything = undo_holdout(data.train, data.test, 12)
    assert np.array_equal(as_u8(everything), images.transpose(0, 3, 1, 2))
    assert "holdout" in data.info.split


def test_folder_classes_and_grayscale(tmp_path):
    images = RNG.integers(0, 256, (3, 4, 8, 8), dtype=np.uint8)  # 3 classes x 4 gray images
    for c, name in enumerate(["cat", "ant", "bee"]):
        for i in range(4):
            save_png(tmp_path / name / f"{i}.png", images[c, i])
    (tmp_path / "empty").mkdir()  # holds no images: not a class
    data = load_dataset(f"folder:{tmp_path}?test_fraction=0.25")
    assert data.info.classes == ("ant", "bee", "cat")  # sorted
    assert data.info.shape == (1, 8, 8)  # every image is grayscale
    everything = undo_holdout(data.train, data.test, 12, 0.25)
    labels = torch.empty(12, dtype=torch.int64)
    train_idx, test_idx = holdout_split(12, 0.25, 0)
    labels[train_idx], labels[test_idx] = data.train.y, data.test.y
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    expected = np.concatenate([images[1], images[2], images[0]])  # ant, bee, cat
    assert np.array_equal(as_u8(everything)[:, 0], expected)


def test_folder_mixed_gray_and_rgb_becomes_rgb(tmp_path):
    save_png(tmp_path / "a.png", np.full((4, 4), 10, np.uint8))
    save_png(tmp_path / "b.png", np.full((4, 4, 3), 200, np.uint8))
    Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).save(tmp_path / "c.jpeg", quality=95)
    data = load_dataset(f"folder:{tmp_path}")
    assert data.info.shape == (3, 4, 4)
    everything = as_u8(undo_holdout(data.train, data.test, 3))
    assert (everything[0] == 10).all() and (everything[1] == 200).all()
    assert abs(int(everything[2].mean()) - 90) <= 2  # JPEG is lossy


def test_folder_mixed_sizes_and_resize(tmp_path):
    save_png(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    save_png(tmp_path / "b.png", np.zeros((10, 8, 3), np.uint8))
    with raises_naming(tmp_path / "b.png", str(tmp_path / "a.png"), "size=N") as info:
        load_dataset(f"folder:{tmp_path}")
    assert "8x10" in str(info.value) and "8x8" in str(info.value)
    data = load_dataset(f"folder:{tmp_path}?size=6")
    assert data.info.shape == (3, 6, 6)


def test_folder_empty_missing_and_undecodable(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with raises_naming(tmp_path / "empty", "no .png"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    with raises_naming(tmp_path / "missing", "does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    bad = tmp_path / "bad"
    save_png(bad / "good.png", np.zeros((4, 4), np.uint8))
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with raises_naming(bad / "broken.png", "cannot be decoded"):
        load_dataset(f"folder:{bad}")
    truncated = tmp_path / "truncated"
    save_png(truncated / "a.png", RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    full = (truncated / "a.png").read_bytes()
    (truncated / "b.png").write_bytes(full[: len(full) // 2])
    with raises_naming(truncated / "b.png", "cannot be decoded"):
        load_dataset(f"folder:{truncated}")


def test_folder_refuses_images_beside_class_folders(tmp_path):
    save_png(tmp_path / "loose.png", np.zeros((4, 4), np.uint8))
    save_png(tmp_path / "cls" / "a.png", np.zeros((4, 4), np.uint8))
    with raises_naming(tmp_path, "loose.png", "class subfolders"):
        load_dataset(f"folder:{tmp_path}")


# ---------------------------------------------------------------- npz

def test_npz_image_layouts(tmp_path):
    images = RNG.integers(0, 256, (10, 3, 5, 6), dtype=np.uint8)
    labels = RNG.integers(0, 4, 10)
    layouts = {
        "nchw": images,
        "nhwc": images.transpose(0, 2, 3, 1),
        "float": images.astype(np.float32) / 127.5 - 1,
    }
    for name, x in layouts.items():
        np.savez(tmp_path / f"{name}.npz", x=x, y=labels)
        data = load_dataset(f"npz:{tmp_path / name}.npz")
        assert data.info.shape == (3, 5, 6) and data.info.kind == "image"
        everything = undo_holdout(data.train, data.test, 10)
        assert np.array_equal(as_u8(everything), images), name
        assert data.info.classes == tuple(str(k) for k in range(int(labels.max()) + 1))
    gray = images[:, 0]
    np.savez(tmp_path / "gray.npz", x=gray, x_test=gray[:3])
    data = load_dataset(f"npz:{tmp_path / 'gray.npz'}")
    assert data.info.shape == (1, 5, 6) and data.train.y is None and data.info.classes is None
    assert np.array_equal(as_u8(data.train.x)[:, 0], gray) and len(data.test) == 3
    assert "source split" in data.info.split


def test_npz_points_with_test_split(tmp_path):
    x = RNG.normal(size=(20, 2)) * 50  # any range
    y = RNG.integers(0, 3, 20)
    np.savez(tmp_path / "p.npz", x=x, y=y, x_test=x[:5], y_test=y[:5])
    data = load_dataset(f"npz:{tmp_path / 'p.npz'}?limit=15")
    assert data.info.kind == "points" and data.info.shape == (2,)
    assert torch.equal(data.train.x, torch.from_numpy(x[:15]).float())
    assert torch.equal(data.test.y, torch.from_numpy(y[:5]))
    assert len(data.test) == 5


def test_npz_bad_inputs(tmp_path):
    np.savez(tmp_path / "nox.npz", images=np.zeros((4, 8, 8), np.uint8))
    with raises_naming(tmp_path / "nox.npz", "no array 'x'", "images"):
        load_dataset(f"npz:{tmp_path / 'nox.npz'}")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object))
    with raises_naming(tmp_path / "obj.npz", "object"):
        load_dataset(f"npz:{tmp_path / 'obj.npz'}")
    np.savez(tmp_path / "range.npz", x=np.full((4, 8, 8), 3.0, np.float32))
    with raises_naming(tmp_path / "range.npz", "[-1, 1]", "uint8"):
        load_dataset(f"npz:{tmp_path / 'range.npz'}")
    (tmp_path / "text.npz").write_text("hello")
    with raises_naming(tmp_path / "text.npz", "not a .npz"):
        load_dataset(f"npz:{tmp_path / 'text.npz'}")
    np.save(tmp_path / "single.npy", np.zeros((4, 8, 8), np.uint8))
    with raises_naming(tmp_path / "single.npy", ".npy"):
        load_dataset(f"npz:{tmp_path / 'single.npy'}")
    np.savez(tmp_path / "corrupt.npz", x=np.zeros((64, 8, 8), np.uint8))
    raw = (tmp_path / "corrupt.npz").read_bytes()
    (tmp_path / "corrupt.npz").write_bytes(raw[: len(raw) // 2])
    with raises_naming(tmp_path / "corrupt.npz", "not a readable"):
        load_dataset(f"npz:{tmp_path / 'corrupt.npz'}")
    np.savez(tmp_path / "ylen.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(3, np.int64))
    with raises_naming(tmp_path / "ylen.npz", "'y'"):
        load_dataset(f"npz:{tmp_path / 'ylen.npz'}")
    np.savez(tmp_path / "shape.npz", x=np.zeros((4, 5, 8, 8), np.uint8))
    with raises_naming(tmp_path / "shape.npz", "layout"):
        load_dataset(f"npz:{tmp_path / 'shape.npz'}")
    with raises_naming(tmp_path / "absent.npz", "does not exist"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
