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

Spec strings: `NAME`, `NAME:PATH` for on-disk sources, and options after `?`:
`digits?size=32`, `shapes?size=64&n=4096`, `mnist:/data/mnist?limit=5000`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from genbench.errors import DataError
from genbench.registry import DATASETS
from genbench.utils.hashing import tensor_hash
from genbench.utils.options import build_options

PIXEL_LEVELS = 256  # every image dataset is quantised to 8 bits


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

    def provenance(self) -> dict[str, Any]:
        return {
            "dataset": self.info.name,
            "spec": self.info.spec,
            "content_hash": self.info.content_hash,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "split": self.info.split,
            "source": self.info.source,
        }


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset: its options dataclass and a loader.

    `load(options, path)` returns (train, test, facts) where facts holds the DatasetInfo
    fields other than name/spec/shape/content_hash (kind, classes, source, split, extras).
    """

    options: type
    load: Callable[[Any, str | None], tuple[Split, Split, dict[str, Any]]]
    needs_path: bool  # on-disk sources take NAME:PATH
    summary: str  # one line for `genbench list datasets` and docs


def register_source(name: str, options: type, needs_path: bool, summary: str):
    """Decorator registering a loader function as dataset `name`."""

    def wrap(load):
        DATASETS.register(name, DatasetSource(options, load, needs_path, summary))
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


def load_dataset(spec: str, **options: Any) -> Dataset:
    """Load a registered dataset from its spec string (see module docstring).

    Keyword options override those given in the spec.
    """
    name, path, spec_options = parse_spec(spec)
    source: DatasetSource = DATASETS.get(name)
    if source.needs_path and not path:
        raise DataError(f"Dataset {name!r} is read from disk: give its location as '{name}:PATH'.")
    if not source.needs_path and path:
        raise DataError(f"Dataset {name!r} is embedded and takes no path; use plain {name!r}.")
    given = {**spec_options, **options}
    opts = build_options(source.options, given, f"dataset {name!r}")
    train, test, facts = source.load(opts, path)
    _check_layout(name, train, test, facts["kind"])
    info = DatasetInfo(
        name=name,
        spec=format_spec(name, path, given),
        shape=tuple(train.x.shape[1:]),
        content_hash=tensor_hash(train.x, train.y, train.factors, test.x, test.y, test.factors),
        **facts,
    )
    return Dataset(info=info, train=train, test=test)


def _check_layout(name: str, train: Split, test: Split, kind: str) -> None:
    """Loaders must honour the documented layout; a violation is a genbench bug."""
    for split_name, split in (("train", train), ("test", test)):
        x = split.x
        assert x.dtype == torch.float32, f"{name}/{split_name}: x must be float32, got {x.dtype}"
        assert x.ndim == {"image": 4, "points": 2, "sequence": 3}[kind], f"{name}/{split_name}: bad x.ndim {x.ndim}"
        if kind in ("image", "sequence") and x.numel():
            assert x.min() >= -1.0 and x.max() <= 1.0, f"{name}/{split_name}: x outside [-1, 1]"
        for extra in (split.y, split.factors):
            if extra is not None:
                assert extra.dtype == torch.int64 and len(extra) == len(x), f"{name}/{split_name}"
    assert train.x.shape[1:] == test.x.shape[1:], f"{name}: train/test shapes differ"


def uint8_to_images(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) levels -> float32 in [-1, 1] (x = u / 127.5 - 1)."""
    return u8.to(torch.float32) / 127.5 - 1.0


def float01_to_images(x01: torch.Tensor) -> torch.Tensor:
    """Float intensities in [0, 1] -> quantised to 8 bits -> float32 in [-1, 1]."""
    u8 = torch.round(x01.clamp(0, 1) * 255).to(torch.uint8)
    return uint8_to_images(u8)


def images_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Inverse of uint8_to_images: float in [-1, 1] -> uint8 levels."""
    return torch.round((x.clamp(-1, 1) + 1.0) * 127.5).to(torch.uint8)


def holdout_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train_idx, test_idx) for sources without their own split."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    n_test = min(max(1, int(round(n * test_fraction))), n - 1) if n > 1 else 0  # keep >= 1 train
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def take(split_x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, factors=None) -> Split:
    return Split(
        x=split_x[idx],
        y=None if y is None else y[idx],
        factors=None if factors is None else factors[idx],
    )
