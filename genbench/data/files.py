"""On-disk datasets, given as `NAME:PATH` (nothing is downloaded).

Every source here takes the option `limit` (default None): keep only the first `limit`
examples of each split, for quick runs (CIFAR-10 batches past the limit are not even
read). A missing, corrupt or unexpected file raises DataError naming the file, the
problem and the fix; so does one that cannot be read for lack of permission (as such, not
as corrupt: see genbench.data.base.load_errors). What the loaders refuse before reading
the examples (empty splits, too large data, ...) is listed in genbench.data.base.

`mnist:DIR`, `fashion-mnist:DIR`
    DIR holds the four standard IDX files, each raw or gzipped (`NAME.gz`):
    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
    t10k-labels-idx1-ubyte. Split: the source's (train = train-*, test = t10k-*).
    Images (N, 1, 28, 28). Classes: "0".."9" for MNIST; the ten clothing names for
    Fashion-MNIST (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker,
    Bag, Ankle boot).
`cifar10:DIR`
    DIR is the `cifar-10-batches-py` directory of the python version of CIFAR-10
    (data_batch_1..5, test_batch), or a directory containing it. The pickles are read
    with an unpickler that only builds numpy arrays, lists, dicts and plain values: a file
    asking for anything else is refused, never executed. Split: the source's (data
    batches = train, test_batch = test). Images (N, 3, 32, 32). Classes: airplane,
    automobile, bird, cat, deer, dog, frog, horse, ship, truck.
`folder:DIR`
    PNG/JPEG files (.png, .jpg, .jpeg, any case) either directly in DIR (unlabelled,
    `y` None) or in class subfolders DIR/CLASS/* (label = index of CLASS among the sorted
    subfolders that hold images; classes = their names), not both at once. Hidden files
    and files with other extensions are skipped. All images must have one size, or give
    `size=N` (N <= 1024) to resize each to N x N (antialiased, aspect ratio not kept). Images are RGB
    (alpha dropped) unless every one is grayscale, then 1 channel. Split: holdout of
    `test_fraction` (0.1) chosen by holdout_split with seed 0, in sorted file order.
`npz:FILE`
    A .npz (numpy.savez) with array `x` and optionally `y`, `x_test`, `y_test` (object
    arrays are refused: it is loaded with allow_pickle=False). Layouts of `x`: (N, 2)
    numbers = 2-D points (kept unscaled); (N, H, W) grayscale images; (N, C, H, W) or
    (N, H, W, C) images with C in {1, 3} (channels-last is assumed when shape[1] is not 1
    or 3 and shape[-1] is). Images are uint8 levels, or floats in [-1, 1] which are
    quantised to 8 bits as round((x + 1) * 127.5). `y`: N non-negative integers (classes
    named "0".."max"). Split: `x_test`/`y_test` when present, else a holdout of
    `test_fraction` (0.1) chosen by holdout_split with seed 0.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genbench.data.base import MAX_IMAGE_SIDE, Header, Split, holdout_sizes, holdout_split, register_source, take

from genbench.utils.pixels import uint8_to_images
from genbench.errors import DataError

HOLDOUT_SEED = 0  # seed of the holdout for sources without their own split


def _fail(path: Path | str, problem: str, fix: str) -> DataError:
    """A DataError naming the file, what is wrong with it and how to fix it."""
    return DataError(f"{path}: {problem} {fix}")


def _existing_dir(path: str, name: str, expected: str) -> Path:
    directory = Path(path).expanduser().absolute()
    if not directory.is_dir():
        problem = "is not a directory." if directory.exists() else "does not exist."
        raise _fail(directory, problem, f"Give '{name}:DIR' where DIR holds {expected}.")
    return directory.resolve()


def _limited(n: int, limit: int | None) -> int:
    """How many of n examples `limit` keeps."""
    return n if limit is None else min(n, limit)


def _limit(split: Split, limit: int | None) -> Split:
    if limit is None:
        return split
    idx = torch.arange(min(limit, len(split)))
    return take(split.x, split.y, idx, split.factors)


@dataclass(frozen=True)
class LimitOptions:
    limit: int | None = None  # keep only the first `limit` examples of each split

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1 (or None for everything)")


@dataclass(frozen=True)
class HoldoutOptions(LimitOptions):
    test_fraction: float = 0.1  # share held out as test set (seed 0) when there is no split

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError("test_fraction must lie strictly between 0 and 1")


@dataclass(frozen=True)
class FolderOptions(HoldoutOptions):
    size: int | None = None  # resize every image to size x size (antialiased); None = keep

    def __post_init__(self):
        super().__post_init__()
        if self.size is not None and not 1 <= self.size <= MAX_IMAGE_SIDE:
            raise ValueError(f"size must be between 1 and {MAX_IMAGE_SIDE} (or None to keep the images' own size)")


# ---------------------------------------------------------------- MNIST / Fashion-MNIST (IDX)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _find_idx(directory: Path, name: str, source: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    expected = ", ".join(n for pair in IDX_FILES.values() for n in pair)
    raise _fail(directory / name, "is missing (neither it nor its .gz exists).",
                f"The {source} directory must hold the four IDX files {expected} (each raw "
                "or .gz), as downloaded from the dataset's site.")


def _read_bytes(path: Path, size: int = -1) -> bytes:
    """The file's bytes (decompressed for .gz), or only the first `size` of them."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read(size)
        with open(path, "rb") as fh:
            return fh.read(size)
    except PermissionError:
        raise  # not corrupt: load_errors (genbench.data.base) names the file and the fix
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise _fail(path, f"cannot be read ({exc}).",
                    "The file is corrupt or truncated: download it again.") from None


