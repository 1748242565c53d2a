"""The adversarial training loop (GANs), composed from a registered loss, registered
regularisers and training options.

Per generator step: `n_critic` discriminator steps (loss + penalties, then post-step
regularisers such as weight clipping, then the loss's state update, e.g. BEGAN's k_t),
then one generator step; conditional models add their auxiliary terms (ACGAN's
classifier, InfoGAN's mutual-information bound) through the model. Every interval the
loop records stability signals (see genbench/train/stability.py).

Mixed precision (run precision bf16/fp16): the forward passes and losses of both steps run
under autocast; fp16 adds one gradient scaler per network, and a step it skips for inf/NaN
gradients is counted, not called divergence. Gradient penalties (WGAN-GP, DRAGAN, R1, ...)
are always taken at fp32 with autocast off: their double backward in half precision
underflows (fp16) or loses the small input gradients they penalise (bf16).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from tqdm.auto import tqdm

from genbench.errors import ConfigError
from genbench.registry import REGULARIZERS
from genbench.train.base import Trainer, TrainOutcome, register_trainer
from genbench.train.single import global_grad_norm, precision_autocast, scaler_step
from genbench.train.stability import StabilityMonitor
from genbench.utils.measure import synchronize
from genbench.utils.options import build_options

OPTIMISERS = {
    "adam": lambda params, lr, o: torch.optim.Adam(params, lr=lr, betas=(o.beta1, o.beta2)),
    "sgd": lambda params, lr, o: torch.optim.SGD(params, lr=lr, momentum=0.0),
    "rmsprop": lambda params, lr, o: torch.optim.RMSprop(params, lr=lr),  # the WGAN paper's choice
}


@dataclass(frozen=True)
class AdversarialOptions:
    n_critic: int = 1  # discriminator steps per generator step (WGAN: 5)
    lr_d: float | None = None  # discriminator learning rate; None = the run's lr (TTUR, Heusel et al. 2017)
    lr_g: float | None = None  # generator learning rate; None = the run's lr
    beta1: float = 0.5  # Adam beta1 (DCGAN, Radford et al. 2016)
    beta2: float = 0.999  # Adam beta2
    optimizer_d: Literal["adam", "sgd", "rmsprop"] = "adam"  # per network
    optimizer_g: Literal["adam", "sgd", "rmsprop"] = "adam"
    regularizers: tuple[str, ...] | None = None  # None = the loss's defaults; () = none; names from REGULARIZERS
    penalty_weight: float | None = None  # overrides the weight/gamma of the penalty regularisers
    noisy_labels: float = 0.0  # probability of swapping a real and a fake example in D's batch (Salimans et al. 2016)
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs, decayed linearly to 0 (Sonderby et al. 2017)
    ema_decay: float | None = None  # EMA of generator weights used for sampling (Yazici et al. 2019), e.g. 0.999
    separate_batches: bool = True  # D sees real and fake in separate batches (separate BatchNorm statistics)
    replay_buffer: int = 0  # past fakes kept; half of each D fake batch replays them (Shrivastava et al. 2017)
    monitor_every: int = 0  # steps between stability-monitor evaluations; 0 = 10 evaluations per run
    monitor_samples: int = 1000  # samples per stability-monitor evaluation (not the run's eval_samples)
    explosion: float = 1e6  # |loss| above this counts as divergence

    # Old names, refused with the new one: `eval_samples` read as the run's own setting of that name.
    RENAMED: ClassVar[dict[str, str]] = {"eval_every": "monitor_every", "eval_samples": "monitor_samples"}

    def __post_init__(self):
        if self.n_critic < 1 or self.replay_buffer < 0 or self.monitor_every < 0 or self.monitor_samples < 2:
            raise ValueError("n_critic >= 1, replay_buffer >= 0, monitor_every >= 0 and monitor_samples >= 2")
        if not 0.0 <= self.noisy_labels < 0.5:
            raise ValueError("noisy_labels must be in [0, 0.5)")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError("ema_decay must be in (0, 1)")


class ReplayBuffer:
    """Fixed-size store of past generated samples (reservoir replacement)."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size, self.generator, self.items = size, generator, None

    def mix(self, fake: torch.Tensor) -> torch.Tensor:
        """Half of `fake` replaced by stored samples (once the buffer has any); stores `fake`."""
        out = fake
        if self.items is not None:
            half = fake.shape[0] // 2
            idx = torch.randint(len(self.items), (half,), generator=self.generator, device=self.generator.device)
            out = torch.cat([fake[half:], self.items[idx]])
        self._store(fake.detach())
        return out

    def _store(self, fake: torch.Tensor) -> None:
        if self.items is None or len(self.items) < self.size:
            self.items = fake[: self.size] if self.items is None else torch.cat([self.items, fake])[: self.size]
            return
        idx = torch.randint(self.size, (fake.shape[0],), generator=self.generator, device=self.generator.device)
        self.items[idx] = fake


