"""The one dataset layout every loader returns, and the `load_dataset(spec)` entry.

Layout (documented once, here):
- images: float32 tensors (N, C, H, W) in [-1, 1]. Pixel values are 8-bit levels u in
  {0..255} mapped as x = u / 127.5 - 1 (so every image dataset has a known 256-level
  quantisation, which the likelihood conventions rely on).
- 2-D points: float32 tensors (N, 2), unscaled.
- 1-D signals (kind "sequence"): float32 tensors (N, C, L) in [-1, 1], each value one of
  the source's 256 quantisation levels (which levels, e.g. mu-law, is in
  `info.extras["quantisation"]`).
- labels `y`: int64 (N,) class indices, names in `info.classes`; None when unknown.
- factors: int64 (N, F) indices into `info.extras["factor_values"]`; None when unknown.

Splits: `train` (models and the feature extractors train on it) and `test` (held out).
Optionally `heldout`: examples drawn from the TRAINING distribution but never trained on,
for the metrics whose real side must match what a model was trained to imitate, where a
source's test split comes from a different distribution (`photos`: its test crops come from
another band of each photograph). A held-out example may overlap or repeat a training one
(photos: crops from the same rows). It is not in the content hash (which covers train and
test only); None for most sources, whose test split is the training distribution already.

Spec strings: `NAME`, `NAME:PATH` for on-disk sources, and options after `?`:
`digits?size=32`, `shapes?size=64&n=4096`, `mnist:/data/mnist?limit=5000`.

What genbench accepts (checked before the examples are loaded, from the source's options
or its files' headers -- see `Header` -- and refused with a DataError naming the fix):
both splits hold at least one example, examples have no zero-sized side, train and test
examples have one shape, images are at most MAX_IMAGE_SIDE pixels a side, splits hold at
most MAX_EXAMPLES examples, and the whole fits the memory available (estimated at
LOAD_BYTES_PER_VALUE per value). Running out of memory while loading anyway, or a file
that cannot be read for lack of permission, is a DataError too.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import torch

from genbench.errors import DataError
from genbench.registry import DATASETS
from genbench.utils.hashing import tensor_hash
from genbench.utils.options import build_options

MAX_EXAMPLES = 10_000_000  # the most examples per split an option may ask for
MAX_IMAGE_SIDE = 1024  # larger images must be resized: genbench's models and metrics are for small ones
# Peak bytes per value while loading: the source's 8-bit levels (1), their float32 images (4)
# and the train/test copies taken from those (4).
LOAD_BYTES_PER_VALUE = 9


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, C, H, W) float32 in [-1, 1], or (N, 2) float32 points
    y: torch.Tensor | None = None  # (N,) int64 labels
    factors: torch.Tensor | None = None  # (N, F) int64 factor indices

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # registry name, e.g. "digits"
    spec: str  # canonical spec (keyword options folded in): loading it again gives this data
    kind: Literal["image", "points", "sequence"]
    shape: tuple[int, ...]  # one example's shape: (C, H, W), (2,) or (C, L)
    classes: tuple[str, ...] | None  # label names, index = label
    content_hash: str  # hash of all split tensors: provenance and cache keys
    source: str  # where the data came from (path, or what was embedded)
    split: str  # how train/test came about ("source split", or the holdout rule)
    extras: dict[str, Any] = field(default_factory=dict)  # per-source facts (modes, factor grid)

    @property
    def dims(self) -> int:
        """Number of scalar dimensions per example (for bits/dim)."""
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Dataset:
    info: DatasetInfo
    train: Split
    test: Split
    heldout: Split | None = None  # training distribution, never trained on (module docstring)

    def provenance(self) -> dict[str, Any]:
        return {
            "dataset": self.info.name,
            "spec": self.info.spec,
            "content_hash": self.info.content_hash,
            "n_train": len(self.train),
            "n_test": len(self.test),
            **({"n_heldout": len(self.heldout)} if self.heldout is not None else {}),
            "split": self.info.split,
            "source": self.info.source,
        }


@dataclass(frozen=True)
class Header:
    """What a dataset holds, known without loading its examples (from its options, or its
    files' headers): enough to refuse degenerate or too large data before allocating it,
    and for the checks a run makes before training (batch size, FID sample counts)."""

    kind: Literal["image", "points", "sequence"]
    n_train: int
    n_test: int
    shape: tuple[int, ...]  # one training example's shape, as loaded
    test_shape: tuple[int, ...] | None = None  # one test example's shape where a source may differ; None = shape


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset: its options dataclass, a loader and a probe.

    `load(options, path)` returns (train, test, facts) where facts holds the DatasetInfo
    fields other than name/spec/shape/content_hash (kind, classes, source, split, extras),
    and, for a source that has one, the optional held-out split under the key "heldout"
    (a Split; see the module docstring).
    `probe(options, path)` returns the Header of what `load` would return, cheaply (no
    examples decoded); `load` runs only once check_header accepted it, and may rely on that.
    """

    options: type
    load: Callable[[Any, str | None], tuple[Split, Split, dict[str, Any]]]
    needs_path: bool  # on-disk sources take NAME:PATH
    summary: str  # one line for `genbench list datasets` and docs
    probe: Callable[[Any, str | None], Header]


def register_source(name: str, options: type, needs_path: bool, summary: str,
                    probe: Callable[[Any, str | None], Header]):
    """Decorator registering a loader function as dataset `name`."""

    def wrap(load):
        DATASETS.register(name, DatasetSource(options, load, needs_path, summary, probe))
        return load

    return wrap


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, str]]:
    """Split 'NAME[:PATH][?k=v&k=v]' into its parts."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError("Empty dataset spec. Give a name such as 'digits' or 'mnist:PATH'.")
    body, _, query = spec.strip().partition("?")
    name, sep, path = body.partition(":")
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq:
            raise DataError(f"Dataset spec {spec!r}: option {pair!r} is not KEY=VALUE.")
        options[key.strip()] = value.strip()
    return name.strip(), (path if sep else None), options


def format_spec(name: str, path: str | None, options: dict[str, Any]) -> str:
    """The canonical spec string: reproduces the dataset when loaded again."""
    body = f"{name}:{path}" if path is not None else name
    query = "&".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{body}?{query}" if query else body


def _source(spec: str, options: dict[str, Any]) -> tuple[str, str | None, DatasetSource, Any, dict[str, Any]]:
    """(name, path, source, typed options, given options) of a spec plus keyword overrides."""
    name, path, spec_options = parse_spec(spec)
    source: DatasetSource = DATASETS.get(name)
    if source.needs_path and not path:
        raise DataError(f"Dataset {name!r} is read from disk: give its location as '{name}:PATH'.")
    if not source.needs_path and path:
        raise DataError(f"Dataset {name!r} is embedded and takes no path; use plain {name!r}.")
    given = {**spec_options, **options}
    return name, path, source, build_options(source.options, given, f"dataset {name!r}"), given


def probe_dataset(spec: str, **options: Any) -> Header:
    """The checked Header of a dataset spec: what loading it would give, without loading it
    (run checks before training use it). Raises DataError where load_dataset would refuse."""
    _, path, source, opts, _ = _source(spec, options)
    return _checked_header(spec, source, opts, path)


def _checked_header(spec: str, source: DatasetSource, opts: Any, path: str | None) -> Header:
    with load_errors(spec):
        header = source.probe(opts, path)
    check_header(spec, header)
    return header


def load_dataset(spec: str, **options: Any) -> Dataset:
    """Load a registered dataset from its spec string (see module docstring).

    Keyword options override those given in the spec.
    """
    name, path, source, opts, given = _source(spec, options)
    header = _checked_header(spec, source, opts, path)
    with load_errors(spec):
        train, test, facts = source.load(opts, path)
    facts = dict(facts)
    heldout = facts.pop("heldout", None)
    _check_layout(name, train, test, facts["kind"], heldout)
    loaded = (facts["kind"], len(train), len(test), tuple(train.x.shape[1:]))
    assert loaded == (header.kind, header.n_train, header.n_test, header.shape), f"{name}: probe {header} != {loaded}"
    info = DatasetInfo(
        name=name,
        spec=format_spec(name, path, given),
        shape=tuple(train.x.shape[1:]),
        content_hash=tensor_hash(train.x, train.y, train.factors, test.x, test.y, test.factors),
        **facts,
    )
    return Dataset(info=info, train=train, test=test, heldout=heldout)


def check_header(spec: str, header: Header) -> None:
    """Refuse what genbench cannot train and evaluate on, before it is loaded."""
    counts = f"{header.n_train} training and {header.n_test} test examples"
    for split, n in (("training", header.n_train), ("test", header.n_test)):
        if n < 1:
            raise DataError(
                f"Dataset {spec!r} has {counts}: its {split} split is empty. Every run trains on the training "
                "split and scores the test split, so each needs at least one example: add examples (a holdout "
                "of a single file or image leaves no test set), or raise n_train / n_test of generated data."
            )
    for split, shape in (("training", header.shape), ("test", header.test_shape or header.shape)):
        if 0 in shape:
            raise DataError(f"Dataset {spec!r}: its {split} examples have shape {shape}, a zero-sized side, so "
                            "they hold no values. Give examples (images) of at least 1 x 1.")
    if header.test_shape not in (None, header.shape):
        raise DataError(f"Dataset {spec!r}: its training examples have shape {header.shape} but its test examples "
                        f"{header.test_shape}. A model takes one shape: store both splits at one size.")
    if header.kind == "image" and max(header.shape[1:]) > MAX_IMAGE_SIDE:
        raise DataError(f"Dataset {spec!r} holds {header.shape[2]}x{header.shape[1]}-pixel images; genbench takes "
                        f"images of at most {MAX_IMAGE_SIDE} pixels a side. Resize them (for a folder: add "
                        "the option size=N, e.g. 'folder:DIR?size=64').")
    check_memory(spec, header)


def check_memory(spec: str, header: Header) -> None:
    """Refuse a dataset whose loading would need more memory than is available."""
    n = header.n_train + header.n_test
    needed = n * math.prod(header.shape) * LOAD_BYTES_PER_VALUE
    available = available_memory()
    if available is not None and needed > available:
        raise DataError(
            f"Dataset {spec!r} holds {n:,} examples of shape {header.shape}: loading it needs about "
            f"{byte_size(needed)} of memory, but {byte_size(available)} is available. Load fewer examples (the option "
            "limit=N of on-disk sources; smaller n / n_train / n_test or size of generated ones), or free memory."
        )


def available_memory() -> int | None:
    """Bytes available for new allocations (MemAvailable of /proc/meminfo); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def byte_size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:,.1f} MiB"


