"""Objectives of the autoencoder and VAE families.

recon:    -log p(x | z = enc(x)) under the decoder likelihood, averaged over the batch
          (a fixed-sigma Gaussian makes this squared error up to a constant).
denoise:  the denoising autoencoder (Vincent et al. 2008): reconstruct the clean x from
          a corrupted copy; masking noise, additive Gaussian or salt-and-pepper.
sparse:   the sparse autoencoder (Ng, "Sparse autoencoder", CS294A notes 2011): recon plus
          weight * sum_j KL(rho || rho_hat_j), rho_hat_j the batch-mean activation of
          sigmoid code unit j, pulling mean activations to rho = 0.05.
elbo:     the evidence lower bound of Kingma & Welling 2014, with beta weighting of the
          KL, free bits (Kingma et al. 2016) and linear KL warm-up (Bowman et al. 2016,
          Sønderby et al. 2016) as options; its loss is
          E_q[-log p(x|z)] + w_t * beta * sum_d max(KL_d, free_bits), one z per example,
          w_t = min(1, step / warmup_steps) (1 without warm-up).
beta-vae: Higgins et al. 2017: the ELBO with beta > 1 (default 4); with capacity_max set,
          Burgess et al. 2018's controlled capacity, recon + gamma * |KL - C_t| with C_t
          rising linearly from 0 to capacity_max nats over capacity_steps.
iwae:     the importance-weighted bound with k samples (Burda et al. 2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from genbench.objectives.base import LossTerms, register_objective


@dataclass(frozen=True)
class ReconOptions:
    pass


@dataclass(frozen=True)
class ElboOptions:
    beta: float = 1.0  # KL weight; 1 is the ELBO, > 1 is beta-VAE (Higgins et al. 2017)
    free_bits: float = 0.0  # per-dimension KL floor in nats (Kingma et al. 2016); 0 = off
    warmup_steps: int = 0  # KL weight rises linearly from 0 to beta over these steps; 0 = off

    def __post_init__(self):
        if self.beta < 0 or self.free_bits < 0 or self.warmup_steps < 0:
            raise ValueError("beta, free_bits and warmup_steps must be >= 0")


def warmup_weight(step: int | None, warmup_steps: int) -> float:
    """Linear KL warm-up: min(1, step / warmup_steps); 1 outside training or without warm-up."""
    if step is None or warmup_steps == 0:
        return 1.0
    return min(1.0, step / warmup_steps)


@dataclass(frozen=True)
class DenoiseOptions:
    corruption: Literal["mask", "gaussian", "salt-pepper"] = "mask"  # Vincent et al. 2008/2010
    level: float = 0.25  # mask / salt-pepper: fraction of inputs corrupted; gaussian: noise std

    def __post_init__(self):
        if self.level < 0 or (self.corruption != "gaussian" and self.level > 1):
            raise ValueError("level must be >= 0 (and <= 1 for mask and salt-pepper: it is a fraction)")


@dataclass(frozen=True)
class SparseOptions:
    rho: float = 0.05  # target mean activation of each sigmoid code unit
    weight: float = 3.0  # weight of the sparsity penalty (Ng's beta)

    def __post_init__(self):
        if not 0.0 < self.rho < 1.0 or self.weight < 0:
            raise ValueError("rho must be in (0, 1) and weight >= 0")


@dataclass(frozen=True)
class BetaVaeOptions:
    beta: float = 4.0  # KL weight (Higgins et al. 2017 use 4 on dSprites-like data)
    capacity_max: float | None = None  # nats; set = Burgess et al. 2018's capacity objective
    capacity_steps: int = 10000  # steps over which C_t rises from 0 to capacity_max
    gamma: float = 100.0  # weight of |KL - C_t| in the capacity objective

    def __post_init__(self):
        if self.beta < 0 or self.gamma < 0 or self.capacity_steps < 1:
            raise ValueError("beta and gamma must be >= 0 and capacity_steps >= 1")
        if self.capacity_max is not None and self.capacity_max < 0:
            raise ValueError("capacity_max must be >= 0 nats (or None for the plain beta-VAE)")


@register_objective("recon", "autoencoder", ReconOptions, "reconstruction NLL under the decoder likelihood")
def recon_loss(model, x: torch.Tensor, options: ReconOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    nll = model.likelihood.nll(model.reconstruct_output(target), target)  # (B,)
    loss = nll.mean()
    return {"loss": loss, "recon_nll": loss.detach()}


def corrupt(x: torch.Tensor, options: DenoiseOptions, low: float, high: float,
            generator: torch.Generator | None) -> torch.Tensor:
    """A corrupted copy of x (values in [low, high]): masking sets a random fraction of the
    inputs to `low` (Vincent et al. 2008's "zeroing", black here), salt-and-pepper sets a
    random fraction to low or high with equal odds, gaussian adds N(0, level^2) noise."""
    if options.corruption == "gaussian":
        return x + options.level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    hit = torch.rand(x.shape, generator=generator, device=x.device) < options.level
    if options.corruption == "mask":
        return torch.where(hit, torch.full_like(x, low), x)
    salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    return torch.where(hit, torch.where(salt, torch.full_like(x, high), torch.full_like(x, low)), x)


@register_objective("denoise", "autoencoder", DenoiseOptions,
                    "denoising autoencoder (Vincent et al. 2008): reconstruct x from a corrupted copy")
def denoise_loss(model, x: torch.Tensor, options: DenoiseOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    # The input's range: {0, 1} binarised, [-1, 1] images; points mask to 0 (the origin).
    low = -1.0 if model.likelihood.kind == "gaussian" and model.likelihood.quantised else 0.0
    noisy = corrupt(target, options, low, 1.0, generator)
    nll = model.likelihood.nll(model.reconstruct_output(noisy), target)  # (B,)
    loss = nll.mean()
    return {"loss": loss, "recon_nll": loss.detach()}


def bernoulli_kl(rho: float, rho_hat: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(rho) || Bernoulli(rho_hat)) elementwise, rho_hat clamped into (0, 1)."""
    rho_hat = rho_hat.clamp(1e-6, 1 - 1e-6)
    return rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))


