"""GAN generators and discriminators: MLP, DCGAN and a small ResNet (SNGAN-style).

Generators map a latent code (and an optional condition vector) to a sample:

    generator(z (B, latent_dim), c (B, cond_dim) | None) -> x (B, *data_shape)

Images come out of a tanh, in [-1, 1]; 2-D points out of a linear layer. Discriminators
return the DOutput contract of genbench.objectives.gan_base:

    discriminator(x (B, *data_shape), y (B,) long | None) -> DOutput

Architectures (`GanNetOptions.arch`):
  mlp     fully connected (Goodfellow et al. 2014); the only choice for points (B, D).
  dcgan   Radford et al. 2016: G projects [z, c] to (C0, s, s), s in 4..7 with H = s * 2^k,
          then k upsamplings halving channels (BatchNorm + ReLU, tanh out); D uses strided
          4x4 convolutions with LeakyReLU(0.2), no pooling, no norm on the first layer.
          Weights start from N(0, 0.02) as in the paper.
  resnet  Miyato et al. 2018 (SNGAN) / Gulrajani et al. 2017: residual up-blocks in G,
          residual down-blocks with average pooling and a global sum pool in D.

Discriminator outputs (DiscOutputKind): "logit"/"critic" end in a linear score layer;
"energy-l2"/"energy-l1" are autoencoders whose score is the per-example mean squared
(EBGAN, Zhao et al. 2017) or absolute (BEGAN, Berthelot et al. 2017) reconstruction error.
Heads reading the body's features: ACGAN's auxiliary classifier (Odena et al. 2017) and
InfoGAN's Q head (Chen et al. 2016). Labels can instead be fed to D as extra input
channels (CGAN, Mirza & Osindero 2014).

Transposed convolutions (upsample="transposed") run through the kernel op
genbench.kernels.conv_transpose2d with the model's `backend` (genbench.kernels.conv_transpose.ConvTranspose2d):
a following BatchNorm is the layer's `norm` and the ReLU (or G's output tanh) its fused
activation, so in eval mode without gradients (sampling) conv + BN + ReLU is one kernel on
the Triton backend; in training the BatchNorm runs after the kernel, then the ReLU.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genbench.errors import ConfigError
from genbench.kernels.conv_transpose import ConvTranspose2d
from genbench.models.nets import mlp
from genbench.models.gan_output import DiscOutputKind, DOutput

Arch = Literal["mlp", "dcgan", "resnet"]
Upsample = Literal["transposed", "pixel-shuffle", "nearest-conv"]
DNorm = Literal["batch", "instance", "none"]
GNorm = Literal["batch", "none"]

MAX_CHANNELS = 512  # the widest DCGAN layer (Radford et al. 2016)
LEAK = 0.2  # LeakyReLU slope in discriminators (Radford et al. 2016)
CONV_ARCHS = ("dcgan", "resnet")


class GanNetError(ConfigError, ValueError):
    """An invalid network option or data shape: a ConfigError the CLI reports, and a ValueError."""


@dataclass(frozen=True)
class GanNetOptions:
    # "mlp" (Goodfellow et al. 2014; the only choice for points), "dcgan" (Radford et al. 2016),
    # "resnet" (SNGAN, Miyato et al. 2018)
    arch: Arch = "dcgan"
    # dcgan/resnet: channels at D's highest resolution and G's last hidden one, doubling per
    # halving of the resolution, capped at 512. mlp: hidden units per layer (128 suits toy2d).
    width: int = 64
    # mlp: hidden layers in G and D
    mlp_layers: int = 3
    # G upsampling, to compare checkerboard artefacts and cost: ConvTranspose2d k4 s2 p1
    # (Radford et al. 2016) | conv 3x3 to 4C then PixelShuffle(2) (Shi et al. 2016) |
    # nearest x2 then conv 3x3 (Odena, Dumoulin & Olah 2016, "Deconvolution and checkerboard artifacts")
    upsample: Upsample = "transposed"
    # wrap every conv/linear layer of D in spectral normalisation (Miyato et al. 2018)
    spectral_norm: bool = False
    # dcgan/resnet D normalisation after every layer but the first: batch (Radford et al. 2016),
    # instance (Ulyanov et al. 2016) or none. "critic" outputs (WGAN-GP) need instance or none:
    # batch norm mixes examples, which breaks the per-example gradient penalty (Gulrajani et al. 2017).
    d_norm: DNorm = "batch"
    # dcgan/resnet G normalisation: batch norm (Radford et al. 2016) or none
    g_norm: GNorm = "batch"

    def __post_init__(self):
        for name, alias in (("arch", Arch), ("upsample", Upsample), ("d_norm", DNorm), ("g_norm", GNorm)):
            _check_choice(name, getattr(self, name), get_args(alias))
        for name in ("width", "mlp_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GanNetError(f"GanNetOptions.{name} must be a positive integer; got {value!r}.")
        if not isinstance(self.spectral_norm, bool):
            raise GanNetError(f"GanNetOptions.spectral_norm must be true or false; got {self.spectral_norm!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GanNetError(f"GanNetOptions.{name}={value!r} is not one of {', '.join(map(repr, choices))}.")


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) in `module`."""
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- shapes


