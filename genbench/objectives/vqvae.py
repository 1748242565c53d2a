"""The VQ-VAE objective (van den Oord et al. 2017, eq. 3), per example:

    L = -log p(x | z_q(x)) + ||sg[z_e(x)] - e||^2 + beta ||z_e(x) - sg[e]||^2

averaged over the batch; squared distances are summed over code positions and
dimensions. The codebook term moves the codes towards the encoder outputs, the
commitment term (weight beta, 0.25 in the paper) keeps the encoder outputs near their
codes. With the model's ema=True the codebook follows moving averages instead
(appendix A.1) and the codebook term is logged but not optimised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.objectives.base import LossTerms, register_objective


@dataclass(frozen=True)
class VQObjectiveOptions:
    beta: float = 0.25  # commitment weight (van den Oord et al. 2017 use 0.25; robust in 0.1..2)

    def __post_init__(self):
        if self.beta < 0:
            raise ValueError(f"beta (the commitment weight) must be >= 0; got {self.beta}")


@register_objective("vqvae", "vqvae", VQObjectiveOptions,
                    "VQ-VAE loss: recon NLL + codebook + beta * commitment (van den Oord et al. 2017)")
def vqvae_loss(model, x: torch.Tensor, options: VQObjectiveOptions, generator,
               step: int | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    terms = model.vq_terms(target, generator)  # per-example terms (B,) and batch usage
    per_example = terms.recon_nll + options.beta * terms.commitment_loss  # (B,)
    if not model.ema:
        per_example = per_example + terms.codebook_loss
    return {
        "loss": per_example.mean(),
        "recon_nll": terms.recon_nll.mean().detach(),
        "codebook_loss": terms.codebook_loss.mean().detach(),
        "commitment_loss": terms.commitment_loss.mean().detach(),
        "perplexity": terms.perplexity.detach(),
        "codebook_usage": terms.usage.detach(),
        "revived": torch.tensor(float(terms.revived)),
    }
