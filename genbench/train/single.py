"""The training loop for models trained on one objective (autoencoders, VAEs, and later
flows, autoregressive models, diffusion): one optimiser, one loss per step.

Each step is timed (device synchronised) for throughput; the loss terms and the global
gradient norm are logged every `log_every` steps; a non-finite loss or gradient norm
stops training and reports the run as diverged (fp16 excepted: there an infinite
gradient is the scaler's business and only a non-finite loss diverges).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from genbench.harness.measure import synchronize
from genbench.train.base import Trainer, TrainOutcome, register_trainer

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def global_grad_norm(model: torch.nn.Module) -> torch.Tensor:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def train_single_objective(model, loss_fn: Callable, batches, run_config, device: torch.device,
                           log: Callable[[int, dict[str, float]], None], progress: bool = True) -> TrainOutcome:
    """Train `model` for run_config.steps; `loss_fn(x, step)` returns the objective's
    LossTerms (step counts from 1, for schedules such as KL warm-up or temperature
    annealing); `log(step, scalars)` receives the logged scalars."""
    cfg = run_config
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
    amp_dtype = AUTOCAST_DTYPES.get(cfg.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    outcome = TrainOutcome()
    model.train()
    bar = tqdm(range(1, cfg.steps + 1), desc="train", leave=False, disable=not progress, mininterval=0.5)
    for step in bar:
        synchronize(device)
        start = time.perf_counter()
        x = next(batches)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            terms = loss_fn(x, step)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(terms["loss"]).backward()
        scaler.unscale_(optimiser)
        grad_norm = float(global_grad_norm(model))
        loss = float(terms["loss"].detach())
        reason = divergence(loss, grad_norm, cfg.precision)
        if reason:
            outcome.diverged, outcome.diverged_step, outcome.diverged_reason = True, step, reason
            log(step, {"loss": loss, "grad_norm": grad_norm})
            break
        scale_before = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimiser)
        scaler.update()
        if scale_before is not None and scaler.get_scale() < scale_before:
            outcome.skipped_steps += 1
        synchronize(device)
        outcome.step_seconds.append(time.perf_counter() - start)
        if step == 1 or step % cfg.log_every == 0 or step == cfg.steps:
            scalars = {k: float(v.detach()) for k, v in terms.items()}
            scalars["grad_norm"] = grad_norm
            log(step, scalars)
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
    bar.close()
    return outcome


@dataclass(frozen=True)
class SingleOptions:
    pass  # the single-objective loop takes its settings from the run config


def train_single(ctx) -> TrainOutcome:
    """Trainer entry: the objective's loss on batches of the train split."""
    from genbench.train.batches import epoch_batches

    batches = epoch_batches(ctx.data.train.x.to(ctx.device), ctx.config.batch_size, ctx.generator)
    loss_fn = lambda x, step: ctx.objective.loss(ctx.model, x, ctx.objective_options, ctx.generator, step)  # noqa: E731
    return train_single_objective(ctx.model, loss_fn, batches, ctx.config, ctx.device, ctx.log, ctx.progress)


def divergence(loss: float, grad_norm: float, precision: str) -> str | None:
    """Why this step counts as divergence, or None."""
    if not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    if precision != "fp16" and not math.isfinite(grad_norm):
        return f"non-finite gradient norm ({grad_norm})"
    return None


register_trainer(Trainer("single", SingleOptions, train_single))
