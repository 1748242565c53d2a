"""Suite files (TOML): named lists of runs, registered in SUITES, validated whole on load.

A suite file has four top-level keys, all optional but one of `runs`/`grid`:

    description = "what the suite is for"   # shown by `genbench list suites`
    reference = { objective = "non-saturating" }  # optional: the configuration the report's
                          # headline tests every other one against (keys: model, objective,
                          # dataset; values: the registered name, options left out)

    [defaults]            # applied to every entry below; an entry's own value wins
    dataset = "digits"
    steps = 400
    seeds = [0, 1]        # one run per seed (or `seed = 3` for a single one)

    [[runs]]              # one run (per seed): every value is a single value
    model = "vae"
    model_options = { arch = "conv", likelihood = "gaussian" }

    [[grid]]              # the cross product of its list-valued axes
    model = ["vae", "ae"]
    objective = ["elbo"]                 # a scalar is a one-element axis
    dataset = ["digits", "digits?size=8"]
    steps = [500, 1000]                  # the training budget
    precision = ["fp32", "bf16"]
    seeds = [0, 1, 2]
    lr = 2e-3                            # any other key: one value for every run
    model_options = { latent_dim = 8 }   # every model of this grid
    [grid.per_model.vae]                 # only the runs of model "vae"
    model_options = { likelihood = "gaussian" }
    [grid.per_objective.wgan]            # only the runs of objective "wgan"
    trainer_options = { n_critic = 5 }

Keys of `[defaults]`, `[[runs]]` and `[[grid]]` are the run settings, the fields of
`RunConfig` (genbench/harness/settings.py, where each is declared with its type, default
and range: model, dataset, objective, seed, steps, batch_size, lr, ..., model_options,
objective_options, trainer_options) plus `seeds`; a grid also takes
`per_model` and `per_objective`. Only the grid axes -- dataset, model, objective, steps,
precision and seeds -- take lists. A grid crosses them in that order (dataset outermost,
seed innermost); `[[runs]]` entries come first in file order, then `[[grid]]` entries.

Option tables: an entry's `model_options` (or objective/trainer options) replaces the
one in `[defaults]` as a whole; a `per_model`/`per_objective` table is merged key by key
over the entry's, so it only has to name what differs.

Validation happens on load, before any run starts, so a typo in the 12th run cannot
waste the first eleven: unknown keys (with the closest valid key suggested), TOML value
types (an integer where one is expected, not a string), value ranges (each setting's
declared range: settings.check_setting, what RunConfig itself checks), and then every
expanded run goes through spec.resolve_all, as an ad-hoc run from the command line does:
model, objective and dataset names (with suggestions), model/objective/trainer/dataset
options, its dataset's size (spec.check_data: batch size, FID sample counts), duplicates.
Every message names the file, the entry and the key.

`genbench run --suite S` with run-setting flags (e.g. --device cuda) applies them to every
run of the suite, over the file's values (`overrides` below).

Suite files in genbench/suites/ are registered by file name; any other path works too.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from genbench.errors import ConfigError, GenbenchError
from genbench.harness.settings import (RESULT_SETTINGS, SETTING_TYPES, SETTINGS, RunConfig, check_setting, run_config,
                                       setting_default, settings_text)
from genbench.harness.spec import Run, resolve_all
from genbench.harness.store import completed_run_ids
from genbench.registry import SUITES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
TOP_KEYS = ("description", "reference", "defaults", "runs", "grid")
REFERENCE_KEYS = ("model", "objective", "dataset")
RUN_KEYS = tuple(SETTINGS) + ("seeds",)  # the run settings, and seeds: one run per seed
GRID_AXES = ("dataset", "model", "objective", "steps", "precision")  # crossed in this order, then seeds
PER_KEYS = ("per_model", "per_objective")  # grid only: option tables for one model / objective
OPTION_TABLES = ("model_options", "objective_options", "trainer_options")


@dataclass(frozen=True)
class SuiteFile:
    name: str
    path: Path


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    runs: list[RunConfig]
    origins: list[str]  # per run: "[[grid]] entry 2" (for messages)
    reference: dict[str, str] = dataclasses.field(default_factory=dict)  # the headline's reference configuration
    resolved: list[Run] | None = None  # the runs resolved against the registries (parse_suite); None before


def _register_builtin_suites() -> None:
    for path in sorted(SUITES_DIR.glob("*.toml")):
        SUITES.register(path.stem, SuiteFile(path.stem, path))


def load_suite(name_or_path: str, overrides: dict[str, Any] | None = None) -> Suite:
    """A registered suite name, or a path to a TOML suite file; validated and resolved.
    `overrides` (run settings from the command line) replace the file's values in every run."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.is_file():
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"Suite file {path} {problem}. Give an existing .toml file or a suite name "
                              "from `genbench list suites`.")
        return parse_suite(path.stem, path, overrides)
    entry: SuiteFile = SUITES.get(name_or_path)
    return parse_suite(entry.name, entry.path, overrides)


