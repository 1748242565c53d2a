"""Known-answer tests for the Laplacian-pyramid sliced Wasserstein distance."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch
import torch.nn.functional as F

from genbench.metrics import swd as swd_module
from genbench.metrics.swd import (
    laplacian_pyramid,
    pyramid_levels,
    random_directions,
    sliced_wasserstein,
    swd,
)

FAST = {"patches_per_image": 16, "n_projections": 64, "n_repeats": 2}  # cheap settings for tests


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = 4
    k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * sigma**2))
    k = k / k.sum()  # (9,)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def test_levels():
    assert pyramid_levels(16, 16) == (16, 8)
    assert pyramid_levels(8, 8) == (8,)
    assert pyramid_levels(32, 32) == (32, 16)
    assert pyramid_levels(128, 128) == (128, 64, 32, 16)
    with pytest.raises(ValueError, match="smaller"):
        pyramid_levels(6, 6)
    with pytest.raises(ValueError, match="divisible"):
        pyramid_levels(17, 18)


def _progan_pyramid(x: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """ProGAN's reference (metrics/sliced_wasserstein.py) with scipy's mirror mode."""
    f = np.float32([1, 4, 6, 4, 1])
    f = (f[:, None] * f[None, :] / 256.0)[None, None]

    def down(m):
        return scipy.ndimage.convolve(m, f, mode="mirror")[:, :, ::2, ::2]

    def up(m):
        res = np.zeros((m.shape[0], m.shape[1], m.shape[2] * 2, m.shape[3] * 2), m.dtype)
        res[:, :, ::2, ::2] = m
        return scipy.ndimage.convolve(res, f * 4.0, mode="mirror")

    pyr = [x.copy()]
    for _ in range(1, n_levels):
        pyr.append(down(pyr[-1]))
        pyr[-2] -= up(pyr[-1])
    return pyr


def test_pyramid_matches_progan_reference_and_reconstructs():
    x = torch.rand(3, 2, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (3, 2, 32, 32)
    ours = laplacian_pyramid(x, 3)
    ref = _progan_pyramid(x.numpy(), 3)
    assert [tuple(o.shape[2:]) for o in ours] == [(32, 32), (16, 16), (8, 8)]
    for o, r in zip(ours, ref):
        np.testing.assert_allclose(o.numpy(), r, atol=1e-5)
    rebuilt = swd_module.pyr_up(swd_module.pyr_up(ours[2]) + ours[1]) + ours[0]
    torch.testing.assert_close(rebuilt, x, atol=1e-5, rtol=0)


def test_identical_sets_give_zero_and_record_settings(digits_images):
    train, _ = digits_images
    r = swd(train, train.clone(), **FAST, seed=3)
    assert r.per_level == (0.0, 0.0) and r.mean == 0.0
    assert r.levels == (16, 8) and r.patch_size == 7
    assert r.n_descriptors == len(train) * 16 and r.n_real == r.n_generated == len(train)
    assert (r.n_projections, r.n_repeats, r.seed) == (64, 2, 3)


def test_same_distribution_small_and_noise_increases_it(digits_images):
    train, test = digits_images
    g = torch.Generator().manual_seed(0)
    base = swd(train, test, **FAST)
    noisy = [swd(train, test + s * torch.randn(test.shape, generator=g), **FAST) for s in (0.1, 0.2, 0.4)]
    finest = [base.per_level[0]] + [r.per_level[0] for r in noisy]
    means = [base.mean] + [r.mean for r in noisy]
    assert np.all(np.diff(finest) > 0), finest
    assert np.all(np.diff(means) > 0), means
    assert base.mean < 0.5 * noisy[-1].mean  # same distribution: small next to visible noise


def test_blur_increases_swd_at_every_level(digits_images):
    train, test = digits_images
    results = [swd(train, test, **FAST)] + [swd(train, _blur(test, s), **FAST) for s in (0.75, 1.5, 3.0)]
    for level in range(2):
        values = [r.per_level[level] for r in results]
        assert np.all(np.diff(values) > 0), (level, values)


def test_one_direction_equals_scipy_wasserstein(digits_images):
    train, test = digits_images
    n = len(test) * 8
    levels = (16, 8)
    a = swd_module._descriptors(train, n, 8, levels, seed=0)  # per level (n, 49)
    b = swd_module._descriptors(test, n, 8, levels, seed=0)
    d = random_directions(49, 1, torch.Generator().manual_seed(5))  # (49, 1)
    for la, lb in zip(a, b):
        ref = scipy.stats.wasserstein_distance((la @ d)[:, 0].numpy(), (lb @ d)[:, 0].numpy())
        assert sliced_wasserstein(la, lb, d) == pytest.approx(ref, rel=1e-5)
        assert ref > 0


def test_descriptors_are_normalised_per_set(digits_images):
    train, _ = digits_images
    for desc in swd_module._descriptors(train, 1000, 4, (16, 8), seed=0):
        assert desc.shape == (1000, 49)
        assert abs(desc.mean().item()) < 1e-5 and desc.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_unequal_sizes_subsample_and_seed_determinism(digits_images):
    train, test = digits_images
    r1 = swd(train, test, **FAST, seed=7)
    r2 = swd(train, test, **FAST, seed=7)
    r3 = swd(train, test, **FAST, seed=8)
    assert r1 == r2 and r1.per_level != r3.per_level
    assert r1.n_descriptors == len(test) * 16


def test_bad_inputs_raise(digits_images):
    train, test = digits_images
    with pytest.raises(ValueError, match="N, C, H, W"):
        swd(train[:, 0], test[:, 0])
    with pytest.raises(ValueError, match="shapes differ"):
        swd(train, F.interpolate(test, size=32))
    with pytest.raises(ValueError, match="smaller"):
        swd(torch.zeros(10, 1, 4, 4), torch.zeros(10, 1, 4, 4))
    with pytest.raises(ValueError, match="at least 2"):
        swd(train[:1], test)
    with pytest.raises(ValueError, match="NaN"):
        swd(train, test * float("nan"))
