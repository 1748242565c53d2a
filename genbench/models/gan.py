"""GAN: a generator and a discriminator (genbench/models/gan_nets.py) with the latent,
the conditioning and the sampling around them; the losses live in objectives/gan.py and
the loop in train/adversarial.py.

Latent: Gaussian N(0, I), or spherical -- Gaussian draws scaled to the sphere of radius
sqrt(d), where the mass of a high-dimensional Gaussian lies, with slerp interpolation
between points (White 2016, "Sampling Generative Networks").

Conditioning:
  cgan     (Mirza & Osindero 2014): one-hot label into G; label maps as extra D input channels
  acgan    (Odena et al. 2017): one-hot label into G; D's auxiliary classifier is trained on
           real and fake labels (D) and fake labels (G), weighted by aux_weight
  infogan  (Chen et al. 2016): a categorical code (one-hot) and continuous codes U(-1, 1)
           into G; D's Q head estimates them and both G and Q maximise the
           mutual-information lower bound: CE(categorical) + 0.5 * ||c - mean||^2 (a
           unit-variance Gaussian Q), weighted by info_weight

Kernels: transposed convolutions (dcgan/resnet networks with upsample="transposed": the
generator, and an energy discriminator's decoder) run through
genbench.kernels.conv_transpose2d with the run's backend; kernel_backends() reports the
backend they resolve to, and nothing for networks without them (mlp, other upsamplings).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import ConfigError
from genbench.kernels.conv_transpose import OP_NAME as CONV_TRANSPOSE_OP
from genbench.models.base import Capabilities, GenerativeModel, register_model
from genbench.models.gan_nets import (
    CONV_ARCHS,
    GanNetOptions,
    build_discriminator,
    build_generator,
)
from genbench.models.nets import conv_transpose_backends
from genbench.utils.figures import save_image_grid


@dataclass(frozen=True)
class GanOptions(GanNetOptions):
    latent_dim: int = 64  # size of z
    latent: Literal["gaussian", "spherical"] = "gaussian"  # spherical: White 2016
    conditional: Literal["none", "cgan", "acgan", "infogan"] = "none"
    info_categories: int = 10  # InfoGAN: size of the categorical code
    info_continuous: int = 2  # InfoGAN: number of continuous codes
    info_weight: float = 1.0  # InfoGAN: lambda of the mutual-information bound
    aux_weight: float = 1.0  # ACGAN: weight of the auxiliary classifier loss
    # PacGAN (Lin et al. 2018): D scores groups of `pack` samples, concatenated along channels
    # (features for points), all real or all fake; 1 = the ordinary discriminator. Works with
    # every loss and regulariser; batch_size must be a multiple of it.
    pack: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.latent_dim < 1 or self.info_categories < 0 or self.info_continuous < 0:
            raise ValueError("latent_dim >= 1; info_categories and info_continuous >= 0")
        if isinstance(self.pack, bool) or not isinstance(self.pack, int) or self.pack < 1:
            raise ValueError(f"pack must be a positive integer (1 = no packing); got {self.pack!r}")
        if self.pack > 1 and self.conditional != "none":
            raise ValueError(f"pack={self.pack} packs samples of different labels or codes together; PacGAN is "
                             "defined for unconditional GANs: use conditional='none' or pack=1")


@dataclass
class Codes:
    """What the generator was conditioned on for one batch."""

    labels: torch.Tensor | None  # (B,) class labels (cgan, acgan)
    categorical: torch.Tensor | None = None  # (B,) InfoGAN categorical code
    continuous: torch.Tensor | None = None  # (B, n) InfoGAN continuous codes


def gan_ops(options: GanOptions) -> tuple[str, ...]:
    """Transposed convolutions in G (and in an energy D's decoder) with upsample='transposed'."""
    return (CONV_TRANSPOSE_OP,) if options.arch in CONV_ARCHS and options.upsample == "transposed" else ()


@register_model("gan", "gan", GanOptions, "non-saturating",
                "GAN: MLP / DCGAN / ResNet networks, unconditional, CGAN, ACGAN or InfoGAN",
                kernel_ops=gan_ops, trainer="adversarial")
class GAN(GenerativeModel):
    capabilities = Capabilities(samples=True, ema=True, figures=True)

    def __init__(self, options: GanOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        if objective is None:
            raise ConfigError("A GAN is built for its loss (the discriminator head depends on it).")
        self.options, self.shape, self.backend = options, data_info.shape, backend
        self.n_classes = len(data_info.classes or ())
        if options.conditional in ("cgan", "acgan") and self.n_classes < 2:
            raise ConfigError(f"conditional={options.conditional!r} needs a labelled dataset; "
                              f"{data_info.spec} has no classes.")
        cond_dim = {"none": 0, "cgan": self.n_classes, "acgan": self.n_classes,
                    "infogan": options.info_categories + options.info_continuous}[options.conditional]
        self.generator = build_generator(options, self.shape, options.latent_dim, cond_dim, backend=backend)
        packed = (self.shape[0] * options.pack, *self.shape[1:])  # PacGAN: D sees `pack` samples at once
        self.discriminator = build_discriminator(
            options, packed, objective.disc_output,
            n_classes=self.n_classes if options.conditional in ("cgan", "acgan") else 0,
            cond_channels=self.n_classes if options.conditional == "cgan" else 0,
            info_categories=options.info_categories if options.conditional == "infogan" else 0,
            info_continuous=options.info_continuous if options.conditional == "infogan" else 0,
            backend=backend,
        )
        self.ema_generator: nn.Module | None = None
        self.ema_decay = 0.0

    def kernel_backends(self) -> dict[str, str]:
        """conv_transpose2d's resolved backend over G, D and the EMA copy of G; {} without such layers."""
        return conv_transpose_backends(self)

    # ------------------------------------------------------------------ latent and codes

    def latent(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.options.latent_dim, generator=generator, device=device)
        if self.options.latent == "spherical":
            z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12) * math.sqrt(self.options.latent_dim)
        return z

    def draw_codes(self, n: int, generator, labels: torch.Tensor | None) -> Codes:
        """Labels for conditional models (the real batch's, or uniform), InfoGAN codes."""
        device = next(self.parameters()).device
        kind = self.options.conditional
        if kind in ("cgan", "acgan"):
            if labels is None:
                labels = torch.randint(self.n_classes, (n,), generator=generator, device=device)
            return Codes(labels=labels)
        if kind == "infogan":
            cat = torch.randint(max(1, self.options.info_categories), (n,), generator=generator, device=device)
            cont = torch.rand(n, self.options.info_continuous, generator=generator, device=device) * 2 - 1
            return Codes(labels=None, categorical=cat, continuous=cont)
        return Codes(labels=None)

    def condition(self, codes: Codes) -> torch.Tensor | None:
        """The generator's conditioning vector (B, cond_dim), or None."""
        if codes.labels is not None:
            return F.one_hot(codes.labels, self.n_classes).float()
        if codes.categorical is not None:
            parts = [F.one_hot(codes.categorical, self.options.info_categories).float()] \
                if self.options.info_categories else []
            return torch.cat(parts + [codes.continuous], dim=1)
        return None

    # ------------------------------------------------------------------ networks

    def generator_parameters(self):
        return self.generator.parameters()

    def generate(self, n: int, generator, labels=None) -> tuple[torch.Tensor, Codes]:
        codes = self.draw_codes(n, generator, labels)
        return self.generator(self.latent(n, generator), self.condition(codes)), codes

    def discriminate(self, x: torch.Tensor, labels: torch.Tensor | None):
        """D's output for x (B, ...): one score per sample, or with pack = m one per group of m
        consecutive samples (B / m scores; the batch must not mix real and fake in a group)."""
        m = self.options.pack
        if m > 1:
            if x.shape[0] % m:
                raise ConfigError(f"pack={m}: a batch of {x.shape[0]} samples cannot be split into groups of {m}; "
                                  f"use a batch_size that is a multiple of {m}.")
            x = x.reshape(x.shape[0] // m, -1, *x.shape[2:])  # (B/m, m*C, ...): consecutive samples side by side
        return self.discriminator(x, labels if self.options.conditional == "cgan" else None)

    # ------------------------------------------------------------------ auxiliary terms

    def auxiliary_d_terms(self, d_real, d_fake, y_real, codes: Codes, terms: dict) -> torch.Tensor:
        kind = self.options.conditional
        if kind == "acgan":
            aux = F.cross_entropy(d_real.aux_logits, y_real) + F.cross_entropy(d_fake.aux_logits, codes.labels)
            terms["acgan_aux"] = aux.detach()
            return self.options.aux_weight * aux
        if kind == "infogan":  # trains Q and the body it shares with D (on detached fakes)
            return self.info_term(d_fake, codes, terms)
        return torch.zeros((), device=d_real.score.device)

    def info_term(self, d_fake, codes: Codes, terms: dict) -> torch.Tensor:
        """info_weight x (CE of the categorical code + unit-variance Gaussian NLL of the
        continuous codes, constants dropped): the negative MI lower bound."""
        info = torch.zeros((), device=d_fake.score.device)
        if self.options.info_categories:
            info = info + F.cross_entropy(d_fake.info_logits, codes.categorical)
        if self.options.info_continuous:
            info = info + 0.5 * ((d_fake.info_mean - codes.continuous) ** 2).sum(1).mean()
        terms["info_bound"] = info.detach()
        return self.options.info_weight * info

    def auxiliary_g_terms(self, d_fake, codes: Codes, terms: dict) -> torch.Tensor:
        kind = self.options.conditional
        if kind == "acgan":
            aux = F.cross_entropy(d_fake.aux_logits, codes.labels)
            terms["acgan_aux"] = aux.detach()
            return self.options.aux_weight * aux
        if kind == "infogan":
            return self.info_term(d_fake, codes, terms)
        return torch.zeros((), device=d_fake.score.device)

    # ------------------------------------------------------------------ EMA and sampling

    def enable_ema(self, decay: float) -> None:
        self.ema_generator = copy.deepcopy(self.generator).requires_grad_(False)
        self.ema_decay = decay

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema_generator is None:
            return
        for ema, p in zip(self.ema_generator.parameters(), self.generator.parameters()):
            ema.lerp_(p, 1.0 - self.ema_decay)
        for ema, b in zip(self.ema_generator.buffers(), self.generator.buffers()):
            ema.copy_(b)

    def figures(self, run_dir, generator) -> dict:
        """Latent-space figures for image data (see latent_figures)."""
        return latent_figures(self, run_dir, generator) if len(self.shape) == 3 else {}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        """n samples (from the EMA generator when enabled); labels/codes drawn uniformly."""
        codes = self.draw_codes(n, generator, None)
        net = self.ema_generator or self.generator
        return net(self.latent(n, generator), self.condition(codes))


TRAVERSAL_ROWS = 8  # fixed noise vectors down the column
TRAVERSAL_STEPS = 8  # values of the varied code across the row


@torch.no_grad()
def latent_figures(model: GAN, run_dir, generator) -> dict:
    """Image figures of the latent space: InfoGAN traversals, slerp interpolations."""
    paths = {}
    net = model.ema_generator or model.generator
    z = model.latent(TRAVERSAL_ROWS, generator)  # (rows, latent)
    if model.options.latent == "spherical":
        t = torch.linspace(0, 1, TRAVERSAL_STEPS, device=z.device)[:, None]  # (steps, 1)
        ends = model.latent(TRAVERSAL_ROWS, generator)
        path = torch.cat([slerp(z[i:i + 1], ends[i:i + 1], t) for i in range(TRAVERSAL_ROWS)])
        codes = model.draw_codes(len(path), generator, None)
        paths["slerp"] = save_image_grid(net(path, model.condition(codes)), run_dir / "slerp.png", TRAVERSAL_STEPS)
    if model.options.conditional == "infogan":
        paths.update(infogan_traversals(model, net, z, run_dir))
    return paths


def infogan_traversals(model: GAN, net, z: torch.Tensor, run_dir) -> dict:
    """InfoGAN paper figures: one code varied across a row, the noise fixed down the column;
    the other codes held at 0 (continuous) or at the row's category."""
    o, rows, device = model.options, z.shape[0], z.device
    paths = {}
    if o.info_categories:
        cat = torch.arange(o.info_categories, device=device).repeat(rows)  # (rows*K,)
        cont = torch.zeros(len(cat), o.info_continuous, device=device)
        zz = z.repeat_interleave(o.info_categories, dim=0)
        x = net(zz, model.condition(Codes(None, cat, cont)))
        paths["infogan_categorical"] = save_image_grid(x, run_dir / "infogan_categorical.png", o.info_categories)
    values = torch.linspace(-2, 2, TRAVERSAL_STEPS, device=device)  # beyond the U(-1, 1) training range
    for i in range(o.info_continuous):
        cont = torch.zeros(rows * TRAVERSAL_STEPS, o.info_continuous, device=device)
        cont[:, i] = values.repeat(rows)
        cat = (torch.arange(rows, device=device) % max(1, o.info_categories)).repeat_interleave(TRAVERSAL_STEPS)
        zz = z.repeat_interleave(TRAVERSAL_STEPS, dim=0)
        x = net(zz, model.condition(Codes(None, cat, cont)))
        paths[f"infogan_continuous_{i}"] = save_image_grid(x, run_dir / f"infogan_continuous_{i}.png", TRAVERSAL_STEPS)
    return paths


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b at fractions t (White 2016)."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
