"""Image grids (genbench/utils/figures.py): torchvision's make_grid builds the canvas; the
pixels must be those of the hand-built canvas it replaced, kept here as the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.utils.figures import MIN_TILE_PX, save_image_grid
from genbench.utils.pixels import images_to_uint8


def reference_grid(images: torch.Tensor, columns: int | None = None) -> Image.Image:
    """The grid genbench drew by hand before it used torchvision: white 1-px separators,
    gray images kept 1-channel, small tiles enlarged by nearest neighbour."""
    u8 = images_to_uint8(images.detach().cpu())  # (N, C, H, W)
    n, c, h, w = u8.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.full((c, rows * (h + 1) + 1, columns * (w + 1) + 1), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[:, 1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + col * (w + 1): 1 + col * (w + 1) + w] = u8[i]
    array = canvas.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0] if c == 1 else array)
    scale = max(1, MIN_TILE_PX // max(h, w))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


@pytest.mark.parametrize("shape, columns", [
    ((64, 1, 16, 16), 8),  # the runner's sample grid
    ((10, 3, 5, 7), None),  # colour, non-square tiles, a partial last row (4 columns)
    ((3, 1, 8, 8), 8),  # fewer images than columns: the row keeps its width
    ((1, 1, 4, 4), None),  # one tile still gets its frame
    ((5, 3, 50, 50), 2),  # tiles large enough not to be enlarged
])
def test_grid_pixels_match_the_hand_built_canvas(tmp_path, shape, columns):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(shape, generator=g) * 2 - 1  # (N, C, H, W) in [-1, 1]
    path = save_image_grid(images, tmp_path / "grid.png", columns)
    with Image.open(path) as png:
        written = np.asarray(png)
        mode = png.mode
    expected = reference_grid(images, columns)
    assert mode == ("L" if shape[1] == 1 else "RGB")  # gray stays gray in the PNG
    np.testing.assert_array_equal(written, np.asarray(expected))