def upsample_levels(height: int, width: int) -> int:
    """How many x2 steps grow an s x s' start (each side 4..7 for H = s * 2^k) to H x W.

    Unlike nets.conv_levels there is no cap on the depth: 28 px starts at 7x7 (2 levels),
    16 at 4x4 (2), 32 at 4x4 (3), 64 at 4x4 (4), 128 at 4x4 (5).
    """
    levels = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) >= 8:
        height, width, levels = height // 2, width // 2, levels + 1
    return levels


def level_channels(width: int, levels: int) -> list[int]:
    """Channels after each D halving, from the highest resolution: width * 2^i, capped at 512."""
    return [min(width * 2**i, MAX_CHANNELS) for i in range(levels)]


def _check_shape(arch: str, shape: tuple[int, ...]) -> None:
    if len(shape) not in (1, 3):
        raise GanNetError(f"GAN networks take points (D,) or images (C, H, W); got examples shaped {shape}.")
    if arch in CONV_ARCHS and len(shape) == 1:
        raise GanNetError(
            f"arch={arch!r} needs images (C, H, W); this dataset's examples have shape {shape}. "
            "Use arch='mlp' for points."
        )
    if arch in CONV_ARCHS and upsample_levels(*shape[1:]) == 0:
        raise GanNetError(
            f"arch={arch!r} needs image sides of the form s * 2^k with k >= 1 and s >= 4 "
            f"(8, 16, 28, 32, 64 px ...); got {shape[1]}x{shape[2]}. Resize the dataset or use arch='mlp'."
        )


# ----------------------------------------------------------------------------- layers


