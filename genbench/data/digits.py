"""`digits`: scikit-learn's bundled handwritten digits (UCI optdigits test set), no download.

1,797 grayscale 8x8 images with 17 intensity levels (0..16) and labels 0..9
(`info.classes` = "0".."9"). Each image is scaled to [0, 1] (value / 16), upsampled to
`size` x `size` with bilinear interpolation (align_corners=False, no antialiasing: it only
upsamples), then quantised to 8 bits like every genbench image dataset: (N, 1, size, size)
float32 in [-1, 1]. `size=8` keeps the native resolution.

Options: `size` in {8, 16, 32} (default 16).

Split: the source has none, so a fixed holdout: 20% of the images (359) are the test set,
chosen by `holdout_split(1797, 0.2, seed=0)`; the rest (1,438) are the training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from genbench.data.base import Header, holdout_sizes, holdout_split, register_source, take

from genbench.utils.pixels import float01_to_images

TEST_FRACTION = 0.2
SPLIT_SEED = 0
NATIVE_SIZE = 8
MAX_VALUE = 16.0  # the source's intensities are 0..16
N_IMAGES = 1797


@dataclass(frozen=True)
class DigitsOptions:
    size: Literal[8, 16, 32] = 16  # output side in pixels (8 = native, else bilinear upsampling)


def digits_to_images(values: torch.Tensor, size: int) -> torch.Tensor:
    """Source intensities (N, 8, 8) in 0..16 -> quantised images (N, 1, size, size)."""
    x01 = (values.to(torch.float32) / MAX_VALUE).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    if size != NATIVE_SIZE:
        x01 = F.interpolate(x01, size=(size, size), mode="bilinear",
                            align_corners=False, antialias=False)  # (N, 1, size, size)
    return float01_to_images(x01)


def probe_digits(options: DigitsOptions, path: str | None) -> Header:
    n_train, n_test = holdout_sizes(N_IMAGES, TEST_FRACTION)
    return Header("image", n_train, n_test, (1, options.size, options.size))


@register_source("digits", DigitsOptions, needs_path=False, probe=probe_digits,
                 summary="scikit-learn handwritten digits: 1,797 8x8 images, upsampled")
def load_digits(options: DigitsOptions, path: str | None):
    # Imported here: scikit-learn takes about a second to import. The data ships with it.
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = digits_to_images(torch.from_numpy(bunch.images), options.size)  # (N, 1, S, S)
    y = torch.from_numpy(bunch.target).to(torch.int64)  # (N,)
    train_idx, test_idx = holdout_split(len(x), TEST_FRACTION, SPLIT_SEED)
    facts = {
        "kind": "image",
        "classes": tuple(str(d) for d in range(10)),
        "source": "embedded: sklearn.datasets.load_digits (UCI optdigits, 8x8, levels 0..16)",
        "split": f"holdout of {TEST_FRACTION:.0%} as test, holdout_split(seed={SPLIT_SEED})",
        "extras": {"native_size": NATIVE_SIZE, "source_levels": 17},
    }
    return take(x, y, train_idx), take(x, y, test_idx), facts
