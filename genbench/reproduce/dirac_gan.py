"""Dirac-GAN (Mescheder, Geiger & Nowozin 2018, "Which training methods for GANs actually
converge?", sections 2-4): the data are a point mass at 0, the generator a point mass at
theta, the discriminator linear, D_psi(x) = psi * x. The unique equilibrium is
(theta, psi) = (0, 0). The paper shows that unregularised GAN training with simultaneous or
alternating gradient descent does not converge to it (the Jacobian's eigenvalues are purely
imaginary), nor do WGAN and WGAN-GP with a finite number of critic steps, while instance
noise and the zero-centred gradient penalties R1 and R2 do.

genbench runs the two-parameter game through its own registered losses (minimax -- the
paper's L = f(psi theta) + f(0) with f(t) = -log(1 + exp(-t)) for both players --, wgan,
wgan-gp) and regularisers (clip, gp, r1, r2) -- the functions every GAN run uses -- with plain
gradient descent, and measures the distance to the equilibrium, sqrt(theta^2 + psi^2),
over the steps.

Setup (SETUP; where the paper leaves a choice, made here and stated): start at
(theta, psi) = (1, 1); SGD with step h = 0.1; alternating updates take the discriminator
step(s) first; WGAN and WGAN-GP take 5 critic steps per generator step; WGAN clips psi to
[-1, 1] (the registered default 0.01 is the image-scale clip); WGAN-GP uses the registered
weight 10 with a smaller step, h = 0.01, where h * 2 * 10 < 1 keeps the critic's own
update stable; instance noise adds N(0, 1) to real and fake samples (batches of 1,024);
R1 and R2 use gamma = 1. Verdicts: converged when the mean distance over the last 10% of
the steps is below 2% of the starting distance; not converged when it is above 25%.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.models.gan_output import DOutput
from genbench.registry import LOSSES, REGULARIZERS
from genbench.reproduce.base import Check, Measurement, Reproduction

SETUP = ("start at (theta, psi) = (1, 1); SGD with step h = 0.1; alternating updates take the discriminator "
         "step(s) first; WGAN and WGAN-GP take 5 critic steps per generator step; WGAN clips psi to [-1, 1] (the "
         "registered default 0.01 is the image-scale clip); WGAN-GP uses the registered weight 10 with step h = "
         "0.01 (h x 2 x 10 < 1 keeps the critic's own update stable); instance noise adds N(0, 1) to real and "
         "fake samples (batches of 1,024); R1 and R2 use gamma = 1. The paper's f(t) = -log(1 + exp(-t)) game is "
         "genbench's registered minimax loss (its D's sign is the paper's negated; the distance is the same).")
START = (1.0, 1.0)
STEPS = {"cpu": 2000, "gpu": 20000}
CONVERGED, NOT_CONVERGED = 0.02, 0.25  # of the starting distance, mean over the last 10% of steps
NOISE_BATCH = 1024


class LinearCritic(nn.Module):
    """D_psi(x) = psi * x on 1-D samples (B, 1)."""

    def __init__(self, psi: float):
        super().__init__()
        self.psi = nn.Parameter(torch.tensor(psi, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> DOutput:
        return DOutput(score=self.psi * x.flatten())


# name -> (loss, regularisers with options, updates, critic steps, step size, instance noise std)
VARIANTS = {
    "gan-simultaneous": ("minimax", {}, "simultaneous", 1, 0.1, 0.0),
    "gan-alternating": ("minimax", {}, "alternating", 1, 0.1, 0.0),
    "wgan-5-critic-steps": ("wgan", {"clip": {"clip_value": 1.0}}, "alternating", 5, 0.1, 0.0),
    "wgan-gp-5-critic-steps": ("wgan-gp", {"gp": {"weight": 10.0}}, "alternating", 5, 0.01, 0.0),
    "gan-instance-noise": ("minimax", {}, "simultaneous", 1, 0.1, 1.0),
    "gan-r1": ("minimax", {"r1": {"gamma": 1.0}}, "simultaneous", 1, 0.1, 0.0),
    "gan-r2": ("minimax", {"r2": {"gamma": 1.0}}, "simultaneous", 1, 0.1, 0.0),
}
# The paper's claim per variant: True = converges to the equilibrium.
CONVERGES = {"gan-simultaneous": False, "gan-alternating": False, "wgan-5-critic-steps": False,
             "wgan-gp-5-critic-steps": False, "gan-instance-noise": True, "gan-r1": True, "gan-r2": True}


def train(variant: str, steps: int, seed: int = 0) -> list[float]:
    """Distance to the equilibrium after each step (index 0: the start)."""
    loss_name, regs, updates, critic_steps, lr, noise = VARIANTS[variant]
    loss = LOSSES.get(loss_name)
    options = loss.options()
    regularizers = [(REGULARIZERS.get(n), REGULARIZERS.get(n).options(**kw)) for n, kw in regs.items()]
    critic = LinearCritic(START[1])
    theta = nn.Parameter(torch.tensor(START[0], dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    batch = NOISE_BATCH if noise else 1

    def samples() -> tuple[torch.Tensor, torch.Tensor]:
        real = torch.zeros(batch, 1, dtype=torch.float64)
        fake = theta.expand(batch, 1)
        if noise:
            real = real + noise * torch.randn(batch, 1, generator=g, dtype=torch.float64)
            fake = fake + noise * torch.randn(batch, 1, generator=g, dtype=torch.float64)
        return real, fake

    def d_loss(real, fake) -> torch.Tensor:
        total = loss.discriminator(critic(real), critic(fake.detach()), options, {})["loss"]
        for reg, reg_options in regularizers:
            if reg.kind == "penalty":
                total = total + reg.apply(critic, real, fake.detach(), reg_options, g)["loss"]
        return total

    def g_loss(real, fake) -> torch.Tensor:
        return loss.generator(None, critic(fake), options, {})["loss"]

    def after_d_step() -> None:
        for reg, reg_options in regularizers:
            if reg.kind == "post_step":
                reg.apply(critic, reg_options)

    distances = [math.hypot(*START)]
    for _ in range(steps):
        if updates == "simultaneous":
            real, fake = samples()
            grad_psi = torch.autograd.grad(d_loss(real, fake), critic.psi)[0]
            grad_theta = torch.autograd.grad(g_loss(real, fake), theta)[0]
            with torch.no_grad():
                critic.psi -= lr * grad_psi
                theta -= lr * grad_theta
            after_d_step()
        else:
            for _ in range(critic_steps):
                real, fake = samples()
                grad_psi = torch.autograd.grad(d_loss(real, fake), critic.psi)[0]
                with torch.no_grad():
                    critic.psi -= lr * grad_psi
                after_d_step()
            real, fake = samples()
            grad_theta = torch.autograd.grad(g_loss(real, fake), theta)[0]
            with torch.no_grad():
                theta -= lr * grad_theta
        distances.append(math.hypot(theta.item(), critic.psi.item()))
    return distances


def check(variant: str, distances: list[float]) -> Check:
    tail = distances[-max(1, len(distances) // 10):]
    final = sum(tail) / len(tail) / distances[0]  # mean over the last 10%, relative to the start
    converges = CONVERGES[variant]
    measured = f"distance {final:.3g} x the start's, mean over the last 10% of {len(distances) - 1:,} steps"
    if final < CONVERGED:
        verdict = "reproduced" if converges else "not reproduced"
    elif final > NOT_CONVERGED:
        verdict = "not reproduced" if converges else "reproduced"
    else:
        verdict = "inconclusive"
    return Check(claim=f"{variant}: {'converges' if converges else 'does not converge'} to the equilibrium",
                 published="converges" if converges else "does not converge", measured=measured, verdict=verdict,
                 reason=f"converged: < {CONVERGED:g} x the starting distance; not converged: > {NOT_CONVERGED:g} x")


def run(profile: str) -> Measurement:
    steps = STEPS[profile]
    curves, checks = {}, []
    for variant in VARIANTS:
        distances = train(variant, steps)
        every = max(1, steps // 200)  # 200 points per curve are enough to draw it
        curves[f"dirac/distance@{variant}"] = ("distance", [(i, d) for i, d in enumerate(distances) if i % every == 0])
        checks.append(check(variant, distances))
    config = {"start": START, "steps": steps, "variants": {k: dict(zip(
        ("loss", "regularizers", "updates", "critic_steps", "lr", "instance_noise"), v)) for k, v in VARIANTS.items()}}
    return Measurement(checks, curves=curves, config=config)


DIRAC_GAN = Reproduction(
    name="dirac-gan",
    paper="Mescheder, Geiger & Nowozin 2018, Which training methods for GANs actually converge? (ICML)",
    where="sections 2-4 (the Dirac-GAN and its regularisers), Figures 2-4",
    setup=SETUP,
    run=run,
    budget={"cpu": f"{STEPS['cpu']:,} steps per variant, seconds", "gpu": f"{STEPS['gpu']:,} steps per variant"},
)
