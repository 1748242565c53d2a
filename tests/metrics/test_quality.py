"""Known-answer tests for the torch-fidelity bridge and the genbench extractors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
import torch_fidelity

from genbench.data import load_dataset
from genbench.errors import GenbenchError
from genbench.metrics.extractors import CLASSIFIER, MANIFEST, classifier_for, inception
from genbench.metrics.quality import (
    features_to_quality,
    images_to_extractor_input,
    images_to_features,
    reference_features,
)

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))


def gaussian(n, mean, cov, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.multivariate_normal(mean, cov, size=n))


def feats(x):
    return {"features": x, "logits": torch.zeros(len(x), 3, dtype=torch.float64)}


def closed_form_fid(x, y):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) with scipy."""
    m1, m2 = x.mean(0).numpy(), y.mean(0).numpy()
    s1, s2 = np.cov(x.numpy(), rowvar=False), np.cov(y.numpy(), rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_on_gaussian_features_matches_scipy_closed_form():
    d = 8
    a = np.random.default_rng(0).normal(size=(d, d))
    x = gaussian(4000, np.zeros(d), np.eye(d), 1)
    y = gaussian(4000, np.full(d, 0.5), a @ a.T / d + 0.5 * np.eye(d), 2)
    fid = features_to_quality(feats(x), feats(y), seed=0)["fid"]
    assert fid == pytest.approx(closed_form_fid(x, y), rel=1e-6)


def test_identical_sets_give_zero_fid_and_kid():
    x = gaussian(3000, np.zeros(16), np.eye(16), 3)
    q = features_to_quality(feats(x), feats(x), seed=0)
    assert abs(q["fid"]) < 1e-6
    # KID draws subsets of each input independently; with one set they share points, which
    # lifts the cross term of the unbiased MMD^2: slightly negative, ~0 on this scale.
    assert abs(q["kid"]) < 0.01
    assert q["precision"] == 1.0 and q["recall"] == 1.0


def test_kid_of_one_distribution_is_zero_and_unbiased():
    """KID is an unbiased MMD^2 estimate: over independent sample pairs from one
    distribution its mean is ~0 (and individual values go negative), while FID is
    biased upwards at the same N."""
    kids, fids = [], []
    for seed in range(8):
        x = gaussian(1200, np.zeros(16), np.eye(16), 100 + seed)
        y = gaussian(1200, np.zeros(16), np.eye(16), 200 + seed)
        q = features_to_quality(feats(x), feats(y), seed=seed)
        kids.append(q["kid"])
        fids.append(q["fid"])
    kids = np.array(kids)
    assert abs(kids.mean()) < 3 * kids.std(ddof=1) / np.sqrt(len(kids)) + 1e-4
    assert (kids < 0).any()
    assert min(fids) > 0.05  # FID's small-N bias: positive even for one distribution


def test_fid_rises_monotonically_with_noise_then_blur(digits):
    extractor = classifier_for(digits)
    ref, _ = reference_features(digits, "train", None, extractor, CPU)
    real = digits.test.x

    def fid(x):
        return features_to_quality(images_to_features(x.clamp(-1, 1), extractor, CPU), ref, 0)["fid"]

    g = torch.Generator().manual_seed(0)
    # Steps above FID's noise floor at N = 359 (about +-0.3 here): sigma 0.1 is inside it.
    noise = [fid(real + s * torch.randn(real.shape, generator=g)) for s in (0.0, 0.25, 0.5, 1.0)]
    blur = [fid(gaussian_blur(real, s)) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(noise, noise[1:])), noise
    assert all(a < b for a, b in zip(blur, blur[1:])), blur
    assert noise[0] < blur[0]


def gaussian_blur(x, sigma):
    radius = int(3 * sigma) + 1
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def test_digits_extractor_classifies_held_out_digits(digits):
    """The shipped digits extractor: 98.6% held-out accuracy when trained (manifest)."""
    extractor = classifier_for(digits)
    assert extractor.weights_path.parent == MANIFEST.parent  # shipped, not retrained
    manifest = json.loads(MANIFEST.read_text())[digits.info.content_hash]
    assert manifest["weights_hash"] == extractor.weights_hash
    logits = images_to_features(digits.test.x, extractor, CPU)["logits"]
    accuracy = float((logits.argmax(1) == digits.test.y).double().mean())
    assert accuracy >= 0.97
    assert accuracy == pytest.approx(manifest["test_accuracy"], abs=1e-6)


def test_registered_with_torch_fidelity_and_agrees_with_our_pipeline(digits):
    extractor = classifier_for(digits)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.u8 = images_to_extractor_input(x, extractor)

        def __len__(self):
            return len(self.u8)

        def __getitem__(self, i):
            return self.u8[i]

    gen, real = digits.test.x, digits.train.x
    theirs = torch_fidelity.calculate_metrics(
        input1=Images(gen), input2=Images(real), cuda=False, fid=True, feature_extractor=CLASSIFIER,
        feature_extractor_weights_path=str(extractor.weights_path), save_cpu_ram=True, verbose=False, cache=False)
    ref, _ = reference_features(digits, "train", None, extractor, CPU)
    ours = features_to_quality(images_to_features(gen, extractor, CPU), ref, 0)
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)


