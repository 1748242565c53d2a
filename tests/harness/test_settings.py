"""Run settings declared once (genbench/harness/settings.py): each field's help, range and
flag, the range checks RunConfig runs on itself, and the per-setting check that suite files
and the command line share."""

from __future__ import annotations

import dataclasses
import math

import pytest

from genbench.errors import ConfigError
from genbench.harness.settings import (
    MAX_BATCH,
    MAX_EVAL_SAMPLES,
    MAX_STEPS,
    SEED_LIMIT,
    SETTINGS,
    RunConfig,
    check_setting,
    range_text,
    setting_flag,
    setting_help,
    setting_problem,
)


def test_every_setting_has_help_and_a_flag_except_seed():
    for name, f in SETTINGS.items():
        assert f.metadata["help"], name
        assert setting_flag(name) == {"seed": None, "model_options": "--set", "objective_options": "--objective-set",
                                      "trainer_options": "--train-set"}.get(name, "--" + name.replace("_", "-"))


# The limits the settings had before they were declared (the old __post_init__ and suite checks):
# (name, smallest valid, largest valid or None, a value just below, a value just above or None)
LIMITS = [
    ("seed", 0, SEED_LIMIT - 1, -1, SEED_LIMIT),
    ("steps", 1, MAX_STEPS, 0, MAX_STEPS + 1),
    ("batch_size", 1, None, 0, None),
    ("lr", 1e-12, None, 0.0, None),
    ("adam_beta1", 0.0, 0.999999, -0.1, 1.0),
    ("adam_beta2", 0.0, 0.999999, -0.1, 1.0),
    ("log_every", 1, None, 0, None),
    ("warmup_steps", 0, None, -1, None),
    ("eval_batch", 1, MAX_BATCH, 0, MAX_BATCH + 1),
    ("eval_samples", 1, MAX_EVAL_SAMPLES, 0, MAX_EVAL_SAMPLES + 1),
    ("iwae_k", 1, MAX_BATCH, 0, MAX_BATCH + 1),
]


@pytest.mark.parametrize("name, low, high, below, above", LIMITS)
def test_run_config_checks_each_declared_range(name, low, high, below, above):
    for valid in (low, high):
        if valid is not None:
            assert getattr(RunConfig(model="vae", **{name: valid}), name) == valid
    for invalid in (below, above):
        if invalid is not None:
            with pytest.raises(ValueError, match=rf"^{name} must be .*; got {invalid!r}$"):
                RunConfig(model="vae", **{name: invalid})


def test_every_bounded_setting_is_covered_above():
    assert {name for name, f in SETTINGS.items() if f.metadata["bounds"]} == {row[0] for row in LIMITS}


def test_non_finite_numbers_are_refused_even_when_built_in_code():
    with pytest.raises(ValueError, match="lr must be a finite number; got inf"):
        RunConfig(model="vae", lr=math.inf)
    with pytest.raises(ValueError, match="adam_beta1 must be a finite number; got nan"):
        RunConfig(model="vae", adam_beta1=math.nan)


def test_problem_names_the_violated_bound():
    assert setting_problem("steps", 0) == "must be >= 1; got 0"
    assert setting_problem("steps", MAX_STEPS + 1) == f"must be <= 10,000,000; got {MAX_STEPS + 1}"
    assert setting_problem("lr", 0.0) == "must be > 0; got 0.0"
    assert setting_problem("adam_beta2", 1.0) == "must be < 1; got 1.0"
    assert setting_problem("steps", 500) is None and setting_problem("dataset", "digits") is None


def test_check_setting_converts_then_checks_naming_where():
    assert check_setting("steps", "12", "--steps") == 12  # a string from the command line, converted
    assert check_setting("precision", "bf16", "x") == "bf16"
    with pytest.raises(ConfigError, match=r"^--steps: must be >= 1; got 0\.$"):
        check_setting("steps", 0, "--steps")
    with pytest.raises(ConfigError, match=r"^F, key 'precision': must be one of 'fp32', 'bf16', 'fp16'; got 'fp8'\.$"):
        check_setting("precision", "fp8", "F, key 'precision'")
    with pytest.raises(ConfigError, match=r"^--lr: must be a finite number; got nan\.$"):
        check_setting("lr", "nan", "--lr")


def test_help_shows_the_declared_help_range_and_default():
    assert range_text("steps") == ">= 1 and <= 10,000,000" and range_text("lr") == "> 0" and range_text("model") == ""
    assert setting_help("steps") == "training budget in optimiser steps; >= 1 and <= 10,000,000; default 500"
    assert setting_help("objective") == "registered objective; default: the model's own"  # None: no default shown
    assert setting_help("model_options").endswith("KEY=VALUE, repeatable (e.g. --set arch=conv)")


def test_defaults_are_the_fields_defaults():
    config = RunConfig(model="vae")
    for name, f in SETTINGS.items():
        if f.default is not dataclasses.MISSING:
            assert getattr(config, name) == f.default
    assert (config.steps, config.eval_samples, config.iwae_k, config.batch_size) == (500, 2500, 64, 64)
