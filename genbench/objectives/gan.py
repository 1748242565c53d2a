"""GAN losses and discriminator regularisers, as small registered pure functions.

Losses (LOSSES, family "gan"; see gan_base.py for the contract), with s = score:
  minimax         Goodfellow et al. 2014, saturating G
  non-saturating  Goodfellow et al. 2014, G maximises log D(G(z))
  lsgan           Mao et al. 2017, least squares with the a-b-c coding
  wgan            Arjovsky et al. 2017, critic + weight clipping
  wgan-gp         Gulrajani et al. 2017, critic + gradient penalty
  dragan          Kodali et al. 2017, non-saturating + DRAGAN penalty
  hinge           Lim & Ye 2017; Miyato et al. 2018
  ebgan           Zhao et al. 2017, energy-based with margin and pulling-away term
  began           Berthelot et al. 2017, boundary equilibrium with proportional control of k
  ragan           Jolicoeur-Martineau 2019, relativistic average standard GAN

Regularisers (REGULARIZERS): gp, dragan, r1, r2 (penalties added to the D loss) and
clip (post-step weight clipping).

Numerics: -log sigmoid(x) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x); every
sigmoid cross-entropy goes through binary_cross_entropy_with_logits, which is stable for
any logit. Half-precision scores are promoted to float32 before a loss is taken.
Every "loss" is a mean over the batch; every other term is a detached scalar to log.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench.objectives.base import LossTerms
from genbench.objectives.gan_base import GanLoss, Regularizer, register_gan_loss, register_regularizer

# --------------------------------------------------------------------------- options
from genbench.models.gan_output import DOutput


@dataclass(frozen=True)
class NoOptions:
    """The loss has no options."""


@dataclass(frozen=True)
class BceOptions:
    label_smoothing: float = 0.0  # one-sided: real target 1 - s, fake stays 0 (Salimans et al. 2016)

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass(frozen=True)
class LsganOptions:
    a: float = 0.0  # target for fake samples in the D loss (Mao et al. 2017, eq. 2)
    b: float = 1.0  # target for real samples in the D loss
    c: float = 1.0  # value G wants D to assign to fake samples

    def __post_init__(self):
        if self.a == self.b:
            raise ValueError(f"a (fake target) and b (real target) must differ, both are {self.a}")


@dataclass(frozen=True)
class EbganOptions:
    # Hinge margin m on the fake energy. Our energy is the per-dimension MEAN squared
    # reconstruction error (the paper sums, with m ~ 10-80); for data in [-1, 1] a
    # useless reconstruction scores about E[x^2] < 1, so m = 0.5 pushes fakes that far.
    margin: float = 0.5
    pt_weight: float = 0.1  # weight of the pulling-away term on the fake embeddings (paper: 0.1)

    def __post_init__(self):
        if self.margin <= 0:
            raise ValueError(f"margin must be > 0, got {self.margin}")
        if self.pt_weight < 0:
            raise ValueError(f"pt_weight must be >= 0, got {self.pt_weight}")


@dataclass(frozen=True)
class BeganOptions:
    gamma: float = 0.5  # diversity ratio E[L(G(z))] / E[L(x)] held at equilibrium (Berthelot et al. 2017)
    lambda_k: float = 0.001  # proportional gain of the k_t controller (paper: 0.001)

    def __post_init__(self):
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.lambda_k < 0:
            raise ValueError(f"lambda_k must be >= 0, got {self.lambda_k}")


# --------------------------------------------------------------------------- helpers


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Half and bfloat16 are promoted to float32; float32 and float64 are kept."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _score(out: DOutput) -> torch.Tensor:
    return _at_least_fp32(out.score)  # (B,)


def _logs(real: DOutput | None, fake: DOutput) -> LossTerms:
    """Mean score on real (when given) and fake: the D(x) and D(G(z)) stability signals."""
    logs = {"d_fake": _score(fake).mean().detach()}
    if real is not None:
        logs["d_real"] = _score(real).mean().detach()
    return logs


def _terms(loss: torch.Tensor, real: DOutput | None, fake: DOutput, **extra: torch.Tensor) -> LossTerms:
    return {"loss": loss, **_logs(real, fake), **{k: v.detach() for k, v in extra.items()}}


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean sigmoid cross-entropy against a constant target in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _require_real(real: DOutput | None, loss: str) -> DOutput:
    if real is None:
        raise ValueError(
            f"GAN loss {loss!r} needs the discriminator's output on real data in the generator "
            "step (needs_real_in_generator_step=True), but real=None was passed."
        )
    return real


# --------------------------------------------------------------------------- minimax / NS


def bce_discriminator(real: DOutput, fake: DOutput, options: BceOptions, state: dict) -> LossTerms:
    """D loss of the standard GAN (Goodfellow et al. 2014), with one-sided label smoothing.

    E_x[BCE(d(x), 1 - s)] + E_z[-log(1 - sigmoid(d(G(z))))], where
    BCE(l, t) = -t log sigmoid(l) - (1 - t) log(1 - sigmoid(l)); s = 0 gives -log sigmoid(d(x)).
    One-sided smoothing (real target 1 - s, fake target 0): Salimans et al. 2016.
    """
    loss = _bce(_score(real), 1.0 - options.label_smoothing) + _bce(_score(fake), 0.0)
    return _terms(loss, real, fake)


def minimax_generator(real: DOutput | None, fake: DOutput, options: BceOptions, state: dict) -> LossTerms:
    """Saturating G loss (Goodfellow et al. 2014): minimise E_z[log(1 - sigmoid(d(G(z))))] = -softplus(d)."""
    return _terms(-F.softplus(_score(fake)).mean(), real, fake)


def non_saturating_generator(real: DOutput | None, fake: DOutput, options: BceOptions, state: dict) -> LossTerms:
    """Non-saturating G loss (Goodfellow et al. 2014): E_z[-log sigmoid(d(G(z)))] = softplus(-d)."""
    return _terms(_bce(_score(fake), 1.0), real, fake)


# --------------------------------------------------------------------------- LSGAN


def lsgan_discriminator(real: DOutput, fake: DOutput, options: LsganOptions, state: dict) -> LossTerms:
    """LSGAN D loss (Mao et al. 2017): 1/2 E_x[(d(x) - b)^2] + 1/2 E_z[(d(G(z)) - a)^2]."""
    loss = 0.5 * (_score(real) - options.b).pow(2).mean() + 0.5 * (_score(fake) - options.a).pow(2).mean()
    return _terms(loss, real, fake)


def lsgan_generator(real: DOutput | None, fake: DOutput, options: LsganOptions, state: dict) -> LossTerms:
    """LSGAN G loss (Mao et al. 2017): 1/2 E_z[(d(G(z)) - c)^2]."""
    return _terms(0.5 * (_score(fake) - options.c).pow(2).mean(), real, fake)


# --------------------------------------------------------------------------- WGAN / hinge


def wasserstein_discriminator(real: DOutput, fake: DOutput, options: NoOptions, state: dict) -> LossTerms:
    """Critic loss (Arjovsky et al. 2017): E_z[f(G(z))] - E_x[f(x)], minus the W1 estimate.

    The Lipschitz constraint comes from a regulariser (clip or gp), not from this loss.
    """
    loss = _score(fake).mean() - _score(real).mean()
    return _terms(loss, real, fake, wasserstein_estimate=-loss)


def critic_generator(real: DOutput | None, fake: DOutput, options, state: dict) -> LossTerms:
    """G loss of WGAN (Arjovsky et al. 2017) and of the hinge GAN (Lim & Ye 2017): -E_z[d(G(z))]."""
    return _terms(-_score(fake).mean(), real, fake)


def hinge_discriminator(real: DOutput, fake: DOutput, options: NoOptions, state: dict) -> LossTerms:
    """Hinge D loss (Lim & Ye 2017; Miyato et al. 2018): E_x[relu(1 - d(x))] + E_z[relu(1 + d(G(z)))]."""
    loss = F.relu(1.0 - _score(real)).mean() + F.relu(1.0 + _score(fake)).mean()
    return _terms(loss, real, fake)


# --------------------------------------------------------------------------- EBGAN


def pulling_away_term(embedding: torch.Tensor) -> torch.Tensor:
    """EBGAN's pulling-away term (Zhao et al. 2017, eq. 6).

    PT = 1 / (N (N - 1)) sum_{i != j} cos^2(s_i, s_j) over the batch's embeddings s_i:
    0 for mutually orthogonal embeddings, 1 when all point the same way. Needs N >= 2.
    """
    s = F.normalize(_at_least_fp32(embedding).flatten(1), dim=1)  # (N, E), unit rows
    n = s.shape[0]
    if n < 2:
        raise ValueError(f"the pulling-away term needs a batch of at least 2, got {n}")
    cos2 = (s @ s.T).pow(2)  # (N, N)
    return (cos2.sum() - cos2.diagonal().sum()) / (n * (n - 1))


def ebgan_discriminator(real: DOutput, fake: DOutput, options: EbganOptions, state: dict) -> LossTerms:
    """EBGAN D loss (Zhao et al. 2017, eq. 1): E_x[D(x)] + E_z[relu(m - D(G(z)))], D = energy."""
    loss = _score(real).mean() + F.relu(options.margin - _score(fake)).mean()
    return _terms(loss, real, fake)


def ebgan_generator(real: DOutput | None, fake: DOutput, options: EbganOptions, state: dict) -> LossTerms:
    """EBGAN G loss (Zhao et al. 2017, eqs. 2 and 6): E_z[D(G(z))] + pt_weight * PT(fake embeddings)."""
    energy = _score(fake).mean()
    if options.pt_weight == 0:
        return _terms(energy, real, fake)
    if fake.embedding is None:
        raise ValueError(
            "ebgan's pulling-away term needs the discriminator's embedding (DOutput.embedding); "
            "use an autoencoder discriminator that returns its code, or set pt_weight=0."
        )
    pt = pulling_away_term(fake.embedding)
    return _terms(energy + options.pt_weight * pt, real, fake, pulling_away=pt)


# --------------------------------------------------------------------------- BEGAN


def began_init_state(options: BeganOptions) -> dict:
    """k_0 = 0 (Berthelot et al. 2017, section 3.4)."""
    return {"k": 0.0}


def began_convergence(l_real: float, l_fake: float, gamma: float) -> float:
    """BEGAN's convergence measure (Berthelot et al. 2017, section 3.4.1): M = L(x) + |gamma L(x) - L(G(z))|."""
    return l_real + abs(gamma * l_real - l_fake)


