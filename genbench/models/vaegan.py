"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity
metric"): a VAE whose decoder is also a GAN generator, and whose reconstruction error is
measured in the feature space of the GAN's discriminator instead of pixel space.

    encoder        q(z|x) = N(mu(x), diag exp(logvar(x)))       models/nets.py build_encoder
    decoder        x~ = Dec(z), squashed to the images' [-1, 1]   models/nets.py build_decoder + tanh
    discriminator  Dis(x) -> (Dis_l(x), logit)                    FeatureDiscriminator below

The losses, and which network each one trains, live in objectives/vaegan.py; the loop with
one optimiser per network in train/vaegan.py.

The reparameterisation and the KL go through the fused kernel op
genbench.kernels.reparameterize_kl with the run's backend; the model draws eps from the
run's generator and passes it in (as vae.py does), so both backends see the same noise.
The conv decoder's transposed convolutions run through genbench.kernels.conv_transpose2d
with the same backend (models/nets.py; the tanh squash stays its own module).

Discriminator: stride-2 4x4 convolutions with LeakyReLU(0.2) halving the image down to about
4x4 (the DCGAN pattern, Radford et al. 2016; channels doubling from `d_width`, as the
encoder's), then a linear real/fake logit; on points a LeakyReLU MLP. Dis_l(x) is layer l's
output before its activation, flattened -- as in the authors' code, whose recon_depth=9
takes the 4th (last) convolution's output before its batch norm. Unlike the paper's
discriminator it has no batch norm: D scores real, reconstructed and prior-decoded images in
one batch, and batch statistics would both mix them and normalise away part of the feature
differences that L_llike measures.

Capabilities. VAE-GAN has no pixel likelihood: its p(x|z) is a unit Gaussian on D's
features, which move as D trains, so no NLL or ELBO is reported (the model has neither
elbo_terms nor importance_log_weights). `likelihood` is a nominal Gaussian with sigma = 1
only so the reconstruction metric reports pixel MSE on the scale of the other families (its
recon_nll is then 0.5 * squared error + a constant: a distance, not this model's
likelihood). Samples are Dec(z), z ~ N(0, I): the decoder output itself, with no pixel noise
for draw="sample".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genbench.errors import ConfigError
from genbench.kernels import reparameterize_kl, resolve_backend
from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.gan_nets import LEAK
from genbench.models.nets import (
    build_decoder,
    build_encoder,
    conv_levels,
    conv_transpose_backends,
    decoder_ops,
    level_channels,
)
from genbench.models.likelihood import Likelihood


@dataclass(frozen=True)
class VAEGANOptions:
    arch: Literal["mlp", "conv"] = "conv"  # all three networks; conv as in Larsen et al. 2016 (mlp for points)
    latent_dim: int = 16  # size of z (the paper: 128 for 64x64 CelebA; 16 = genbench's VAE default)
    hidden: int = 512  # mlp encoder/decoder width
    channels: int = 32  # conv encoder/decoder: channels after the first downsampling (doubling, max 256)
    d_width: int = 32  # discriminator: conv channels at the highest resolution (doubling, max 256), or mlp width
    d_layers: int = 3  # mlp discriminator: hidden layers

    def __post_init__(self):
        for name in ("latent_dim", "hidden", "channels", "d_width", "d_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")


class FeatureDiscriminator(nn.Module):
    """x (B, *shape) -> (Dis_l(x) (B, F_l), logit (B,)).

    `layers` are the linear maps (conv or Linear), each followed by LeakyReLU(0.2); the
    features of layer l are its pre-activation output, flattened. l indexes `layers` as
    Python does: 0 is the first layer, -1 the last.
    """

    def __init__(self, layers: list[nn.Module], flat: int, flatten_input: bool):
        super().__init__()
        self.inp = nn.Flatten() if flatten_input else nn.Identity()
        self.layers = nn.ModuleList(layers)
        self.act = nn.LeakyReLU(LEAK)
        self.head = nn.Linear(flat, 1)

    def layer_index(self, layer: int) -> int:
        depth = len(self.layers)
        if not -depth <= layer < depth:
            raise ConfigError(
                f"feature_layer={layer}, but this discriminator has {depth} layer(s); choose one of "
                f"{-depth}..{depth - 1} (0 = the first, -1 = the last), e.g. --objective-set feature_layer=-1."
            )
        return layer % depth

    def forward(self, x: torch.Tensor, layer: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.layer_index(layer)
        h = self.inp(x)  # (B, C, H, W) or (B, D)
        features = h
        for i, linear in enumerate(self.layers):
            h = linear(h)  # (B, C_i, H_i, W_i) or (B, width)
            if i == index:
                features = h.flatten(1)  # (B, F_l)
            h = self.act(h)
        return features, self.head(h.flatten(1)).squeeze(1)  # (B, F_l), (B,)


def build_feature_discriminator(options: VAEGANOptions, shape: tuple[int, ...]) -> FeatureDiscriminator:
    """Conv: stride-2 4x4 convs down to ~4x4 (as the encoder); mlp: `d_layers` Linear layers."""
    if options.arch == "mlp":
        sizes = [math.prod(shape)] + [options.d_width] * options.d_layers
        layers = [nn.Linear(a, b) for a, b in itertools.pairwise(sizes)]
        return FeatureDiscriminator(layers, options.d_width, flatten_input=True)
    c, h, w = shape  # build_encoder has checked the image shape
    levels = conv_levels(h, w)
    chans = level_channels(options.d_width, levels)
    layers = [nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip([c] + chans[:-1], chans)]
    return FeatureDiscriminator(layers, chans[-1] * (h >> levels) * (w >> levels), flatten_input=False)


@register_model("vae-gan", "vae-gan", VAEGANOptions, "vaegan",
                "VAE-GAN (Larsen et al. 2016): VAE + GAN, reconstruction error in D's feature space",
                kernel_ops=lambda o: ("reparam_kl", *decoder_ops(o)), trainer="vaegan")
class VAEGAN(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nominal_likelihood=True, reconstructs=True,
                                latent_space=True, representation="gaussian-mean")

    def __init__(self, options: VAEGANOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        shape = tuple(data_info.shape)
        self.latent_dim, self.backend = options.latent_dim, backend
        self.likelihood = Likelihood("gaussian", 1.0, quantised=data_info.kind == "image")  # nominal: see above
        self.sample_description = "decoder output Dec(z), z ~ N(0, I) (no pixel likelihood)"
        self.encoder = build_encoder(options.arch, shape, 2 * options.latent_dim, options.hidden, options.channels)
        squash = nn.Tanh() if len(shape) == 3 else nn.Identity()  # images in [-1, 1]; points unbounded
        self.decoder = nn.Sequential(
            build_decoder(options.arch, shape, options.latent_dim, shape[0], options.hidden, options.channels, backend),
            squash)
        self.discriminator = build_feature_discriminator(options, shape)

    def kernel_backends(self) -> dict[str, str]:
        device = next(self.parameters()).device
        return {"reparam_kl": resolve_backend("reparam_kl", self.backend, device), **conv_transpose_backends(self)}

    def networks(self) -> dict[str, nn.Module]:
        """The three networks, each trained by its own loss and optimiser."""
        return {"enc": self.encoder, "dec": self.decoder, "dis": self.discriminator}

    # ------------------------------------------------------------------ the three networks

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, latent) each
        return mu, logvar

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) from `generator`, and the per-example
        KL(q(z|x) || N(0, I)) in nats: (B, latent), (B,) through the fused kernel op."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device)  # (B, latent)
        return reparameterize_kl(mu, logvar, eps, backend=self.backend)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B, *shape), images in [-1, 1]

    def prior(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)  # (n, latent)

    def discriminate(self, x: torch.Tensor, layer: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """(Dis_l(x) (B, F_l), real/fake logit (B,))."""
        return self.discriminator(x, layer)

    # ------------------------------------------------------------------ capabilities

    def reconstruct_output(self, x: torch.Tensor) -> torch.Tensor:
        """Dec(mu(x)) in the data range; with the nominal sigma-fixed likelihood it is its mean."""
        return self.decode(self.encode(x)[0])

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]  # (B, latent): the mean of q(z|x)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        """Dec(z), z ~ N(0, I). `draw` is ignored: there is no pixel noise model to draw from."""
        return self.decode(self.prior(n, generator))
