"""Validated name -> factory registries, one per kind of thing.

Registration sits next to each definition:

    @MODELS.register("vae")
    class VAE(nn.Module): ...

Lookups of unknown names raise UnknownNameError with the closest registered names.
The registries are filled when their packages are imported (genbench/catalog.py says which
package fills which registry; this module, the lowest layer, imports none of them).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Generic, Iterator, TypeVar

from genbench.errors import ConfigError, UnknownNameError

T = TypeVar("T")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class Registry(Generic[T]):
    """A mapping from validated names to objects (factories, functions, specs)."""

    def __init__(self, kind: str):
        self.kind = kind  # plural noun used in messages and `genbench list KIND`
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Any:
        """Register `obj` under `name`; without `obj`, return a decorator."""
        if obj is None:
            return lambda o: self.register(name, o)
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigError(
                f"Cannot register {name!r} in {self.kind}: names are lower-case letters, "
                "digits, '-', '_' and '.', starting with a letter or digit."
            )
        if name in self._items and self._items[name] is not obj:
            raise ConfigError(
                f"{self.kind} already has an entry named {name!r}; pick another name "
                f"or call unregister({name!r}) first."
            )
        self._items[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def __getitem__(self, name: str) -> T:
        """registry[name] is registry.get(name): unknown names raise UnknownNameError."""
        return self.get(name)

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), list(self._items), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        known = ", ".join(sorted(self._items)) or "(none registered)"
        return (
            f"Unknown {self.singular} "
            f"{name!r}.{hint} Registered {self.kind}: {known}. "
            f"Run `genbench list {self.kind}` to see them."
        )

    @property
    def singular(self) -> str:
        """'losses' -> 'loss', 'models' -> 'model': for messages."""
        if self.kind.endswith("sses"):
            return self.kind[:-2]
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


DATASETS: Registry[Callable[..., Any]] = Registry("datasets")
MODELS: Registry[Any] = Registry("models")
LOSSES: Registry[Any] = Registry("losses")
REGULARIZERS: Registry[Any] = Registry("regularizers")
METRICS: Registry[Any] = Registry("metrics")
KERNELS: Registry[Any] = Registry("kernels")
SUITES: Registry[Any] = Registry("suites")
TRAINERS: Registry[Any] = Registry("trainers")
BENCHES: Registry[Any] = Registry("benches")  # kernel benchmarks (genbench.kernelbench)
REPRODUCTIONS: Registry[Any] = Registry("reproductions")  # published results re-checked (genbench.reproduce)

REGISTRIES: dict[str, Registry[Any]] = {
    r.kind: r for r in (DATASETS, MODELS, LOSSES, REGULARIZERS, METRICS, KERNELS, SUITES, TRAINERS, BENCHES,
                        REPRODUCTIONS)
}