def parse_suite(name: str, path: Path, overrides: dict[str, Any] | None = None) -> Suite:
    """Read, expand and fully validate a suite file: every run is resolved here."""
    suite = read_suite(name, path, overrides)
    resolved = resolve_all(suite.runs, suite.name, suite.origins, f"Suite file {path}")
    return dataclasses.replace(suite, resolved=resolved)


def command_line_runs(settings: dict[str, Any], seeds: int) -> list[Run]:
    """`genbench run --model M ...`: the run settings given, seeds 0..seeds-1, expanded and
    resolved as a suite's [[runs]] entry is (its records name no suite)."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give a number of seeds >= 1 (runs seeds 0..K-1).")
    return resolve_all(expand_runs_entry({**settings, "seeds": list(range(seeds))}, "The command line"))


# ---- reading and expanding (structure and types; no registry look-ups) ----

def read_suite(name: str, path: Path, overrides: dict[str, Any] | None = None) -> Suite:
    """The suite's runs, with keys, types and ranges checked (cheap: `list suites` uses it)."""
    data = _load_toml(path)
    check_keys(data, TOP_KEYS, f"Suite file {path}, top level")
    defaults = _table(data.get("defaults", {}), f"Suite file {path}, [defaults]")
    check_entry(defaults, RUN_KEYS, (), f"Suite file {path}, [defaults]")
    runs: list[RunConfig] = []
    origins: list[str] = []
    for table, expand in (("runs", expand_runs_entry), ("grid", expand_grid_entry)):
        for i, entry in enumerate(_entries(data, table, path), 1):
            origin = f"[[{table}]] entry {i}"
            configs = expand({**defaults, **entry, **(overrides or {})}, f"Suite file {path}, {origin}")
            runs += configs
            origins += [origin] * len(configs)
    if not runs:
        raise ConfigError(f"Suite file {path} has no [[runs]] or [[grid]] entries; add at least one "
                          "(see `genbench/harness/suites.py` for the format).")
    reference = _table(data.get("reference", {}), f"Suite file {path}, reference")
    check_keys(reference, REFERENCE_KEYS, f"Suite file {path}, reference")
    return Suite(name=name, description=str(data.get("description", "")), runs=runs, origins=origins,
                 reference={k: str(v) for k, v in reference.items()})


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Suite file {path} is not valid TOML: {exc}. Fix the syntax and rerun.") from None
    except PermissionError:
        raise ConfigError(f"Suite file {path} cannot be read: permission denied. Make it readable by this user "
                          f"(e.g. chmod a+r {path}) or run genbench as a user who can read it.") from None
    except OSError as exc:
        raise ConfigError(f"Suite file {path} cannot be read: {exc.strerror or exc}. Check the path and the "
                          "disk, or copy the suite to a readable file.") from None


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of KEY = VALUE; got {value!r}.")
    return value


def _entries(data: dict[str, Any], table: str, path: Path) -> list[dict[str, Any]]:
    entries = data.get(table, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"Suite file {path}: `{table}` must be an array of tables, written [[{table}]] "
                          "above each entry's KEY = VALUE lines.")
    return entries


