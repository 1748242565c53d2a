"""Plain autoencoder: x -> z = enc(x) -> p(x | z).

Sampling: an autoencoder has no prior, so after training genbench fits a full-covariance
Gaussian to the training codes and decodes draws from it ("ex-post density estimation",
Ghosh et al. 2020, "From Variational to Deterministic Autoencoders"); samples are the
decoder's mean.

Kernels: the conv decoder's transposed convolutions run through
genbench.kernels.conv_transpose2d with the run's backend (models/nets.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.nets import (
    build_decoder,
    build_encoder,
    conv_transpose_backends,
    decoder_ops,
)
from genbench.models.likelihood import Likelihood


@dataclass(frozen=True)
class AutoencoderOptions:
    arch: Literal["mlp", "conv"] = "mlp"  # encoder/decoder networks (see models/nets.py)
    latent_dim: int = 16  # size of the code z
    hidden: int = 512  # MLP width
    channels: int = 32  # conv: channels after the first downsampling (doubling, max 256)
    likelihood: Literal["bernoulli", "gaussian"] = "gaussian"  # p(x|z), see objectives/likelihood.py
    decoder_sigma: float | None = 1.0  # gaussian: fixed sigma (1.0 = squared error); None = predicted

    def __post_init__(self):
        if self.latent_dim < 1 or self.hidden < 1 or self.channels < 1:
            raise ValueError("latent_dim, hidden and channels must be >= 1")
        if self.decoder_sigma is not None and self.decoder_sigma <= 0:
            raise ValueError("decoder_sigma must be > 0, or None for a predicted sigma")


def make_likelihood(options, data_info) -> Likelihood:
    sigma = options.decoder_sigma if options.likelihood == "gaussian" else None
    return Likelihood(options.likelihood, sigma, quantised=data_info.kind == "image")


@register_model("ae", "autoencoder", AutoencoderOptions, "recon",
                "plain autoencoder, MLP or conv; samples via a Gaussian fitted to codes",
                kernel_ops=decoder_ops)
class Autoencoder(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, reconstructs=True, prepares_sampling=True,
                                latent_space=True, representation="code")

    def __init__(self, options: AutoencoderOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        shape = data_info.shape
        self.likelihood = make_likelihood(options, data_info)
        out_channels = self.likelihood.out_channels(shape[0])
        self.encoder = build_encoder(options.arch, shape, options.latent_dim, options.hidden, options.channels)
        self.decoder = build_decoder(options.arch, shape, options.latent_dim, out_channels,
                                     options.hidden, options.channels, backend)
        # Gaussian fitted to training codes for sampling (set by prepare_sampling).
        self.register_buffer("code_mean", torch.zeros(options.latent_dim))
        self.register_buffer("code_scale_tril", torch.eye(options.latent_dim))

    def kernel_backends(self) -> dict[str, str]:
        return conv_transpose_backends(self)  # {} for the MLP

    def encode_code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, latent)

    def reconstruct_output(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode_code(x))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_code(x)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_code(x)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def prepare_sampling(self, train_x: torch.Tensor, batch_size: int = 512) -> None:
        codes = torch.cat([self.encode_code(b) for b in train_x.split(batch_size)])  # (N, latent)
        cov = torch.cov(codes.T.double()) + 1e-6 * torch.eye(codes.shape[1], dtype=torch.float64, device=codes.device)
        self.code_mean.copy_(codes.mean(0))
        self.code_scale_tril.copy_(torch.linalg.cholesky(cov).float())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        eps = torch.randn(n, self.code_mean.numel(), generator=generator, device=self.code_mean.device)
        z = self.code_mean + eps @ self.code_scale_tril.T  # (n, latent)
        return self.likelihood.decode(self.decoder(z), draw, generator)


@dataclass(frozen=True)
class SparseAutoencoderOptions(AutoencoderOptions):
    latent_dim: int = 64  # sigmoid code units (over-complete codes are the usual setting)


@register_model("sparse-ae", "sparse-autoencoder", SparseAutoencoderOptions, "sparse",
                "sparse autoencoder: sigmoid code units pulled to mean activation rho (Ng 2011)",
                kernel_ops=decoder_ops)
class SparseAutoencoder(Autoencoder):
    """The autoencoder with sigmoid code units, whose mean activations the `sparse`
    objective pulls towards rho; the code is the representation and the sampling prior's
    space (a Gaussian fitted to the codes, as for `ae`)."""

    def encode_code(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encoder(x))  # (B, units) in (0, 1)