def norm2d(kind: str, channels: int) -> nn.Module:
    """Batch norm (Ioffe & Szegedy 2015), instance norm (Ulyanov et al. 2016) or nothing."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def upsample_conv(c_in: int, c_out: int, mode: str, bias: bool = True, *, norm: nn.BatchNorm2d | None = None,
                  activation: str = "none", backend: str = "auto") -> nn.Module:
    """(B, c_in, h, w) -> (B, c_out, 2h, 2w); see GanNetOptions.upsample for the papers.

    "transposed": a ConvTranspose2d (k4 s2 p1) with `norm` and `activation` fused in, run
    with `backend`. The other modes take neither (see upsample_block).
    """
    if mode == "transposed":
        return ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias, norm=norm,
                                    activation=activation, backend=backend)
    if norm is not None or activation != "none":
        raise ValueError(f"upsample_conv: norm and activation are fused into 'transposed' only; got mode {mode!r}")
    if mode == "pixel-shuffle":
        return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 3, padding=1, bias=bias), nn.PixelShuffle(2))
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv)


def upsample_block(c_in: int, c_out: int, mode: str, norm: str, bias: bool = True,
                   backend: str = "auto") -> list[nn.Module]:
    """Upsampling conv, then norm2d(norm), then ReLU, as layers. Transposed: one
    ConvTranspose2d carrying a BatchNorm as its `norm` and the ReLU as its activation
    (an instance norm sits between the conv and the ReLU: the conv alone, then both)."""
    if mode != "transposed":
        return [upsample_conv(c_in, c_out, mode, bias), norm2d(norm, c_out), nn.ReLU()]
    after = norm2d(norm, c_out)  # built first, as before: no random draw, same parameter order
    if isinstance(after, nn.InstanceNorm2d):
        return [upsample_conv(c_in, c_out, mode, bias, backend=backend), after, nn.ReLU()]
    bn = after if isinstance(after, nn.BatchNorm2d) else None
    return [upsample_conv(c_in, c_out, mode, bias, norm=bn, activation="relu", backend=backend)]


def leaky_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear + LeakyReLU(0.2) after every layer (a discriminator body)."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.LeakyReLU(LEAK)]
    return nn.Sequential(*layers)


class SpatialSum(nn.Module):
    """Global sum pooling, (B, C, H, W) -> (B, C) (SNGAN's discriminator, Miyato et al. 2018)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(2, 3))  # (B, C)


class ResBlockUp(nn.Module):
    """BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3, plus a 1x1 conv of the upsampled input (Miyato 2018)."""

    def __init__(self, c_in: int, c_out: int, mode: str, norm: str, backend: str = "auto"):
        super().__init__()
        self.main = nn.Sequential(
            norm2d(norm, c_in), nn.ReLU(), *upsample_block(c_in, c_out, mode, norm, backend=backend),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)  # (B, c_out, 2h, 2w)


class ResBlockDown(nn.Module):
    """[ReLU]-conv3x3-ReLU-conv3x3-avgpool plus avgpool-conv1x1 shortcut (Miyato et al. 2018).

    The first block takes the raw image, so it has no leading ReLU (SNGAN's "optimized" block).
    """

    def __init__(self, c_in: int, c_out: int, norm: str, first: bool):
        super().__init__()
        lead: list[nn.Module] = [] if first else [nn.ReLU()]
        self.main = nn.Sequential(
            *lead, nn.Conv2d(c_in, c_out, 3, padding=1), norm2d(norm, c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1), norm2d(norm, c_out), nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)  # (B, c_out, h/2, w/2)


# ----------------------------------------------------------------------------- decoders
# code (B, in_dim) -> (B, *shape): the generator's network, and the energy D's decoder.


class MLPDecoder(nn.Module):
    """ReLU MLP (Goodfellow et al. 2014); the output is flattened, then reshaped."""

    def __init__(self, in_dim: int, shape: tuple[int, ...], options: GanNetOptions, norm: str,
                 out: nn.Module, backend: str = "auto"):
        super().__init__()
        self.shape = shape  # backend: unused, the MLP has no kernel op
        sizes = [in_dim] + [options.width] * options.mlp_layers + [math.prod(shape)]
        self.net = nn.Sequential(mlp(sizes), out)  # norm: unused, the MLP has none

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(h.shape[0], *self.shape)  # (B, *shape)


class ProjectedDecoder(nn.Module):
    """Linear projection to (C0, s, s'), then a convolutional body to (C, H, W)."""

    def __init__(self, in_dim: int, start: tuple[int, int, int], body: nn.Module, bias: bool = True):
        super().__init__()
        self.start = start
        self.project = nn.Linear(in_dim, math.prod(start), bias=bias)
        self.body = body

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.project(h).view(h.shape[0], *self.start)  # (B, C0, s, s')
        return self.body(x)  # (B, C, H, W)


def _start(shape: tuple[int, ...], channels: int) -> tuple[int, int, int]:
    k = upsample_levels(*shape[1:])
    return channels, shape[1] >> k, shape[2] >> k


def dcgan_decoder(in_dim: int, shape: tuple[int, ...], options: GanNetOptions, norm: str,
                  out: nn.Module, backend: str = "auto") -> nn.Module:
    """Radford et al. 2016: [norm-ReLU] then k upsamplings halving channels, the last to C, then `out`.

    Transposed upsampling: each hidden level is one layer with its BatchNorm and ReLU fused
    in (upsample_block); the last fuses `out` when it is a tanh (G) and drops the module.
    """
    chans = level_channels(options.width, upsample_levels(*shape[1:]))[::-1]  # deepest first
    bias = norm == "none"  # a following norm layer makes a bias redundant
    layers: list[nn.Module] = [norm2d(norm, chans[0]), nn.ReLU()]
    for c_in, c_out in itertools.pairwise(chans):
        layers += upsample_block(c_in, c_out, options.upsample, norm, bias, backend)
    if options.upsample == "transposed" and isinstance(out, nn.Tanh):
        layers.append(upsample_conv(chans[-1], shape[0], options.upsample, activation="tanh", backend=backend))
    else:
        layers += [upsample_conv(chans[-1], shape[0], options.upsample, backend=backend), out]
    return ProjectedDecoder(in_dim, _start(shape, chans[0]), nn.Sequential(*layers), bias)


def resnet_decoder(in_dim: int, shape: tuple[int, ...], options: GanNetOptions, norm: str,
                   out: nn.Module, backend: str = "auto") -> nn.Module:
    """Miyato et al. 2018: k residual up-blocks, then norm-ReLU-conv3x3 to C, then `out`."""
    chans = level_channels(options.width, upsample_levels(*shape[1:]))[::-1]  # deepest first
    chans.append(chans[-1])  # k blocks: c(k-1) -> ... -> c(0) -> c(0)
    blocks = [ResBlockUp(a, b, options.upsample, norm, backend) for a, b in itertools.pairwise(chans)]
    tail = [norm2d(norm, chans[-1]), nn.ReLU(), nn.Conv2d(chans[-1], shape[0], 3, padding=1), out]
    return ProjectedDecoder(in_dim, _start(shape, chans[0]), nn.Sequential(*blocks, *tail))


DECODERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLPDecoder, "dcgan": dcgan_decoder, "resnet": resnet_decoder,
}