def idx_header(data: bytes, path: Path, magic: int) -> tuple[list[int], int]:
    """(dims, header length) from the start of an IDX file with the expected magic."""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        shown = "no magic number (under 4 bytes)" if found is None else f"magic 0x{found:08X}"
        raise _fail(path, f"has {shown}, expected 0x{magic:08X} (unsigned bytes, {ndim}-D).",
                    "This is not the IDX file it is named as: check the file names and "
                    "download the file again.")
    if len(data) < header:
        raise _fail(path, f"ends inside its header ({len(data)} bytes, header needs {header}).",
                    "The file is truncated: download it again.")
    return [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)], header


def _check_idx_size(path: Path, dims: list[int], actual: int) -> None:
    expected = math.prod(dims)  # exact: numpy's int64 product can wrap on a crafted header
    if actual != expected:
        raise _fail(path, f"holds {actual} bytes of data but its header {dims} says {expected}.",
                    "The file is truncated or corrupt: download it again.")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with the expected magic -> uint8 array of its dims."""
    data = _read_bytes(path)
    dims, header = idx_header(data, path, magic)
    _check_idx_size(path, dims, len(data) - header)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_image_dims(directory: Path, split: str, source: str) -> list[int]:
    """[N, H, W] of a split's image file, from its header (and, uncompressed, its size)."""
    path = _find_idx(directory, IDX_FILES[split][0], source)
    dims, header = idx_header(_read_bytes(path, 16), path, IDX_IMAGES_MAGIC)
    if path.suffix != ".gz":
        _check_idx_size(path, dims, path.stat().st_size - header)
    return dims


def _read_idx_split(directory: Path, split: str, source: str, n_classes: int,
                    limit: int | None) -> Split:
    images_path = _find_idx(directory, IDX_FILES[split][0], source)
    labels_path = _find_idx(directory, IDX_FILES[split][1], source)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)  # (N, H, W) uint8
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)  # (N,) uint8
    if len(images) != len(labels):
        raise _fail(images_path, f"holds {len(images)} images but {labels_path.name} holds "
                    f"{len(labels)} labels.", "The two files must come from the same "
                    "release: download both again.")
    if len(labels) and labels.max() >= n_classes:
        raise _fail(labels_path, f"has label {labels.max()}, outside 0..{n_classes - 1}.",
                    "This is not an MNIST-style label file: download it again.")
    images, labels = images[:limit], labels[:limit]  # limit before the float copy
    x = uint8_to_images(torch.from_numpy(images.copy()).unsqueeze(1))  # (N, 1, H, W)
    return Split(x=x, y=torch.from_numpy(labels.astype(np.int64)))  # y: (N,)


def _probe_idx(options: LimitOptions, path: str, source: str) -> Header:
    directory = _existing_dir(path, source, "the four MNIST-style IDX files")
    (n_train, *train_hw), (n_test, *test_hw) = (_idx_image_dims(directory, s, source) for s in ("train", "test"))
    return Header("image", _limited(n_train, options.limit), _limited(n_test, options.limit), (1, *train_hw),
                  test_shape=(1, *test_hw))