def test_reference_features_are_cached_by_content_extractor_split_and_n(digits, tmp_path):
    extractor = classifier_for(digits)
    first, prov = reference_features(digits, "train", 500, extractor, CPU)
    key = prov["reference_cache_key"]
    assert key == f"{digits.info.content_hash}-{extractor.weights_hash}-train-n500"
    files = list((tmp_path / "cache" / "reference").glob("*.pt"))
    assert len(files) == 1 and key in files[0].name
    again, _ = reference_features(digits, "train", 500, extractor, CPU)
    assert torch.equal(first["features"], again["features"])
    reference_features(digits, "test", 500, extractor, CPU)  # another split: another entry
    assert len(list((tmp_path / "cache" / "reference").glob("*.pt"))) == 2


def test_tensor_hash_covers_scalars_and_tells_values_apart():
    from genbench.utils.hashing import tensor_hash

    assert tensor_hash(torch.tensor(3)) != tensor_hash(torch.tensor(4))
    assert tensor_hash(torch.zeros(2, 2)) != tensor_hash(torch.zeros(4))  # shape is hashed too


def test_too_few_samples_for_fid_is_a_clear_error():
    x = gaussian(40, np.zeros(64), np.eye(64), 0)
    with pytest.raises(GenbenchError, match="more samples than feature dimensions"):
        features_to_quality(feats(x), feats(x), 0)


def test_missing_inception_weights_say_how_to_supply_them(tmp_path):
    with pytest.raises(GenbenchError, match="--feature-weights PATH"):
        inception(tmp_path / "nope.pth")


def test_inception_path_runs_with_a_local_weights_file(tmp_path, monkeypatch, digits):
    """Random weights in torch-fidelity's format (the real file cannot be downloaded
    here): the plumbing -- loading, RGB expansion, 2048-d features -- works end to end."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        module = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path / "pt_inception.pth"
    torch.save(module.state_dict(), path)
    extractor = inception(path)
    assert extractor.channels == 3 and extractor.feature_layer == "2048"
    u8 = images_to_extractor_input(digits.test.x[:3], extractor)
    assert u8.shape == (3, 3, 16, 16)
    out = images_to_features(digits.test.x[:3], extractor, CPU)
    assert out["features"].shape == (3, 2048) and torch.isfinite(out["features"]).all()


def test_extractor_training_is_deterministic(digits):
    from genbench.metrics.extractors import train_classifier, weights_hash

    a, _ = train_classifier(digits, steps=20, progress=False)
    b, _ = train_classifier(digits, steps=20, progress=False)
    c, _ = train_classifier(digits, seed=1, steps=20, progress=False)
    assert weights_hash(a) == weights_hash(b) != weights_hash(c)


def test_unshipped_dataset_trains_once_and_caches(tmp_path, monkeypatch):
    import genbench.metrics.extractors as ex

    monkeypatch.setattr(ex, "TRAIN_STEPS", 10)
    small = load_dataset("shapes?n=300")
    first = classifier_for(small, progress=False)
    assert first.weights_path.parent == tmp_path / "cache" / "extractors"
    assert small.info.content_hash in first.weights_path.name
    mtime = first.weights_path.stat().st_mtime_ns
    again = classifier_for(small, progress=False)
    assert again.weights_hash == first.weights_hash and first.weights_path.stat().st_mtime_ns == mtime
