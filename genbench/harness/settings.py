"""Run settings: `RunConfig`, where every setting of a run is declared, once.

A setting is a field declared with `setting(default, help, range)`: its type is the
annotation, its default, one-line help and range are declared beside it. Everything else
reads them from here, so adding a setting is one edit:
- the `genbench run` flags (cli.py: --kebab-case name, type, choices from a Literal, help
  with the range and default),
- suite files' keys and their checks (suites.py; TOML adds its own type strictness),
- `RunConfig.__post_init__`, which checks every declared range, so a config built in code
  is checked too.
What depends on the dataset (the batch against the training split, FID's sample count
against the feature dimensions) is checked once the dataset is probed (spec.check_data).

This module imports no torch: the command line builds its parser from it.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal

from genbench.errors import ConfigError
from genbench.utils.options import build_options, convert_value

MAX_STEPS = 10_000_000
MAX_EVAL_SAMPLES = 1_000_000
MAX_BATCH = 65_536  # eval_batch and iwae_k
SEED_LIMIT = 2**32  # numpy's global seed (seed_everything) takes 0 .. 2**32 - 1

_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_FLAG_FROM_NAME = "--<name>"  # the default flag: --kebab-case of the field's name


def setting(default: Any = MISSING, help: str = "", *, at_least: float | None = None, above: float | None = None,
            at_most: float | None = None, below: float | None = None, flag: str | None = _FLAG_FROM_NAME) -> Any:
    """A run setting: its default, its help and its range (bounds left None are unbounded).
    `flag` is its command-line flag; None for a setting the command line does not take."""
    bounds = tuple((op, bound) for op, bound in ((">=", at_least), (">", above), ("<=", at_most), ("<", below))
                   if bound is not None)
    return field(default=default, metadata={"help": help, "bounds": bounds, "flag": flag})


def option_table(help: str, flag: str, example: str) -> Any:
    """A table of options of a registered part (model, objective, trainer): KEY = VALUE pairs,
    checked against that part's options dataclass when the run is resolved."""
    return field(default_factory=dict, metadata={"help": help, "bounds": (), "flag": flag, "example": example})


@dataclass(frozen=True)
class RunConfig:
    model: str = setting(help="registered model name (`genbench list models`)")
    dataset: str = setting("digits", "dataset spec (`genbench list datasets`), e.g. digits, shapes?size=64, mnist:PATH")
    objective: str | None = setting(None, "registered objective; default: the model's own")
    # The command line runs seeds 0..K-1 with --seeds K instead.
    seed: int = setting(0, "seeds weights, batches and noise: fully determines a CPU run",
                        at_least=0, at_most=SEED_LIMIT - 1, flag=None)
    steps: int = setting(500, "training budget in optimiser steps", at_least=1, at_most=MAX_STEPS)
    batch_size: int = setting(64, "training examples per step, at most the training split's size (a larger one is "
                              "refused before training, never clipped: throughput counts what was processed)",
                              at_least=1)
    lr: float = setting(1e-3, "Adam learning rate", above=0)
    adam_beta1: float = setting(0.9, "Adam beta1", at_least=0, below=1)
    adam_beta2: float = setting(0.999, "Adam beta2", at_least=0, below=1)
    log_every: int = setting(10, "steps between train/* records (loss curves, gradient norms)", at_least=1)
    warmup_steps: int = setting(20, "first steps left out of the training throughput", at_least=0)
    eval_batch: int = setting(256, "batch size for evaluation and sampling throughput", at_least=1, at_most=MAX_BATCH)
    eval_samples: int = setting(2500, "generated samples for sample-quality and coverage metrics (fix it per suite); "
                                "more than the feature extractor's dimensions where FID applies",
                                at_least=1, at_most=MAX_EVAL_SAMPLES)
    iwae_k: int = setting(64, "importance samples for the IWAE likelihood bound (latent-variable models)",
                          at_least=1, at_most=MAX_BATCH)
    feature_extractor: Literal["auto", "genbench", "inception-v3"] = setting(
        "auto", "features for FID/KID/IS/PR: genbench's classifier for the dataset, or InceptionV3 (needs "
        "feature weights); auto = inception-v3 iff feature weights are given")
    feature_weights: str | None = setting(
        None, "local InceptionV3 weights file (torch-fidelity's weights-inception-2015-12-05-6726825d.pth)")
    precision: Literal["fp32", "bf16", "fp16"] = setting(
        "fp32", "bf16/fp16 = autocast in every trainer (fp16 adds a gradient scaler and needs CUDA)")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto = cuda when available")
    backend: Literal["auto", "triton", "torch"] = setting(
        "auto", "kernel backend (genbench.kernels): auto = triton on CUDA, the PyTorch reference on CPU")
    model_options: dict[str, Any] = option_table("model option (the model's options dataclass)", "--set",
                                                 "arch=conv")
    objective_options: dict[str, Any] = option_table("objective option", "--objective-set", "beta=4")
    trainer_options: dict[str, Any] = option_table("training-loop option (the family trainer's options, e.g. "
                                                   "the GAN trainer's n_critic)", "--train-set", "n_critic=5")

    def __post_init__(self):
        for name in SETTINGS:
            problem = setting_problem(name, getattr(self, name))
            if problem:
                raise ValueError(f"{name} {problem}")


