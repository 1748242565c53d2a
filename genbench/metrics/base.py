"""Metric registration and the evaluation context metrics share.

A metric is registered in METRICS with a predicate saying which models it applies to
(by capability, never by name) and a function returning MetricValues. Metrics see the
test split prepared once per evaluation (binarised or dequantised with a fixed seed,
EVAL_SEED, the same for every run) so every run is scored on identical data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import torch

from genbench.registry import METRICS

EVAL_SEED = 0  # seed of the evaluation data's binarisation/dequantisation, fixed across runs


@dataclass(frozen=True)
class MetricValue:
    metric: str  # "<phase>/<name>", e.g. "test/elbo"
    value: float | None
    unit: str
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: str
    applies: Callable[[Any], bool]  # model -> does this metric apply?
    evaluate: Callable[["EvalContext"], list[MetricValue]]
    summary: str


def register_metric(name: str, applies: Callable[[Any], bool], summary: str):
    def wrap(fn):
        METRICS.register(name, Metric(name, applies, fn, summary))
        return fn

    return wrap


@dataclass
class EvalContext:
    model: Any
    dataset: Any  # genbench.data.Dataset
    device: torch.device
    batch_size: int

    @cached_property
    def test_x(self) -> torch.Tensor:
        return self.dataset.test.x.to(self.device)  # (N, *shape)

    @cached_property
    def prepared_test(self) -> torch.Tensor:
        """The test split as the model's likelihood sees it (fixed-seed noise)."""
        generator = torch.Generator(device=self.device).manual_seed(EVAL_SEED)
        return self.model.likelihood.prepare(self.test_x, generator)

    def generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(EVAL_SEED)

    def batches(self, x: torch.Tensor):
        return x.split(self.batch_size)


def applicable_metrics(model) -> list[Metric]:
    return [METRICS.get(name) for name in METRICS.names() if METRICS.get(name).applies(model)]