def began_discriminator(real: DOutput, fake: DOutput, options: BeganOptions, state: dict) -> LossTerms:
    """BEGAN D loss (Berthelot et al. 2017, eq. 4): L(x) - k_t L(G(z)), L = mean |x - AE(x)|."""
    l_real, l_fake = _score(real).mean(), _score(fake).mean()
    k = state["k"]
    m = began_convergence(l_real.item(), l_fake.item(), options.gamma)
    return _terms(l_real - k * l_fake, real, fake, began_k=torch.tensor(float(k)), began_m=torch.tensor(m))


def began_generator(real: DOutput | None, fake: DOutput, options: BeganOptions, state: dict) -> LossTerms:
    """BEGAN G loss (Berthelot et al. 2017, eq. 4): L(G(z))."""
    return _terms(_score(fake).mean(), real, fake)


def began_update_state(state: dict, real: DOutput, fake: DOutput, options: BeganOptions) -> dict:
    """k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1) on batch means (Berthelot et al. 2017, eq. 4)."""
    l_real, l_fake = _score(real).mean().item(), _score(fake).mean().item()
    k = state["k"] + options.lambda_k * (options.gamma * l_real - l_fake)
    return {**state, "k": min(max(k, 0.0), 1.0)}


# --------------------------------------------------------------------------- RaGAN


