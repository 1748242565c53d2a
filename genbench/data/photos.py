"""`photos`: 32x32 RGB crops of the eight colour photographs bundled with scikit-image.

Works offline: the photographs ship inside the scikit-image package. The label of a crop is
the photograph it comes from; `info.classes` = PHOTO_NAMES:

    astronaut, coffee, chelsea, rocket, motorcycle_left (the left view of
    skimage.data.stereo_motorcycle()), hubble_deep_field, immunohistochemistry, retina

Each photograph is resized (bilinear with antialiasing) so its shorter side is 128 px; all
eight are landscape or square, so each is 128 rows tall. Crops are `size` x `size` pixels
(only 32 is offered) at uniformly random positions, drawn per photograph and per split
from numpy `default_rng([seed, photo index, split])`. Output: (N, 3, 32, 32) float32 in
[-1, 1], 8-bit quantised, ordered photograph by photograph.

No train/test leakage: the rows of each resized photograph are split into two disjoint
bands and a crop lies wholly inside one. The test band is the bottom 20% of the rows, but
at least one crop tall: 20% of 128 rows (26) cannot hold a 32-px crop, so with the defaults
the test band is the bottom 32 rows (25%) and the train band the 96 rows above it. Test
crops therefore differ only in their horizontal position (97 to 161 distinct crops per
photograph, so `n_test` > that repeats some).

Held-out split (`Dataset.heldout`, see genbench.data.base): `n_heldout` crops per photograph
from the TRAIN band, drawn from their own stream `default_rng([seed, photo index, 2])`, so
train and test (and the content hash) are the same with or without it. They are drawn from
the training distribution but are not training examples: the two-sample test (`c2st`)
scores generated images against them, since the test band's crops differ from the training
crops in content (real training crops score about 0.74 against the test split). They share
the training crops' rows, so a held-out crop overlaps training crops and may repeat one
exactly (97 x 65 positions or more per photograph against 1,024 training crops: 106 of the
1,024 default held-out crops are training crops); that is
the point (same distribution), and why they are no test set for likelihoods or the extractor.

Options: `n_train` (1024), `n_test` (128) and `n_heldout` (128) crops per photograph (each
1..MAX_EXAMPLES / 8), `seed` (0), `size` (32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genbench.data.base import MAX_EXAMPLES, Header, Split, register_source

from genbench.utils.pixels import float01_to_images

PHOTO_NAMES = (
    "astronaut", "coffee", "chelsea", "rocket", "motorcycle_left",
    "hubble_deep_field", "immunohistochemistry", "retina",
)
SHORT_SIDE = 128  # every photograph is resized so its shorter side has this many pixels
TEST_ROWS_FRACTION = 0.2  # bottom share of the rows reserved for test crops
TRAIN, TEST, HELDOUT = 0, 1, 2  # random stream index of each split (held-out crops: from the train band)


@dataclass(frozen=True)
class PhotosOptions:
    n_train: int = 1024  # training crops per photograph
    n_test: int = 128  # test crops per photograph
    n_heldout: int = 128  # held-out crops per photograph, from the train band (module docstring)
    seed: int = 0  # seed of the crop positions
    size: Literal[32] = 32  # crop side in pixels (only 32: the test band is 32 rows tall)

    def __post_init__(self):
        most = MAX_EXAMPLES // len(PHOTO_NAMES)
        if not all(1 <= n <= most for n in (self.n_train, self.n_test, self.n_heldout)):
            raise ValueError(f"n_train, n_test and n_heldout (crops per photograph) must be between 1 and {most:,}")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")


def read_photo(name: str) -> np.ndarray:
    """The bundled photograph `name` as uint8 (H, W, 3)."""
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def resize_short_side(photo: np.ndarray, short: int = SHORT_SIDE) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, h, w) in [0, 1] with min(h, w) == short."""
    h, w = photo.shape[:2]
    factor = short / min(h, w)
    size = (max(short, round(h * factor)), max(short, round(w * factor)))
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].to(torch.float32) / 255  # (1, 3, H, W)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                      antialias=True)  # (1, 3, h, w)
    return x[0].clamp(0, 1)


def row_bands(height: int, crop: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Disjoint (start, stop) row bands for train and test crops of a `height`-row image."""
    test_rows = max(crop, math.ceil(height * TEST_ROWS_FRACTION))
    cut = height - test_rows
    return (0, cut), (cut, height)


def random_crops(image: torch.Tensor, band: tuple[int, int], n: int, crop: int,
                 rng: np.random.Generator) -> torch.Tensor:
    """n crops (n, C, crop, crop) lying wholly inside rows band[0]:band[1] of image (C, H, W)."""
    top = rng.integers(band[0], band[1] - crop + 1, size=n)  # (n,)
    left = rng.integers(0, image.shape[2] - crop + 1, size=n)  # (n,)
    return torch.stack([image[:, t:t + crop, l:l + crop] for t, l in zip(top, left)])


def probe_photos(options: PhotosOptions, path: str | None) -> Header:
    n = len(PHOTO_NAMES)
    return Header("image", n * options.n_train, n * options.n_test, (3, options.size, options.size))


@register_source("photos", PhotosOptions, needs_path=False, probe=probe_photos,
                 summary="32x32 RGB crops of 8 scikit-image photographs, label = photograph")
def load_photos(options: PhotosOptions, path: str | None):
    crops: dict[int, list[torch.Tensor]] = {TRAIN: [], TEST: [], HELDOUT: []}
    bands_used = {}
    for index, name in enumerate(PHOTO_NAMES):
        image = resize_short_side(read_photo(name))  # (3, 128, w)
        bands = row_bands(image.shape[1], options.size)
        bands_used[name] = {"train_rows": list(bands[TRAIN]), "test_rows": list(bands[TEST])}
        for split, count in ((TRAIN, options.n_train), (TEST, options.n_test), (HELDOUT, options.n_heldout)):
            rng = np.random.default_rng([options.seed, index, split])
            band = bands[TEST] if split == TEST else bands[TRAIN]  # held-out crops: the train band
            crops[split].append(random_crops(image, band, count, options.size, rng))

    def make_split(split: int, count: int) -> Split:
        x = float01_to_images(torch.cat(crops[split]))  # (8 * count, 3, 32, 32)
        y = torch.arange(len(PHOTO_NAMES)).repeat_interleave(count)  # (8 * count,) int64
        return Split(x=x, y=y)

    facts = {
        "kind": "image",
        "classes": PHOTO_NAMES,
        "source": "embedded: skimage.data photographs, shorter side resized to 128 px",
        "split": "by rows: train crops from the top rows, test crops from the bottom "
                 "max(20%, 32) rows of each photograph (disjoint bands, see extras['row_bands'])",
        "extras": {"short_side": SHORT_SIDE, "row_bands": bands_used,
                   "heldout": f"{options.n_heldout} crops per photograph from the train rows, random stream "
                              "[seed, photo index, 2]: the training distribution, never trained on, overlapping "
                              "training crops"},
        "heldout": make_split(HELDOUT, options.n_heldout),
    }
    return make_split(TRAIN, options.n_train), make_split(TEST, options.n_test), facts
