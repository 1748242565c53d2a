"""Encoder and decoder networks shared by the autoencoder-like families.

MLP: Linear-ReLU stacks on the flattened input.
Conv: stride-2 4x4 convolutions with LeakyReLU(0.2) halve the image down to about
4x4 (channels doubling from `channels`, capped at 256), then a linear layer; the decoder
mirrors it with stride-2 4x4 transposed convolutions and ReLU (the DCGAN pattern).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genbench.errors import ConfigError

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


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


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
    """z (B, latent) -> (B, out_channels, H, W) by transposed convolutions."""

    def __init__(self, latent_dim: int, shape: tuple[int, ...], out_channels: int, channels: int):
        super().__init__()
        _, h, w = _image_shape(shape)
        levels = conv_levels(h, w)
        chans = level_channels(channels, levels)[::-1]  # deepest first
        self.start = (chans[0], h >> levels, w >> levels)
        self.project = nn.Linear(latent_dim, math.prod(self.start))
        layers: list[nn.Module] = [nn.ReLU()]
        for c_in, c_out in zip(chans, chans[1:] + [out_channels]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.ReLU()]
        self.upsample = nn.Sequential(*layers[:-1])  # no activation on the output

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
                  hidden: int, channels: int) -> nn.Module:
    if arch == "mlp":
        return MLPDecoder(latent_dim, shape, out_channels, hidden)
    return ConvDecoder(latent_dim, shape, out_channels, channels)


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
