"""Objectives of the diffusion family (model "ddpm", genbench/models/diffusion.py).

Both draw, per example, an index t uniformly from {0..T-1} (the paper's t = index + 1),
eps ~ N(0, I) and x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and score the trained
network's eps_theta(x_t, t) (not the EMA copy):

ddpm-simple: L_simple (Ho et al. 2020, eq. 14): the batch mean of
             ||eps - eps_theta||^2 / D (the mean over dimensions, as their code); lambda_t = 1.
ddpm-vlb:    the variational bound with uniform t (Ho et al. 2020, eqs. 5 and 12), in nats per
             dimension: loss = mean_batch(T * L(t)) / D, where for t >= 1 (index)
             L(t) = lambda_t ||eps - eps_theta||^2 + D * c_t = L_{t-1} exactly (the Gaussian KL to the
             posterior with unclipped x0_hat; lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)),
             c_t the variance mismatch, 0 for fixed-small), and for t = 0 the decoder term
             L_0 = -log p(x_0 | x_1) (discretised Gaussian over the 8-bit levels; continuous for points)
             when decoder_nll=True, else lambda_0 ||eps - eps_theta||^2. sigma_t^2 is the model's
             `variance` option. The loss is an unbiased one-sample estimate of (bound - L_T) / D; L_T
             has no parameters and is only logged (vlb_bpd / vlb_nats add it back).

Logged: mse (mean over dims and batch), and mse_q1..mse_q4, the mse of the examples whose t
falls in each quarter of 0..T-1 (only the quarters present in the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genbench.models.diffusion import decoder_nll, gather, prior_kl
from genbench.objectives.base import LossTerms, register_objective

QUARTERS = 4


@dataclass(frozen=True)
class SimpleOptions:
    pass


@dataclass(frozen=True)
class VlbOptions:
    decoder_nll: bool = True  # index 0 scored by L_0, the decoder NLL (Ho et al. §3.3); False: lambda_0-weighted MSE


def noised_batch(model, x: torch.Tensor, generator: torch.Generator | None):
    """(t (B,), eps (B, ...), x_t, eps_theta(x_t, t)) for data x with uniform t."""
    t = torch.randint(model.timesteps, (x.shape[0],), generator=generator, device=x.device)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    xt = model.process.q_sample(x, t, noise)
    return t, noise, xt, model.predict_noise(xt, t)


def quarter_means(values: torch.Tensor, t: torch.Tensor, timesteps: int) -> LossTerms:
    """Mean of values (B,) per quarter of the timesteps present in the batch: mse_q1..mse_q4."""
    quarter = (t * QUARTERS) // timesteps  # (B,) in 0..3
    out = {}
    for q in range(QUARTERS):
        hit = quarter == q
        if bool(hit.any()):
            out[f"mse_q{q + 1}"] = values[hit].mean().detach()
    return out


@register_objective("ddpm-simple", "diffusion", SimpleOptions,
                    "L_simple (Ho et al. 2020, eq. 14): epsilon MSE with uniform t, lambda_t = 1")
def simple_loss(model, x: torch.Tensor, options: SimpleOptions, generator, step: int | None = None) -> LossTerms:
    t, noise, _, eps = noised_batch(model, x, generator)
    mse = (noise - eps).pow(2).flatten(1).mean(1)  # (B,)
    loss = mse.mean()
    return {"loss": loss, "mse": loss.detach(), **quarter_means(mse, t, model.timesteps)}


@register_objective("ddpm-vlb", "diffusion", VlbOptions,
                    "variational bound with uniform t (Ho et al. 2020): lambda_t-weighted epsilon MSE "
                    "(= L_(t-1)) and the discretised decoder L_0, nats/dim")
def vlb_loss(model, x: torch.Tensor, options: VlbOptions, generator, step: int | None = None) -> LossTerms:
    process, variance = model.process, model.options.variance
    t, noise, xt, eps = noised_batch(model, x, generator)
    dims = math.prod(x.shape[1:])
    sq = (noise - eps).pow(2).flatten(1).sum(1)  # (B,)
    lam = gather(process.vlb_weights(variance), t, 1, x.dtype)  # (B,)
    offset = gather(process.kl_offsets(variance), t, 1, x.dtype) * dims  # (B,)
    term = lam * sq + offset  # L_{t-1} for t >= 1
    first = t == 0
    if options.decoder_nll and bool(first.any()):
        mean, log_var, _ = process.p_mean_variance(eps[first], xt[first], t[first], variance, clip=False)
        term = term.clone()
        term[first] = decoder_nll(x[first], mean, log_var, model.quantised)
    loss = (model.timesteps * term).mean() / dims
    bound = (model.timesteps * term + prior_kl(process, x)).detach()  # (B,) one-sample bound estimate, nats
    terms = {"loss": loss, "mse": (sq / dims).mean().detach(), **quarter_means(sq / dims, t, model.timesteps)}
    if model.quantised:
        terms["vlb_bpd"] = bound.mean() / (dims * math.log(2))
    else:
        terms["vlb_nats"] = bound.mean()
    return terms
