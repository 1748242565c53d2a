"""Encoder and decoder networks shared by the autoencoder-like families.

MLP: Linear-ReLU stacks on the flattened input.
Conv: stride-2 4x4 convolutions with LeakyReLU(0.2) halve the image down to about
4x4 (channels doubling from `channels`, capped at 256), then a linear layer; the decoder
mirrors it with stride-2 4x4 transposed convolutions and ReLU (the DCGAN pattern).

Transposed convolutions run through the kernel op genbench.kernels.conv_transpose2d with
the model's backend (the layer genbench.kernels.conv_transpose.ConvTranspose2d): the ReLU
after a layer is fused into the kernel's epilogue, and `conv_transpose_backends(model)` is
what models report for the op.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.errors import ConfigError
from genbench.kernels.conv_transpose import OP_NAME as CONV_TRANSPOSE_OP
from genbench.kernels.conv_transpose import ConvTranspose2d

MAX_CHANNELS = 256
MAX_LEVELS = 4


def conv_levels(height: int, width: int) -> int:
    """How many stride-2 halvings keep both sides even and at least 4 px."""
    levels = 0
    while levels < MAX_LEVELS and height % 2 == 0 and width % 2 == 0 and min(height, width) >= 8:
        height, width, levels = height // 2, width // 2, levels + 1
    return levels


def level_channels(base: int, levels: int) -> list[int]:
    return [min(base * 2**i, MAX_CHANNELS) for i in range(levels)]


def gate(pre: torch.Tensor) -> torch.Tensor:
    """The gated activation tanh(a) * sigmoid(b) for pre = [a, b] along channels (dim 1):
    (B, 2D, ...) -> (B, D, ...) (PixelCNN, van den Oord et al. 2016, eq. 2; WaveNet eq. 2)."""
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def decoder_ops(options) -> tuple[str, ...]:
    """Kernel ops of a model whose decoder is build_decoder(options.arch, ...): the
    transposed convolutions of arch='conv'."""
    return (CONV_TRANSPOSE_OP,) if options.arch == "conv" else ()


def conv_transpose_backends(module: nn.Module) -> dict[str, str]:
    """{"conv_transpose2d": the backend its transposed convolutions resolve to} for the kernel
    layers in `module` (on their weights' device), or {} when it has none. Layers that
    resolve differently are joined: "triton+torch"."""
    resolved = {m.resolved_backend(next(m.parameters()).device)
                for m in module.modules() if isinstance(m, ConvTranspose2d)}
    return {CONV_TRANSPOSE_OP: "+".join(sorted(resolved, reverse=True))} if resolved else {}


def build_encoder(arch: str, shape: tuple[int, ...], out_dim: int, hidden: int, channels: int) -> nn.Module:
    """x (B, *shape) -> (B, out_dim)."""
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), mlp([math.prod(shape), hidden, hidden, out_dim]))
    c, h, w = _image_shape(shape)
    levels = conv_levels(h, w)
    chans = level_channels(channels, levels)
    layers: list[nn.Module] = []
    for c_in, c_out in zip([c] + chans[:-1], chans):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
    flat = chans[-1] * (h >> levels) * (w >> levels)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, out_dim))


class ConvDecoder(nn.Module):
    """z (B, latent) -> (B, out_channels, H, W) by transposed convolutions.

    upsample: ReLU, then one ConvTranspose2d per level, the ReLU after each hidden
    level fused into it, none on the output.
    """

    def __init__(self, latent_dim: int, shape: tuple[int, ...], out_channels: int, channels: int,
                 backend: str = "auto"):
        super().__init__()
        _, h, w = _image_shape(shape)
        levels = conv_levels(h, w)
        chans = level_channels(channels, levels)[::-1]  # deepest first
        self.start = (chans[0], h >> levels, w >> levels)
        self.project = nn.Linear(latent_dim, math.prod(self.start))
        outs = chans[1:] + [out_channels]
        self.upsample = nn.Sequential(nn.ReLU(), *[
            ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1,
                                 activation="relu" if i < len(outs) - 1 else "none", backend=backend)
            for i, (c_in, c_out) in enumerate(zip(chans, outs))])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], *self.start)  # (B, C, h, w)
        return self.upsample(x)  # (B, out_channels, H, W)


class MLPDecoder(nn.Module):
    """z (B, latent) -> (B, out_channels, *spatial) through an MLP."""

    def __init__(self, latent_dim: int, shape: tuple[int, ...], out_channels: int, hidden: int):
        super().__init__()
        self.out_shape = (out_channels, *shape[1:])
        self.net = mlp([latent_dim, hidden, hidden, math.prod(self.out_shape)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


def build_decoder(arch: str, shape: tuple[int, ...], latent_dim: int, out_channels: int,
                  hidden: int, channels: int, backend: str = "auto") -> nn.Module:
    """backend: the model's kernel backend, for the conv decoder's transposed convolutions."""
    if arch == "mlp":
        return MLPDecoder(latent_dim, shape, out_channels, hidden)
    return ConvDecoder(latent_dim, shape, out_channels, channels, backend)


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(
            f"arch='conv' needs images (C, H, W); this dataset's examples have shape {shape}. "
            "Use arch='mlp' for 2-D points."
        )
    c, h, w = shape
    if conv_levels(h, w) == 0:
        raise ConfigError(
            f"arch='conv' needs even image sides of at least 8 px; got {h}x{w}. Resize the "
            "dataset (for example folder:PATH?size=32) or use arch='mlp'."
        )
    return c, h, w
