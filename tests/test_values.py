"""Value declarations (genbench/values.py): every producer declares what it records, the
declarations cover what the committed results hold, and lookups find the right producer."""

from __future__ import annotations

from pathlib import Path

import pytest

import genbench.report.producers  # noqa: F401  (imports every producer: their declarations)
from genbench.errors import ConfigError
from genbench.harness.store import read_records, record_files
from genbench.registry import METRICS
from genbench.values import VALUES, declare_values, direction, producer_of, value_spec

REPO = Path(__file__).resolve().parents[1]


def committed_records() -> list[dict]:
    folders = sorted({f.parent for f in (REPO / "results").rglob("results.jsonl*")})
    benchmarks = sorted((REPO / "results").glob("eval-bench/*/*.jsonl"))  # the evaluation benchmark's timings
    files = [f for folder in folders for f in record_files(folder)] + benchmarks
    return [r for f in files for r in read_records(f)]


def test_every_metric_declares_its_values():
    for name in METRICS.names():
        declared = VALUES.get(name)
        assert declared.values and not declared.by_name, name
        assert declared.spec(f"{name}/failed").direction == "neither"  # register_metric adds it


def test_every_committed_value_is_declared_with_the_unit_it_carries():
    """The declarations against what the producers actually wrote: every (metric, unit) in
    the committed results has a producer and a spec whose unit pattern matches."""
    seen = {(r["metric"], r["unit"], (r.get("provenance") or {}).get("metric_fn")) for r in committed_records()}
    assert len(seen) > 150  # every committed folder was read
    missing = [(m, u, fn) for m, u, fn in seen
               if not (spec := value_spec(m, {"metric_fn": fn} if fn else {})) or not spec.unit_matches(u)]
    assert not missing, sorted(missing)


@pytest.mark.parametrize("metric, producer", [
    ("time/train", "runner"),  # the runner's exact phase name before the evaluation benchmark's pattern
    ("time/metric quality", "eval-benchmark"),
    ("perf/train_throughput", "runner"), ("train/d_loss", "runner"), ("fwd_bwd/time", "kernel-bench"),
    ("stability/fid", "quality-probe"), ("stability/failed", "stability-monitor"),
    ("quality/fid", None),  # a metric's value is found by its metric_fn, never by name
])
def test_records_without_metric_fn_are_found_by_name(metric, producer):
    found = producer_of(metric, {})
    assert (found.name if found else None) == producer


def test_metric_records_are_found_by_metric_fn():
    assert producer_of("quality/fid", {"metric_fn": "quality"}).name == "quality"
    assert producer_of("quality/fid", {"metric_fn": "swd"}).spec("quality/fid") is None  # swd does not declare it
    assert producer_of("quality/fid", {"metric_fn": "not-registered-here"}) is None  # unknown origin
    assert direction("quality/fid", "fid", {"metric_fn": "not-registered-here"}) == -1  # falls back by name


@pytest.mark.parametrize("values, conditions, outcomes, message", [
    ({"x/y": ("better", "u", "m")}, (), (), "not one of higher, lower, neither"),
    ({"x/y": ("higher", "u", "m")}, ("n",), ("n",), "both conditions and outcomes"),
])
def test_bad_declarations_are_refused(values, conditions, outcomes, message):
    with pytest.raises(ConfigError, match=message):
        declare_values("test-bad-declaration", values, conditions=conditions, outcomes=outcomes)
    assert "test-bad-declaration" not in VALUES


def test_a_producer_name_is_declared_once():
    with pytest.raises(ConfigError, match="already has an entry named 'runner'"):
        declare_values("runner", {"perf/x": ("higher", "u", "m")})