@contextlib.contextmanager
def load_errors(spec: str) -> Iterator[None]:
    """Allocation failures and unreadable files while loading `spec` -> DataError naming them."""
    try:
        yield
    except MemoryError as exc:
        raise DataError(f"Loading dataset {spec!r} ran out of memory ({exc or 'MemoryError'}). Load fewer "
                        "examples (the option limit=N, or smaller sizes), or free memory.") from None
    except RuntimeError as exc:
        if "allocate" not in str(exc):  # torch's allocators say "can't allocate memory: you tried to allocate N bytes"
            raise
        raise DataError(f"Loading dataset {spec!r} ran out of memory ({str(exc).strip()}). Load fewer examples "
                        "(the option limit=N, or smaller sizes), or free memory.") from None
    except PermissionError as exc:
        where = exc.filename or spec
        raise DataError(f"{where}: cannot be read: permission denied. Make it readable by this user (e.g. "
                        f"chmod a+r {where}; its directories need a+rx) or run genbench as a user who can "
                        "read it.") from None


def _check_layout(name: str, train: Split, test: Split, kind: str, heldout: Split | None = None) -> None:
    """Loaders must honour the documented layout; a violation is a genbench bug."""
    splits = (("train", train), ("test", test)) + ((("heldout", heldout),) if heldout is not None else ())
    for split_name, split in splits:
        x = split.x
        assert x.dtype == torch.float32, f"{name}/{split_name}: x must be float32, got {x.dtype}"
        assert x.ndim == {"image": 4, "points": 2, "sequence": 3}[kind], f"{name}/{split_name}: bad x.ndim {x.ndim}"
        if kind in ("image", "sequence") and x.numel():
            assert x.min() >= -1.0 and x.max() <= 1.0, f"{name}/{split_name}: x outside [-1, 1]"
        for extra in (split.y, split.factors):
            if extra is not None:
                assert extra.dtype == torch.int64 and len(extra) == len(x), f"{name}/{split_name}"
    assert train.x.shape[1:] == test.x.shape[1:], f"{name}: train/test shapes differ"
    assert heldout is None or heldout.x.shape[1:] == train.x.shape[1:], f"{name}: train/heldout shapes differ"


def holdout_sizes(n: int, test_fraction: float) -> tuple[int, int]:
    """(n_train, n_test) of holdout_split(n, test_fraction, seed): at least 1 of each when n > 1."""
    n_test = min(max(1, int(round(n * test_fraction))), n - 1) if n > 1 else 0  # keep >= 1 train
    return n - n_test, n_test


def holdout_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train_idx, test_idx) for sources without their own split."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_test = holdout_sizes(n, test_fraction)[1]
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def take(split_x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, factors=None) -> Split:
    return Split(
        x=split_x[idx],
        y=None if y is None else y[idx],
        factors=None if factors is None else factors[idx],
    )