def ragan_discriminator(real: DOutput, fake: DOutput, options: NoOptions, state: dict) -> LossTerms:
    """RaSGAN D loss (Jolicoeur-Martineau 2019, eq. 16 with the standard GAN's f):

    E_x[-log sigmoid(d(x) - E_z d(G(z)))] + E_z[-log(1 - sigmoid(d(G(z)) - E_x d(x)))].
    """
    d_real, d_fake = _score(real), _score(fake)
    loss = _bce(d_real - d_fake.mean(), 1.0) + _bce(d_fake - d_real.mean(), 0.0)
    return _terms(loss, real, fake)


def ragan_generator(real: DOutput | None, fake: DOutput, options: NoOptions, state: dict) -> LossTerms:
    """RaSGAN G loss (Jolicoeur-Martineau 2019), the D loss with real and fake swapped:

    E_z[-log sigmoid(d(G(z)) - E_x d(x))] + E_x[-log(1 - sigmoid(d(x) - E_z d(G(z))))].
    """
    real = _require_real(real, "ragan")
    d_real, d_fake = _score(real), _score(fake)
    loss = _bce(d_fake - d_real.mean(), 1.0) + _bce(d_real - d_fake.mean(), 0.0)
    return _terms(loss, real, fake)


# --------------------------------------------------------------------------- loss registry