def check_keys(values: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Reject unknown keys, suggesting the closest valid one (a typo must not be ignored)."""
    for key in values:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}.{hint} Valid keys: {', '.join(allowed)}.")


def check_entry(values: dict[str, Any], allowed: tuple[str, ...], axes: tuple[str, ...], where: str) -> None:
    """Keys, then each value's TOML type and range; the keys in `axes` may be lists."""
    check_keys(values, allowed, where)
    for key, value in values.items():
        if key in PER_KEYS:
            continue
        if key == "seeds":
            check_seeds(value, where)
        elif isinstance(value, list) and key in GRID_AXES and key not in axes:
            raise ConfigError(f"{where}, key {key!r}: a list is crossed only in a [[grid]] entry; give one "
                              f"value here, or make this entry a [[grid]].")
        elif isinstance(value, list) and key in axes:
            if not value or len(set(map(repr, value))) != len(value):
                raise ConfigError(f"{where}, key {key!r}: a grid axis must be a non-empty list without "
                                  f"repeats; got {value!r}.")
            for item in value:
                check_value(key, item, where)
        else:
            check_value(key, value, where)


def check_seeds(seeds: Any, where: str) -> None:
    """A non-empty list of distinct integers, each a valid `seed`."""
    ok = isinstance(seeds, list) and seeds and all(type(s) is int for s in seeds)
    if not ok or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}, key 'seeds': must be a non-empty list of distinct integers >= 0, "
                          f"e.g. seeds = [0, 1, 2]; got {seeds!r}.")
    for seed in seeds:
        check_setting("seed", seed, f"{where}, key 'seeds'")


def check_value(key: str, value: Any, where: str) -> None:
    """TOML has types: a quoted number or a list where one value belongs is a mistake, not input
    to coerce. Choices and ranges are the setting's own (settings.check_setting)."""
    annotation = SETTING_TYPES[key]
    if value is None and type(None) in typing.get_args(annotation):  # TOML has no None; --objective none
        return
    kind, example, ok = _expected_type(annotation, value)
    if not ok:
        raise ConfigError(f"{where}, key {key!r}: must be {kind}; got {value!r} ({_toml_kind(value)}). "
                          f"Write it as e.g. {key} = {example}.")
    check_setting(key, value, f"{where}, key {key!r}")


def _expected_type(annotation: Any, value: Any) -> tuple[str, str, bool]:
    """(what is expected, an example, whether `value` has that TOML type)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return "a string", repr(args[0]).replace("'", '"'), isinstance(value, str)
    if args and typing.get_origin(annotation) is not dict:  # X | None: TOML has no None, so X
        annotation = args[0]
    if annotation is int:
        return "an integer", "500", type(value) is int
    if annotation is float:
        return "a number", "1e-3", type(value) in (int, float)
    if annotation is str:
        return "a string", '"..."', isinstance(value, str)
    return "a table", "{ arch = \"conv\" }", isinstance(value, dict)


def _toml_kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "a table"}
    return kinds.get(type(value), type(value).__name__)


def expand_runs_entry(values: dict[str, Any], where: str) -> list[RunConfig]:
    check_entry(values, RUN_KEYS, (), where)
    require_model(values, where)
    return expand_seeds(values, where)


def require_model(values: dict[str, Any], where: str) -> None:
    if "model" not in values:
        raise ConfigError(f"{where} names no model: add e.g. model = \"vae\" to it or to [defaults] "
                          "(`genbench list models`).")


def expand_grid_entry(values: dict[str, Any], where: str) -> list[RunConfig]:
    """The cross product of the axes (dataset, model, objective, steps, precision, seeds)."""
    check_entry(values, RUN_KEYS + PER_KEYS, GRID_AXES, where)
    require_model(values, where)
    values = dict(values)
    per = {key: values.pop(key, {}) for key in PER_KEYS}
    axes = {k: (values[k] if isinstance(values[k], list) else [values[k]]) for k in GRID_AXES if k in values}
    check_per_tables(per, axes, where)
    configs: list[RunConfig] = []
    for combo in itertools.product(*axes.values()):
        run = {**values, **dict(zip(axes, combo))}
        for key, axis in (("per_model", "model"), ("per_objective", "objective")):
            run = merge_options(run, per[key].get(run.get(axis), {}))
        configs += expand_seeds(run, where)
    return configs


def check_per_tables(per: dict[str, Any], axes: dict[str, list], where: str) -> None:
    """per_model.NAME / per_objective.NAME: NAME is on the grid's axis, the body holds option tables."""
    for key, axis in (("per_model", "model"), ("per_objective", "objective")):
        tables = _table(per[key], f"{where}, key {key!r}")
        names = axes.get(axis, [])
        for name, body in tables.items():
            if name not in names:
                close = difflib.get_close_matches(name, [str(n) for n in names], n=1, cutoff=0.5)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{where}: [{key}.{name}] names no {axis} of this grid.{hint} "
                                  f"This grid's {axis} axis: {names or '(not given)'}.")
            body = _table(body, f"{where}, [{key}.{name}]")
            check_keys(body, OPTION_TABLES, f"{where}, [{key}.{name}]")
            for option_key, table in body.items():
                _table(table, f"{where}, [{key}.{name}], key {option_key!r}")


