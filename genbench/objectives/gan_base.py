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

from genbench.models.gan_output import DiscOutputKind, DOutput
from genbench.objectives.base import LossTerms
from genbench.registry import LOSSES, REGULARIZERS


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
    batch_coupled: str | None = None  # as Objective.batch_coupled: why shards would not add up, or None
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
