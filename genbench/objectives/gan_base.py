"""The contracts GAN losses, regularisers, networks and the adversarial trainer share.

Discriminators return a DOutput. Losses are registered in LOSSES as GanLoss objects
(family "gan"); each is a pair of pure functions with one signature,

    discriminator(real: DOutput, fake: DOutput, options, state) -> LossTerms
    generator(real: DOutput, fake: DOutput, options, state)     -> LossTerms

(LossTerms: {"loss": scalar to minimise, other scalars to log}). In the discriminator
step `fake` comes from detached samples; in the generator step `real` is computed
without gradient (only losses with `needs_real_in_generator_step` get it; others see
None). `state` is the loss's own running state (BEGAN's k_t), created by `init_state`
and advanced after each discriminator step by `update_state` -- both pure.

Regularisers are registered in REGULARIZERS and compose with any loss:
  kind "penalty":   apply(critic, real_x, fake_x, options, generator) -> LossTerms,
                    added to the discriminator loss; `critic(x) -> DOutput` is D with
                    the batch's labels bound
  kind "post_step": apply(discriminator_module, options) -> None, run after each
                    discriminator optimiser step (weight clipping)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from genbench.objectives.base import LossTerms
from genbench.registry import LOSSES, REGULARIZERS

# What the discriminator's `score` means, which decides its output head:
#   "logit":     real-vs-fake logit (minimax, non-saturating, LSGAN, hinge, RaGAN, DRAGAN)
#   "critic":    unbounded critic value, higher = more real (WGAN, WGAN-GP)
#   "energy-l2": autoencoder discriminator, score = mean squared reconstruction error (EBGAN)
#   "energy-l1": autoencoder discriminator, score = mean absolute reconstruction error (BEGAN)
DiscOutputKind = Literal["logit", "critic", "energy-l2", "energy-l1"]


@dataclass
class DOutput:
    score: torch.Tensor  # (B,) see DiscOutputKind
    embedding: torch.Tensor | None = None  # (B, E) autoencoder discriminator's code (EBGAN pulling-away term)
    aux_logits: torch.Tensor | None = None  # (B, n_classes) ACGAN auxiliary classifier
    info_logits: torch.Tensor | None = None  # (B, n_categories) InfoGAN Q head, categorical code
    info_mean: torch.Tensor | None = None  # (B, n_continuous) InfoGAN Q head, continuous codes (fixed-variance Gaussian)

    def split(self, n: int) -> tuple["DOutput", "DOutput"]:
        """The first n examples and the rest (D run on a concatenated real+fake batch)."""
        parts = {k: (None, None) if v is None else (v[:n], v[n:]) for k, v in self.__dict__.items()}
        return DOutput(**{k: a for k, (a, _) in parts.items()}), DOutput(**{k: b for k, (_, b) in parts.items()})


@dataclass(frozen=True)
class GanLoss:
    name: str
    options: type  # options dataclass (typed defaults, a comment per field)
    discriminator: Callable[[DOutput, DOutput, Any, dict], LossTerms]
    generator: Callable[[DOutput | None, DOutput, Any, dict], LossTerms]  # real is None unless needed
    disc_output: DiscOutputKind
    summary: str  # one line, naming the paper
    regularizers: tuple[tuple[str, dict[str, Any]], ...] = ()  # defaults, e.g. (("gp", {"weight": 10.0}),)
    needs_real_in_generator_step: bool = False
    init_state: Callable[[Any], dict] | None = None
    update_state: Callable[[dict, DOutput, DOutput, Any], dict] | None = None
    family: str = field(default="gan", init=False)


@dataclass(frozen=True)
class Regularizer:
    name: str
    options: type
    kind: Literal["penalty", "post_step"]
    apply: Callable[..., Any]
    summary: str


def register_gan_loss(loss: GanLoss) -> GanLoss:
    return LOSSES.register(loss.name, loss)


def register_regularizer(reg: Regularizer) -> Regularizer:
    return REGULARIZERS.register(reg.name, reg)