# ----------------------------------------------------------------------------- encoders
# (in_shape) -> (body: x (B, *in_shape) -> features (B, F), F)


def mlp_encoder(in_shape: tuple[int, ...], options: GanNetOptions) -> tuple[nn.Module, int]:
    """Flatten, then `mlp_layers` Linear + LeakyReLU(0.2) layers (Goodfellow et al. 2014; Radford et al. 2016)."""
    sizes = [math.prod(in_shape)] + [options.width] * options.mlp_layers
    return nn.Sequential(nn.Flatten(), leaky_mlp(sizes)), options.width


def dcgan_encoder(in_shape: tuple[int, ...], options: GanNetOptions) -> tuple[nn.Module, int]:
    """Radford et al. 2016: strided 4x4 convs + LeakyReLU(0.2), `d_norm` on all but the first."""
    c, h, w = in_shape
    k = upsample_levels(h, w)
    chans = level_channels(options.width, k)
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip([c] + chans[:-1], chans)):
        norm = options.d_norm if i > 0 else "none"
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=norm == "none"), norm2d(norm, c_out),
                   nn.LeakyReLU(LEAK)]
    return nn.Sequential(*layers, nn.Flatten()), chans[-1] * (h >> k) * (w >> k)


def resnet_encoder(in_shape: tuple[int, ...], options: GanNetOptions) -> tuple[nn.Module, int]:
    """Miyato et al. 2018: residual down-blocks, ReLU, global sum pooling."""
    chans = level_channels(options.width, upsample_levels(*in_shape[1:]))
    blocks = [ResBlockDown(a, b, options.d_norm if i > 0 else "none", first=i == 0)
              for i, (a, b) in enumerate(zip([in_shape[0]] + chans[:-1], chans))]
    return nn.Sequential(*blocks, nn.ReLU(), SpatialSum()), chans[-1]


ENCODERS: dict[str, Callable[[tuple[int, ...], GanNetOptions], tuple[nn.Module, int]]] = {
    "mlp": mlp_encoder, "dcgan": dcgan_encoder, "resnet": resnet_encoder,
}


# ----------------------------------------------------------------------------- generator


class Generator(nn.Module):
    """forward(z (B, latent_dim), c (B, cond_dim) | None) -> x (B, *data_shape)."""

    def __init__(self, net: nn.Module, latent_dim: int, cond_dim: int):
        super().__init__()
        self.net, self.latent_dim, self.cond_dim = net, latent_dim, cond_dim

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if (c is None) != (self.cond_dim == 0):
            got = "none" if c is None else tuple(c.shape)
            raise ValueError(f"this generator takes cond_dim={self.cond_dim} condition features; got c: {got}")
        h = z if c is None else torch.cat([z, c.to(z.dtype)], dim=1)  # (B, latent_dim + cond_dim)
        return self.net(h)  # (B, *data_shape)