@register_objective("sparse", "sparse-autoencoder", SparseOptions,
                    "sparse autoencoder (Ng 2011): recon + weight * sum_j KL(rho || mean activation_j)",
                    batch_coupled="the sparsity penalty is a function of the batch-mean activation, and a "
                                  "shard's mean is not the global batch's")
def sparse_loss(model, x: torch.Tensor, options: SparseOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    code = model.encode_code(target)  # (B, units), sigmoid activations in (0, 1)
    nll = model.likelihood.nll(model.decoder(code), target)  # (B,)
    rho_hat = code.mean(0)  # (units,)
    penalty = bernoulli_kl(options.rho, rho_hat).sum()
    loss = nll.mean() + options.weight * penalty
    return {"loss": loss, "recon_nll": nll.mean().detach(), "sparsity_kl": penalty.detach(),
            "mean_activation": rho_hat.mean().detach()}


def elbo_terms_logged(recon_nll: torch.Tensor, kl: torch.Tensor, loss: torch.Tensor) -> LossTerms:
    return {"loss": loss, "recon_nll": recon_nll.mean().detach(), "kl": kl.mean().detach(),
            "elbo": -(recon_nll + kl).mean().detach()}


@register_objective("elbo", "vae", ElboOptions,
                    "negative ELBO (Kingma & Welling 2014); beta, free bits, KL warm-up options")
def elbo_loss(model, x: torch.Tensor, options: ElboOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    beta = options.beta * warmup_weight(step, options.warmup_steps)
    recon_nll, kl, kl_objective = model.elbo_terms(target, generator, beta=beta, free_bits=options.free_bits)  # (B,)
    terms = elbo_terms_logged(recon_nll, kl, (recon_nll + kl_objective).mean())
    if options.warmup_steps:
        terms["kl_weight"] = torch.tensor(beta)
    return terms


def capacity(step: int | None, options: BetaVaeOptions) -> float:
    """C_t of Burgess et al. 2018: 0 -> capacity_max linearly over capacity_steps."""
    fraction = 1.0 if step is None else min(1.0, step / options.capacity_steps)
    return fraction * options.capacity_max


@register_objective("beta-vae", "vae", BetaVaeOptions,
                    "beta-VAE (Higgins et al. 2017), optional controlled capacity (Burgess et al. 2018)")
def beta_vae_loss(model, x: torch.Tensor, options: BetaVaeOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    if options.capacity_max is None:
        recon_nll, kl, kl_objective = model.elbo_terms(target, generator, beta=options.beta)  # (B,)
        return elbo_terms_logged(recon_nll, kl, (recon_nll + kl_objective).mean())
    recon_nll, kl, _ = model.elbo_terms(target, generator)  # (B,)
    c_t = capacity(step, options)
    terms = elbo_terms_logged(recon_nll, kl, recon_nll.mean() + options.gamma * (kl.mean() - c_t).abs())
    terms["capacity"] = torch.tensor(c_t)
    return terms


@dataclass(frozen=True)
class IwaeOptions:
    k: int = 5  # importance samples per example (Burda et al. 2016 train with k = 5 and 50)

    def __post_init__(self):
        if self.k < 1:
            raise ValueError("k must be >= 1 (k = 1 is the ELBO)")


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log-weights (k, B) -> the importance-weighted bound per example (B,), in nats."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


@register_objective("iwae", "vae", IwaeOptions,
                    "negative importance-weighted bound with k samples (Burda et al. 2016); k = 1 is the ELBO")
def iwae_loss(model, x: torch.Tensor, options: IwaeOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    bound = iwae_bound(model.importance_log_weights(target, options.k, generator))  # (B,)
    loss = -bound.mean()
    return {"loss": loss, "iwae_bound": -loss.detach()}
