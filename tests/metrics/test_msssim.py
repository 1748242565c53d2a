"""Known-answer tests for MS-SSIM and the mean pairwise MS-SSIM diversity score."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from genbench.data import load_dataset
from genbench.metrics.msssim import (
    SCALE_WEIGHTS,
    mean_pairwise_ms_ssim,
    ms_ssim,
    resolve_settings,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").train.x  # (1438, 1, 16, 16)


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """skimage's SSIM, settings matching ours: its mean runs over the region the 11-px
    window fits in (it crops (win-1)/2 px after reflect-padded filtering), i.e. our 'valid'."""
    return np.array([structural_similarity((a.numpy() + 1) / 2, (b.numpy() + 1) / 2, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=0)
                     for a, b in zip(x, y)])


def test_settings_rule():
    s16 = resolve_settings(16, 16)
    assert (s16.window_size, s16.sigma, s16.n_scales, s16.scales) == (7, 1.0, 2, (16, 8))
    w = np.array(SCALE_WEIGHTS[:2])
    np.testing.assert_allclose(s16.weights, w / w.sum())
    s256 = resolve_settings(256, 256)
    assert (s256.window_size, s256.sigma, s256.n_scales) == (11, 1.5, 5)
    np.testing.assert_allclose(s256.weights, np.array(SCALE_WEIGHTS) / sum(SCALE_WEIGHTS))
    assert resolve_settings(32, 32).n_scales == 2 and resolve_settings(32, 32).window_size == 11
    assert resolve_settings(8, 8).n_scales == 1
    assert sum(resolve_settings(64, 48).weights) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at most"):
        resolve_settings(6, 6)
    with pytest.raises(ValueError, match="at most 1"):
        resolve_settings(16, 16, window_size=11, n_scales=2)


def test_identity_symmetry_and_noise(digits):
    g = torch.Generator().manual_seed(0)
    x = digits[:64]
    assert torch.equal(ms_ssim(x, x), torch.ones(64))
    y = x + 0.2 * torch.randn(x.shape, generator=g)
    torch.testing.assert_close(ms_ssim(x, y), ms_ssim(y, x), rtol=0, atol=1e-6)
    scores = [ms_ssim(x, x + s * torch.randn(x.shape, generator=g)).mean().item() for s in (0.05, 0.1, 0.2, 0.4)]
    assert 1.0 > scores[0] and np.all(np.diff(scores) < 0), scores


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 24)])
def test_single_scale_matches_skimage(digits, shape):
    g = torch.Generator().manual_seed(1)
    if shape == (1, 16, 16):
        x = digits[:6]
    else:
        x = torch.rand((6, *shape), generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)  # positive SSIM
    settings = resolve_settings(shape[1], shape[2], window_size=11, sigma=1.5, n_scales=1)
    ref = _skimage_ssim(x, y)
    assert ref.min() > 0.05
    np.testing.assert_allclose(ms_ssim(x, y, settings).numpy(), ref, atol=1e-4)


def test_negative_structure_is_clipped_to_zero(digits):
    x, y = digits[:40], digits[40:80]  # unrelated digits: some have SSIM < 0
    settings = resolve_settings(16, 16, window_size=11, sigma=1.5, n_scales=1)
    ref = _skimage_ssim(x, y)
    assert (ref < 0).any()
    np.testing.assert_allclose(ms_ssim(x, y, settings).numpy(), np.maximum(ref, 0), atol=1e-4)


def test_pairwise_copies_one_and_real_digits_diverse(digits):
    copies = digits[:1].expand(50, -1, -1, -1)
    assert mean_pairwise_ms_ssim(copies, n_pairs=200, seed=0).mean == pytest.approx(1.0, abs=1e-6)
    r = mean_pairwise_ms_ssim(digits, n_pairs=2000, seed=0)
    assert r.mean < 0.3
    assert (r.n_pairs, r.n_samples, r.seed) == (2000, len(digits), 0)
    assert r.settings == resolve_settings(16, 16)
    assert r.std_error == pytest.approx(r.std / np.sqrt(2000))
    assert mean_pairwise_ms_ssim(digits, n_pairs=2000, seed=0) == r
    assert mean_pairwise_ms_ssim(digits, n_pairs=2000, seed=1).mean != r.mean


def test_pairs_are_distinct():
    # two images, one all -1 and one all +1: any i == j pair would score 1
    two = torch.stack([-torch.ones(1, 16, 16), torch.ones(1, 16, 16)])  # (2, 1, 16, 16)
    assert mean_pairwise_ms_ssim(two, n_pairs=100, seed=0).mean < 0.01


def test_bad_inputs_raise(digits):
    with pytest.raises(ValueError, match="equal shape"):
        ms_ssim(digits[:4], digits[:5])
    with pytest.raises(ValueError, match="equal shape"):
        ms_ssim(digits[:4, 0], digits[:4, 0])
    with pytest.raises(ValueError, match="at most"):
        ms_ssim(torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 5, 5))
    with pytest.raises(ValueError, match="do not fit"):
        ms_ssim(digits[:2], digits[:2], resolve_settings(32, 32))
    with pytest.raises(ValueError, match="NaN"):
        ms_ssim(digits[:2] * float("nan"), digits[:2])
    with pytest.raises(ValueError, match="N >= 2"):
        mean_pairwise_ms_ssim(digits[:1], n_pairs=10, seed=0)


def test_five_scales_match_pytorch_msssim_on_unit_intensities():
    """Against an independent implementation (pytorch_msssim, which follows the reference
    MATLAB/TF code): 192-px images hold five scales of the 11-px window. Pairs with means on
    both sides of mid-grey, where scoring [-1, 1] values directly made the luminance term negative."""
    import pytorch_msssim  # the test extra installs it
    g = torch.Generator().manual_seed(3)
    base = torch.rand((4, 3, 192, 192), generator=g) * 2 - 1
    x = (base - torch.tensor([0.6, -0.6, 0.2, -0.2]).view(4, 1, 1, 1)).clamp(-1, 1)
    y = (base + 0.4 * torch.randn(base.shape, generator=g) + 0.5).clamp(-1, 1)
    ours = ms_ssim(x, y, resolve_settings(192, 192))
    ref = pytorch_msssim.ms_ssim((x + 1) / 2, (y + 1) / 2, data_range=1.0, size_average=False, win_size=11,
                                 win_sigma=1.5)
    assert resolve_settings(192, 192).n_scales == 5
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-4)
