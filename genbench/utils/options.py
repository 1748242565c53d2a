"""Typed option dataclasses built from user input (CLI strings, TOML values, dicts).

Every configurable thing in genbench (dataset options, model options, objective
options, run settings) is a dataclass with typed, commented defaults. `build_options`
turns user input into one, converting strings by the field's type and rejecting
unknown keys (with suggestions), values of the wrong type or outside a Literal, and
numbers that are not finite or do not fit int64 (for every option of every dataclass;
each dataclass's __post_init__ checks its own fields' ranges).

An option that was renamed stays known under its old name, rejected with the new one: the
dataclass declares `RENAMED: ClassVar[dict[str, str]] = {"old": "new"}`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union

from genbench.errors import ConfigError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def build_options(cls: type[C], values: Mapping[str, Any] | None, context: str) -> C:
    """Return cls(**values) with every value checked against its declared type.

    `context` names the thing being configured in error messages ("model 'vae'").
    """
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = unknown[0]
        renamed = getattr(cls, "RENAMED", {}).get(key)
        if renamed:
            raise ConfigError(f"Unknown option {key!r} for {context}: renamed to {renamed!r} (same meaning); "
                              f"use {renamed!r} instead.")
        close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"Unknown option {key!r} for {context}.{hint} "
            f"Valid options: {', '.join(fields) or '(none)'}."
        )
    converted = {k: convert_value(v, hints[k], f"{context} option {k!r}") for k, v in values.items()}
    try:
        return cls(**converted)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise ConfigError(f"Invalid options for {context}: {exc}") from None


def convert_value(value: Any, annotation: Any, where: str) -> Any:
    """Convert `value` (possibly a string from the command line) to `annotation`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert_value(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be None.")
    if origin is Literal:
        for choice in args:
            same_type = type(value) is type(choice)  # True must not pass for 1
            if (same_type and value == choice) or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(
            f"{where} must be one of {', '.join(repr(a) for a in args)}; got {value!r}."
        )
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where} must be a list; got {value!r}.")
        inner = args[0] if args else Any
        converted = [convert_value(v.strip() if isinstance(v, str) else v, inner, where) for v in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is Any:
        return value
    if origin is dict or annotation is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where} must be a table of KEY = VALUE; got {value!r}.")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{where} must be true or false; got {value!r}.")
    if annotation in (int, float):
        return check_number(_to_number(value, annotation, where), where)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string; got {value!r}.")
    if isinstance(value, annotation):
        return value
    raise ConfigError(f"{where} must be of type {getattr(annotation, '__name__', annotation)}; got {value!r}.")


def _to_number(value: Any, annotation: type, where: str) -> int | float:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number; got {value!r}.")
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, (int, float)) and (annotation is float or whole):
        try:
            return annotation(value)
        except OverflowError:  # float(10**400)
            raise ConfigError(f"{where} must be a finite number; got {_shown(value)}.") from None
    if isinstance(value, str):
        try:
            return annotation(value)
        except ValueError:
            pass
    raise ConfigError(f"{where} must be {'an integer' if annotation is int else 'a number'}; got {value!r}.")


def check_number(value: int | float, where: str) -> int | float:
    """Every numeric setting is finite and, if an integer, fits int64 (what torch and numpy
    take): NaN or Inf would reach an optimiser or a results file, a huge integer a tensor."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number; got {value!r}.")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ConfigError(f"{where} must be an integer between -2**63 and 2**63 - 1; got {_shown(value)}.")
    return value


def _shown(value: int | float) -> str:
    text = repr(value)
    return text if len(text) <= 30 else f"{text[:12]}... ({len(text)} digits)"


def parse_assignments(pairs: list[str] | None, where: str) -> dict[str, str]:
    """Parse ['key=value', ...] from the command line into a dict of strings."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: expected KEY=VALUE, got {pair!r}.")
        out[key.strip()] = value.strip()
    return out


def non_default_options(options: Any) -> dict[str, Any]:
    """The fields of an options dataclass that differ from their defaults."""
    out = {}
    for f in dataclasses.fields(options):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING
        )
        value = getattr(options, f.name)
        if value != default:
            out[f.name] = value
    return out