register_gan_loss(GanLoss(
    "minimax", BceOptions, bce_discriminator, minimax_generator, "logit",
    "saturating minimax GAN (Goodfellow et al. 2014); one-sided label smoothing option",
))
register_gan_loss(GanLoss(
    "non-saturating", BceOptions, bce_discriminator, non_saturating_generator, "logit",
    "non-saturating GAN, G maximises log D(G(z)) (Goodfellow et al. 2014)",
))
register_gan_loss(GanLoss(
    "lsgan", LsganOptions, lsgan_discriminator, lsgan_generator, "logit",
    "least-squares GAN with the a-b-c coding (Mao et al. 2017)",
))
register_gan_loss(GanLoss(
    "wgan", NoOptions, wasserstein_discriminator, critic_generator, "critic",
    "Wasserstein GAN with weight clipping (Arjovsky et al. 2017)",
    regularizers=(("clip", {"clip_value": 0.01}),),
))
register_gan_loss(GanLoss(
    "wgan-gp", NoOptions, wasserstein_discriminator, critic_generator, "critic",
    "Wasserstein GAN with gradient penalty (Gulrajani et al. 2017)",
    regularizers=(("gp", {"weight": 10.0}),),
))
register_gan_loss(GanLoss(
    "dragan", BceOptions, bce_discriminator, non_saturating_generator, "logit",
    "non-saturating GAN with the DRAGAN local gradient penalty (Kodali et al. 2017)",
    regularizers=(("dragan", {"weight": 10.0}),),
))
register_gan_loss(GanLoss(
    "hinge", NoOptions, hinge_discriminator, critic_generator, "logit",
    "hinge GAN (Lim & Ye 2017; Miyato et al. 2018)",
))
register_gan_loss(GanLoss(
    "ebgan", EbganOptions, ebgan_discriminator, ebgan_generator, "energy-l2",
    "energy-based GAN with margin and pulling-away term (Zhao et al. 2017)",
))
register_gan_loss(GanLoss(
    "began", BeganOptions, began_discriminator, began_generator, "energy-l1",
    "boundary equilibrium GAN, k_t control and convergence measure (Berthelot et al. 2017)",
    init_state=began_init_state,
    update_state=began_update_state,
))
register_gan_loss(GanLoss(
    "ragan", NoOptions, ragan_discriminator, ragan_generator, "logit",
    "relativistic average standard GAN (Jolicoeur-Martineau 2019)",
    needs_real_in_generator_step=True,
))


# --------------------------------------------------------------------------- regulariser options


@dataclass(frozen=True)
class GradientPenaltyOptions:
    weight: float = 10.0  # lambda of Gulrajani et al. 2017 (paper: 10)

    def __post_init__(self):
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")


@dataclass(frozen=True)
class DraganOptions:
    weight: float = 10.0  # lambda of Kodali et al. 2017 (paper: 10)
    c: float = 0.5  # perturbation scale: x + c * std(x) * u, u ~ U[0, 1] (Kodali et al.'s code: 0.5)

    def __post_init__(self):
        if self.weight < 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if self.c < 0:
            raise ValueError(f"c must be >= 0, got {self.c}")


@dataclass(frozen=True)
class R1Options:
    gamma: float = 10.0  # penalty weight gamma; the penalty is gamma / 2 * E||grad||^2 (Mescheder et al. 2018)

    def __post_init__(self):
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")


@dataclass(frozen=True)
class ClipOptions:
    clip_value: float = 0.01  # every D parameter is clamped to [-c, c] (Arjovsky et al. 2017: 0.01)

    def __post_init__(self):
        if self.clip_value <= 0:
            raise ValueError(f"clip_value must be > 0, got {self.clip_value}")


# --------------------------------------------------------------------------- penalty helpers


def _per_example_uniform(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """u ~ U[0, 1], one per example, shaped to broadcast over x: (N, 1, ..., 1)."""
    u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)  # (N,)
    return u.view(-1, *([1] * (x.ndim - 1)))


def critic_grad_norms(critic, x: torch.Tensor) -> torch.Tensor:
    """||grad_x critic(x).score||_2 per example, over all non-batch dims, differentiable (N,).

    x is detached and made a leaf that requires grad; create_graph=True so a penalty on
    the norms trains the critic's parameters (double backprop).
    """
    x = x.detach().requires_grad_(True)
    score = critic(x).score  # (N,)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    return torch.linalg.vector_norm(grad.flatten(1), dim=1)  # (N,)


