"""The 8-bit pixel convention every image in genbench follows (genbench/data/base.py documents
the dataset layout): 256 levels u in {0..255}, held as float32 x = u / 127.5 - 1 in [-1, 1]."""

from __future__ import annotations

import torch

PIXEL_LEVELS = 256  # every image dataset is quantised to 8 bits


def uint8_to_images(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) levels -> float32 in [-1, 1] (x = u / 127.5 - 1)."""
    return u8.to(torch.float32) / 127.5 - 1.0


def float01_to_images(x01: torch.Tensor) -> torch.Tensor:
    """Float intensities in [0, 1] -> quantised to 8 bits -> float32 in [-1, 1]."""
    u8 = torch.round(x01.clamp(0, 1) * 255).to(torch.uint8)
    return uint8_to_images(u8)


def images_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Inverse of uint8_to_images: float in [-1, 1] -> uint8 levels."""
    return torch.round((x.clamp(-1, 1) + 1.0) * 127.5).to(torch.uint8)