def _load_idx(options: LimitOptions, path: str, source: str, classes: tuple[str, ...]):
    directory = _existing_dir(path, source, "the four MNIST-style IDX files")
    train = _read_idx_split(directory, "train", source, len(classes), options.limit)
    test = _read_idx_split(directory, "test", source, len(classes), options.limit)
    facts = {
        "kind": "image",
        "classes": classes,
        "source": str(directory),
        "split": "source split: train-* files = train, t10k-* files = test",
        "extras": {},
    }
    return train, test, facts


@register_source("mnist", LimitOptions, needs_path=True, probe=lambda o, p: _probe_idx(o, p, "mnist"),
                 summary="MNIST from its four IDX files (raw or .gz) in a directory")
def load_mnist(options: LimitOptions, path: str):
    return _load_idx(options, path, "mnist", MNIST_CLASSES)


@register_source("fashion-mnist", LimitOptions, needs_path=True,
                 probe=lambda o, p: _probe_idx(o, p, "fashion-mnist"),
                 summary="Fashion-MNIST from its four IDX files (raw or .gz) in a directory")
def load_fashion_mnist(options: LimitOptions, path: str):
    return _load_idx(options, path, "fashion-mnist", FASHION_CLASSES)


# ---------------------------------------------------------------- CIFAR-10 (python pickles)

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")
CIFAR_SIDE = 32


def _numpy_core_attr(module: str, name: str) -> Any:
    """numpy's core `module`.`name`: `numpy._core` in numpy >= 2, `numpy.core` before."""
    import importlib

    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), name)
    except ImportError:
        return getattr(importlib.import_module(f"numpy.core.{module}"), name)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocol < 3 as _codecs.encode(text, "latin1"); allow only that.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # ...except b"" (e.g. the data of an empty array), which it pickles as __builtin__.bytes()
    # with no arguments. bytes(n) would allocate n bytes and bytes(s, codec) decode: refused.
    if args:
        raise pickle.UnpicklingError("bytes() with arguments (only bytes() is allowed)")
    return b""


# The only globals a pickled numpy array needs. Files written under numpy 1 name
# `numpy.core.*`, under numpy 2 `numpy._core.*`; both resolve to the installed numpy's.
_PLAIN_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,  # the name protocols < 3 use (fix_imports)
    ("builtins", "bytes"): _empty_bytes,
}
_NUMPY_CORE_PACKAGES = ("numpy.core", "numpy._core")
_NUMPY_CORE_GLOBALS = {
    ("multiarray", "_reconstruct"),  # arrays, pickle protocols 0..4
    ("numeric", "_frombuffer"),  # arrays, pickle protocol 5
    ("multiarray", "scalar"),  # numpy scalars
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and plain Python values, and refuses the rest."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # CIFAR's pickles come from Python 2
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN_GLOBALS:
            return _PLAIN_GLOBALS[(module, name)]
        package, _, submodule = module.rpartition(".")
        if package in _NUMPY_CORE_PACKAGES and (submodule, name) in _NUMPY_CORE_GLOBALS:
            return _numpy_core_attr(submodule, name)
        raise _fail(self.path, f"is a pickle that asks for {module}.{name}; genbench refuses "
                    f"to load {module}.{name} because unpickling it could run arbitrary code.",
                    "Use the original CIFAR-10 python batches from the dataset's site "
                    "(they hold only numpy arrays and lists).")


def safe_unpickle(path: Path) -> Any:
    """Load a pickle that may only contain numpy arrays and plain values."""
    try:
        with open(path, "rb") as fh:
            return SafeUnpickler(fh, path).load()
    except (DataError, PermissionError):
        raise  # a PermissionError is not corruption: load_errors (genbench.data.base) says so
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError, OverflowError, OSError) as exc:
        raise _fail(path, f"is not a readable pickle ({type(exc).__name__}: {exc}).",
                    "The file is corrupt or truncated: download CIFAR-10 again.") from None


def _cifar_field(batch: dict, key: str) -> Any:
    for k in (key.encode(), key):  # the original files have bytes keys
        if k in batch:
            return batch[k]
    return None


