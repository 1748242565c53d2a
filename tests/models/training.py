"""One home for the tests' short training loop: a resolved run's objective on its data."""

from __future__ import annotations

import torch

from genbench.metrics import EvalContext, applicable_metrics
from genbench.train.batches import epoch_batches
from genbench.train.single import train_single_objective


def fit(run, data, model, batch_size: int = 64) -> list[dict[str, float]]:
    """Train `model` for run.config.steps with the single-objective loop (seed 0) on
    data's train split; asserts no divergence; returns the logged scalars."""
    generator = torch.Generator().manual_seed(0)
    logged: list[dict[str, float]] = []
    outcome = train_single_objective(
        model, lambda x, step: run.objective.loss(model, x, run.objective_options, generator, step),
        epoch_batches(data.train.x, batch_size, generator), run.config, torch.device("cpu"),
        log=lambda step, scalars: logged.append(scalars), progress=False)
    assert not outcome.diverged
    return logged


def held_out(model, data, metric_names=("elbo", "reconstruction")) -> dict[str, float]:
    """The named metrics of `model` on data's test split (the model is left in train mode)."""
    model.eval()
    ctx = EvalContext(model, data, torch.device("cpu"), 512)
    metrics = [m for m in applicable_metrics(model, data.info) if m.name in metric_names]
    values = {mv.metric: mv.value for m in metrics for mv in m.evaluate(ctx)}
    model.train()
    return values
