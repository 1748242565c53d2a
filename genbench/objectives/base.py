"""Objectives: registered loss functions, one signature per model family.

An objective computes, for one batch, the scalar to minimise and the terms worth
logging. It is registered in LOSSES with the model family it trains, so a run that pairs
a model with an objective of another family is rejected before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from genbench.errors import ConfigError
from genbench.registry import LOSSES

# "loss": the scalar to minimise; every other entry is a detached scalar to log.
LossTerms = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Objective:
    name: str
    family: str  # model family this objective trains ("autoencoder", "vae", ...)
    options: type  # options dataclass
    # loss(model, x, options, generator, step) -> LossTerms. step is the 1-based training
    # step (for schedules: KL warm-up, temperature annealing), None outside training.
    loss: Callable[[Any, torch.Tensor, Any, torch.Generator | None, int | None], LossTerms]
    summary: str  # one line, with the paper it comes from where it has one
    # Why the loss couples the examples of a batch beyond a per-example mean, so that N
    # shards do not add up to the global batch (such runs are refused under torchrun,
    # genbench/train/distributed.py); None when it does not.
    batch_coupled: str | None = None


def register_objective(name: str, family: str, options: type, summary: str, batch_coupled: str | None = None):
    def wrap(fn):
        LOSSES.register(name, Objective(name, family, options, fn, summary, batch_coupled))
        return fn

    return wrap


def objective_for(family: str, name: str) -> Objective:
    """The objective `name`, checked to train models of `family`."""
    objective: Objective = LOSSES.get(name)
    if objective.family != family:
        fitting = [n for n in LOSSES.names() if LOSSES.get(n).family == family]
        raise ConfigError(
            f"Objective {name!r} trains {objective.family} models, not {family} models. "
            f"Objectives for {family} models: {', '.join(fitting) or '(none)'}."
        )
    return objective
