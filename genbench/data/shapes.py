"""`shapes`: procedural dSprites-like binary images with known generative factors.

Each image shows one white shape on a black background; pixels are exactly -1 (off) or
1 (on). Images are (N, 1, size, size) float32. Every image draws each factor's index
uniformly and independently (numpy `default_rng(seed)`), from this grid:

    factor       values                                       count
    shape        square, ellipse, heart                       3
    scale        linspace(0.5, 1.0, 6)                        6
    orientation  linspace(0, 2*pi, 40, endpoint=False) rad    40
    pos_x        linspace(0, 1, 32)  (0 = left)               32
    pos_y        linspace(0, 1, 32)  (0 = top)                32

`factors` is int64 (N, 5): the index of each factor's value, in the order above; the values
are in `info.extras["factor_values"]` and the names in `info.extras["factor_names"]`.
`y` is the shape index and `info.classes` = ("square", "ellipse", "heart").

Rendering (as dSprites does it): a pixel is on when its centre lies inside the shape. At
scale 1 the shape spans 2 * HALF_SIZE = 0.36 of the canvas side: square |u|, |v| <= 1;
ellipse with semi-axes 1 (along u) and 0.5 (along v); heart the implicit curve
(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, centred on its bounding box and scaled to half-height 1
(its tip points down at orientation 0). The shape is rotated counter-clockwise by the
orientation about its centre, and the centre moves over the central region
[m, 1 - m]^2 of the canvas, where m = HALF_SIZE * sqrt(2) + 1/32 (the square's
half-diagonal plus a pad), so every shape stays inside the canvas, clear of the outermost
pixels, at every orientation and the largest scale. Adjacent positions can render the same
image at size 32 (32 positions over ~14 px).

Options: `size` in {16, 32, 64} (default 32; 16 is a coarse, cheap variant for CPU budgets:
the smallest shapes cover 2 to a few pixels, and many factor settings render alike), `n`
total images (16384; 2..MAX_EXAMPLES), `test_fraction` (0.2) and `seed` (0). Split: after
generation, `holdout_split(n, test_fraction, seed)` picks the test images; the rest are the
training set, both kept in generation order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch

from genbench.data.base import MAX_EXAMPLES, Header, holdout_sizes, holdout_split, register_source, take

from genbench.utils.pixels import uint8_to_images

SHAPE_NAMES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_VALUES: dict[str, list] = {
    "shape": list(SHAPE_NAMES),
    "scale": np.linspace(0.5, 1.0, 6).tolist(),
    "orientation": np.linspace(0.0, 2 * math.pi, 40, endpoint=False).tolist(),
    "pos_x": np.linspace(0.0, 1.0, 32).tolist(),
    "pos_y": np.linspace(0.0, 1.0, 32).tolist(),
}
HALF_SIZE = 0.18  # half the shape's extent at scale 1, as a fraction of the canvas side
# Keep the centre this far from the edges: the largest distance of a shape's point from
# its centre (the square's half-diagonal) plus a 1/32 pad, so the outermost row and column
# of pixels (centres 1/64 or 1/128 from the edge) are never on.
MARGIN = HALF_SIZE * math.sqrt(2) + 1 / 32
# The heart curve spans x in [-1.139, 1.139], y in [-1, 1.236]: centre and scale it so its
# bounding box is centred with half-height 1, like the square.
HEART_HALF_HEIGHT = 1.118
HEART_CENTRE_Y = 0.118
PIXELS_PER_CHUNK = 1 << 22  # bounds the temporaries to ~16 MB each


@dataclass(frozen=True)
class ShapesOptions:
    size: Literal[16, 32, 64] = 32  # image side in pixels
    n: int = 16384  # total number of images (train + test)
    test_fraction: float = 0.2  # share of the images held out as the test set
    seed: int = 0  # seed of the factor draws and of the holdout

    def __post_init__(self):
        if not 2 <= self.n <= MAX_EXAMPLES:
            raise ValueError(f"n must be between 2 (one train and one test image) and {MAX_EXAMPLES:,}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError("test_fraction must lie strictly between 0 and 1")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 1) & (np.abs(v) <= 1)


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + (2 * v) ** 2 <= 1  # semi-axes 1 and 0.5


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x = u * HEART_HALF_HEIGHT
    y = v * HEART_HALF_HEIGHT + HEART_CENTRE_Y
    r = x * x + y * y - 1
    return r * r * r - x * x * y * y * y <= 0


# inside(u, v) -> bool for each shape, in SHAPE_NAMES order
SHAPE_TESTS: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    _square, _ellipse, _heart)


def sample_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform, independent factor indices: int64 (n, 5) in FACTOR_NAMES order."""
    counts = np.array([len(FACTOR_VALUES[name]) for name in FACTOR_NAMES])
    return rng.integers(0, counts, size=(n, len(counts)), dtype=np.int64)


