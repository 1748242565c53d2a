"""Objectives of the autoencoder and VAE families.

recon: -log p(x | z = enc(x)) under the decoder likelihood, averaged over the batch
       (a fixed-sigma Gaussian makes this squared error up to a constant).
elbo:  the evidence lower bound of Kingma & Welling 2014, with beta weighting of the KL
       (Higgins et al. 2017) and free bits (Kingma et al. 2016) as options; its loss is
       E_q[-log p(x|z)] + beta * sum_d max(KL_d, free_bits), one sample of z per example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.objectives.base import LossTerms, register_objective


@dataclass(frozen=True)
class ReconOptions:
    pass


@dataclass(frozen=True)
class ElboOptions:
    beta: float = 1.0  # KL weight; 1 is the ELBO, > 1 is beta-VAE (Higgins et al. 2017)
    free_bits: float = 0.0  # per-dimension KL floor in nats (Kingma et al. 2016); 0 = off

    def __post_init__(self):
        if self.beta < 0 or self.free_bits < 0:
            raise ValueError("beta and free_bits must be >= 0")


@register_objective("recon", "autoencoder", ReconOptions, "reconstruction NLL under the decoder likelihood")
def recon_loss(model, x: torch.Tensor, options: ReconOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    nll = model.likelihood.nll(model.reconstruct_output(target), target)  # (B,)
    loss = nll.mean()
    return {"loss": loss, "recon_nll": loss.detach()}


@register_objective("elbo", "vae", ElboOptions, "negative ELBO (Kingma & Welling 2014); beta, free bits options")
def elbo_loss(model, x: torch.Tensor, options: ElboOptions, generator, step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    recon_nll, kl, kl_objective = model.elbo_terms(
        target, generator, beta=options.beta, free_bits=options.free_bits
    )  # each (B,)
    loss = (recon_nll + kl_objective).mean()
    return {
        "loss": loss,
        "recon_nll": recon_nll.mean().detach(),
        "kl": kl.mean().detach(),
        "elbo": -(recon_nll + kl).mean().detach(),
    }