SETTINGS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}
SETTING_TYPES: dict[str, Any] = typing.get_type_hints(RunConfig)

# Settings every record carries as a field of its own (model and objective as labels that name
# their non-default options, and the objective's label its non-default trainer options): the
# report's and compare's group columns.
IDENTITY_SETTINGS = ("model", "objective", "dataset", "precision", "backend", "device")


def is_option_table(name: str) -> bool:
    return "example" in SETTINGS[name].metadata


# The run settings that key a result beside the identity: every declared setting but the
# identity, the seed (what a group pools over) and the option tables (already in the labels).
# Anything that can change a recorded number is here: log_every too (it picks the recorded
# curve points and adds a host sync every log_every steps, which the throughput measures), and
# feature_weights (a different file, a different FID). Derived, never listed by hand: a new
# setting keys results from the moment it is declared.
RESULT_SETTINGS: tuple[str, ...] = tuple(
    name for name in SETTINGS if name not in IDENTITY_SETTINGS and name != "seed" and not is_option_table(name))


def setting_default(name: str) -> Any:
    f = SETTINGS[name]
    return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


def result_settings(run: dict[str, Any]) -> dict[str, Any]:
    """The RESULT_SETTINGS of a recorded run config (a run/complete record's
    provenance["config"]["run"]); a setting the record predates counts as its default."""
    return {name: run.get(name, setting_default(name)) for name in RESULT_SETTINGS}


def settings_text(settings: dict[str, Any]) -> str:
    """"lr=0.0003, steps=200": how reports and plans show settings."""
    return ", ".join(f"{name}={value}" for name, value in settings.items())


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for the run setting `name` ("must be >= 1; got 0"), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number; got {value!r}"
    for op, bound in SETTINGS[name].metadata["bounds"]:
        if not _COMPARE[op](value, bound):
            return f"must be {op} {bound:,}; got {value!r}"
    return None


def check_setting(name: str, value: Any, where: str) -> Any:
    """`value` converted to setting `name`'s type (choices, finite, int64: build_options' own
    conversion) and checked against its range; `where` names it in the message, e.g.
    "--steps" or "Suite file F, [[runs]] entry 2, key 'steps'"."""
    value = convert_value(value, SETTING_TYPES[name], f"{where}:")
    problem = setting_problem(name, value)
    if problem:
        raise ConfigError(f"{where}: {problem}.")
    return value


def range_text(name: str) -> str:
    """The declared range: ">= 1 and <= 10,000,000", "> 0"; "" when unbounded."""
    return " and ".join(f"{op} {bound:,}" for op, bound in SETTINGS[name].metadata["bounds"])


def setting_flag(name: str) -> str | None:
    """The command-line flag of a setting: --kebab-case of its name unless declared otherwise."""
    flag = SETTINGS[name].metadata["flag"]
    return "--" + name.replace("_", "-") if flag == _FLAG_FROM_NAME else flag


def setting_help(name: str) -> str:
    """One line for --help: the declared help, then the range and the default."""
    meta, default = SETTINGS[name].metadata, SETTINGS[name].default
    if is_option_table(name):
        return f"{meta['help']}, KEY=VALUE, repeatable (e.g. {setting_flag(name)} {meta['example']})"
    parts = [meta["help"], range_text(name)]
    if default not in (MISSING, None):
        parts.append(f"default {default}")
    return "; ".join(p for p in parts if p)


def run_config(values: dict[str, Any], context: str) -> RunConfig:
    return build_options(RunConfig, values, context)
