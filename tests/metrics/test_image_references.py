"""Trivial image references (mean image, per-pixel noise, fitted Gaussian) and the held-out
ceiling, checked against figures computed here independently with numpy: the closed form of
FID for a constant set, the training split's per-pixel marginals and correlations, a known
Gaussian's moments, and membership of the test split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.errors import GenbenchError
from genbench.metrics.extractors import classifier_for
from genbench.metrics.quality import QualitySettings, images_to_features
from genbench.metrics.references import (IMAGE_REFERENCES, IMAGE_TRIVIAL, fitted_gaussian_images, held_out_images,
                                         image_quality_references, mean_image, per_pixel_noise)

CPU = torch.device("cpu")
N_GENERATED = 300  # > 64 feature dims, <= 359 test images (held-out draws without replacement)
FAST = QualitySettings(kid_subsets=10)  # KID's subsets dominate the CPU time; runs use 100


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def quality(digits, cache):
    return image_quality_references(digits, N_GENERATED, seeds=1, settings=FAST)


def levels_of(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] images -> their 8-bit levels as float64 numpy, asserting they are on the levels."""
    u = (x.double().numpy() + 1.0) * 127.5
    assert np.abs(u - np.round(u)).max() < 1e-4 and u.min() >= 0 and u.max() <= 255
    return np.round(u)


def test_the_references_are_named():
    assert set(IMAGE_TRIVIAL) == set(IMAGE_REFERENCES) - {"held-out data"}


@pytest.mark.parametrize("name", list(IMAGE_REFERENCES))
def test_draws_are_images_on_the_8_bit_levels(digits, name):
    x = IMAGE_REFERENCES[name](digits)(50, torch.Generator().manual_seed(0))
    assert x.shape == (50, *digits.train.x.shape[1:]) and x.dtype == torch.float32
    levels_of(x)


def test_mean_image_fid_is_the_closed_form_for_a_constant_set(digits, quality, cache):
    train = digits.train.x.double().numpy()
    mean = np.round((train.mean(0) + 1.0) * 127.5) / 127.5 - 1.0  # quantised mean image, (C, H, W)
    draws = mean_image(digits.train.x)(7, torch.Generator().manual_seed(0))
    assert np.allclose(draws.numpy(), mean[None], atol=1e-6)

    extractor = classifier_for(digits, progress=False)
    f = images_to_features(torch.tensor(mean[None], dtype=torch.float32), extractor, CPU)["features"].numpy()[0]
    r = images_to_features(digits.train.x, extractor, CPU)["features"].numpy()
    # FID = |mu_r - mu_g|^2 + tr(S_r) + tr(S_g) - 2 tr((S_r S_g)^1/2), with S_g = 0 for a constant set
    expected = np.sum((r.mean(0) - f) ** 2) + np.trace(np.cov(r, rowvar=False))
    result = quality["mean image"][0]
    assert result["fid"] == pytest.approx(expected, rel=1e-6)
    assert result["recall"] == 0.0  # a constant set's k-NN radii are 0: it covers no real image


