"""The VAE-GAN training loop (Larsen et al. 2016, Algorithm 1): one optimiser per network.

Per step: one batch, one forward pass through the objective (objectives/vaegan.py), which
returns loss_enc, loss_dec and loss_dis on a shared graph. Each loss is differentiated
w.r.t. its own network's parameters only (`backward(inputs=...)`), so no gradient crosses
networks: L_llike does not reach D, the GAN loss does not reach the encoder, and D's loss
does not reach the decoder. Then the three optimisers step -- simultaneous updates, from
gradients all taken at the same parameters, as in Algorithm 1 and the authors' code.

Larsen et al. train with RMSProp at a learning rate of 3e-4 and batches of 64 (the
authors' code anneals RMSProp from 0.02/64 ~ 3e-4 down to 1e-5/64 over 150 epochs; its
D/decoder "equilibrium" update skipping is not part of the paper and not reproduced here).
The optimiser here is RMSProp; its learning rate is the run's (`--lr`, 1e-3 by default)
unless `lr` is set -- on digits, 600 steps at 1e-3 reached a lower FID than at 3e-4 (1.4
vs 2.1, gamma = 0.1, one seed), so the short runs of a benchmark use the run's rate.

Each step is timed (device synchronised) for throughput; every `log_every` steps (and at
step 1 and the last) the objective's terms and each network's gradient norm are logged. A
non-finite loss or gradient norm stops training and reports the run as diverged (fp16
excepted: there one grad scaler serves the three optimisers, an infinite gradient is its
business -- it skips that network's update and lowers the scale -- and a step where it
did counts in TrainOutcome.skipped_steps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from genbench.errors import ConfigError
from genbench.train.adversarial import OPTIMISERS
from genbench.train.base import Trainer, TrainOutcome, register_trainer
from genbench.train.batches import epoch_batches
from genbench.train.single import divergence, global_grad_norm, precision_autocast, scaler_step
from genbench.utils.measure import synchronize

LOSS_OF = {"enc": "loss_enc", "dec": "loss_dec", "dis": "loss_dis"}  # network -> the loss that trains it


@dataclass(frozen=True)
class VAEGANTrainerOptions:
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"  # for all three networks; Larsen et al. 2016: RMSProp
    lr: float | None = None  # encoder and decoder learning rate; None = the run's lr (the paper: 3e-4)
    lr_d_scale: float = 1.0  # discriminator learning rate = lr * lr_d_scale (TTUR-style, Heusel et al. 2017)
    beta1: float = 0.5  # Adam beta1 (DCGAN, Radford et al. 2016)
    beta2: float = 0.999  # Adam beta2

    def __post_init__(self):
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0 (or None for the run's lr); got {self.lr}")
        if not self.lr_d_scale > 0:
            raise ValueError(f"lr_d_scale must be > 0; got {self.lr_d_scale}")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"beta1 and beta2 must be in [0, 1); got {self.beta1}, {self.beta2}")


def make_optimisers(nets: dict[str, torch.nn.Module], run_lr: float,
                    o: VAEGANTrainerOptions) -> dict[str, torch.optim.Optimizer]:
    lr = o.lr or run_lr
    return {name: OPTIMISERS[o.optimizer](net.parameters(), lr * (o.lr_d_scale if name == "dis" else 1.0), o)
            for name, net in nets.items()}


def backward_per_network(terms: dict[str, torch.Tensor], nets: dict[str, torch.nn.Module],
                         optimisers: dict[str, torch.optim.Optimizer],
                         scaler: torch.amp.GradScaler) -> dict[str, torch.Tensor]:
    """Gradient of each network's loss w.r.t. that network's parameters only, into .grad
    (unscaled); returns each network's gradient norm as grad_norm_<net>."""
    norms = {}
    last = len(nets) - 1
    for i, (name, net) in enumerate(nets.items()):
        optimisers[name].zero_grad(set_to_none=True)
        scaler.scale(terms[LOSS_OF[name]]).backward(inputs=list(net.parameters()), retain_graph=i < last)
        scaler.unscale_(optimisers[name])
        norms[f"grad_norm_{name}"] = global_grad_norm(net)
    return norms


def check(terms: dict[str, torch.Tensor], norms: dict[str, torch.Tensor], precision: str) -> str | None:
    """Why this step counts as divergence (the first non-finite loss or gradient norm), or None."""
    values = torch.stack([terms[LOSS_OF[n]].detach().float() for n in LOSS_OF]
                         + [norms[f"grad_norm_{n}"].float() for n in LOSS_OF]).tolist()  # one device sync
    for name, loss, grad_norm in zip(LOSS_OF, values[:3], values[3:]):
        reason = divergence(loss, grad_norm, precision)
        if reason:
            return f"{reason} in the {name} update"
    return None


def train_vaegan(ctx) -> TrainOutcome:
    """Trainer entry: the objective's three losses on batches of the train split."""
    cfg, model = ctx.config, ctx.model
    nets = model.networks()
    optimisers = make_optimisers(nets, cfg.lr, ctx.trainer_options)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=cfg.precision == "fp16")
    batches = epoch_batches(ctx.data.train.x.to(ctx.device), cfg.batch_size, ctx.generator)
    outcome = TrainOutcome()
    model.train()
    bar = tqdm(range(1, cfg.steps + 1), desc="train", leave=False, disable=not ctx.progress, mininterval=0.5)
    for step in bar:
        synchronize(ctx.device)
        start = time.perf_counter()
        x = next(batches)
        with precision_autocast(ctx.device, cfg.precision):
            terms = ctx.objective.loss(model, x, ctx.objective_options, ctx.generator, step)
        norms = backward_per_network(terms, nets, optimisers, scaler)
        reason = check(terms, norms, cfg.precision)
        if reason:
            outcome.diverged, outcome.diverged_step, outcome.diverged_reason = True, step, reason
            ctx.log(step, scalars(terms, norms))
            break
        outcome.skipped_steps += scaler_step(scaler, *optimisers.values())
        synchronize(ctx.device)
        outcome.step_seconds.append(time.perf_counter() - start)
        if step == 1 or step % cfg.log_every == 0 or step == cfg.steps:
            logged = scalars(terms, norms)
            ctx.log(step, logged)
            bar.set_postfix(enc=f"{logged['loss_enc']:.4g}", dis=f"{logged['loss_dis']:.3g}", refresh=False)
    bar.close()
    model.eval()
    return outcome


def scalars(terms: dict[str, torch.Tensor], norms: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in {**terms, **norms}.items()}


def validate(model_options, objective, options: VAEGANTrainerOptions) -> None:
    """Adam's betas do nothing for RMSProp or SGD: setting them there is a mistake, not a no-op."""
    defaults = VAEGANTrainerOptions()
    if options.optimizer != "adam" and (options.beta1, options.beta2) != (defaults.beta1, defaults.beta2):
        raise ConfigError(
            f"beta1/beta2 are Adam's, but optimizer={options.optimizer!r} does not use them. Set "
            "optimizer=adam (e.g. --train-set optimizer=adam), or drop beta1/beta2."
        )


register_trainer(Trainer("vaegan", VAEGANTrainerOptions, train_vaegan, validate,
                         summary="VAE-GAN (Larsen et al. 2016, Algorithm 1): encoder, decoder and discriminator, "
                                 "one optimiser each"))