def _check_cifar_batch(batch: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Validate one unpickled batch -> (data uint8 (N, 3072), labels int64 (N,))."""
    fix = "Each CIFAR-10 batch must be a dict with 'data' (uint8 array N x 3072) and " \
          "'labels' (N integers 0..9): download the python version of CIFAR-10 again."
    if not isinstance(batch, dict):
        raise _fail(path, f"holds a {type(batch).__name__}, not a dict.", fix)
    data, labels = _cifar_field(batch, "data"), _cifar_field(batch, "labels")
    side = CIFAR_SIDE * CIFAR_SIDE * 3
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == side):
        shown = (f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise _fail(path, f"has 'data' = {shown}, not a uint8 array (N, {side}).", fix)
    if isinstance(labels, np.ndarray) and labels.ndim == 1 and labels.dtype.kind in "iu":
        labels = labels.tolist()
    if not (isinstance(labels, list) and all(type(v) is int for v in labels)):
        raise _fail(path, f"has 'labels' = {type(labels).__name__}, not a list of integers.", fix)
    if len(labels) != len(data):
        raise _fail(path, f"has {len(data)} images but {len(labels)} labels.", fix)
    if any(not 0 <= v < len(CIFAR_CLASSES) for v in labels):
        raise _fail(path, f"has labels outside 0..9 (e.g. {max(labels, key=abs)}).", fix)
    return data, np.asarray(labels, dtype=np.int64)


def _cifar_batches(directory: Path, names: tuple[str, ...], limit: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The checked (data, labels) of the batches `names`, read until `limit` examples are in."""
    parts = []
    for name in names:
        if limit is not None and sum(len(d) for d, _ in parts) >= limit:
            break  # enough examples: skip reading the remaining batches
        parts.append(_check_cifar_batch(safe_unpickle(directory / name), directory / name))
    return parts


def _read_cifar_batches(directory: Path, names: tuple[str, ...], limit: int | None) -> Split:
    parts = _cifar_batches(directory, names, limit)
    data = np.concatenate([d for d, _ in parts])[:limit]  # (N, 3072): R, G, B planes
    labels = np.concatenate([lab for _, lab in parts])[:limit]  # (N,)
    u8 = torch.from_numpy(data).reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE)  # (N, 3, 32, 32)
    return Split(x=uint8_to_images(u8), y=torch.from_numpy(labels))


def _cifar_directory(path: str) -> Path:
    directory = _existing_dir(path, "cifar10", f"the '{CIFAR_DIR}' batches")
    if (directory / CIFAR_DIR).is_dir():  # accept the folder that contains it
        directory = directory / CIFAR_DIR
    missing = [n for n in CIFAR_TRAIN + CIFAR_TEST if not (directory / n).is_file()]
    if missing:
        raise _fail(directory, f"lacks the CIFAR-10 batch files {', '.join(missing)}.",
                    f"Give 'cifar10:DIR' where DIR is the extracted '{CIFAR_DIR}' directory "
                    f"(it holds {', '.join(CIFAR_TRAIN + CIFAR_TEST)}) or its parent.")
    return directory


def probe_cifar10(options: LimitOptions, path: str) -> Header:
    """A pickle has no header: the batches are read (safely) and counted."""
    directory = _cifar_directory(path)
    n_train, n_test = (_limited(sum(len(d) for d, _ in _cifar_batches(directory, names, options.limit)), options.limit)
                       for names in (CIFAR_TRAIN, CIFAR_TEST))
    return Header("image", n_train, n_test, (3, CIFAR_SIDE, CIFAR_SIDE))


@register_source("cifar10", LimitOptions, needs_path=True, probe=probe_cifar10,
                 summary="CIFAR-10 from the python pickled batches (cifar-10-batches-py)")
def load_cifar10(options: LimitOptions, path: str):
    directory = _cifar_directory(path)
    train = _read_cifar_batches(directory, CIFAR_TRAIN, options.limit)
    test = _read_cifar_batches(directory, CIFAR_TEST, options.limit)
    facts = {
        "kind": "image",
        "classes": CIFAR_CLASSES,
        "source": str(directory),
        "split": "source split: data_batch_1..5 = train, test_batch = test",
        "extras": {},
    }
    return train, test, facts


# ---------------------------------------------------------------- image folders

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L"}
UNDECODABLE_FIX = "Replace or delete the file (it may be truncated or not really an image)."


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES)


