"""Known-answer tests for the nearest-training-example memorisation score."""

import pytest
import torch

from genbench.metrics import memorisation as mem
from genbench.metrics.memorisation import memorisation, nearest_distances


def test_exact_copies_flagged_with_ratio_zero(digits_images):
    train, _ = digits_images
    r = memorisation(train[100:150], train)
    assert (r.fraction_copies, r.n_copies, r.mean_ratio, r.median_ratio) == (1.0, 50, 0.0, 0.0)
    assert r.flagged_indices == tuple(range(20))
    assert (r.n_generated, r.n_train, r.dim, r.space, r.copy_threshold) == (50, len(train), 256, "pixels", 0.1)


def test_noisy_copies_flagged(digits_images):
    train, _ = digits_images
    g = torch.Generator().manual_seed(0)
    r = memorisation(train[:200] + 0.01 * torch.randn(200, 1, 16, 16, generator=g), train)
    assert r.fraction_copies == 1.0
    assert 0.0 < r.mean_ratio < 0.1


def test_held_out_digits_not_flagged(digits_images):
    train, test = digits_images
    r = memorisation(test, train)
    assert r.n_copies == 0 and r.flagged_indices == ()
    assert 0.7 < r.median_ratio < 1.3


def test_thirty_percent_copies(digits_images):
    train, test = digits_images
    g = torch.Generator().manual_seed(0)
    mix = torch.cat([train[:108], test[:252]])  # 30% copies
    order = torch.randperm(360, generator=g)
    r = memorisation(mix[order], train, max_flagged=1000)
    assert r.fraction_copies == pytest.approx(0.3)
    assert set(r.flagged_indices) == set((order < 108).nonzero().squeeze(1).tolist())


def test_reference_scale_is_brute_force_median(digits_images):
    train, _ = digits_images
    x = train[:300].reshape(300, -1).double()  # (300, 256)
    d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # (300, 300) exact
    d.fill_diagonal_(float("inf"))
    r = memorisation(train[:5], train[:300])
    assert r.reference_nn_median == pytest.approx(d.min(dim=1).values.median().item(), rel=1e-5)


def test_chunking_does_not_change_results(digits_images, monkeypatch):
    train, test = digits_images
    full = nearest_distances(test.reshape(len(test), -1), train.reshape(len(train), -1))
    monkeypatch.setattr(mem, "CHUNK_ELEMENTS", 5000)  # 3 rows per chunk
    chunked = nearest_distances(test.reshape(len(test), -1), train.reshape(len(train), -1))
    assert torch.equal(full[1], chunked[1]) and torch.equal(full[0], chunked[0])


def test_features_and_bad_inputs(digits_images):
    train, test = digits_images
    feats = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    r = memorisation(feats[:10], feats)
    assert r.space == "features" and r.dim == 8 and r.fraction_copies == 1.0
    with pytest.raises(ValueError, match="differ"):
        memorisation(test, feats)
    with pytest.raises(ValueError, match="NaN"):
        memorisation(test * float("nan"), train)
    with pytest.raises(ValueError, match=">= 2 training"):
        memorisation(test, train[:1])
    with pytest.raises(ValueError, match="duplicates"):
        memorisation(test, train[:1].expand(10, -1, -1, -1))
    with pytest.raises(ValueError, match="images"):
        memorisation(test[:, 0, 0], train[:, 0, 0, 0])
