"""Tests for genbench/utils/options.py: typed option dataclasses from user input."""

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from genbench.errors import ConfigError
from genbench.utils.options import (
    build_options,
    convert_value,
    non_default_options,
    parse_assignments,
)

CTX = "model 'testmodel'"


@dataclass
class Opts:
    steps: int = 10  # an int
    lr: float = 1e-3  # a float
    use_ema: bool = False  # a bool
    name: str = "base"  # a str
    mode: Literal["fast", "slow"] = "fast"  # a Literal
    clip: float | None = None  # an optional float
    widths: tuple[int, ...] = (32, 64)  # a variable-length tuple of ints
    extra: dict = field(default_factory=dict)  # a table

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


def build(**values):
    return build_options(Opts, values, CTX)


def test_defaults_when_no_values():
    assert build_options(Opts, None, CTX) == Opts()
    assert build_options(Opts, {}, CTX) == Opts()


@pytest.mark.parametrize(
    "key, raw, expected",
    [
        ("steps", "3", 3),
        ("steps", " 7 ", 7),
        ("steps", 5, 5),
        ("steps", 4.0, 4),  # an integral float (e.g. from TOML) is an int
        ("lr", "0.5", 0.5),
        ("lr", "1e-4", 1e-4),
        ("lr", 2, 2.0),
        ("use_ema", "true", True),
        ("use_ema", "True", True),
        ("use_ema", "yes", True),
        ("use_ema", "on", True),
        ("use_ema", "1", True),
        ("use_ema", "false", False),
        ("use_ema", "off", False),
        ("use_ema", "0", False),
        ("use_ema", True, True),
        ("name", "hello", "hello"),
        ("mode", "slow", "slow"),
        ("clip", "none", None),
        ("clip", "None", None),
        ("clip", None, None),
        ("clip", "0.25", 0.25),
        ("clip", 1, 1.0),
        ("widths", "1,2", (1, 2)),
        ("widths", "1, 2, 3", (1, 2, 3)),
        ("widths", "8", (8,)),
        ("widths", [3, 4], (3, 4)),
        ("widths", (5,), (5,)),
        ("extra", {"a": 1}, {"a": 1}),
    ],
)
def test_values_convert(key, raw, expected):
    options = build(**{key: raw})
    value = getattr(options, key)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, tuple):
        assert all(type(v) is type(e) for v, e in zip(value, expected))


def test_all_fields_at_once():
    options = build(steps="3", lr="0.1", use_ema="true", name="n", mode="slow",
                    clip="none", widths="1,2", extra={"k": "v"})
    assert options == Opts(steps=3, lr=0.1, use_ema=True, name="n", mode="slow",
                           clip=None, widths=(1, 2), extra={"k": "v"})


@pytest.mark.parametrize(
    "key, raw",
    [
        ("steps", "abc"),
        ("steps", "2.5"),
        ("steps", 2.5),
        ("steps", "none"),
        ("steps", None),
        ("steps", [1]),
        ("lr", "fast"),
        ("lr", None),
        ("use_ema", "maybe"),
        ("use_ema", 2),
        ("name", 3),
        ("name", None),
        ("clip", "big"),
        ("widths", "1,x"),
        ("widths", 5),
        ("extra", "a=1"),
    ],
)
def test_wrong_types_are_rejected_naming_the_option(key, raw):
    with pytest.raises(ConfigError) as info:
        build(**{key: raw})
    message = str(info.value)
    assert repr(key) in message
    assert CTX in message


@pytest.mark.parametrize("key", ["steps", "lr", "clip", "widths"])
def test_bools_are_not_numbers(key):
    value = [True] if key == "widths" else True
    with pytest.raises(ConfigError, match=repr(key)):
        build(**{key: value})


def test_bool_not_accepted_as_int_by_convert_value():
    with pytest.raises(ConfigError):
        convert_value(True, int, "x")
    with pytest.raises(ConfigError):
        convert_value(False, float, "x")


def test_literal_outside_choices_lists_choices():
    with pytest.raises(ConfigError) as info:
        build(mode="medium")
    message = str(info.value)
    assert "'mode'" in message
    assert "'fast'" in message and "'slow'" in message
    assert "'medium'" in message


def test_literal_is_case_sensitive():
    with pytest.raises(ConfigError):
        build(mode="FAST")


def test_unknown_key_rejected_with_suggestion():
    with pytest.raises(ConfigError) as info:
        build(stpes=3)
    message = str(info.value)
    assert "'stpes'" in message
    assert "'steps'" in message
    assert CTX in message


def test_unknown_key_lists_valid_options():
    with pytest.raises(ConfigError) as info:
        build(zzzzzzzz=1)
    message = str(info.value)
    for f in dataclasses.fields(Opts):
        assert f.name in message


def test_post_init_value_error_becomes_config_error():
    with pytest.raises(ConfigError) as info:
        build(steps="-1")
    message = str(info.value)
    assert "steps must be >= 0" in message
    assert CTX in message


def test_parse_assignments():
    assert parse_assignments(["a=1", "b = x"], "--model-opt") == {"a": "1", "b": "x"}
    assert parse_assignments(["expr=a=b"], "w") == {"expr": "a=b"}  # split on the first '='
    assert parse_assignments(["empty="], "w") == {"empty": ""}
    assert parse_assignments(None, "w") == {}
    assert parse_assignments([], "w") == {}


@pytest.mark.parametrize("bad", ["novalue", "=x", " =x"])
def test_parse_assignments_errors(bad):
    with pytest.raises(ConfigError) as info:
        parse_assignments([bad], "--model-opt")
    message = str(info.value)
    assert "--model-opt" in message
    assert "KEY=VALUE" in message
    assert repr(bad) in message


def test_parse_assignments_then_build():
    values = parse_assignments(["steps=12", "widths=4,8", "clip=none", "use_ema=yes"], "w")
    assert build_options(Opts, values, CTX) == Opts(steps=12, widths=(4, 8), clip=None, use_ema=True)


def test_non_default_options():
    assert non_default_options(Opts()) == {}
    options = Opts(steps=5, lr=1e-3, widths=(32, 64), extra={}, mode="slow")
    assert non_default_options(options) == {"steps": 5, "mode": "slow"}
    assert non_default_options(Opts(extra={"a": 1})) == {"extra": {"a": 1}}
    assert non_default_options(Opts(clip=0.5, use_ema=True)) == {"use_ema": True, "clip": 0.5}


def test_non_default_options_round_trips_through_build():
    options = build(steps="5", mode="slow", widths="1,2")
    assert build_options(Opts, non_default_options(options), CTX) == options


@dataclass
class Renamed:
    steps_per_level: int = 4  # the option's new name
    RENAMED: ClassVar[dict[str, str]] = {"steps": "steps_per_level"}  # old name -> new name


def test_a_renamed_option_is_refused_with_its_new_name():
    with pytest.raises(ConfigError) as info:
        build_options(Renamed, {"steps": 3}, CTX)
    assert str(info.value) == (f"Unknown option 'steps' for {CTX}: renamed to 'steps_per_level' (same meaning); "
                               "use 'steps_per_level' instead.")
    assert build_options(Renamed, {"steps_per_level": 3}, CTX) == Renamed(3)
    assert [f.name for f in dataclasses.fields(Renamed)] == ["steps_per_level"]  # the mapping is no option
    with pytest.raises(ConfigError, match="Did you mean 'steps_per_level'"):  # other unknown keys: suggestions
        build_options(Renamed, {"steps_per_levl": 3}, CTX)
