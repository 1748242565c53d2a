"""Trivial reference models: what a result has to beat before it counts as learned.

A number means little on its own: a GAN that "captures 17 of 25 modes" has learned nothing
if a single Gaussian fitted to the data captures as many. These references are scored by the
same metric code, on the same sample counts, as the runs they sit beside:

- for samples of 2-D mixtures: held-out real points (the test split), a Gaussian fitted to
  the training points (mean and full covariance), and a uniform box over their range;
- for likelihoods of 8-bit images: a per-pixel independent 256-way histogram fitted to the
  training split, its pseudo-count chosen by cross-validation on the training split alone
  (never on the test split it is scored on). Its discrete NLL equals the bits/dim of the
  same model dequantised uniformly within each level, so it compares with both conventions
  of 8-bit bits/dim (not with bits/dim on binarised data).

Each reference is a pure function of the dataset and a seed, so reports can compute it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from genbench.metrics.coverage import mode_coverage
from genbench.utils.pixels import PIXEL_LEVELS, images_to_uint8

PSEUDO_COUNTS = (1.0, 0.5, 0.1, 0.01, 0.001)  # candidates for the histogram's smoothing
FOLDS = 5


@dataclass(frozen=True)
class HistogramFit:
    bits_per_dim: float  # test NLL per dimension, bits
    pseudo_count: float  # chosen by cross-validation on the training split
    levels: int  # 256 (8-bit) or 2 (binarised)


def pixel_histogram_bits_per_dim(train: torch.Tensor, test: torch.Tensor, levels: int = PIXEL_LEVELS,
                                 seed: int = 0) -> HistogramFit:
    """Bits/dim on `test` of independent per-dimension categorical marginals fitted to
    `train`; both int64 (N, D) in 0..levels-1. The pseudo-count is the candidate with the best
    mean held-out NLL over FOLDS folds of the training split."""
    folds = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).chunk(FOLDS)

    def cv_bits(alpha: float) -> float:
        held = [categorical_bits(torch.cat([train[f] for j, f in enumerate(folds) if j != i]), train[fold], levels,
                                 alpha) for i, fold in enumerate(folds)]
        return sum(held) / len(held)

    alpha = min(PSEUDO_COUNTS, key=cv_bits)
    return HistogramFit(categorical_bits(train, test, levels, alpha), alpha, levels)


def categorical_bits(fit: torch.Tensor, score: torch.Tensor, levels: int, alpha: float) -> float:
    """Mean bits per dimension of `score` (N, D) under per-dimension categoricals fitted to
    `fit` (M, D) with `alpha` added to every count."""
    counts = torch.zeros(fit.shape[1], levels, dtype=torch.float64)  # (D, levels)
    counts.scatter_add_(1, fit.T, torch.ones(fit.T.shape, dtype=torch.float64))
    probs = (counts + alpha) / (counts.sum(1, keepdim=True) + levels * alpha)  # (D, levels)
    return float(-torch.log2(probs.gather(1, score.T)).mean())


def image_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images (N, C, H, W) -> their 8-bit levels as int64 (N, C*H*W)."""
    return images_to_uint8(x).flatten(1).long()


# --- samplers of trivial models for 2-D mixtures ------------------------------------------


def fitted_gaussian(train: torch.Tensor) -> Callable[[int, torch.Generator], torch.Tensor]:
    """Draws from N(mean, covariance) of the training points (N, 2)."""
    x = train.double()
    mean, chol = x.mean(0), torch.linalg.cholesky(torch.cov(x.T))
    return lambda n, g: mean + torch.randn(n, x.shape[1], generator=g, dtype=torch.float64) @ chol.T


def uniform_box(train: torch.Tensor) -> Callable[[int, torch.Generator], torch.Tensor]:
    """Draws uniform over the training points' per-coordinate range."""
    lo, hi = train.double().min(0).values, train.double().max(0).values
    return lambda n, g: lo + (hi - lo) * torch.rand(n, train.shape[1], generator=g, dtype=torch.float64)


def held_out(test: torch.Tensor) -> Callable[[int, torch.Generator], torch.Tensor]:
    """Draws test points with replacement (the test split may be smaller than n)."""
    return lambda n, g: test.double()[torch.randint(len(test), (n,), generator=g)]


POINT_REFERENCES = {"held-out data": lambda data: held_out(data.test.x),
                    "fitted Gaussian": lambda data: fitted_gaussian(data.train.x),
                    "uniform box": lambda data: uniform_box(data.train.x)}


def coverage_references(data, n_samples: int, seeds: int = 5) -> dict[str, list]:
    """Per reference, the coverage results of `seeds` draws of n_samples points each."""
    extras = data.info.extras
    modes = torch.tensor(extras["modes"])
    results = {}
    for name, make in POINT_REFERENCES.items():
        draw = make(data)
        results[name] = [mode_coverage(draw(n_samples, torch.Generator().manual_seed(s)), modes, extras["mode_sigma"])
                         for s in range(seeds)]
    return results


def bits_per_dim_reference(data) -> HistogramFit:
    """The per-pixel 256-way histogram reference for an 8-bit image dataset."""
    return pixel_histogram_bits_per_dim(image_levels(data.train.x), image_levels(data.test.x))
