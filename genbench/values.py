"""What each recorded value means, declared once where it is produced.

Every record's value has a producer: a registered metric (its records carry
provenance["metric_fn"] = the metric's name; metrics declare through register_metric), or
code that records values itself and declares them with `declare_values` beside that code --
the runner (perf/*, time/*, run/*, train/*: harness/runner.py), the evaluation benchmark
(harness/eval_benchmark.py), the adversarial trainer's stability monitor (stability/*:
train/stability.py) and its quality probe (metrics/monitor.py), the kernel benchmarks
({fwd,bwd,fwd_bwd}/time ...: kernelbench/base.py). A producer declares

- values: per value-name pattern (fnmatch on the metric name: "quality/fid",
  "sampler/fid@*"), a ValueSpec: direction ("higher" or "lower" is better, or "neither"),
  unit (as the records carry it; a pattern where it varies, "modes of *"), a one-line
  meaning and, optionally, how a report pools the seeds ("mean", or "fisher" for p-values)
  and the scale it shows the value at (KID x1000);
- conditions: provenance keys that are conditions of comparability -- numbers that differ in
  one of them are never compared or pooled (sample counts, extractor, estimator, ...);
- outcomes: provenance keys that are outcomes of one measurement (per-seed counts, timing
  quantiles, ...), never conditions;
- section: the title of the report section its values get to themselves (None: a table in
  the report's Results).

Lookup is by (producer, metric name): `producer_of` finds the producer of a record -- its
metric_fn's declaration, else, for records without metric_fn, the producer that declares
the name (an exact name before a pattern) -- and `value_spec` the spec. Records of unknown
origin (older records without metric_fn, or a newer genbench's producer not registered
here) get their direction from `fallback_direction`: the declarations whose pattern matches
the name, where they all agree, else FALLBACK_UNIT_DIRECTION.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Iterable, Mapping

from genbench.errors import ConfigError
from genbench.registry import Registry

SIGNS = {"higher": +1, "lower": -1, "neither": 0}
POOLINGS = ("mean", "fisher")

# Records of unknown origin whose name no declaration matches: the units whose direction no
# declared value contradicts (a time, a memory size, a rate). Any other unit: neither (a
# compared change is shown as a change, never as a regression).
FALLBACK_UNIT_DIRECTION = {"ms": -1, "s": -1, "bytes": -1, "examples/s": +1, "samples/s": +1,
                           "TFLOP/s": +1, "GB/s": +1}


@dataclass(frozen=True)
class ValueSpec:
    """One declared value (or family of values, by name pattern)."""

    pattern: str  # fnmatch pattern on the metric name, e.g. "sampler/fid@*"
    direction: str  # "higher" | "lower" | "neither" (is better)
    unit: str  # as records carry it; fnmatch pattern where it varies ("modes of *")
    meaning: str  # one line
    # How a report cell combines the seeds: "mean" (mean ± std), or "fisher" for p-values,
    # which are never averaged: Fisher's combined p over the seeds, then each seed's.
    pooling: str = "mean"
    shown_scale: float = 1.0  # reports show value x shown_scale (KID x1e3, as papers print it)

    def __post_init__(self):
        if self.direction not in SIGNS:
            raise ConfigError(f"value {self.pattern!r}: direction {self.direction!r} is not one of "
                              f"{', '.join(SIGNS)}; declare which way the value is better, or 'neither'.")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"value {self.pattern!r}: pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}.")

    @property
    def sign(self) -> int:
        """+1 higher is better, -1 lower is better, 0 neither."""
        return SIGNS[self.direction]

    @property
    def exact(self) -> bool:
        return not any(c in self.pattern for c in "*?[")

    def matches(self, metric: str) -> bool:
        return fnmatchcase(metric, self.pattern)

    def unit_matches(self, unit: str) -> bool:
        return fnmatchcase(unit, self.unit)


@dataclass(frozen=True)
class Producer:
    """What one producer records: its values, and which provenance keys condition them."""

    name: str
    values: tuple[ValueSpec, ...]
    conditions: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()
    section: str | None = None  # report section of its own; None: a table in Results
    by_name: bool = True  # its records carry no metric_fn: recognised by the value's name

    def spec(self, metric: str) -> ValueSpec | None:
        """The first declared value whose pattern matches `metric`."""
        return next((s for s in self.values if s.matches(metric)), None)


VALUES: Registry[Producer] = Registry("value producers")


def value_specs(values: Mapping[str, tuple]) -> tuple[ValueSpec, ...]:
    """{pattern: (direction, unit, meaning[, pooling[, shown_scale]])} -> ValueSpecs, in
    declaration order."""
    return tuple(ValueSpec(pattern, *spec) for pattern, spec in values.items())


def declare_values(producer: str, values: Mapping[str, tuple[str, str, str]], *, conditions: Iterable[str] = (),
                   outcomes: Iterable[str] = (), section: str | None = None, by_name: bool = True) -> Producer:
    """Register what `producer` records; `values` maps name patterns to (direction, unit, meaning)."""
    declared = Producer(producer, value_specs(values), frozenset(conditions), frozenset(outcomes), section, by_name)
    both = declared.conditions & declared.outcomes
    if both:
        raise ConfigError(f"{producer}: provenance keys {sorted(both)} are declared both conditions and outcomes; "
                          "a key is one or the other.")
    if producer in VALUES and VALUES.get(producer) == declared:  # its module run twice (`python -m`)
        return VALUES.get(producer)
    VALUES.register(producer, declared)
    return declared


def producers() -> list[Producer]:
    return [VALUES.get(name) for name in VALUES.names()]


def producer_of(metric: str, provenance: Mapping[str, Any] | None = None) -> Producer | None:
    """The declared producer of a record: the metric named by its metric_fn; without one,
    the by-name producer declaring `metric` (exact names before patterns). None: unknown."""
    fn = (provenance or {}).get("metric_fn")
    if fn is not None:
        return VALUES.get(fn) if fn in VALUES else None
    claims = [(spec, p) for p in producers() if p.by_name and (spec := p.spec(metric))]
    return min(claims, key=lambda c: not c[0].exact)[1] if claims else None


def value_spec(metric: str, provenance: Mapping[str, Any] | None = None) -> ValueSpec | None:
    producer = producer_of(metric, provenance)
    return producer.spec(metric) if producer else None


def fallback_direction(metric: str, unit: str) -> int:
    """Direction of a value of unknown origin: what every declaration matching its name says
    (0 where they disagree), else the unit's (FALLBACK_UNIT_DIRECTION), else 0."""
    signs = {spec.sign for p in producers() if (spec := p.spec(metric))}
    if signs:
        return signs.pop() if len(signs) == 1 else 0
    return FALLBACK_UNIT_DIRECTION.get(unit, 0)


def sign_of(producer: Producer | None, metric: str, unit: str) -> int:
    """+1 when higher is better, -1 when lower is better, 0 when neither or unknown: the
    producer's declaration, else the fallback for values of unknown origin."""
    spec = producer.spec(metric) if producer else None
    return spec.sign if spec else fallback_direction(metric, unit)


def direction(metric: str, unit: str = "", provenance: Mapping[str, Any] | None = None) -> int:
    """The direction of a record's value (sign_of its producer_of)."""
    return sign_of(producer_of(metric, provenance), metric, unit)