def make_penalties(loss, options: AdversarialOptions):
    """(penalty regularisers, post-step regularisers), each as (Regularizer, options)."""
    names = options.regularizers if options.regularizers is not None else tuple(n for n, _ in loss.regularizers)
    defaults = dict(loss.regularizers)
    chosen = []
    for name in names:
        reg = REGULARIZERS.get(name)
        values = dict(defaults.get(name, {}))
        if options.penalty_weight is not None and reg.kind == "penalty":
            key = next(f for f in ("weight", "gamma") if f in reg.options.__dataclass_fields__)
            values[key] = options.penalty_weight
        chosen.append((reg, build_options(reg.options, values, f"regularizer {name!r}")))
    return [c for c in chosen if c[0].kind == "penalty"], [c for c in chosen if c[0].kind == "post_step"]


class AdversarialStep:
    """One generator step and its discriminator steps; holds the optimisers and state."""

    def __init__(self, ctx):
        self.ctx, self.model, self.loss, self.opts = ctx, ctx.model, ctx.objective, ctx.trainer_options
        cfg, o = ctx.config, ctx.trainer_options
        self.opt_d = OPTIMISERS[o.optimizer_d](self.model.discriminator.parameters(), o.lr_d or cfg.lr, o)
        self.opt_g = OPTIMISERS[o.optimizer_g](self.model.generator_parameters(), o.lr_g or cfg.lr, o)
        self.penalties, self.post_steps = make_penalties(self.loss, o)
        self.state = self.loss.init_state(ctx.objective_options) if self.loss.init_state else {}
        self.replay = ReplayBuffer(o.replay_buffer, ctx.generator) if o.replay_buffer else None
        self.train_x = ctx.data.train.x.to(ctx.device)
        self.train_y = None if ctx.data.train.y is None else ctx.data.train.y.to(ctx.device)
        fp16 = cfg.precision == "fp16"
        self.scaler_d = torch.amp.GradScaler(ctx.device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(ctx.device.type, enabled=fp16)
        self.skipped_steps = 0  # fp16: updates a scaler skipped (inf/NaN gradients)

    def autocast(self):
        return precision_autocast(self.ctx.device, self.ctx.config.precision)

    def update(self, total, network, optimiser, scaler) -> float:
        """Backward (scaled under fp16), the unscaled gradient norm, then the optimiser step."""
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.unscale_(optimiser)
        grad_norm = global_grad_norm(network)
        self.skipped_steps += scaler_step(scaler, optimiser)
        return grad_norm

    def real_batch(self):
        """batch_size training examples drawn uniformly with replacement (D and G steps
        each draw their own), with their labels when the dataset has them."""
        g = self.ctx.generator
        idx = torch.randint(len(self.train_x), (self.ctx.config.batch_size,), generator=g, device=g.device)
        return self.train_x[idx], None if self.train_y is None else self.train_y[idx]

    def noise(self, x: torch.Tensor, step: int) -> torch.Tensor:
        std = self.opts.instance_noise * max(0.0, 1.0 - step / self.ctx.config.steps)
        if std == 0.0:
            return x
        return x + std * torch.randn(x.shape, generator=self.ctx.generator, device=x.device)

    def swap_labels(self, real, fake, y_real, y_fake):
        """Noisy labels: each position swaps its real and fake example with probability p."""
        p = self.opts.noisy_labels
        if p == 0.0:
            return real, fake, y_real, y_fake
        g = self.ctx.generator
        swap = torch.rand(real.shape[0], generator=g, device=g.device) < p  # (B,)
        mask = swap.view(-1, *([1] * (real.ndim - 1)))
        real2, fake2 = torch.where(mask, fake, real), torch.where(mask, real, fake)
        if y_real is not None and y_fake is not None:  # conditional models swap the labels along
            y_real, y_fake = torch.where(swap, y_fake, y_real), torch.where(swap, y_real, y_fake)
        return real2, fake2, y_real, y_fake

    def discriminate_pair(self, real, fake, y_real, y_fake):
        if self.opts.separate_batches:
            return self.model.discriminate(real, y_real), self.model.discriminate(fake, y_fake)
        labels = None if y_real is None or y_fake is None else torch.cat([y_real, y_fake])
        both = self.model.discriminate(torch.cat([real, fake]), labels)
        return both.split(both.score.shape[0] // 2)  # (real part, fake part): equal halves, packed or not

    def discriminator_step(self, step: int) -> dict[str, float]:
        real, y_real = self.real_batch()
        with torch.no_grad(), self.autocast():
            fake, codes = self.model.generate(real.shape[0], self.ctx.generator, y_real)
        fake = fake.float()  # the replay buffer and the penalties keep fp32 samples
        if self.replay is not None:
            fake = self.replay.mix(fake)
        real, fake, y_real, y_fake = self.swap_labels(real, fake, y_real, codes.labels)
        real, fake = self.noise(real, step), self.noise(fake, step)
        with self.autocast():
            d_real, d_fake = self.discriminate_pair(real, fake, y_real, y_fake)
            terms = self.loss.discriminator(d_real, d_fake, self.ctx.objective_options, self.state)
            total = terms["loss"] + self.model.auxiliary_d_terms(d_real, d_fake, y_real, codes, terms)
        critic = lambda x: self.model.discriminate(x, y_real)  # noqa: E731  labels bound for penalties
        for reg, reg_opts in self.penalties:  # at fp32: outside autocast (see the module docstring)
            pen = reg.apply(critic, real.detach(), fake.detach(), reg_opts, self.ctx.generator)
            total = total + pen["loss"]
            terms[f"{reg.name}_penalty"] = pen[f"{reg.name}_penalty"]
            terms[f"{reg.name}_grad_norm_mean"] = pen["grad_norm_mean"]
        terms["grad_norm_d"] = self.update(total, self.model.discriminator, self.opt_d, self.scaler_d)
        for reg, reg_opts in self.post_steps:
            reg.apply(self.model.discriminator, reg_opts)
        if self.loss.update_state:
            self.state = self.loss.update_state(self.state, d_real, d_fake, self.ctx.objective_options)
        terms["loss"] = total
        return scalars(terms, "d_")

    def generator_step(self) -> dict[str, float]:
        real, y_real = self.real_batch()
        with self.autocast():
            fake, codes = self.model.generate(real.shape[0], self.ctx.generator, y_real)
            d_fake = self.model.discriminate(fake, codes.labels)
            d_real = None
            if self.loss.needs_real_in_generator_step:
                with torch.no_grad():
                    d_real = self.model.discriminate(real, y_real)
            terms = self.loss.generator(d_real, d_fake, self.ctx.objective_options, self.state)
            total = terms["loss"] + self.model.auxiliary_g_terms(d_fake, codes, terms)
        terms["grad_norm_g"] = self.update(total, self.model.generator, self.opt_g, self.scaler_g)
        self.model.update_ema()
        terms["loss"] = total
        return scalars(terms, "g_")


def scalars(terms: dict, prefix: str) -> dict[str, float]:
    """Loss terms as floats, named by the step they come from (d_loss, g_loss, d_real ...)."""
    return {(k if k.startswith((prefix, "grad")) else prefix + k): float(v.detach() if torch.is_tensor(v) else v)
            for k, v in terms.items()}


def divergence(scalars: dict[str, float], explosion: float, precision: str = "fp32") -> str | None:
    """Why this step counts as divergence, or None. Under fp16 a non-finite gradient norm is
    the scaler's business (it skips that update and lowers the scale), not divergence."""
    keys = ("d_loss", "g_loss") if precision == "fp16" else ("d_loss", "g_loss", "grad_norm_d", "grad_norm_g")
    for key in keys:
        value = scalars.get(key)
        if value is None:
            continue
        if not math.isfinite(value):
            return f"non-finite {key} ({value})"
        if "loss" in key and abs(value) > explosion:
            return f"explosion: |{key}| = {abs(value):.3g} > {explosion:g}"
    return None


def train_adversarial(ctx) -> TrainOutcome:
    o, cfg = ctx.trainer_options, ctx.config
    if o.ema_decay is not None:
        ctx.model.enable_ema(o.ema_decay)
    steps = AdversarialStep(ctx)
    monitor = StabilityMonitor(ctx, o.monitor_every or max(1, cfg.steps // 10))
    outcome = TrainOutcome()
    ctx.model.train()
    bar = tqdm(range(1, cfg.steps + 1), desc="train", leave=False, disable=not ctx.progress, mininterval=0.5)
    for step in bar:
        synchronize(ctx.device)
        start = time.perf_counter()
        scalars = {}
        for _ in range(o.n_critic):
            scalars.update(steps.discriminator_step(step))
        scalars.update(steps.generator_step())
        reason = divergence(scalars, o.explosion, cfg.precision)
        if reason:
            outcome.diverged, outcome.diverged_step, outcome.diverged_reason = True, step, reason
            ctx.log(step, scalars)
            break
        synchronize(ctx.device)
        outcome.step_seconds.append(time.perf_counter() - start)
        if step == 1 or step % cfg.log_every == 0 or step == cfg.steps:
            ctx.log(step, scalars)
            bar.set_postfix(d=f"{scalars['d_loss']:.3g}", g=f"{scalars['g_loss']:.3g}", refresh=False)
        monitor.after_step(step, scalars)
    bar.close()
    monitor.finish(outcome)
    outcome.skipped_steps = steps.skipped_steps
    ctx.model.eval()
    return outcome


def validate(model_options, loss, options: AdversarialOptions) -> None:
    """Gradient penalties are per example: BatchNorm in D would mix the examples."""
    penalties, _ = make_penalties(loss, options)
    if penalties and model_options.arch != "mlp" and model_options.d_norm == "batch":
        names = ", ".join(reg.name for reg, _ in penalties)
        raise ConfigError(
            f"The {names} penalty needs per-example discriminator outputs, but d_norm='batch' mixes the "
            "examples of a batch. Set d_norm=instance or d_norm=none (e.g. --set d_norm=none)."
        )


register_trainer(Trainer("adversarial", AdversarialOptions, train_adversarial, validate,
                         summary="GANs: n_critic discriminator steps per generator step, a registered loss and "
                                 "regularisers, stability signals"))