def _folder_listing(directory: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...] | None]:
    """(files, labels, classes): top-level images unlabelled, or one class per subfolder."""
    top = _image_files(directory)
    subdirs = sorted(p for p in directory.iterdir() if p.is_dir() and _visible(p))
    classes = [(d, _image_files(d)) for d in subdirs]
    classes = [(d, files) for d, files in classes if files]
    if top and classes:
        raise _fail(directory, f"holds images both directly ({top[0].name}, ...) and in "
                    f"class subfolders ({classes[0][0].name}/, ...).",
                    "Put every image in a class subfolder for labelled data, or all of them "
                    "directly in the folder for unlabelled data.")
    if top:
        return top, None, None
    if not classes:
        raise _fail(directory, "holds no .png, .jpg or .jpeg images, neither directly nor "
                    "in class subfolders.", "Point 'folder:DIR' at a directory of images, "
                    "or at one with a subfolder of images per class.")
    files = [f for _, fs in classes for f in fs]
    labels = [k for k, (_, fs) in enumerate(classes) for _ in fs]
    return files, labels, tuple(d.name for d, _ in classes)


def _is_gray(mode: str) -> bool:
    return mode in GRAY_MODES or mode.startswith("I")  # "I*": 16/32-bit grayscale


def _decode(path: Path, size: int | None) -> np.ndarray:
    """One image file -> uint8 (H, W) if grayscale else (H, W, 3), resized when size is set."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode.startswith("I"):  # 16-bit grayscale: scale 0..65535 to 0..255
                levels = (np.asarray(img, np.float64) / 257).round().clip(0, 255)
                img = Image.fromarray(levels.astype(np.uint8))
            img = img.convert("L" if _is_gray(img.mode) else "RGB")
            if size is not None:
                img = img.resize((size, size), Image.Resampling.LANCZOS)  # antialiased
            return np.asarray(img)
    except PermissionError:
        raise  # not undecodable: load_errors (genbench.data.base) says so
    except Exception as exc:  # decoders raise many types (OSError, SyntaxError, zlib.error...)
        raise _fail(path, f"cannot be decoded as an image ({exc}).", UNDECODABLE_FIX) from None


def _folder_shape(files: list[Path], size: int | None) -> tuple[int, int, int]:
    """(C, H, W) the images load as, from their headers: all must share one size unless
    `size` resizes them (fail naming two files); C = 1 only if every image is grayscale."""
    from PIL import Image

    first, first_size, gray = None, None, True
    for path in files:
        try:
            with Image.open(path) as img:
                this, mode = img.size, img.mode  # reads the header only
        except PermissionError:
            raise
        except Exception as exc:  # as in _decode: any failure means a bad file
            raise _fail(path, f"cannot be decoded as an image ({exc}).", UNDECODABLE_FIX) from None
        gray = gray and _is_gray(mode)
        if first is None:
            first, first_size = path, this
        elif this != first_size and size is None:
            raise _fail(path, f"is {this[0]}x{this[1]} pixels but {first} is "
                        f"{first_size[0]}x{first_size[1]}; all images must have one size.",
                        "Resize them yourself, or add the option size=N to resize every "
                        "image to N x N (e.g. 'folder:DIR?size=64').")
    width, height = (size, size) if size is not None else first_size
    return (1 if gray else 3), height, width


def _stack_images(arrays: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W) / (H, W, 3) arrays -> (N, C, H, W) images, C = 1 only if all are gray."""
    if all(a.ndim == 2 for a in arrays):
        u8 = np.stack(arrays)[:, None]  # (N, 1, H, W)
    else:
        rgb = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
        u8 = np.stack(rgb).transpose(0, 3, 1, 2)  # (N, 3, H, W)
    return uint8_to_images(torch.from_numpy(np.ascontiguousarray(u8)))


def probe_folder(options: FolderOptions, path: str) -> Header:
    directory = _existing_dir(path, "folder", "PNG/JPEG images (or one subfolder per class)")
    files = _folder_listing(directory)[0]
    n_train, n_test = holdout_sizes(len(files), options.test_fraction)
    return Header("image", _limited(n_train, options.limit), _limited(n_test, options.limit),
                  _folder_shape(files, options.size))


@register_source("folder", FolderOptions, needs_path=True, probe=probe_folder,
                 summary="PNG/JPEG images in a directory, optionally one subfolder per class")
