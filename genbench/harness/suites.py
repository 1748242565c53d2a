"""Suite files (TOML): named lists of runs, registered in SUITES.

Format (every key of a run is a RunConfig field -- see genbench/harness/spec.py --
plus `seeds`, a list expanded into one run per seed):

    description = "what the suite is for"

    [defaults]            # applied to every run, overridden per run
    dataset = "digits"
    steps = 400
    seeds = [0, 1]

    [[runs]]
    model = "vae"
    model_options = { arch = "conv", likelihood = "gaussian" }

Suite files in genbench/suites/ are registered by file name; any other path works too.
Unknown keys and names are rejected, with suggestions, before anything runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.errors import ConfigError
from genbench.harness.spec import RunConfig, run_config
from genbench.registry import SUITES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
TOP_KEYS = {"description", "defaults", "runs"}


@dataclass(frozen=True)
class SuiteFile:
    name: str
    path: Path


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: list[RunConfig]


def _register_builtin_suites() -> None:
    for path in sorted(SUITES_DIR.glob("*.toml")):
        SUITES.register(path.stem, SuiteFile(path.stem, path))


def load_suite(name_or_path: str) -> Suite:
    """A registered suite name, or a path to a TOML suite file."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"Suite file {path} does not exist. Give an existing .toml file or a suite name "
                              "from `genbench list suites`.")
        return parse_suite(path.stem, path)
    entry: SuiteFile = SUITES.get(name_or_path)
    return parse_suite(entry.name, entry.path)


def parse_suite(name: str, path: Path) -> Suite:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Suite file {path} is not valid TOML: {exc}. Fix the syntax and rerun.") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ConfigError(f"Suite file {path}: unknown top-level key(s) {sorted(unknown)}; "
                          f"allowed: {sorted(TOP_KEYS)}.")
    defaults = data.get("defaults", {})
    entries = data.get("runs", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"Suite file {path} has no [[runs]] entries; add at least one.")
    runs: list[RunConfig] = []
    for i, entry in enumerate(entries, 1):
        runs += expand_seeds({**defaults, **entry}, f"suite {name!r} ({path}), run {i}")
    return Suite(name=name, description=str(data.get("description", "")), runs=runs)


def expand_seeds(values: dict[str, Any], context: str) -> list[RunConfig]:
    values = dict(values)
    seeds = values.pop("seeds", None)
    if seeds is None:
        return [run_config(values, context)]
    if "seed" in values:
        raise ConfigError(f"{context}: give either `seed` or `seeds`, not both.")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{context}: `seeds` must be a non-empty list of integers; got {seeds!r}.")
    return [run_config({**values, "seed": s}, context) for s in seeds]


_register_builtin_suites()
