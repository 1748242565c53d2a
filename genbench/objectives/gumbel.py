"""Objective of the Gumbel-softmax VAE family.

gumbel-elbo: the negative ELBO of Jang et al. 2017 ("Categorical Reparameterization with
  Gumbel-Softmax"), E_q[-log p(x|y)] + beta · KL(q(c|x) || uniform), with y the relaxed
  (or straight-through) Gumbel-softmax sample at the model's temperature tau(step) and
  the KL of the categorical q analytic. Outside training (step=None) y is a discrete
  draw from q and the value is the true negative ELBO of the discrete model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.objectives.autoencoding import elbo_terms_logged
from genbench.objectives.base import LossTerms, register_objective


@dataclass(frozen=True)
class GumbelElboOptions:
    beta: float = 1.0  # KL weight; 1 is the ELBO, > 1 is beta-VAE (Higgins et al. 2017)

    def __post_init__(self):
        if self.beta < 0:
            raise ValueError("beta must be >= 0")


@register_objective("gumbel-elbo", "gumbel-vae", GumbelElboOptions,
                    "negative ELBO with the Gumbel-softmax relaxation, annealed tau (Jang et al. 2017)")
def gumbel_elbo_loss(model, x: torch.Tensor, options: GumbelElboOptions, generator,
                     step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    recon_nll, kl, kl_objective = model.elbo_terms(target, generator, beta=options.beta, step=step)  # each (B,)
    terms = elbo_terms_logged(recon_nll, kl, (recon_nll + kl_objective).mean())
    if step is not None:  # outside training the sample is discrete: no temperature
        terms["tau"] = torch.tensor(model.temperature(step))
    return terms
