"""Representation metrics: registration, applicability by capability, end-to-end runs."""

import json

import numpy as np
import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics import EvalContext, applicable_metrics
from genbench.metrics.representation import active_units
from genbench.models.base import Capabilities, GenerativeModel
from genbench.models.likelihood import Likelihood
from genbench.registry import METRICS

NAMES = {"disentanglement", "probe", "active_units"}


class Projection:
    """A fake encoder: a fixed random Gaussian projection of the pixels, (B, d)."""

    def __init__(self, dims: int, d: int = 10, kind: str = "gaussian-mean"):
        self.weight = torch.randn(dims, d, generator=torch.Generator().manual_seed(0))  # (D, d)
        self.capabilities = Capabilities(representation=kind)
        self.calls = 0
        self.inputs = set()

    def representation(self, x):
        self.calls += 1
        self.inputs.update(x.unique().tolist()[:8])
        return x.flatten(1) @ self.weight  # (B, d)


class NoEncoder(GenerativeModel):
    """A model that declares no representation (capabilities default to none)."""

@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes?n=2048")


def ours(model, info):
    return {m.name for m in applicable_metrics(model, info)} & NAMES


def evaluate(model, data, batch_size=256):
    ctx = EvalContext(model, data, torch.device("cpu"), batch_size)
    values = {}
    for metric in applicable_metrics(model, data.info):
        if metric.name in NAMES:
            values.update({v.metric: v for v in metric.evaluate(ctx)})
    return values


def test_registered():
    assert NAMES <= set(METRICS.names())


def test_applies_by_capability(shapes, digits):
    points = load_dataset("toy2d-ring8")
    assert ours(Projection(1024), shapes.info) == NAMES
    assert ours(Projection(1024, kind="code"), shapes.info) == {"disentanglement", "probe"}
    assert ours(Projection(256), digits.info) == {"probe", "active_units"}
    assert ours(Projection(2, kind="code"), points.info) == set()
    assert ours(NoEncoder(), shapes.info) == set()


def test_end_to_end_on_shapes(shapes):
    model = Projection(shapes.info.dims)
    values = evaluate(model, shapes)
    batches = sum(-(-len(s) // 256) for s in (shapes.train, shapes.test))
    assert model.calls == batches  # each split encoded once, shared by the three metrics
    for v in values.values():
        json.dumps(v.provenance, allow_nan=False)  # plain JSON: records carry it as is
    for name in ("test/beta_vae_score", "test/factor_vae_score"):
        v = values[name]
        assert 0.2 < v.value < 0.8 and v.unit == "accuracy" and v.provenance["chance"] == 0.2
        assert v.provenance["n_examples"] == 2048 and v.provenance["splits"] == "train+test"
        assert v.provenance["factors"] == ["shape", "scale", "orientation", "pos_x", "pos_y"]
        assert v.provenance["representation_kind"] == "gaussian-mean" and v.provenance["seed"] == 0
    assert (values["test/beta_vae_score"].provenance["pairs_per_point"],
            values["test/beta_vae_score"].provenance["n_train"]) == (64, 10000)
    assert values["test/factor_vae_score"].provenance["examples_per_vote"] == 100
    assert values["test/mig"].value < 0.05 and values["test/mig"].provenance["bins"] == 20
    assert values["test/active_units"].value == 10 and values["test/active_units_fraction"].value == 1.0
    for n in (10, 100):
        for probe in ("linear", "knn", "linear_pixels", "knn_pixels"):
            v = values[f"test/probe_{probe}_acc_n{n}"]
            assert 1 / 3 - 0.1 < v.value <= 1 and v.provenance["n_per_class"] == n


def test_end_to_end_on_digits(digits):
    values = evaluate(Projection(digits.info.dims, d=32), digits)
    assert "test/mig" not in values
    assert values["test/probe_linear_pixels_acc_n100"].value > 0.9  # raw pixels: a strong baseline here
    assert values["test/probe_knn_acc_n10"].value > 0.5  # a 32-d random projection keeps most of it
    assert values["test/probe_linear_acc_n10"].provenance["n_labelled"] == 100


def test_likelihood_models_see_prepared_data(digits):
    model = Projection(digits.info.dims)
    model.likelihood = Likelihood("bernoulli", None, quantised=True)
    model.capabilities = Capabilities(likelihood=True, representation="gaussian-mean")
    codes = EvalContext(model, digits, torch.device("cpu"), 256).representations
    assert model.inputs <= {0.0, 1.0}  # binarised like the model's training data
    assert codes["train"].shape == (1438, 10) and codes["test"].shape == (359, 10)


def test_bad_representation_is_a_value_error(digits):
    model = Projection(digits.info.dims)
    model.representation = lambda x: x  # (B, C, H, W), not (B, d)
    ctx = EvalContext(model, digits, torch.device("cpu"), 256)
    with pytest.raises(ValueError, match=r"\(B, d\)"):
        METRICS.get("probe").evaluate(ctx)


def test_active_units_counts_known_variances():
    g = np.random.default_rng(0)
    stds = np.sqrt([0.0, 1e-3, 5e-3, 0.02, 1.0, 4.0])  # variances either side of 0.01
    means = g.standard_normal((5000, 6)) * stds  # (N, 6)
    result = active_units(means)
    assert result.count == 3 and result.fraction == 0.5
    np.testing.assert_allclose(result.variances, stds ** 2, rtol=0.1, atol=1e-12)
    assert active_units(means, threshold=0.5).count == 2
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(means[:1])