def build_generator(options: GanNetOptions, data_shape: tuple[int, ...], latent_dim: int,
                    cond_dim: int = 0, backend: str = "auto") -> Generator:
    """G(z, c) -> x. Images end in tanh ([-1, 1]); points in a linear layer.

    The condition c (for example one-hot labels, CGAN: Mirza & Osindero 2014) is
    concatenated to z before the first layer. backend: the kernel backend of the
    transposed convolutions (the model's).
    """
    shape = tuple(data_shape)
    _check_shape(options.arch, shape)
    out = nn.Tanh() if len(shape) == 3 else nn.Identity()
    net = DECODERS[options.arch](latent_dim + cond_dim, shape, options, options.g_norm, out, backend)
    if options.arch == "dcgan":
        apply_dcgan_init(net)
    return Generator(net, latent_dim, cond_dim)


def apply_dcgan_init(net: nn.Module) -> None:
    """dcgan_init on every module, parents before children: a transposed conv draws its weight
    before its fused BatchNorm draws its scale, the order of the layers in the network.
    (nn.Module.apply visits children first.)"""
    for module in net.modules():
        dcgan_init(module)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016: weights from N(0, 0.02); norm scales from N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------- discriminator heads


class ScoreHead(nn.Module):
    """"logit" / "critic": a linear layer from the features to one score per example."""

    def __init__(self, features: int):
        super().__init__()
        self.linear = nn.Linear(features, 1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.linear(h).squeeze(1), None  # (B,)


class EnergyHead(nn.Module):
    """Autoencoder discriminator: features -> code (B, E) -> reconstruction of x.

    score = per-example mean squared (EBGAN, Zhao et al. 2017) or absolute (BEGAN,
    Berthelot et al. 2017) reconstruction error over all data dimensions.
    """

    def __init__(self, features: int, code: int, decoder: nn.Module, power: int):
        super().__init__()
        self.encode = nn.Linear(features, code)
        self.decoder = decoder
        self.power = power

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encode(h)  # (B, E)
        err = (self.decoder(code) - x).abs()  # (B, *data_shape)
        return err.pow(self.power).flatten(1).mean(dim=1), code  # (B,), (B, E)


class LabelChannels(nn.Module):
    """CGAN (Mirza & Osindero 2014): y -> a learned (B, cond_channels) embedding, tiled over the
    image as extra channels (B, cond_channels, H, W) or appended to a point's coordinates."""

    def __init__(self, n_classes: int, cond_channels: int):
        super().__init__()
        self.embed = nn.Embedding(n_classes, cond_channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError("this discriminator is class-conditional (CGAN): pass the labels y (B,)")
        e = self.embed(y).to(x.dtype)  # (B, cond_channels)
        if x.dim() == 4:
            e = e[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, cond_channels, H, W)
        return torch.cat([x, e], dim=1)  # (B, C + cond_channels, ...)


class Discriminator(nn.Module):
    """forward(x (B, *data_shape), y (B,) | None) -> DOutput; heads share the body's features."""

    def __init__(self, body: nn.Module, head: nn.Module, labels: LabelChannels | None,
                 aux: nn.Module | None, info: nn.Module | None, info_categories: int):
        super().__init__()
        self.body, self.head, self.labels, self.aux, self.info = body, head, labels, aux, info
        self.info_categories = info_categories

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        h = self.body(x if self.labels is None else self.labels(x, y))  # (B, F)
        score, embedding = self.head(h, x)  # (B,), (B, E) | None
        aux = self.aux(h) if self.aux is not None else None  # (B, n_classes)
        q = self.info(h) if self.info is not None else None  # (B, categories + continuous)
        logits, mean = _split_info(q, self.info_categories)
        return DOutput(score=score, embedding=embedding, aux_logits=aux, info_logits=logits, info_mean=mean)

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """An energy discriminator's reconstruction of x (B, *data_shape), e.g. for BEGAN's figures."""
        if not isinstance(self.head, EnergyHead):
            raise TypeError("only energy-l2/energy-l1 discriminators reconstruct their input")
        h = self.body(x if self.labels is None else self.labels(x, y))  # (B, F)
        return self.head.decoder(self.head.encode(h))  # (B, *data_shape)


def _split_info(q: torch.Tensor | None, categories: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if q is None:
        return None, None
    logits = q[:, :categories] if categories > 0 else None  # (B, categories)
    mean = q[:, categories:] if q.shape[1] > categories else None  # (B, continuous)
    return logits, mean


# ----------------------------------------------------------------------------- build_discriminator


def build_discriminator(options: GanNetOptions, data_shape: tuple[int, ...], output: DiscOutputKind,
                        n_classes: int = 0, cond_channels: int = 0, info_categories: int = 0,
                        info_continuous: int = 0, backend: str = "auto") -> Discriminator:
    """D(x, y) -> DOutput.

    output: "logit"/"critic" -> a linear score; "energy-l2"/"energy-l1" -> an autoencoder
      (EBGAN, Zhao et al. 2017 / BEGAN, Berthelot et al. 2017) with a code of `options.width`.
    n_classes with cond_channels > 0: CGAN (Mirza & Osindero 2014), labels enter as input channels.
    n_classes with cond_channels == 0: ACGAN (Odena et al. 2017) auxiliary classifier -> aux_logits.
    info_categories / info_continuous: InfoGAN (Chen et al. 2016) Q head -> info_logits / info_mean.
    backend: the kernel backend of an energy head's transposed convolutions (the model's).
    """
    shape = tuple(data_shape)
    _check_disc_args(options, shape, output, n_classes, cond_channels, info_categories, info_continuous)
    body, features = ENCODERS[options.arch]((shape[0] + cond_channels, *shape[1:]), options)
    labels = LabelChannels(n_classes, cond_channels) if cond_channels > 0 else None
    aux = nn.Linear(features, n_classes) if n_classes > 0 and cond_channels == 0 else None
    n_info = info_categories + info_continuous
    info = nn.Linear(features, n_info) if n_info > 0 else None
    head = _score_head(options, shape, output, features, backend)
    net = Discriminator(body, head, labels, aux, info, info_categories)
    if options.arch == "dcgan":
        apply_dcgan_init(net)
    return with_spectral_norm(net) if options.spectral_norm else net


def _score_head(options: GanNetOptions, shape: tuple[int, ...], output: str, features: int,
                backend: str = "auto") -> nn.Module:
    if output in ("logit", "critic"):
        return ScoreHead(features)
    code = options.width
    decoder = DECODERS[options.arch](code, shape, options, options.d_norm, nn.Identity(), backend)
    return EnergyHead(features, code, decoder, power=2 if output == "energy-l2" else 1)


def _check_disc_args(options: GanNetOptions, shape: tuple[int, ...], output: str, n_classes: int,
                     cond_channels: int, info_categories: int, info_continuous: int) -> None:
    _check_shape(options.arch, shape)
    if output not in get_args(DiscOutputKind):
        raise GanNetError(f"discriminator output {output!r} is not one of {get_args(DiscOutputKind)}.")
    if output == "critic" and options.arch in CONV_ARCHS and options.d_norm == "batch":
        raise GanNetError(
            "a 'critic' discriminator (WGAN-GP) cannot use d_norm='batch': batch norm mixes the examples "
            "of a batch, so the per-example gradient penalty is wrong (Gulrajani et al. 2017). "
            "Set d_norm='instance' or d_norm='none'."
        )
    counts = {"n_classes": n_classes, "cond_channels": cond_channels,
              "info_categories": info_categories, "info_continuous": info_continuous}
    for name, value in counts.items():
        if value < 0:
            raise GanNetError(f"{name} must be >= 0; got {value}.")
    if cond_channels > 0 and n_classes == 0:
        raise GanNetError("cond_channels > 0 (CGAN) needs the dataset's n_classes > 0; set cond_channels=0.")


def with_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap every conv and linear layer of `module` in spectral normalisation (Miyato et al. 2018)."""
    for layer in list(module.modules()):
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            _spectral_norm(layer)
    return module
