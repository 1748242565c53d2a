"""Which package registers the built-ins of each kind (`genbench list KIND`).

Registries live in the lowest layer (genbench/registry.py) and are filled when the package
that defines the entries is imported. This module, in the top layer, is the one place that
knows which package that is, so the registry never imports upward. Loading is per kind:
`genbench list kernels` imports the kernels and nothing of the evaluation stack.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from genbench.errors import UnknownNameError
from genbench.registry import REGISTRIES, Registry

# kind -> the packages whose import registers its built-in entries
KIND_PACKAGES: dict[str, tuple[str, ...]] = {
    "datasets": ("genbench.data",),
    "models": ("genbench.models",),
    "losses": ("genbench.objectives",),
    "regularizers": ("genbench.objectives",),
    "metrics": ("genbench.metrics",),
    "kernels": ("genbench.kernels",),
    "suites": ("genbench.harness.suites",),
    "trainers": ("genbench.train",),
    "benches": ("genbench.kernelbench",),
    "reproductions": ("genbench.reproduce",),
}


def load_kind(kind: str) -> None:
    for package in KIND_PACKAGES[kind]:
        importlib.import_module(package)


def load_builtins() -> None:
    """Import every package that registers something (the CLI's and the tests' full view)."""
    for kind in KIND_PACKAGES:
        load_kind(kind)


def registry_for(kind: str) -> Registry[Any]:
    """The registry of `kind`, with its built-ins loaded; UnknownNameError for an unknown kind."""
    if kind not in REGISTRIES:
        close = difflib.get_close_matches(kind, list(REGISTRIES), n=2, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"Unknown kind {kind!r}.{hint} Kinds: {', '.join(REGISTRIES)}.")
    load_kind(kind)
    return REGISTRIES[kind]
