"""The training loop for models trained on one objective (autoencoders, VAEs, and later
flows, autoregressive models, diffusion): one optimiser, one loss per step.

Each step is timed (device synchronised) for throughput; the loss terms and the global
gradient norm are logged every `log_every` steps; a non-finite loss or gradient norm
stops training and reports the run as diverged (fp16 excepted: there an infinite
gradient is the scaler's business and only a non-finite loss diverges).

Under torchrun the loop is data-parallel (genbench/train/distributed.py): each rank
trains on its shard of every global batch, the loss runs inside DDP, and the logged
terms are averaged over ranks, so every rank takes the same divergence decision.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from genbench.errors import ConfigError
from genbench.train import distributed
from genbench.train.base import Trainer, TrainOutcome, register_trainer
from genbench.train.batches import epoch_batches, labelled_batches
from genbench.utils.measure import synchronize

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def precision_autocast(device: torch.device, precision: str):
    """Autocast at the run's precision (bf16 / fp16); a disabled context at fp32."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def scaler_step(scaler: torch.amp.GradScaler, *optimisers: torch.optim.Optimizer) -> bool:
    """Step each optimiser through the grad scaler, then update the scale once; True when
    the fp16 scaler skipped the step (inf/NaN gradients: it lowers the scale)."""
    scale_before = scaler.get_scale() if scaler.is_enabled() else None
    for optimiser in optimisers:
        scaler.step(optimiser)
    scaler.update()
    return scale_before is not None and scaler.get_scale() < scale_before


def global_grad_norm(model: torch.nn.Module) -> torch.Tensor:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


class SingleStep:
    """One optimiser step on one objective: Adam, autocast for bf16/fp16, a gradient scaler
    for fp16. `backward` computes the loss terms and gradients; `apply` steps the
    optimiser (the loop checks for divergence in between). Under torchrun the loss runs
    inside DistributedDataParallel, which averages the gradients across ranks."""

    def __init__(self, model, loss_fn: Callable, run_config, device: torch.device):
        cfg = run_config
        self.model, self.device = model, device
        self.forward = distributed.wrap_loss(model, loss_fn, device)  # loss_fn itself in one process
        self.optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
        self.precision = cfg.precision
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    def backward(self, x: torch.Tensor, step: int) -> tuple[dict, float, float]:
        """(loss terms, loss, global gradient norm after unscaling) for batch x at `step`;
        under DDP the terms are the global batch's (averaged over ranks, detached) and the
        gradients, hence their norm, are the same on every rank."""
        with precision_autocast(self.device, self.precision):
            terms = self.forward(x, step)
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        self.scaler.unscale_(self.optimiser)
        terms = distributed.mean_terms(terms, self.device)
        return terms, float(terms["loss"].detach()), float(global_grad_norm(self.model))

    def apply(self) -> bool:
        """Step the optimiser, then the model's weight EMA where it declares one (capability
        ema: diffusion); True when the fp16 scaler skipped the step (inf/NaN gradients)."""
        skipped = scaler_step(self.scaler, self.optimiser)
        if self.model.capabilities.ema:
            self.model.update_ema()
        return skipped


def train_single_objective(model, loss_fn: Callable, batches, run_config, device: torch.device,
                           log: Callable[[int, dict[str, float]], None], progress: bool = True) -> TrainOutcome:
    """Train `model` for run_config.steps; `loss_fn(x, step)` returns the objective's
    LossTerms (step counts from 1, for schedules such as KL warm-up or temperature
    annealing); `log(step, scalars)` receives the logged scalars."""
    cfg = run_config
    single = SingleStep(model, loss_fn, cfg, device)
    outcome = TrainOutcome()
    model.train()
    bar = tqdm(range(1, cfg.steps + 1), desc="train", leave=False, disable=not progress, mininterval=0.5)
    for step in bar:
        synchronize(device)
        start = time.perf_counter()
        terms, loss, grad_norm = single.backward(next(batches), step)
        reason = divergence(loss, grad_norm, cfg.precision)
        if reason:
            outcome.diverged, outcome.diverged_step, outcome.diverged_reason = True, step, reason
            log(step, {"loss": loss, "grad_norm": grad_norm})
            break
        outcome.skipped_steps += single.apply()
        synchronize(device)
        outcome.step_seconds.append(time.perf_counter() - start)
        if step == 1 or step % cfg.log_every == 0 or step == cfg.steps:
            scalars = {k: float(v.detach()) for k, v in terms.items()}
            scalars["grad_norm"] = grad_norm
            log(step, scalars)
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
    bar.close()
    outcome.step_seconds = distributed.max_over_ranks(outcome.step_seconds, device)  # the slowest rank's
    distributed.check_replicas(model, device)
    return outcome


@dataclass(frozen=True)
class SingleOptions:
    pass  # the single-objective loop takes its settings from the run config


def train_single(ctx) -> TrainOutcome:
    """Trainer entry: the objective's loss on batches of the train split. A class-conditional
    model (`class_conditional` True: a conditional PixelCNN) gets each batch's labels too.
    Under torchrun each rank takes its shard of every batch and draws the loss's noise
    from its own stream (distributed.rank_generator); in one process both are the run's."""
    x = ctx.data.train.x.to(ctx.device)
    part, noise = distributed.shard(), distributed.rank_generator(ctx.generator, ctx.config.seed)
    if ctx.model.class_conditional:
        batches = labelled_batches(x, train_labels(ctx.data), ctx.config.batch_size, ctx.generator, part)
        loss_fn = lambda xy, step: ctx.objective.loss(ctx.model, xy[0], ctx.objective_options,  # noqa: E731
                                                      noise, step, labels=xy[1])
    else:
        batches = epoch_batches(x, ctx.config.batch_size, ctx.generator, part)
        loss_fn = lambda x, step: ctx.objective.loss(ctx.model, x, ctx.objective_options, noise, step)  # noqa: E731
    return train_single_objective(ctx.model, loss_fn, batches, ctx.config, ctx.device, ctx.log, ctx.progress)


def train_labels(data) -> torch.Tensor:
    if data.train.y is None:
        raise ConfigError(f"A class-conditional model needs labels; dataset {data.info.name!r} has none. "
                          "Use a labelled dataset (digits, shapes) or turn class conditioning off.")
    return data.train.y


def divergence(loss: float, grad_norm: float, precision: str) -> str | None:
    """Why this step counts as divergence, or None."""
    if not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    if precision != "fp16" and not math.isfinite(grad_norm):
        return f"non-finite gradient norm ({grad_norm})"
    return None


register_trainer(Trainer("single", SingleOptions, train_single, data_parallel=True,
                         summary="one objective, one Adam optimiser (autoencoders, VAEs, flows, autoregressive "
                                 "models, diffusion); data-parallel under torchrun"))
