"""`genbench compare A B`: per-metric deltas of a candidate (B) against a baseline (A).

Why a module of its own: a reader of two result folders wants to know which numbers moved
beyond their noise, in which direction that is good or bad, and whether the two sets were
measured under the same conditions at all. The rules (docs/running.md, `genbench compare`;
docs/evaluation.md, Traps):

- Only numbers measured under the same conditions are compared. A group is every record
  field that describes the run (GROUP: model, objective, dataset, precision, backend,
  device) plus metric and unit, plus the provenance entries that make a number comparable.
  Which entries those are, each producer declares where it registers its values
  (genbench/values.py: a metric's `conditions` and `outcomes`); an entry it declares neither
  is a condition when it is constant within each side of a group, an outcome (ignored) when
  it varies between the seeds of one side. Records of unknown origin use every producer's
  declarations. Groups that differ in any condition are never pooled; a group found on one
  side only is listed with the conditions that differ.
- Run settings are conditions too: every setting that can change a number (the run's
  RESULT_SETTINGS from its `run/complete` record, genbench/harness/settings.py, and its
  trainer options), so two folders that differ in lr are refused, naming the difference.
  `--across KEY` (compare_paths' `across`) compares two values of one such setting instead:
  the records of both folders are split by KEY's value (the baseline is the value folder A
  holds), KEY is left out of the group key, and every other condition must still match.
- A quality number is a distribution over seeds: each side's values over seeds (kernel
  benchmarks: repeated records) are the samples; the noise band of the difference of
  means is a percentile bootstrap interval (scipy.stats.bootstrap). With one value per
  side there is no noise estimate unless the record carries its own timing quantiles.
- Each value's direction (lower or higher is better, or neither) is its producer's
  declaration; a value of unknown direction is shown as a change, never a regression.

Only end-of-run records (step None) are compared; training curves and `run/complete`
markers are not. Records of interrupted attempts are left out (store.completed_records),
except in files that never carry completion markers (kernel benchmarks).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from scipy import stats
from tabulate import tabulate

from genbench.errors import GenbenchError
from genbench.harness.settings import RESULT_SETTINGS
from genbench.harness.store import (COMPLETE_METRIC, RESULTS_FILE, START_METRIC, completed_records, read_records,
                                   record_files)
from genbench.report.producers import Producer, producer_of, producers, sign_of
from genbench.report.base import IDENTITY as GROUP
from genbench.report.tables import fmt, versions_text

RECORD_KEYS = [*GROUP, "metric", "unit"]
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same folders always give the same intervals
CONFIDENCE = 0.95

# Provenance entries any record may carry as an outcome: store.sanitize_value flags a NaN/Inf.
STORE_OUTCOMES = frozenset({"nonfinite"})

# Run-level conditions from each run's `run/complete` record: every setting that can change a
# number (settings.RESULT_SETTINGS, derived from RunConfig) and the trainer options, then the
# data's content hash (the labels name model and objective options, not these).
RUN_CONFIG_CONDITIONS = (*RESULT_SETTINGS, "trainer_options")
ACROSS_CHOICES = RUN_CONFIG_CONDITIONS  # what --across KEY may name
RUN_CONDITIONS_FIELD = "_run_conditions"  # where load_side attaches them to each compared record
PRODUCER_FIELD = "_producer"  # where load_side attaches each compared record's declared producer

RATE_UNITS = frozenset({"examples/s", "samples/s", "TFLOP/s", "GB/s"})  # inverse of a time

REGRESSED, IMPROVED, CHANGED = "REGRESSION", "improvement", "changed (no better direction)"
NO_ESTIMATE, WITHIN_NOISE, IDENTICAL = "no noise estimate", "within noise", "identical"
VERDICT_ORDER = [REGRESSED, CHANGED, IMPROVED, NO_ESTIMATE, WITHIN_NOISE, IDENTICAL]
UNCHANGED = (WITHIN_NOISE, IDENTICAL)
KERNEL_HEADERS = {"model": "op", "objective": "provider", "dataset": "case"}


# ---------------------------------------------------------------- loading


@dataclass
class Side:
    """One side of the comparison: its records and where they came from."""

    label: str  # "A" (baseline) or "B" (candidate)
    path: Path  # the results file (a folder holding both results.jsonl.gz and results.jsonl)
    records: list[dict[str, Any]]  # every record of completed attempts (markers included)
    final: list[dict[str, Any]]  # the end-of-run records that are compared
    dropped_runs: int  # runs left out because no attempt of theirs completed
    markerless: bool  # a file without completion markers (kernel benchmarks)
    selection: str = ""  # with --across: which runs this side holds, e.g. "lr = 0.0003"

    @property
    def kernel_only(self) -> bool:
        return all(r.get("suite") == "kernels" for r in self.final)


def results_file(path: str | Path) -> Path:
    """The results behind a folder or file argument (a folder: its results.jsonl, or the
    committed results.jsonl.gz, or both), with a fix when there are none."""
    path = Path(path)
    if path.is_dir():
        files = [f for f in record_files(path) if f.is_file()]
        if not files:
            raise GenbenchError(
                f"{path} is a folder without {RESULTS_FILE}: pass a result folder written by "
                "`genbench run` or `genbench kernels` (results/<suite>/<stamp>-<host>/), or a "
                ".jsonl file of records such as a saved kernel baseline."
            )
        return files[0] if len(files) == 1 else path  # both: the folder, read as one
    if path.is_file():
        return path
    raise GenbenchError(
        f"{path} does not exist: pass a result folder holding {RESULTS_FILE}, or a .jsonl file of records."
    )


def load_side(path: str | Path, label: str) -> Side:
    """Completed records of one side; kernel-benchmark files carry no completion markers
    (every op's records are appended in one write), so all their records count."""
    file = results_file(path)
    records = read_records(file)
    markerless = not any(r.get("metric") == COMPLETE_METRIC for r in records)
    kept = records if markerless else completed_records(records)
    dropped = len({r.get("run_id") for r in records} - {r.get("run_id") for r in kept})
    final = [r for r in kept if r.get("step") is None and r.get("metric") not in (COMPLETE_METRIC, START_METRIC)]
    by_run = run_conditions(kept)
    for r in final:
        r[RUN_CONDITIONS_FIELD] = by_run.get((r.get("run_id"), r.get("attempt")), ())
        r[PRODUCER_FIELD] = producer_of(r["metric"], r.get("provenance"))
    if not final:
        raise GenbenchError(
            f"{file} holds no end-of-run records of a completed run: every run there was "
            "interrupted (rerun the suite with the same --out to resume) or the file is empty."
        )
    return Side(label, file, kept, final, dropped, markerless)


def run_conditions(records: list[dict[str, Any]]) -> dict[tuple, tuple[tuple[str, str], ...]]:
    """Per (run_id, attempt), the budget and data hash recorded in its completion marker."""
    out = {}
    for r in records:
        if r.get("metric") != COMPLETE_METRIC:
            continue
        prov = r.get("provenance") or {}
        config = (prov.get("config") or {}).get("run") or {}
        # None and {} mean "the defaults": left out, so that files from before a field existed still match
        items = [(f"run.{k}", canonical(config[k])) for k in RUN_CONFIG_CONDITIONS if config.get(k) not in (None, {})]
        data_hash = (prov.get("dataset") or {}).get("content_hash")
        if data_hash is not None:
            items.append(("data.content_hash", canonical(data_hash)))
        out[(r.get("run_id"), r.get("attempt"))] = tuple(items)
    return out


# ---------------------------------------------------------------- grouping


@dataclass(frozen=True)
class Key:
    """What makes numbers comparable: the record fields and the conditions."""

    fields: tuple[str, ...]  # values of RECORD_KEYS
    conditions: tuple[tuple[str, str], ...]  # (provenance key, canonical JSON value), sorted
    producer: Producer | None = field(default=None, compare=False)  # who declared the value; None: unknown

    def get(self, name: str) -> str:
        return self.fields[RECORD_KEYS.index(name)]

    @property
    def metric(self) -> str:
        return self.get("metric")

    @property
    def unit(self) -> str:
        return self.get("unit")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def base_fields(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(record.get(k)) for k in RECORD_KEYS)


def declared_keys(producer: Producer | None) -> tuple[frozenset[str], frozenset[str]]:
    """(conditions, outcomes): the provenance keys a producer declares for its records; for
    records of unknown origin every producer's (a key one declares a condition is one)."""
    if producer is not None:
        return producer.conditions, producer.outcomes | STORE_OUTCOMES
    conditions = frozenset().union(*(p.conditions for p in producers()))
    outcomes = frozenset().union(*(p.outcomes for p in producers()))
    return conditions, (outcomes - conditions) | STORE_OUTCOMES


def known_conditions(record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    conditions, _ = declared_keys(record[PRODUCER_FIELD])
    own = [(k, canonical(v)) for k, v in (record.get("provenance") or {}).items() if k in conditions]
    return tuple(sorted(own + list(record.get(RUN_CONDITIONS_FIELD, ()))))


def unclassified(record: dict[str, Any]) -> dict[str, str]:
    """Provenance entries the record's producer declares neither conditions nor outcomes."""
    conditions, outcomes = declared_keys(record[PRODUCER_FIELD])
    return {k: canonical(v) for k, v in (record.get("provenance") or {}).items()
            if k not in conditions and k not in outcomes}


def outcome_keys(sides: list[Side]) -> dict[tuple, set[str]]:
    """Per base group, the unclassified provenance keys whose value varies between the
    records of one side (absent counts as a value): outcomes of each seed, left out of
    the key. The union over both sides, so that both sides key a group alike."""
    members: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for side in sides:
        for r in side.final:
            members[(side.label, base_fields(r), known_conditions(r))].append(unclassified(r))
    varying: dict[tuple, set[str]] = defaultdict(set)
    for (_, fields, conditions), extras in members.items():
        for k in set().union(*extras):
            if len({extra.get(k, "(absent)") for extra in extras}) > 1:
                varying[(fields, conditions)].add(k)
    return varying


def record_key(record: dict[str, Any], varying: dict[tuple, set[str]]) -> Key:
    fields, conditions = base_fields(record), known_conditions(record)
    skip = varying.get((fields, conditions), set())
    extra = tuple((k, v) for k, v in unclassified(record).items() if k not in skip)
    return Key(fields, tuple(sorted(conditions + extra)), record[PRODUCER_FIELD])


# ---------------------------------------------------------------- samples and statistics


@dataclass
class Sample:
    """One side's numbers for a group: finite values, and per-record timing bands."""

    values: list[float] = field(default_factory=list)
    nonfinite: int = 0  # values recorded as None (NaN/Inf, a failed measurement)
    bands: list[tuple[float, float] | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None


def time_index(records: Iterable[dict[str, Any]]) -> dict[tuple, float]:
    """Median ms of each kernel-benchmark timing, by (run_id, attempt, mode): the time that
    the mode's GB/s, TFLOP/s and examples/s records were computed from."""
    return {(r["run_id"], r["attempt"], r["metric"].rsplit("/", 1)[0]): r["value"]
            for r in records if r["metric"].endswith("/time") and r.get("unit") == "ms" and r.get("value")}


def quantile_band(record: dict[str, Any], times: dict[tuple, float]) -> tuple[float, float] | None:
    """The value's own 20-80% band from the timing quantiles recorded with it, or None.

    Kernel timings carry q20_ms/q80_ms around their median; throughputs carry the quantiles
    of the step/batch/call time they divide by. A rate is inversely proportional to the
    time, so its band is value * median / q80 .. value * median / q20."""
    prov, value, unit = record.get("provenance") or {}, record["value"], record.get("unit")
    if "q20_ms" in prov and "q80_ms" in prov:
        if unit == "ms":
            return float(prov["q20_ms"]), float(prov["q80_ms"])
        median = times.get((record["run_id"], record["attempt"], record["metric"].rsplit("/", 1)[0]))
        quantiles = {"median": median, "q20": prov["q20_ms"], "q80": prov["q80_ms"]} if median else None
    else:
        quantiles = next((prov[k] for k in ("step_seconds", "batch_seconds", "call_seconds")
                          if isinstance(prov.get(k), dict)), None)
    if unit not in RATE_UNITS or not quantiles or not all(quantiles.get(q) for q in ("median", "q20", "q80")):
        return None
    return value * quantiles["median"] / quantiles["q80"], value * quantiles["median"] / quantiles["q20"]


def bootstrap_interval(a: list[float], b: list[float], resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(b) - mean(a) (scipy.stats.bootstrap): seeds
    resampled with replacement within each side, independently. The same generator seed for
    every group, so a group's interval does not depend on which other groups were compared."""
    samples = (np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    result = stats.bootstrap(samples, difference_of_means, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", paired=False, vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def difference_of_means(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def band_interval(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Differences between B's and A's 20-80% bands: excludes zero iff they do not overlap."""
    return b[0] - a[1], b[1] - a[0]


@dataclass
class Row:
    """One (group, metric) present on both sides, with its delta and verdict."""

    key: Key
    a: Sample
    b: Sample
    direction: int
    interval: tuple[float, float] | None
    method: str  # "bootstrap", "q20-q80", or why there is no interval

    @property
    def delta(self) -> float | None:
        """mean(B) - mean(A); 0 when the means agree to rounding (the same values summed in
        another order must read as identical, not as a 4e-16 change)."""
        if self.a.mean is None or self.b.mean is None:
            return None
        return 0.0 if math.isclose(self.a.mean, self.b.mean, rel_tol=1e-12) else self.b.mean - self.a.mean

    @property
    def rel_pct(self) -> float | None:
        """Relative delta in % of |mean(A)|; None when A's mean is 0 or missing."""
        if self.delta is None or not self.a.mean:
            return None
        return 100.0 * self.delta / abs(self.a.mean)

    @property
    def verdict(self) -> str:
        if self.a.n == 0 and self.b.n == 0:
            return IDENTICAL if self.a.nonfinite == self.b.nonfinite else NO_ESTIMATE
        if self.delta == 0 and self.a.nonfinite == self.b.nonfinite:
            return IDENTICAL
        if self.interval is None:
            return NO_ESTIMATE
        lo, hi = self.interval
        if lo <= 0 <= hi:
            return WITHIN_NOISE
        if self.direction == 0:
            return CHANGED
        return IMPROVED if (lo > 0) == (self.direction > 0) else REGRESSED

    @property
    def badness_pct(self) -> float:
        """How much worse B is, in % of |mean(A)| (negative: better); inf from a zero baseline."""
        if self.delta is None or self.direction == 0:
            return 0.0
        rel = self.rel_pct
        if rel is None:
            return math.inf if self.delta * self.direction < 0 else -math.inf
        return -rel * self.direction


def make_row(key: Key, a: Sample, b: Sample) -> Row:
    """Pick the noise estimate the samples allow: bootstrap over seeds, else the records'
    own timing quantiles (one record per side), else none."""
    if a.n >= 2 and b.n >= 2:
        interval, method = bootstrap_interval(a.values, b.values), "bootstrap"
    elif a.n == 1 and b.n == 1 and a.bands[0] and b.bands[0]:
        interval, method = band_interval(a.bands[0], b.bands[0]), "q20-q80"
    elif a.n == 0 or b.n == 0:
        missing = ", ".join(s for s, x in (("A", a), ("B", b)) if x.n == 0)
        interval, method = None, f"no finite values in {missing}"
    else:
        interval, method = None, "n=1, no interval"
    return Row(key, a, b, sign_of(key.producer, key.metric, key.unit), interval, method)


# ---------------------------------------------------------------- comparison


@dataclass
class Unmatched:
    side: str  # "A" or "B": where the group was found
    key: Key
    reason: str


@dataclass
class Comparison:
    a: Side
    b: Side
    rows: list[Row]
    unmatched: list[Unmatched]

    def count(self, *verdicts: str) -> int:
        return sum(r.verdict in verdicts for r in self.rows)

    def failures(self, fail_above_pct: float) -> list[Row]:
        """Significant regressions worse than fail_above_pct percent of A's mean."""
        return [r for r in self.rows if r.verdict == REGRESSED and r.badness_pct > fail_above_pct]

    def summary(self) -> str:
        only_a = sum(u.side == "A" for u in self.unmatched)
        return (f"compared {len(self.rows)}: {self.count(IMPROVED)} improved, {self.count(REGRESSED)} "
                f"regressed, {self.count(*UNCHANGED)} unchanged, {self.count(CHANGED)} changed "
                f"(no better direction), {self.count(NO_ESTIMATE)} without a noise estimate; "
                f"only in A: {only_a}, only in B: {len(self.unmatched) - only_a}")


def collect(sides: list[Side]) -> dict[str, dict[Key, Sample]]:
    """Samples per side and group."""
    varying = outcome_keys(sides)
    by_side: dict[str, dict[Key, Sample]] = {}
    for side in sides:
        times, groups = time_index(side.final), defaultdict(Sample)
        for r in side.final:
            sample = groups[record_key(r, varying)]
            if r["value"] is None:
                sample.nonfinite += 1
                continue
            sample.values.append(float(r["value"]))
            sample.bands.append(quantile_band(r, times))
        by_side[side.label] = dict(groups)
    return by_side


def compare(a: Side, b: Side) -> Comparison:
    """Rows for the groups on both sides, and the reason for every group on one side only."""
    groups = collect([a, b])
    ga, gb = groups["A"], groups["B"]
    rows = [make_row(k, ga[k], gb[k]) for k in ga.keys() & gb.keys()]
    unmatched = [Unmatched("A", k, why_unmatched(k, "A", gb)) for k in ga.keys() - gb.keys()]
    unmatched += [Unmatched("B", k, why_unmatched(k, "B", ga)) for k in gb.keys() - ga.keys()]
    rows.sort(key=row_order)
    unmatched.sort(key=lambda u: (u.side, u.key.fields, u.key.conditions))
    return Comparison(a, b, rows, unmatched)


def compare_paths(baseline: str | Path, candidate: str | Path, across: str | None = None) -> Comparison:
    a, b = load_side(baseline, "A"), load_side(candidate, "B")
    if across is not None:
        a, b = split_across(a, b, across)
    return compare(a, b)


ABSENT = "(absent)"


def across_value(record: dict[str, Any], condition: str) -> str:
    return dict(record.get(RUN_CONDITIONS_FIELD, ())).get(condition, ABSENT)


def value_order(text: str) -> tuple:
    """Numbers by value, then anything else by its text."""
    try:
        return 0, float(json.loads(text)), text
    except (ValueError, TypeError):
        return 1, 0.0, text


def split_across(a: Side, b: Side, key: str) -> tuple[Side, Side]:
    """`--across KEY`: the completed runs of both folders (one folder when both name the same
    file) split by the value of run setting KEY into a baseline side A and a candidate side B,
    with KEY left out of their conditions so that their groups pair up; every other condition
    must still match. There must be exactly two values; the baseline is the value folder A
    holds when it holds one, else the smaller."""
    if key not in ACROSS_CHOICES:
        raise GenbenchError(f"--across {key}: not a run setting that keys results; choose one of "
                            f"{', '.join(ACROSS_CHOICES)}.")
    condition = f"run.{key}"
    sources = [a] if a.path.resolve() == b.path.resolve() else [a, b]
    values = sorted({across_value(r, condition) for s in sources for r in s.final}, key=value_order)
    if len(values) != 2:
        where = " and ".join(str(s.path) for s in sources)
        shown = ", ".join(short(v, 40) for v in values)
        held = f"hold{'s' if len(sources) == 1 else ''} {len(values)} value{'s' if len(values) != 1 else ''}"
        raise GenbenchError(f"--across {key} compares two values of {key}, but {where} {held} of it ({shown}): "
                            f"pass folders whose runs hold exactly two values of {key}.")
    own = {across_value(r, condition) for r in a.final}
    baseline = next(iter(own)) if len(own) == 1 else values[0]
    candidate = next(v for v in values if v != baseline)
    return (select_side(sources, "A", condition, baseline, key),
            select_side(sources, "B", condition, candidate, key))


def select_side(sources: list[Side], label: str, condition: str, value: str, key: str) -> Side:
    """The records of `sources` whose runs ran with `condition` = `value`, without it."""
    final = []
    for side in sources:
        for r in side.final:
            if across_value(r, condition) == value:
                r = dict(r)
                r[RUN_CONDITIONS_FIELD] = tuple(c for c in r.get(RUN_CONDITIONS_FIELD, ()) if c[0] != condition)
                final.append(r)
    runs = {(r.get("run_id"), r.get("attempt")) for r in final}
    records = [r for side in sources for r in side.records if (r.get("run_id"), r.get("attempt")) in runs]
    paths = sorted({str(side.path) for side in sources
                    if any((r.get("run_id"), r.get("attempt")) in runs for r in side.final)})
    return Side(label, Path(" + ".join(paths)), records, final, sum(s.dropped_runs for s in sources),
                all(s.markerless for s in sources), selection=f"{key} = {value}")


def row_order(row: Row) -> tuple:
    rank = VERDICT_ORDER.index(row.verdict)
    worst = -row.badness_pct if row.verdict == REGRESSED else -abs(row.rel_pct or 0.0)
    return rank, worst, row.key.fields, row.key.conditions


def differences(key: Key, other: Key, side: str) -> list[str]:
    """The fields and conditions in which two groups differ, as `name: A=.., B=..`."""
    mine = dict(zip(RECORD_KEYS, key.fields)) | dict(key.conditions)
    theirs = dict(zip(RECORD_KEYS, other.fields)) | dict(other.conditions)
    out = []
    for name in [*RECORD_KEYS, *sorted((set(mine) | set(theirs)) - set(RECORD_KEYS))]:
        x, y = mine.get(name, "(absent)"), theirs.get(name, "(absent)")
        if x != y:
            va, vb = (x, y) if side == "A" else (y, x)
            out.append(f"{name}: A={short(va)}, B={short(vb)}")
    return out


def why_unmatched(key: Key, side: str, other: dict[Key, Sample]) -> str:
    """Name the conditions that differ from the closest group of the other side with the
    same model, objective, dataset and metric; else say that the other side lacks it."""
    other_side = "B" if side == "A" else "A"
    same = ("model", "objective", "dataset", "metric")
    candidates = [k for k in other if all(k.get(f) == key.get(f) for f in same)]
    if not candidates:
        runs = [k for k in other if all(k.get(f) == key.get(f) for f in same[:3])]
        return (f"metric not recorded in {other_side}" if runs
                else f"no run of this model/objective/dataset in {other_side}")
    diffs = min((differences(key, k, side) for k in candidates), key=len)
    settings = [d.split(":", 1)[0][len("run."):] for d in diffs if d.startswith("run.")]
    hint = f" (to compare them, add --across {settings[0]})" if len(settings) == 1 and len(diffs) == 1 else ""
    return "conditions differ: " + "; ".join(diffs) + hint


def short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------- rendering


def signed(x: float) -> str:
    return ("+" if x > 0 else "") + fmt(x)


def cell(sample: Sample) -> str:
    text = f"{fmt(sample.mean)} (n={sample.n})" if sample.n else "(n=0)"
    return text + (f" +{sample.nonfinite} non-finite" if sample.nonfinite else "")


def interval_cell(row: Row) -> str:
    if row.interval is None:
        return row.method
    lo, hi = row.interval
    return f"[{signed(lo)}, {signed(hi)}]" + (" q20-q80" if row.method == "q20-q80" else "")


def rel_cell(row: Row) -> str:
    if row.delta is None:
        return ""
    return "n/a (A mean 0)" if row.rel_pct is None else f"{row.rel_pct:+.1f}%"


def distinguishing(keys: list[Key]) -> dict[Key, str]:
    """For groups that look alike in the table's columns, the conditions that tell them apart."""
    buckets: dict[tuple, list[Key]] = defaultdict(list)
    for k in keys:
        buckets[k.fields].append(k)
    out = {}
    for bucket in buckets.values():
        if len(bucket) < 2:
            continue
        names = {n for k in bucket for n, _ in k.conditions}
        varying = sorted(n for n in names if len({dict(k.conditions).get(n) for k in bucket}) > 1)
        for k in bucket:
            out[k] = ", ".join(f"{n}={short(dict(k.conditions).get(n, '(absent)'), 40)}" for n in varying)
    return out


def label_columns(keys: list[Key]) -> tuple[list[str], dict[str, str]]:
    """The GROUP fields that vary across the rows (shown as columns) and those that do not
    (stated once above the table)."""
    varying, common = [], {}
    for name in GROUP:
        values = {k.get(name) for k in keys}
        if len(values) > 1:
            varying.append(name)
        else:
            common[name] = next(iter(values))
    return varying, common


def better(row: Row) -> str:
    """The declared direction, or the fallback's guess for a value of unknown origin."""
    spec = row.key.producer.spec(row.key.metric) if row.key.producer else None
    return spec.direction if spec else {1: "higher", -1: "lower", 0: "?"}[row.direction]


def rows_table(rows: list[Row], headers: dict[str, str]) -> str:
    keys = [r.key for r in rows]
    varying, common = label_columns(keys)
    extra = distinguishing(keys)
    table = []
    for r in rows:
        line = {headers.get(n, n): r.key.get(n) for n in varying}
        line |= {"metric": r.key.metric, "unit": r.key.unit, "better": better(r),
                 "A mean (n)": cell(r.a), "B mean (n)": cell(r.b),
                 "Δ": "" if r.delta is None else signed(r.delta), "Δ %": rel_cell(r),
                 "Δ interval": interval_cell(r), "verdict": r.verdict}
        if extra:
            line["conditions"] = extra.get(r.key, "")
        table.append(line)
    same = "Same in every row: " + "; ".join(f"{headers.get(n, n)} = {v}" for n, v in common.items())
    body = tabulate(table, headers="keys", tablefmt="github", disable_numparse=True)
    return f"{same}\n\n{body}" if common else body


def unmatched_table(comparison: Comparison, headers: dict[str, str]) -> str:
    """Groups of one side only, gathered per run configuration with the metrics' reasons."""
    configs: dict[tuple, list[Unmatched]] = defaultdict(list)
    for u in comparison.unmatched:
        configs[(u.side, *(u.key.get(n) for n in GROUP))].append(u)
    table = []
    for (side, *values), items in sorted(configs.items()):
        reasons = Counter(u.reason for u in items).most_common()
        shown = "; ".join(f"{why} ({n} metrics)" if n > 1 else why for why, n in reasons[:3])
        more = f"; +{len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
        table.append({"only in": side, **{headers.get(n, n): v for n, v in zip(GROUP, values)},
                      "metrics": len(items), "why not compared": shown + more})
    return tabulate(table, headers="keys", tablefmt="github", disable_numparse=True)


def side_provenance(side: Side) -> dict[str, str]:
    records = side.records
    stamps = sorted(str(r["timestamp"]) for r in records if r.get("timestamp"))
    runs = f"{len({r['run_id'] for r in records})}"
    if side.dropped_runs:
        runs += f" ({side.dropped_runs} interrupted, left out)"
    return {
        "side": f"{side.label} ({'baseline' if side.label == 'A' else 'candidate'})",
        "results": str(side.path) + (f" (runs with {side.selection})" if side.selection else ""),
        "suites": ", ".join(sorted({str(r.get("suite")) for r in records})),
        "runs": runs + (" (no completion markers: all records)" if side.markerless else ""),
        "devices": "; ".join(sorted({str(r.get("device")) for r in records})),
        "versions": "; ".join(sorted({versions_text(r.get("versions") or {}) for r in records})),
        "git commits": ", ".join(sorted({str(r.get("git_commit")) for r in records})),
        "measured": f"{stamps[0]} .. {stamps[-1]}" if stamps else "",
    }


def provenance_section(comparison: Comparison) -> str:
    """Where each side's numbers came from, and which of those differ between sides."""
    pa, pb = side_provenance(comparison.a), side_provenance(comparison.b)
    lines = [f"| | {pa['side']} | {pb['side']} |", "|---|---|---|"]
    lines += [f"| {k} | {pa[k]} | {pb[k]} |" for k in pa if k != "side"]
    differ = [k for k in ("devices", "versions", "git commits") if pa[k] != pb[k]]
    note = (f"\n\nDiffer between A and B: {', '.join(differ)}." if differ
            else "\n\nSame devices, versions and git commits on both sides.")
    return "\n".join(lines) + note


def method_note() -> str:
    return (
        "Method: per group (the fields above, metric, unit, and the provenance that makes numbers "
        "comparable, as each value's producer declares it: sample counts, extractor and weights hash, "
        "estimator, sampler, kernel case ...), "
        "each side's end-of-run values over seeds (kernel benchmarks: repeated records). "
        "Δ = mean(B) − mean(A); Δ % = Δ / |mean(A)|. Δ interval: with n ≥ 2 on both sides, the "
        f"{100 * CONFIDENCE:.0f}% percentile bootstrap interval of the difference of means "
        f"({BOOTSTRAP_RESAMPLES:,} resamples of the seeds within each side: scipy.stats.bootstrap, "
        f"rng numpy default_rng({BOOTSTRAP_SEED})); "
        "with n = 1 on both sides and timing quantiles in the records, `q20-q80` = [B.q20 − A.q80, "
        "B.q80 − A.q20], which excludes 0 only when the two 20–80% ranges of the repetitions do not "
        "overlap; otherwise none (n=1, no interval). A change is significant when its interval excludes "
        "0: a REGRESSION or an improvement by the direction the value's producer declares (`better`; "
        "`?`: a value of unknown origin whose direction no declaration or unit tells), a change when "
        "better is neither or unknown. With few seeds the bootstrap interval is a noise band, not a calibrated "
        "test (n = 2: the range of the pairwise differences, significant only when the two sides' values "
        "do not overlap)."
    )


def across_note(comparison: Comparison) -> str:
    """Where groups were refused for a run setting (run.KEY), how to compare that setting."""
    keys = sorted({part.split(":", 1)[0].strip()[len("run."):] for u in comparison.unmatched
                   for part in u.reason.removeprefix("conditions differ: ").split("; ") if part.startswith("run.")})
    if not keys:
        return ""
    return (f"\n\nGroups that differ in a run setting ({', '.join(keys)}) are not pooled or paired: to compare "
            f"two values of one setting, rerun with `--across KEY` (e.g. `genbench compare A B --across {keys[0]}`), "
            "which pairs the groups across that setting with the same bootstrap interval.")


def render(comparison: Comparison, changed_only: bool = False) -> str:
    """The whole comparison as markdown (what stdout shows and --markdown writes)."""
    kernel = comparison.a.kernel_only and comparison.b.kernel_only
    headers = KERNEL_HEADERS if kernel else {}
    rows = [r for r in comparison.rows if not (changed_only and r.verdict in UNCHANGED)]
    a, b = comparison.a, comparison.b
    parts = [
        f"# genbench compare\n\nA (baseline): {a.path}" + (f", runs with {a.selection}" if a.selection else "")
        + f"\n\nB (candidate): {b.path}" + (f", runs with {b.selection}" if b.selection else ""),
        "## Provenance\n\n" + provenance_section(comparison),
        "## Deltas (regressions first)\n\n" + (rows_table(rows, headers) if rows else "(no rows to show)")
        + (f"\n\n{comparison.count(*UNCHANGED)} unchanged rows hidden (--changed-only)." if changed_only else ""),
        method_note(),
    ]
    if comparison.unmatched:
        parts.append("## Only in one side (not compared)\n\n" + unmatched_table(comparison, headers)
                     + across_note(comparison))
    parts.append("Summary: " + comparison.summary())
    return "\n\n".join(parts) + "\n"