def _render_one_shape(factors: np.ndarray, size: int, inside) -> np.ndarray:
    """Render images of one shape from their factor indices (B, 5) -> bool (B, size, size)."""
    scale = np.asarray(FACTOR_VALUES["scale"], np.float32)[factors[:, 1]]  # (B,)
    angle = np.asarray(FACTOR_VALUES["orientation"], np.float32)[factors[:, 2]]  # (B,)
    travel = 1 - 2 * MARGIN
    cx = MARGIN + travel * np.asarray(FACTOR_VALUES["pos_x"], np.float32)[factors[:, 3]]  # (B,)
    cy = MARGIN + travel * np.asarray(FACTOR_VALUES["pos_y"], np.float32)[factors[:, 4]]  # (B,)
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size  # (S,) pixel centres
    dx = centres[None, None, :] - cx[:, None, None]  # (B, 1, S) rightwards
    dy = cy[:, None, None] - centres[None, :, None]  # (B, S, 1) upwards (rows go down)
    cos = (np.cos(angle) / (HALF_SIZE * scale))[:, None, None]  # (B, 1, 1)
    sin = (np.sin(angle) / (HALF_SIZE * scale))[:, None, None]  # (B, 1, 1)
    u = cos * dx + sin * dy  # (B, S, S) shape coordinates: rotate by -angle, unscale
    v = cos * dy - sin * dx  # (B, S, S)
    return inside(u, v)


def render(factors: np.ndarray, size: int) -> np.ndarray:
    """Binary images for factor indices (N, 5) -> bool (N, size, size)."""
    out = np.zeros((len(factors), size, size), dtype=bool)
    chunk = max(1, PIXELS_PER_CHUNK // (size * size))
    for k, inside in enumerate(SHAPE_TESTS):
        idx = np.flatnonzero(factors[:, 0] == k)  # render each shape's images together
        for start in range(0, len(idx), chunk):
            part = idx[start:start + chunk]
            out[part] = _render_one_shape(factors[part], size, inside)
    return out


def probe_shapes(options: ShapesOptions, path: str | None) -> Header:
    n_train, n_test = holdout_sizes(options.n, options.test_fraction)
    return Header("image", n_train, n_test, (1, options.size, options.size))


@register_source("shapes", ShapesOptions, needs_path=False, probe=probe_shapes,
                 summary="procedural dSprites-like binary shapes with 5 known factors")
def load_shapes(options: ShapesOptions, path: str | None):
    factors = sample_factors(options.n, np.random.default_rng(options.seed))  # (N, 5)
    on = torch.from_numpy(render(factors, options.size))  # (N, S, S) bool
    x = uint8_to_images(on.unsqueeze(1).to(torch.uint8) * 255)  # (N, 1, S, S) in {-1, 1}
    f = torch.from_numpy(factors)  # (N, 5) int64
    y = f[:, 0].clone()  # (N,) shape index
    train_idx, test_idx = holdout_split(options.n, options.test_fraction, options.seed)
    facts = {
        "kind": "image",
        "classes": SHAPE_NAMES,
        "source": f"embedded: generated by genbench.data.shapes (seed {options.seed})",
        "split": f"holdout of {options.test_fraction:g} as test, "
                 f"holdout_split(n={options.n}, seed={options.seed})",
        "extras": {
            "factor_names": FACTOR_NAMES,
            "factor_values": {k: list(v) for k, v in FACTOR_VALUES.items()},  # a copy per load
        },
    }
    return take(x, y, train_idx, f), take(x, y, test_idx, f), facts
