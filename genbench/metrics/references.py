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
  of 8-bit bits/dim (not with bits/dim on binarised data);
- for samples of 8-bit images (FID, KID, precision, recall): held-out real images (the test
  split: the ceiling, not a trivial model), and three trivial models fitted to the training
  split -- its mean image, per-pixel independent noise matched to each pixel's 256-level
  histogram, and a Gaussian with its mean and full pixel covariance. Their draws are
  quantised to the 8-bit levels exactly as real images are.

Each reference is a pure function of the dataset and a seed, so reports can compute it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable

import torch

from genbench.metrics.coverage import mode_coverage
from genbench.utils.hashing import json_hash
from genbench.utils.pixels import PIXEL_LEVELS, images_to_uint8, uint8_to_images

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


# --- samplers of trivial models for 8-bit images -------------------------------------------
# Each takes the split's images, float (N, C, H, W) in [-1, 1] on the 8-bit levels, and
# returns draw(n, generator) -> float32 (n, C, H, W) in [-1, 1] on the same levels.

ImageSampler = Callable[[int, torch.Generator], torch.Tensor]


def on_levels(x: torch.Tensor) -> torch.Tensor:
    """Clip to [-1, 1] and quantise to the 8-bit levels, as every real image is."""
    return uint8_to_images(images_to_uint8(x))


def held_out_images(test: torch.Tensor) -> ImageSampler:
    """Test images: a random subset (without replacement) when n <= len(test); drawn with
    replacement only when n exceeds the split (some images then repeat)."""
    images = on_levels(test)

    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        if n <= len(images):
            idx = torch.randperm(len(images), generator=g)[:n]
        else:
            idx = torch.randint(len(images), (n,), generator=g)
        return images[idx]

    return draw


def mean_image(train: torch.Tensor) -> ImageSampler:
    """n copies of the training split's mean image (quantised)."""
    mean = on_levels(train.double().mean(0, keepdim=True))  # (1, C, H, W)
    return lambda n, g: mean.expand(n, *mean.shape[1:]).clone()


def per_pixel_noise(train: torch.Tensor) -> ImageSampler:
    """Every pixel (and channel) drawn independently from its own 256-level histogram over
    the training split: each takes its value from an independently chosen training image."""
    levels = images_to_uint8(train).flatten(1)  # (N, D) uint8
    shape = train.shape[1:]

    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(levels), (n, levels.shape[1]), generator=g)  # (n, D)
        return uint8_to_images(levels.gather(0, idx).reshape(n, *shape))

    return draw


def fitted_gaussian_images(train: torch.Tensor) -> ImageSampler:
    """N(mean, covariance) of the flattened training pixels (full covariance; its square root
    by eigendecomposition with eigenvalues clamped at 0, so constant pixels are fine), clipped
    to [-1, 1] and quantised."""
    x = train.double().flatten(1)  # (N, D)
    mean = x.mean(0)
    evals, evecs = torch.linalg.eigh(torch.cov(x.T))
    root = evecs * evals.clamp(min=0).sqrt()  # root @ root.T == covariance
    shape = train.shape[1:]

    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, x.shape[1], generator=g, dtype=torch.float64)
        return on_levels((mean + z @ root.T).reshape(n, *shape))

    return draw


IMAGE_REFERENCES = {"held-out data": lambda data: held_out_images(data.test.x),
                    "mean image": lambda data: mean_image(data.train.x),
                    "per-pixel noise": lambda data: per_pixel_noise(data.train.x),
                    "fitted Gaussian": lambda data: fitted_gaussian_images(data.train.x)}
IMAGE_TRIVIAL = ("mean image", "per-pixel noise", "fitted Gaussian")  # held-out data is the ceiling


SCORES_VERSION = 1  # bump when the references or their scoring change: cached scores are keyed by it


def image_quality_references(data, n_generated: int, n_reference: int | None = None, seeds: int = 3,
                             device: torch.device = torch.device("cpu"),
                             settings=None) -> dict[str, list[dict[str, float]]]:
    """Per image reference, the sample-quality values (fid, kid, kid_std, precision, recall,
    and n: the images scored) of `seeds` draws each (seed s draws with
    torch.Generator().manual_seed(s) and seeds KID with s), scored as runs are: genbench
    classifier features against the first n_reference training images (runs: all, None), no
    Inception Score. Every trivial model draws n_generated images; held-out data draws
    min(n_generated, test split) -- repeating test images would shrink their nearest-neighbour
    radii and with them recall (0.52 at 1,000 draws from digits' 359 test images, 0.15 at
    2,000), so the "ceiling" would fall below a fitted Gaussian's. Scores are cached on disk
    (the dataset's content hash, the extractor's weights hash, the sizes, seeds and settings
    in the key). Raises GenbenchError when FID's sizes are too small (check_fid_sizes)."""
    from genbench.metrics.extractors import cache_root, classifier_for  # torch-fidelity: loaded only when needed
    from genbench.metrics.quality import QualitySettings, check_fid_sizes, features_to_quality, \
        images_to_features, reference_features

    settings = QualitySettings() if settings is None else settings
    extractor = classifier_for(data, progress=False)
    ref, _ = reference_features(data, "train", n_reference, extractor, device)
    check_fid_sizes(n_generated, len(ref["features"]), ref["features"].shape[1])
    key = json_hash([SCORES_VERSION, data.info.content_hash, extractor.weights_hash, n_generated, len(ref["features"]),
                     seeds, dataclasses.asdict(settings)])
    path = cache_root() / "reference-scores" / f"{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    results = {}
    for name, make in IMAGE_REFERENCES.items():
        draw, n = make(data), min(n_generated, len(data.test.x)) if name == "held-out data" else n_generated
        results[name] = [{**features_to_quality(images_to_features(draw(n, torch.Generator().manual_seed(s)),
                                                                   extractor, device),
                                                ref, s, settings, inception_score=False), "n": n}
                         for s in range(seeds)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(path)
    return results


# --- the held-out NLL of a fitted Gaussian, for 2-D points ----------------------------------


@dataclass(frozen=True)
class GaussianNll:
    nats: float  # mean held-out NLL per example
    dims: int


def gaussian_nll(train: torch.Tensor, test: torch.Tensor) -> GaussianNll:
    """Mean NLL (nats per example) of `test` (N, D) under N(mean, covariance) fitted to `train`."""
    x = train.double()
    fitted = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=torch.cov(x.T))
    return GaussianNll(float(-fitted.log_prob(test.double()).mean()), int(x.shape[1]))
