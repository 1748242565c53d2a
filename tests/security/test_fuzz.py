"""Property-based fuzzing (Hypothesis) of the parsers that take untrusted input: the
results-file reader, the dataset spec parser and loader, and RunConfig options. Each
must return a valid value or raise a GenbenchError -- never another exception.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genbench.data import load_dataset
from genbench.data.base import format_spec, parse_spec
from genbench.errors import ConfigError, GenbenchError
from genbench.harness.spec import RunConfig
from genbench.harness.store import FIELDS, completed_run_ids, read_records, validate_record
from genbench.registry import DATASETS
from genbench.utils.options import build_options
from tests.harness.test_store import make_record

FAST = settings(max_examples=150, deadline=None)

# ---------------------------------------------------------------- the record reader

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
record_lines = st.builds(
    lambda run, attempt, metric, step, value: json.dumps(make_record(
        run_id=run, attempt=attempt, metric=metric, step=step, value=value)).encode(),
    st.sampled_from(["run-a", "run-b"]), st.sampled_from(["att-1", "att-2"]),
    st.sampled_from(["train/loss", "test/elbo", "run/complete"]), st.none() | st.integers(0, 10**6),
    st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
# Per field, values the schema forbids (missing is forbidden for every field).
FORBIDDEN = {
    "schema_version": [2, "1", 1.0, True, None], "run_id": ["", None, 3, [], {}], "attempt": ["", None, 0],
    "suite": [0, [], {}], "model": ["", None, 1.5], "objective": ["", None], "dataset": ["", None, {}],
    "seed": ["0", 1.5, True, None], "step": ["1", 0.5, False, []], "metric": ["", None, 7], "value": ["1.5", True, [1.0]],
    "unit": ["", None], "backend": [None, 1], "device": [None, []], "precision": [None, 16], "versions": ["2.4", [], None],
    "git_commit": [1, ["abc"]], "timestamp": [None, 0], "provenance": [None, "seed=0", [["seed", 0]]],
}
assert set(FORBIDDEN) == set(FIELDS)


@st.composite
def broken_record_lines(draw) -> bytes:
    record = make_record()
    field = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        del record[field]
    else:
        record[field] = draw(st.sampled_from(FORBIDDEN[field]))
    return json.dumps(record).encode()


not_record = json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode())
garbage = st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b.strip())
bad_lines = st.one_of(broken_record_lines(), not_record, garbage,
                      st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(lambda d: json.dumps(d).encode()))
lines = st.lists(st.tuples(st.just(True), record_lines) | st.tuples(st.just(False), bad_lines), max_size=8)


def read_quietly(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_records(path)


@FAST
@given(raw=st.binary(max_size=600))
def test_reader_on_arbitrary_bytes_returns_records_or_a_user_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "results.jsonl"
    path.write_bytes(raw)
    try:
        records = read_quietly(path)
    except GenbenchError as exc:
        assert str(path) in str(exc) and "line" in str(exc)
    else:
        for record in records:
            validate_record(record)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert completed_run_ids(path) <= {r["run_id"] for r in records}
    assert path.read_bytes() == raw  # reading never changes the file


@FAST
@given(parts=lines, newline_at_end=st.booleans())
def test_reader_names_the_first_bad_line(tmp_path_factory, parts, newline_at_end):
    """Built from lines known good or bad: the reader returns exactly the good records, or
    names the first bad line -- unless that is an unterminated last line (a torn write),
    which is dropped."""
    path = tmp_path_factory.mktemp("fuzz") / "results.jsonl"
    path.write_bytes(b"\n".join(line for _, line in parts) + (b"\n" if newline_at_end and parts else b""))
    bad = [i for i, (good, _) in enumerate(parts, 1) if not good]
    torn_tail = bool(bad) and bad[0] == len(parts) and not newline_at_end
    try:
        records = read_quietly(path)
    except GenbenchError as exc:
        assert bad and not torn_tail, f"refused a file of good records: {exc}"
        assert f"{path}, line {bad[0]}, " in str(exc)
    else:
        assert not bad or torn_tail, f"line {bad[0]} was accepted"
        assert records == [json.loads(line) for good, line in parts if good]


# ---------------------------------------------------------------- dataset specs

@FAST
@given(spec=st.text(max_size=40) | st.text(alphabet=" :?&=a\t", max_size=12))  # the grammar's characters
def test_parse_spec_returns_parts_or_a_data_error_and_round_trips(spec):
    try:
        parts = parse_spec(spec)
    except GenbenchError:
        return
    name, path, options = parts
    assert isinstance(name, str) and (path is None or isinstance(path, str))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in options.items())
    if name:  # (no name is refused by the registry lookup)
        assert parse_spec(format_spec(*parts)) == parts  # the canonical spec reads back the same


EMBEDDED = ["toy2d-ring8", "toy2d-grid25", "digits"]
loadable_size = st.integers(1, 300)
bad_size = st.sampled_from([0, -1, -(10**6), 10**12, 2**63, 10**30])
size_text = st.one_of(loadable_size.map(str), st.sampled_from(["8", "16", "32"]), bad_size.map(str), st.sampled_from(
    ["nan", "inf", "-inf", "1e3", "1.5", "", "  7 ", "0x10", "٣", "None", "true", "8.0", "1_0"]), st.text(max_size=6))
option_keys = st.sampled_from(["n_train", "n_test", "seed", "size", "n_train", "n_test", "seed"]) | st.text(max_size=6)
keyword_values = st.one_of(loadable_size, bad_size, st.sampled_from([8, 16, 32]), st.floats(), st.booleans(),
                           st.none(), st.lists(st.integers(0, 9), max_size=2))


def mostly(draw, usual, rare):
    """usual three times in four: a spec that is wrong everywhere only tests the first check."""
    return draw(rare if draw(st.integers(0, 3)) == 0 else usual)


@st.composite
def dataset_specs(draw) -> tuple[str, dict]:
    name = mostly(draw, st.sampled_from(EMBEDDED), st.text(max_size=10).filter(lambda n: n.strip() not in DATASETS.names()))
    path = mostly(draw, st.none(), st.text(max_size=8))
    options = draw(st.dictionaries(option_keys, size_text, max_size=3))
    query = "&".join(f"{k}={v}" for k, v in options.items())
    spec = name + (f":{path}" if path is not None else "") + (f"?{query}" if query else "")
    keywords = draw(st.dictionaries(st.sampled_from(["n_train", "n_test", "seed", "size"]), keyword_values, max_size=2))
    return spec, keywords


@settings(max_examples=60, deadline=None)
@given(case=dataset_specs())
def test_load_dataset_returns_a_dataset_or_a_user_error(case):
    spec, keywords = case
    try:
        data = load_dataset(spec, **keywords)
    except GenbenchError:
        return
    assert len(data.train) >= 1 and len(data.test) >= 1
    assert torch.isfinite(data.train.x).all() and torch.isfinite(data.test.x).all()
    again = load_dataset(data.info.spec)  # the canonical spec reproduces the data
    assert again.info.content_hash == data.info.content_hash


# ---------------------------------------------------------------- RunConfig options

RUN_FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
any_value = st.one_of(
    st.integers(), st.integers(-5, 5), st.floats(), st.booleans(), st.none(), st.text(max_size=8),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "1e-3", "0.999", "1", "-1", "auto", "cpu", "fp16", "none", "1" * 30]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@FAST
@given(values=st.dictionaries(st.sampled_from(RUN_FIELDS) | st.text(max_size=8), any_value, max_size=5))
def test_run_config_options_give_a_usable_config_or_a_config_error(values):
    values = {"model": "vae", **values}
    try:
        cfg = build_options(RunConfig, values, "the fuzzer")
    except ConfigError:
        return
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float):
            assert math.isfinite(value), f"{f.name} = {value}"
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
    np.random.RandomState(cfg.seed)  # seed_everything's seeders take it
    torch.Generator().manual_seed(cfg.seed)

