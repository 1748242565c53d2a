"""Trainer registration (the TRAINERS registry, `genbench list trainers`) and the types
every training loop shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from genbench.registry import TRAINERS


@dataclass
class TrainOutcome:
    step_seconds: list[float] = field(default_factory=list)  # wall time of each completed step
    diverged: bool = False
    diverged_step: int | None = None
    diverged_reason: str | None = None
    skipped_steps: int = 0  # fp16: steps the grad scaler skipped for inf/NaN gradients


@dataclass
class TrainContext:
    model: Any
    objective: Any  # Objective or GanLoss
    objective_options: Any
    trainer_options: Any
    data: Any  # genbench.data.Dataset
    config: Any  # RunConfig
    device: torch.device
    generator: torch.Generator  # the run's random stream (batches, noise)
    log: Callable[[int, dict[str, float]], None]  # train/<name> scalars at a step
    emit: Callable[..., None]  # any record: emit(metric, value, unit, step, **provenance)
    progress: bool = True
    run_dir: Any = None  # pathlib.Path of the run's folder, for artefacts written during training
    # quality_probe(samples, step) -> (quality, higher is better; name; whether it is evidence
    # of a collapse), or (None, None, False): the quality signal trainers may watch
    # (genbench/metrics/monitor.py; the harness builds it)
    quality_probe: Callable[[torch.Tensor, int], tuple[float | None, str | None, bool]] = (
        lambda samples, step: (None, None, False))


@dataclass(frozen=True)
class Trainer:
    name: str  # what a model spec names as its trainer
    options: type  # options dataclass, validated from the run's trainer_options
    train: Callable[[TrainContext], TrainOutcome]
    # Checks of a run's combination of parts, called when the run is resolved:
    # validate(model_options, objective, trainer_options) raises ConfigError.
    validate: Callable[[Any, Any, Any], None] | None = None
    summary: str = field(kw_only=True)  # one line for `genbench list trainers -v`
    # True when the loop is DDP-aware: it takes its shard of every global batch, computes the
    # loss inside DDP and averages its logged scalars over ranks (genbench/train/distributed.py).
    # Runs of any other trainer are refused under torchrun with more than one process.
    data_parallel: bool = field(default=False, kw_only=True)


def register_trainer(trainer: Trainer) -> Trainer:
    return TRAINERS.register(trainer.name, trainer)
