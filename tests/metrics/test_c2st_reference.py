"""The two-sample test's real side comes from the training distribution (issue 20).

`photos` test crops come from another band of each photograph than the training crops, so
real training crops are told apart from them (accuracy about 0.72 on the photos classifier's
features, 0.74 on raw pixels) and no model could reach 0.5 against the test split. The
`c2st` metric therefore scores against the held-out split where a dataset has one (photos:
crops from the train band, its own random stream), else against the test split.
"""

from __future__ import annotations

import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics.base import EvalContext
from genbench.metrics.c2st import c2st
from genbench.metrics.extractors import classifier_for
from genbench.metrics.quality import images_to_features
from genbench.metrics.samples import c2st_reference_split, two_sample_test
from genbench.values import VALUES
from tests.metrics.replay import Replay

CPU = torch.device("cpu")
N = 256


@pytest.fixture(scope="module")
def photos():
    return load_dataset("photos")  # the default spec: the shipped classifier's weights


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))


def test_heldout_photos_are_real_training_data_to_the_test_but_test_crops_are_not(photos):
    """On the photos classifier's 64-d features (the features the metric uses): held-out
    crops against other training crops are at chance, test-band crops far from it."""
    extractor = classifier_for(photos, progress=False)
    train = photos.train.x[3::8]  # 1,024 training crops, 128 of each photograph
    features = {name: images_to_features(x, extractor, CPU)["features"]
                for name, x in (("train", train), ("heldout", photos.heldout.x), ("test", photos.test.x))}
    for seed in (0, 1):
        heldout = c2st(features["heldout"], features["train"], seed=seed)
        test = c2st(features["test"], features["train"], seed=seed)
        assert heldout.n_per_class == test.n_per_class == 1024
        assert abs(heldout.accuracy - 0.5) < 3 * heldout.null_std_error, heldout  # measured 0.49-0.51
        assert test.accuracy > 0.5 + 8 * test.null_std_error and test.p_value < 1e-10, test  # measured ~0.72


def test_metric_scores_against_heldout_for_photos_and_test_for_digits(photos, digits):
    assert (c2st_reference_split(photos), c2st_reference_split(digits)) == ("heldout", "test")
    assert "reference_split" in VALUES.get("c2st").conditions  # records of the two never compared
    for data, split in ((photos, "heldout"), (digits, "test")):
        generated = data.train.x[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:N]]
        ctx = EvalContext(Replay(generated), data, CPU, batch_size=64, seed=1, eval_samples=N)
        values = {v.metric: v for v in two_sample_test(ctx)}
        prov = values["c2st/accuracy"].provenance
        assert prov["reference_split"] == split and prov["n_real"] == len(getattr(data, split))
        assert split in prov["reference_cache_key"]
        # real training images replayed: near chance against the reference split
        assert abs(values["c2st/accuracy"].value - 0.5) < 4 * prov["null_std_error"], (split, prov)
    # the held-out split is outside the content hash: its cache key names its own content
    smaller = load_dataset("photos?n_heldout=40")
    assert smaller.info.content_hash == photos.info.content_hash
    ctx = EvalContext(Replay(photos.train.x[:N]), smaller, CPU, batch_size=64, seed=1, eval_samples=N)
    prov = two_sample_test(ctx)[0].provenance
    assert prov["reference_split"] == "heldout" and prov["n_real"] == 8 * 40