def load_folder(options: FolderOptions, path: str):
    directory = _existing_dir(path, "folder", "PNG/JPEG images (or one subfolder per class)")
    files, labels, classes = _folder_listing(directory)
    x = _stack_images([_decode(f, options.size) for f in files])  # (N, C, H, W)
    y = None if labels is None else torch.tensor(labels, dtype=torch.int64)  # (N,)
    train_idx, test_idx = holdout_split(len(x), options.test_fraction, HOLDOUT_SEED)
    facts = {
        "kind": "image",
        "classes": classes,
        "source": str(directory),
        "split": f"holdout of {options.test_fraction:g} as test, "
                 f"holdout_split(seed={HOLDOUT_SEED}) over the sorted files",
        "extras": {"n_files": len(files), "resized_to": options.size},
    }
    train, test = take(x, y, train_idx), take(x, y, test_idx)
    return _limit(train, options.limit), _limit(test, options.limit), facts


# ---------------------------------------------------------------- npz arrays

MAX_NPZ_CLASSES = 100_000  # labels are class indices; a larger one is a mistake
NPZ_FIX = ("Save it with numpy.savez(FILE, x=..., y=...) where x is (N, 2) points, or "
           "images (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}, as uint8 or "
           "floats in [-1, 1].")


def _npz_file(path: str) -> Path:
    """The .npz file at `path`, checked to exist and to start like a zip archive."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        problem = "is a directory, not a .npz file." if path.exists() else "does not exist."
        raise _fail(path, problem, "Give 'npz:FILE' with the path of a .npz file.")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise _fail(path, "is a single .npy array, not a .npz archive.", NPZ_FIX)
    if magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):  # a .npz is a zip archive
        raise _fail(path, "is not a .npz archive (no zip header).", NPZ_FIX)
    return path


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every array in a .npz, from the .npy headers: no data is read."""
    import zipfile

    fmt = np.lib.format
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.filename.endswith(".npy"):
                    with archive.open(member) as fh:
                        version = fmt.read_magic(fh)
                        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                        shape, _, dtype = read(fh)
                    headers[member.filename[:-4]] = (shape, dtype)
    except PermissionError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError from a bad .npy header, ...: all mean corrupt
        raise _fail(path, f"is not a readable .npz archive ({type(exc).__name__}: {exc}).", NPZ_FIX) from None
    if "x" not in headers:
        raise _fail(path, f"has no array 'x' (it holds: {', '.join(headers) or 'nothing'}).", NPZ_FIX)
    return headers


def _npz_layout(shape: tuple[int, ...], dtype: np.dtype, path: Path, key: str) -> tuple[str, tuple[int, ...]]:
    """(kind, one example's shape as loaded) of an array `x` or `x_test`, or DataError."""
    if dtype.hasobject:
        raise _fail(path, "holds an object (pickled) array, which genbench does not "
                    "load because unpickling can run arbitrary code.", NPZ_FIX)
    if len(shape) == 2 and shape[1] == 2:
        return "points", (2,)
    if len(shape) == 3:
        return "image", (1, *shape[1:])
    if len(shape) == 4 and shape[1] in (1, 3):
        return "image", shape[1:]
    if len(shape) == 4 and shape[-1] in (1, 3):
        return "image", (shape[3], shape[1], shape[2])  # stored channels-last (N, H, W, C)
    raise _fail(path, f"has '{key}' of shape {shape}, not an accepted layout.", NPZ_FIX)


def probe_npz(options: HoldoutOptions, path: str) -> Header:
    file = _npz_file(path)
    headers = _npz_headers(file)
    kind, shape = _npz_layout(*headers["x"], file, "x")
    n = headers["x"][0][0]
    if "x_test" in headers:
        test_shape = _npz_layout(*headers["x_test"], file, "x_test")[1]
        n_train, n_test = n, headers["x_test"][0][0]
    else:
        (n_train, n_test), test_shape = holdout_sizes(n, options.test_fraction), None
    return Header(kind, _limited(n_train, options.limit), _limited(n_test, options.limit), shape, test_shape)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except PermissionError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise _fail(path, "holds an object (pickled) array, which genbench does not "
                        "load because unpickling can run arbitrary code.", NPZ_FIX) from None
        raise _fail(path, f"is not a readable .npz archive ({exc}).", NPZ_FIX) from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError, ...: all mean corrupt
        raise _fail(path, f"is not a readable .npz archive ({type(exc).__name__}: {exc}).",
                    NPZ_FIX) from None
    return arrays