def _penalty_terms(name: str, penalty: torch.Tensor, norms: torch.Tensor) -> LossTerms:
    return {"loss": penalty, f"{name}_penalty": penalty.detach(), "grad_norm_mean": norms.mean().detach()}


def _one_centred(norms: torch.Tensor, weight: float) -> torch.Tensor:
    return weight * (norms - 1.0).pow(2).mean()


# --------------------------------------------------------------------------- penalties


def gradient_penalty(critic, real_x, fake_x, options: GradientPenaltyOptions, generator=None) -> LossTerms:
    """WGAN-GP penalty (Gulrajani et al. 2017, eq. 3): weight * E[(||grad critic(x_hat)||_2 - 1)^2].

    x_hat = eps x_real + (1 - eps) x_fake with eps ~ U[0, 1] per example (one
    torch.rand(N) draw from `generator`).
    """
    eps = _per_example_uniform(real_x, generator)  # (N, 1, ...)
    x_hat = eps * real_x + (1.0 - eps) * fake_x
    norms = critic_grad_norms(critic, x_hat)
    return _penalty_terms("gp", _one_centred(norms, options.weight), norms)


def dragan_penalty(critic, real_x, fake_x, options: DraganOptions, generator=None) -> LossTerms:
    """DRAGAN penalty (Kodali et al. 2017): weight * E[(||grad D(x_hat)||_2 - 1)^2] near the data.

    x_p = x + c * std(x) * u with u ~ U[0, 1] elementwise and std the (population)
    standard deviation of the whole real batch, as in the authors' code; then
    x_hat = alpha x + (1 - alpha) x_p with alpha ~ U[0, 1] per example. Draws from
    `generator`: u (shape of x), then alpha (N). fake_x is unused.
    """
    u = torch.rand(real_x.shape, generator=generator, device=real_x.device, dtype=real_x.dtype)
    x_p = real_x + options.c * real_x.std(correction=0) * u
    alpha = _per_example_uniform(real_x, generator)  # (N, 1, ...)
    x_hat = alpha * real_x + (1.0 - alpha) * x_p
    norms = critic_grad_norms(critic, x_hat)
    return _penalty_terms("dragan", _one_centred(norms, options.weight), norms)


def _zero_centred(norms: torch.Tensor, gamma: float) -> torch.Tensor:
    return 0.5 * gamma * norms.pow(2).mean()


def r1_penalty(critic, real_x, fake_x, options: R1Options, generator=None) -> LossTerms:
    """R1 (Mescheder et al. 2018, eq. 9): gamma / 2 * E_x[||grad_x D(x)||^2] on real data."""
    norms = critic_grad_norms(critic, real_x)
    return _penalty_terms("r1", _zero_centred(norms, options.gamma), norms)


def r2_penalty(critic, real_x, fake_x, options: R1Options, generator=None) -> LossTerms:
    """R2 (Mescheder et al. 2018, eq. 10): gamma / 2 * E_z[||grad_x D(G(z))||^2] on fake samples."""
    norms = critic_grad_norms(critic, fake_x)
    return _penalty_terms("r2", _zero_centred(norms, options.gamma), norms)


def clip_weights(discriminator: nn.Module, options: ClipOptions) -> None:
    """WGAN weight clipping (Arjovsky et al. 2017, algorithm 1): clamp every parameter to [-c, c]."""
    with torch.no_grad():
        for p in discriminator.parameters():
            p.clamp_(-options.clip_value, options.clip_value)


register_regularizer(Regularizer(
    "gp", GradientPenaltyOptions, "penalty", gradient_penalty,
    "WGAN-GP gradient penalty on real-fake interpolates (Gulrajani et al. 2017)",
))
register_regularizer(Regularizer(
    "dragan", DraganOptions, "penalty", dragan_penalty,
    "DRAGAN gradient penalty on perturbed real data (Kodali et al. 2017)",
))
register_regularizer(Regularizer(
    "r1", R1Options, "penalty", r1_penalty,
    "R1 zero-centred gradient penalty on real data (Mescheder et al. 2018)",
))
register_regularizer(Regularizer(
    "r2", R1Options, "penalty", r2_penalty,
    "R2 zero-centred gradient penalty on fake samples (Mescheder et al. 2018)",
))
register_regularizer(Regularizer(
    "clip", ClipOptions, "post_step", clip_weights,
    "weight clipping after each discriminator step (Arjovsky et al. 2017)",
))
