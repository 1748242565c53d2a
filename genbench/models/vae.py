"""Variational autoencoder (Kingma & Welling 2014): Gaussian q(z|x), N(0, I) prior,
Bernoulli or Gaussian p(x|z), MLP or conv networks.

The reparameterisation and the KL go through one kernel op,
genbench.kernels.reparameterize_kl, with the run's backend: a Triton kernel drops in
there without touching this model. The model draws eps from the run's generator and
passes it in, so the torch and triton backends see the same noise and a run is comparable
across backends; the kernel's own Philox noise (which spares storing eps for backward)
is there for callers that pass no eps. The conv decoder's transposed convolutions go
through genbench.kernels.conv_transpose2d with the same backend (models/nets.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from genbench.baselines.reparam_kl import LOGVAR_LIMIT
from genbench.kernels import reparameterize_kl, resolve_backend
from genbench.models.autoencoder import AutoencoderOptions, make_likelihood
from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.nets import (
    build_decoder,
    build_encoder,
    conv_transpose_backends,
    decoder_ops,
)
from genbench.models.likelihood import HALF_LOG_2PI


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -HALF_LOG_2PI - 0.5 * x * x


@dataclass(frozen=True)
class VAEOptions(AutoencoderOptions):
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"  # p(x|z), see objectives/likelihood.py
    decoder_sigma: float | None = None  # gaussian: None = predicted per-dim sigma; a number fixes it


@register_model("vae", "vae", VAEOptions, "elbo",
                "VAE with Gaussian q(z|x), Bernoulli or Gaussian p(x|z), MLP or conv",
                kernel_ops=lambda o: ("reparam_kl", *decoder_ops(o)))
class VAE(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nll="iwae", elbo=True, reconstructs=True,
                                latent_space=True, representation="gaussian-mean")

    def __init__(self, options: VAEOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        shape = data_info.shape
        self.latent_dim = options.latent_dim
        self.backend = backend
        self.likelihood = make_likelihood(options, data_info)
        self.encoder = build_encoder(options.arch, shape, 2 * options.latent_dim, options.hidden, options.channels)
        self.decoder = build_decoder(options.arch, shape, options.latent_dim,
                                     self.likelihood.out_channels(shape[0]), options.hidden, options.channels,
                                     backend)

    def kernel_backends(self) -> dict[str, str]:
        device = next(self.parameters()).device
        return {"reparam_kl": resolve_backend("reparam_kl", self.backend, device), **conv_transpose_backends(self)}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar

    def elbo_terms(self, x: torch.Tensor, generator: torch.Generator | None = None,
                   beta: float = 1.0, free_bits: float = 0.0):
        """Per-example (recon_nll, kl, kl_objective) in nats, one z sample each.

        kl is the true KL(q(z|x) || p(z)); kl_objective is what the loss uses
        (beta-weighted, free bits applied) and equals kl when beta=1, free_bits=0.
        """
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)  # (B, latent)
        z, kl_objective = reparameterize_kl(mu, logvar, eps, beta=beta, free_bits=free_bits, backend=self.backend)
        if beta == 1.0 and free_bits == 0.0:
            kl = kl_objective
        else:
            with torch.no_grad():
                kl = reparameterize_kl(mu, logvar, eps, backend=self.backend)[1]
        recon_nll = self.likelihood.nll(self.decoder(z), x)  # (B,)
        return recon_nll, kl, kl_objective

    def importance_log_weights(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """log p(x, z_i) - log q(z_i | x) for k draws z_i ~ q(z|x): (k, B), in nats.

        logsumexp over k minus log k is the IWAE bound (Burda et al. 2016); k = 1 is the ELBO.
        """
        mu, logvar = self.encode(x)  # (B, latent) each
        eps = torch.randn((k, *mu.shape), generator=generator, device=mu.device)  # (k, B, latent)
        # z through the fused op (its KL output is unused: IWAE needs log q and log p(z) per draw).
        mu_k, logvar_k = (t.expand(k, *t.shape).flatten(0, 1) for t in (mu, logvar))  # (k*B, latent)
        z = reparameterize_kl(mu_k, logvar_k, eps.flatten(0, 1), backend=self.backend)[0].view(eps.shape)
        log_q = standard_normal_log_prob(eps).sum(-1) - 0.5 * logvar.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT).sum(-1)  # (k, B)
        log_prior = standard_normal_log_prob(z).sum(-1)  # (k, B)
        out = self.decoder(z.flatten(0, 1))  # (k*B, ...)
        target = x.expand(k, *x.shape).flatten(0, 1)
        log_lik = -self.likelihood.nll(out, target).view(k, -1)  # (k, B)
        return log_lik + log_prior - log_q

    def reconstruct_output(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(x)
        return self.decoder(mu)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]  # (B, latent): the mean of q(z|x)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.likelihood.decode(self.decoder(z), draw, generator)