def test_per_pixel_noise_matches_the_marginals_and_is_independent(digits):
    n = 20000
    data = levels_of(digits.train.x).reshape(len(digits.train.x), -1)  # (N, D)
    draws = levels_of(per_pixel_noise(digits.train.x)(n, torch.Generator().manual_seed(1))).reshape(n, -1)

    sd = data.std(0) / np.sqrt(n)
    assert np.all(np.abs(draws.mean(0) - data.mean(0)) <= 5 * sd + 1e-9)
    for level in (0, 255):  # the background and the full-intensity strokes
        p = (data == level).mean(0)
        assert np.all(np.abs((draws == level).mean(0) - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-9)
    assert set(np.unique(draws)) <= set(np.unique(data))  # no value the data never takes

    # the most correlated pair of horizontal neighbours in the data is uncorrelated in the draws
    h, w = digits.train.x.shape[2:]
    pairs = [(i * w + j, i * w + j + 1) for i in range(h) for j in range(w - 1)
             if data[:, i * w + j].std() > 0 and data[:, i * w + j + 1].std() > 0]
    a, b = max(pairs, key=lambda p: np.corrcoef(data[:, p[0]], data[:, p[1]])[0, 1])
    assert np.corrcoef(data[:, a], data[:, b])[0, 1] > 0.8
    assert abs(np.corrcoef(draws[:, a], draws[:, b])[0, 1]) < 5 / np.sqrt(n)


def test_fitted_gaussian_has_the_training_moments():
    # a correlated Gaussian well inside [-1, 1] (clipping negligible), one constant pixel
    # (a singular covariance), quantised to the 8-bit levels as every dataset is
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5)) * 0.05
    x = rng.normal(size=(5000, 5)) @ a.T + rng.uniform(-0.3, 0.3, size=5)
    x = np.concatenate([x, np.full((5000, 1), 0.2)], axis=1)
    assert np.abs(x).max() < 0.9
    train = torch.tensor(np.round((x + 1) * 127.5) / 127.5 - 1, dtype=torch.float32).reshape(5000, 1, 2, 3)
    t = levels_of(train).reshape(5000, 6) / 127.5 - 1

    n = 40000
    draws = levels_of(fitted_gaussian_images(train)(n, torch.Generator().manual_seed(2))).reshape(n, 6) / 127.5 - 1
    cov = np.cov(t, rowvar=False)
    assert np.all(np.abs(draws.mean(0) - t.mean(0)) <= 5 * np.sqrt(np.diag(cov) / n) + 1e-9)
    # sd of a covariance estimate: sqrt((s_ii s_jj + s_ij^2) / n); plus quantisation noise (1/127.5)^2/12
    tol = 5 * np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n) + 1e-5
    assert np.all(np.abs(np.cov(draws, rowvar=False) - cov) <= tol)
    assert np.all(draws[:, 5] == t[0, 5])  # the constant pixel stays constant


def test_fitted_gaussian_on_digits_keeps_neighbour_correlations(digits):
    n = 5000
    data = levels_of(digits.train.x).reshape(len(digits.train.x), -1)
    draws = levels_of(fitted_gaussian_images(digits.train.x)(n, torch.Generator().manual_seed(3))).reshape(n, -1)
    assert draws.min() == 0 and draws.max() == 255  # clipped to the range, not beyond
    centre = 8 * 16 + 7  # pixel (8, 7) and its right neighbour: strokes, strongly correlated
    rho_data = np.corrcoef(data[:, centre], data[:, centre + 1])[0, 1]
    rho_draws = np.corrcoef(draws[:, centre], draws[:, centre + 1])[0, 1]
    assert rho_data > 0.5 and abs(rho_draws - rho_data) < 0.1


def test_held_out_draws_are_test_images(digits):
    test = levels_of(digits.test.x).reshape(len(digits.test.x), -1)
    rows = {r.tobytes() for r in test}
    draw = held_out_images(digits.test.x)
    subset = levels_of(draw(len(test), torch.Generator().manual_seed(4))).reshape(len(test), -1)
    assert {r.tobytes() for r in subset} == rows  # n == len(test): a permutation, every image once
    more = levels_of(draw(3 * len(test), torch.Generator().manual_seed(5))).reshape(3 * len(test), -1)
    assert {r.tobytes() for r in more} <= rows  # n > len(test): with replacement, still real images


def test_held_out_data_beats_every_trivial_reference(quality):
    real = quality["held-out data"][0]
    for name in IMAGE_TRIVIAL:
        assert real["fid"] < quality[name][0]["fid"] / 3, (name, real, quality[name])
        assert real["kid"] < quality[name][0]["kid"] / 3, (name, real, quality[name])
        assert real["precision"] > quality[name][0]["precision"] + 0.3
    assert real["precision"] > 0.7 and real["recall"] > 0.4
    assert quality["mean image"][0]["precision"] < 0.05  # the mean digit is no digit


def test_too_few_samples_for_fid_raise(digits, cache):
    with pytest.raises(GenbenchError, match="FID needs more samples"):
        image_quality_references(digits, 64, seeds=1, settings=FAST)  # 64 feature dimensions