def _npz_images(x: np.ndarray, path: Path, key: str) -> torch.Tensor:
    """An image array in one of the accepted layouts (_npz_layout) -> (N, C, H, W) float in [-1, 1]."""
    if x.ndim == 3:
        x = x[:, None]  # (N, 1, H, W)
    elif x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC -> (N, C, H, W)
    if x.dtype == np.uint8:
        u8 = x
    elif x.dtype.kind == "f":
        if x.size and not (np.isfinite(x).all() and x.min() >= -1 and x.max() <= 1):
            raise _fail(path, f"has float '{key}' with values in [{np.nanmin(x):g}, "
                        f"{np.nanmax(x):g}], outside [-1, 1].",
                        "Scale the images to [-1, 1] (x / 127.5 - 1 for 8-bit levels) or store "
                        "them as uint8.")
        u8 = np.round((x.astype(np.float64) + 1) * 127.5).astype(np.uint8)  # 8-bit levels
    else:
        raise _fail(path, f"has '{key}' of dtype {x.dtype}; images must be uint8 or float.",
                    NPZ_FIX)
    return uint8_to_images(torch.from_numpy(np.ascontiguousarray(u8)))


def _npz_x(x: np.ndarray, path: Path, key: str) -> tuple[torch.Tensor, str]:
    """`x` or `x_test` (in a layout _npz_layout accepted) -> (tensor, kind)."""
    if _npz_layout(x.shape, x.dtype, path, key)[0] == "points":
        if x.dtype.kind not in "fiu" or (x.size and not np.isfinite(x).all()):
            raise _fail(path, f"has points '{key}' of dtype {x.dtype} or with non-finite "
                        "values.", "Store 2-D points as finite floats of shape (N, 2).")
        return torch.from_numpy(x.astype(np.float32)), "points"  # (N, 2)
    return _npz_images(x, path, key), "image"


def _npz_y(y: np.ndarray | None, n: int, path: Path, key: str) -> torch.Tensor | None:
    if y is None:
        return None
    if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu" or (n and y.min() < 0):
        raise _fail(path, f"has '{key}' of shape {y.shape} and dtype {y.dtype}; expected {n} "
                    "non-negative integers (one label per example).",
                    "Store the labels as an integer array of shape (N,).")
    return torch.from_numpy(y.astype(np.int64))  # (N,)


def _npz_splits(arrays: dict[str, np.ndarray], path: Path, test_fraction: float):
    """(train, test, kind, split description) from the arrays of an npz file."""
    x, kind = _npz_x(arrays["x"], path, "x")
    y = _npz_y(arrays.get("y"), len(x), path, "y")
    if "x_test" not in arrays:
        if "y_test" in arrays:
            raise _fail(path, "has 'y_test' but no 'x_test'.", "Add 'x_test' or drop 'y_test'.")
        train_idx, test_idx = holdout_split(len(x), test_fraction, HOLDOUT_SEED)
        split = f"holdout of {test_fraction:g} as test, holdout_split(seed={HOLDOUT_SEED})"
        return take(x, y, train_idx), take(x, y, test_idx), kind, split
    x_test, _ = _npz_x(arrays["x_test"], path, "x_test")  # its shape is x's: checked by check_header
    if ("y" in arrays) != ("y_test" in arrays):
        raise _fail(path, "has labels for only one of the splits ('y' / 'y_test').",
                    "Give both 'y' and 'y_test', or neither.")
    y_test = _npz_y(arrays.get("y_test"), len(x_test), path, "y_test")
    split = "source split: x/y = train, x_test/y_test = test"
    return Split(x, y), Split(x_test, y_test), kind, split


@register_source("npz", HoldoutOptions, needs_path=True, probe=probe_npz,
                 summary="arrays x[, y, x_test, y_test] from a .npz file (points or images)")
def load_npz(options: HoldoutOptions, path: str):
    file = _npz_file(path)
    train, test, kind, split = _npz_splits(_read_npz(file), file, options.test_fraction)
    labels = [s.y for s in (train, test) if s.y is not None and len(s.y)]
    n_classes = max((int(y.max()) + 1 for y in labels), default=0)
    if n_classes > MAX_NPZ_CLASSES:
        raise _fail(file, f"has labels up to {n_classes - 1}; labels must be class indices "
                    f"0..K-1 with K <= {MAX_NPZ_CLASSES}.", "Map the labels to 0..K-1.")
    facts = {
        "kind": kind,
        "classes": tuple(str(k) for k in range(n_classes)) if train.y is not None else None,
        "source": str(file),
        "split": split,
        "extras": {},
    }
    return _limit(train, options.limit), _limit(test, options.limit), facts