def merge_options(run: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-model/objective option tables merged key by key over the entry's own."""
    run = dict(run)
    for key, table in overrides.items():
        run[key] = {**run.get(key, {}), **table}
    return run


def expand_seeds(values: dict[str, Any], context: str) -> list[RunConfig]:
    values = dict(values)
    seeds = values.pop("seeds", None)
    if seeds is None:
        return [run_config(values, context)]
    if "seed" in values:
        raise ConfigError(f"{context}: give either `seed` or `seeds`, not both.")
    check_seeds(seeds, context)
    return [run_config({**values, "seed": s}, context) for s in seeds]


# ---- what the CLI shows ----

def suite_listing() -> str:
    """`genbench list suites`: name, run count and description per registered suite."""
    lines = []
    for name in SUITES.names():
        entry: SuiteFile = SUITES.get(name)
        try:
            suite = read_suite(name, entry.path)
            count = f"{len(suite.runs)} runs"
            description = suite.description
        except GenbenchError as exc:  # still listed: the listing is how one finds the broken file
            count, description = "invalid", str(exc)
        lines.append(f"{name}\t{count}\t{description}")
    return "\n".join(lines)


PLAN_COLUMNS = ("steps", "precision")  # run settings the plan always shows


def plan_settings(runs: list[Run]) -> list[str]:
    """Per planned run, the result-changing settings (settings.RESULT_SETTINGS) that differ
    between the planned runs and are not a column of the plan, where this run's value is not
    the default: "lr=0.0002, eval_samples=1000". Model, objective and trainer options are in
    the labels."""
    shown = [n for n in RESULT_SETTINGS if n not in PLAN_COLUMNS
             and len({repr(getattr(r.config, n)) for r in runs}) > 1]
    return [settings_text({n: getattr(r.config, n) for n in shown if getattr(r.config, n) != setting_default(n)})
            for r in runs]


def describe_plan(runs: list[Run], out_dir: Path) -> str:
    """`genbench run --dry-run`: one line per planned run and whether resume would skip it;
    a "settings" column when the runs differ in a setting the other columns do not show."""
    done = completed_run_ids(out_dir)
    settings = plan_settings(runs)
    extra = ("settings",) if any(settings) else ()
    header = ("#", "model", "objective", "dataset", "seed", *PLAN_COLUMNS, *extra, "status")
    rows = [header] + [
        (str(i), r.model_label, r.objective_label, r.config.dataset, str(r.config.seed), str(r.config.steps),
         r.config.precision, *((setting,) if extra else ()), "complete (skip)" if r.run_id in done else "to run")
        for i, (r, setting) in enumerate(zip(runs, settings), 1)
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    skipped = sum(r.run_id in done for r in runs)
    folder = f"{out_dir}" if out_dir.exists() else f"{out_dir} (a new folder)"
    lines.append(f"{len(runs)} run(s) planned in {folder}: {len(runs) - skipped} to run, {skipped} already "
                 "complete (skipped). Dry run: nothing was trained.")
    return "\n".join(lines)


_register_builtin_suites()
