"""The VAE-GAN objective (Larsen et al. 2016, "Autoencoding beyond pixels using a learned
similarity metric"): three losses for three networks, computed from one forward pass.

With x a data batch, z ~ q(z|x) (reparameterised), x~ = Dec(z), and x_p = Dec(z_p),
z_p ~ N(0, I):

    L_prior = KL(q(z|x) || N(0, I))                                       nats per example
    L_llike = -E_q[log p(Dis_l(x) | z)]  with  p(Dis_l(x) | z) = N(Dis_l(x~), I),
            = 0.5 * ||Dis_l(x) - Dis_l(x~)||^2   summed over the features of D's layer l
              (constants dropped; one z per example)
    L_GAN   = BCE(D(x), 1) + BCE(D(x~), 0) + BCE(D(x_p), 0)               the discriminator's loss
              (the paper's log Dis(x) + log(1 - Dis(x~)) + log(1 - Dis(x_p)), as a loss)

Updates (the paper's Algorithm 1), each loss differentiated w.r.t. its own network only:

    encoder        loss_enc = beta * L_prior + L_llike
    decoder        loss_dec = gamma * L_llike + L_G,  L_G = -log D(x~) - log D(x_p)
    discriminator  loss_dis = L_GAN

The paper writes the decoder's update as the gradient of gamma * L_llike - L_GAN (the
saturating minimax form); like most GAN code we use the non-saturating generator loss L_G
= BCE(D(x~), 1) + BCE(D(x_p), 1) instead (Goodfellow et al. 2014, sec. 3), which has the
same fixed point and strong gradients while D wins. D is trained by L_GAN only: L_llike
uses D's features but never updates D (the paper, sec. 2.3, and the authors' code), and
the GAN loss does not reach the encoder (the paper's "limiting error signals to relevant
networks"). Every term is a mean over the batch.

The contract with the trainer (train/vaegan.py): loss_enc, loss_dec and loss_dis are
graph-carrying scalars, each to be differentiated only w.r.t. the parameters of
model.networks()["enc" | "dec" | "dis"]. They share one graph -- D scores x, x~ and x_p in
one batch, as in the authors' code -- so differentiating one w.r.t. another network's
parameters would leak gradients across (for example loss_enc into D through Dis_l(x~)).
The other entries are detached scalars to log.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genbench.objectives.base import LossTerms, register_objective


@dataclass(frozen=True)
class VAEGANLossOptions:
    # weight of L_llike in the decoder's loss: the paper's gamma, trading reconstruction against
    # fooling D; the paper gives no value. The authors' code weights the decoder's gradient as
    # w * grad(L_llike) - (1 - w) * grad(L_GAN), i.e. gamma = w / (1 - w), with w = 1e-2 as its
    # model default and 1e-5..5e-5 in its 64x64 scripts -- on 16,384 pre-batch-norm features, a
    # scale that does not carry over. 0.1 is from a sweep on digits (default networks, 600 steps,
    # RMSProp lr 1e-3, FID with genbench's digits extractor, 1,000 samples, 3 seeds):
    # gamma = 1: FID 4.1, test MSE 0.025; 0.1: FID 1.8, MSE 0.030; 0.01: FID 7.3, MSE 0.043.
    gamma: float = 0.1
    # which layer of D gives Dis_l: 0 = the first, -1 = the last (Python indexing). The authors'
    # code takes its 4th, last, convolution (recon_depth=9).
    feature_layer: int = -1
    # weight of L_prior in the encoder's loss; 1 = the paper (beta > 1 as in beta-VAE, Higgins et al. 2017)
    beta: float = 1.0

    def __post_init__(self):
        if not self.gamma >= 0:
            raise ValueError(f"gamma must be >= 0; got {self.gamma}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0; got {self.beta}")
        if isinstance(self.feature_layer, bool) or not isinstance(self.feature_layer, int):
            raise ValueError(f"feature_layer must be an integer layer index; got {self.feature_layer!r}")


def feature_llike(f_real: torch.Tensor, f_recon: torch.Tensor) -> torch.Tensor:
    """-log N(Dis_l(x); Dis_l(x~), I) up to its constant: 0.5 * ||f_real - f_recon||^2 per example (B,)."""
    return 0.5 * (f_real.float() - f_recon.float()).pow(2).sum(1)


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross-entropy of D's logits (B,) against a constant label."""
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits, target, dtype=torch.float32))


def gan_losses(l_real: torch.Tensor, l_recon: torch.Tensor, l_prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_GAN for D, non-saturating L_G for the decoder) from D's logits on x, x~, x_p (B,) each."""
    gan_d = bce(l_real, 1.0) + bce(l_recon, 0.0) + bce(l_prior, 0.0)
    gan_g = bce(l_recon, 1.0) + bce(l_prior, 1.0)
    return gan_d, gan_g


@register_objective("vaegan", "vae-gan", VAEGANLossOptions,
                    "VAE-GAN: KL + D-feature reconstruction + GAN, one loss per network (Larsen et al. 2016)")
def vaegan_loss(model, x: torch.Tensor, options: VAEGANLossOptions, generator: torch.Generator | None,
                step: int | None = None) -> LossTerms:
    """loss_enc / loss_dec / loss_dis (see the module docstring) and detached terms to log."""
    n = x.shape[0]
    mu, logvar = model.encode(x)  # (B, latent) each
    z, kl = model.reparameterize(mu, logvar, generator)  # (B, latent), (B,)
    x_recon = model.decode(z)  # (B, *shape)
    x_prior = model.decode(model.prior(n, generator))  # (B, *shape)
    features, logits = model.discriminate(torch.cat([x, x_recon, x_prior]), options.feature_layer)  # (3B, F), (3B,)
    f_real, f_recon, _ = features.split(n)
    l_real, l_recon, l_prior = logits.split(n)
    llike = feature_llike(f_real, f_recon).mean()
    kl = kl.float().mean()
    gan_d, gan_g = gan_losses(l_real, l_recon, l_prior)
    with torch.no_grad():
        scalars = {
            "kl": kl, "llike": llike, "gan_d": gan_d, "gan_g": gan_g,
            "recon_mse": (x_recon.float() - x.float()).pow(2).mean(),  # per dim, data scale
            "d_real": torch.sigmoid(l_real.float()).mean(),  # D's mean probability of "real"
            "d_recon": torch.sigmoid(l_recon.float()).mean(),
            "d_prior": torch.sigmoid(l_prior.float()).mean(),
        }
    return {
        "loss_enc": options.beta * kl + llike,
        "loss_dec": options.gamma * llike + gan_g,
        "loss_dis": gan_d,
        **{k: v.detach() for k, v in scalars.items()},
    }
