"""Likelihood-based OOD detection (Nalisnick et al. 2019): the exact AUROC, the conversion
of other datasets to the in-distribution shape, the metric's plumbing on stand-in models
whose NLL is known, and a trained VAE on digits."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from genbench.data import load_dataset
from genbench.utils.pixels import images_to_uint8, uint8_to_images
from genbench.harness.spec import resolve, run_config
from genbench.metrics import EvalContext
from genbench.metrics.anomaly import (
    anomaly, applies, auroc, convert_images, embedded_test_split, ood_sets, subset_indices)
from genbench.metrics.likelihood import likelihood
from genbench.models import build_model
from genbench.models.base import Capabilities, GenerativeModel
from genbench.models.likelihood import ExactDiscrete, Likelihood
from tests.models.training import fit


def brightness_nats(x: torch.Tensor) -> torch.Tensor:
    """Summed brightness (x + 1) / 2 per example (B,): a known NLL, brighter = less likely."""
    return ((x + 1) / 2).flatten(1).sum(1)


class BrightnessModel(GenerativeModel):
    """A stand-in model with an exact NLL equal to the summed brightness, so we know which
    dataset it finds anomalous. Measured mean summed brightness at 1x16x16: digits 77.8,
    the photos subset 92.8 (brighter on average, but dark crops of the Hubble field and
    the retina overlap the digits: AUROC 0.613), shapes 13.8 (a small blob on black,
    darker than every digit: AUROC exactly 0)."""

    capabilities = Capabilities(likelihood=True, nll="exact")
    likelihood = ExactDiscrete("stand-in: NLL = summed brightness")

    def exact_nll(self, x: torch.Tensor) -> torch.Tensor:
        return brightness_nats(x)


class BrightnessIWAE(GenerativeModel):
    """The same NLL through the IWAE estimator: K equal log-weights -b give -log p = b."""

    capabilities = Capabilities(likelihood=True, nll="iwae")
    likelihood = ExactDiscrete("stand-in: NLL = summed brightness")

    def importance_log_weights(self, x: torch.Tensor, k: int, generator=None) -> torch.Tensor:
        return -brightness_nats(x).expand(k, -1)  # (k, B)


class BrightnessNats(BrightnessModel):
    """A convention without bits/dim (an unquantised Gaussian density): nats only."""

    likelihood = Likelihood("gaussian", 1.0, quantised=False)


def by_name(values):
    return {v.metric: v for v in values}


# --- AUROC -------------------------------------------------------------------------------

def mann_whitney_auroc(neg: torch.Tensor, pos: torch.Tensor) -> float:
    """The AUROC genbench computed by hand before it used scikit-learn, kept as the reference:
    U / (n_pos n_neg) from mid-ranks in float64, tied pairs counted half."""
    neg, pos = neg.double().flatten(), pos.double().flatten()
    _, inverse, counts = torch.unique(torch.cat([neg, pos]), sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).to(torch.float64)  # 1-based rank of each tie group's last member
    mid_ranks = (last - (counts - 1) / 2)[inverse]  # tied scores share the mean rank
    n_pos, n_neg = pos.numel(), neg.numel()
    u = mid_ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def test_auroc_matches_the_mann_whitney_formula_with_ties():
    g = torch.Generator().manual_seed(0)
    cases = []
    for n_neg, n_pos in ((50, 70), (300, 11), (1, 5), (359, 359)):
        neg = torch.randint(0, 8, (n_neg,), generator=g).double()  # few levels: many ties
        pos = torch.randint(2, 10, (n_pos,), generator=g).double()
        cases.append((neg, pos))
    cases.append((torch.randn(400, generator=g), torch.randn(300, generator=g) + 0.7))  # continuous scores
    cases.append((torch.tensor([0.0, 1.0, math.inf]), torch.tensor([1.0, math.inf, math.inf])))  # tied infinities
    for neg, pos in cases:
        assert auroc(neg, pos) == pytest.approx(mann_whitney_auroc(neg, pos), rel=0, abs=1e-15)  # float64 rounding


def test_auroc_known_answers():
    low, high = torch.arange(10.0), torch.arange(10.0) + 100
    assert auroc(low, high) == 1.0  # perfect separation
    assert auroc(high, low) == 0.0  # reversed: the Nalisnick failure at its extreme
    assert auroc(torch.ones(5), torch.ones(7)) == 0.5  # all tied: every pair counts half
    assert auroc(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])) == 0.875  # (1 + 0.5 + 1 + 1) / 4
    g = torch.Generator().manual_seed(1)
    same = auroc(torch.randn(4000, generator=g), torch.randn(4000, generator=g))
    assert abs(same - 0.5) < 0.02  # identical distributions (std of the AUROC ~ 0.0065)
    assert auroc(torch.tensor([0.0, 1.0]), torch.tensor([math.inf])) == 1.0  # an infinite NLL ranks last
    with pytest.raises(ValueError, match="NaN"):
        auroc(torch.tensor([0.0, math.nan]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="at least one"):
        auroc(torch.tensor([]), torch.tensor([1.0]))


# --- conversion --------------------------------------------------------------------------

def assert_8bit(x: torch.Tensor, shape: tuple[int, ...]):
    assert x.shape == shape and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(uint8_to_images(images_to_uint8(x)), x)  # exactly on the 8-bit levels


def test_shapes_32_to_16_by_area_averaging():
    x = embedded_test_split("shapes").x[:64]  # (64, 1, 32, 32) binary
    y, rule = convert_images(x, (1, 16, 16))
    assert_8bit(y, (64, 1, 16, 16))
    block_means = (F.avg_pool2d(x, 2) + 1) / 2  # each output pixel: the mean of its 2x2 block
    assert torch.equal(images_to_uint8(y), torch.round(block_means * 255).to(torch.uint8))
    assert len(torch.unique(y)) > 2  # the shape's edges become gray levels
    assert rule == "32x32 -> 16x16 by area averaging; re-quantised to 8-bit levels"


def test_photos_rgb_32_to_gray_16():
    x = embedded_test_split("photos").x[:32]  # (32, 3, 32, 32)
    y, rule = convert_images(x, (1, 16, 16))
    assert_8bit(y, (32, 1, 16, 16))
    gray = (F.avg_pool2d(x.mean(dim=1, keepdim=True), 2) + 1) / 2
    assert (images_to_uint8(y).int() - torch.round(gray * 255).int()).abs().max() <= 1  # float rounding only
    assert rule.startswith("3 channels -> gray by the mean over channels; 32x32 -> 16x16 by area averaging")


def test_gray_to_rgb_and_upsampling(digits):
    x = digits.test.x[:16]  # (16, 1, 16, 16)
    y, rule = convert_images(x, (3, 32, 32))
    assert_8bit(y, (16, 3, 32, 32))
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])  # repeated gray
    up = (F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False) + 1) / 2
    assert (images_to_uint8(y[:, :1]).int() - torch.round(up * 255).int()).abs().max() <= 1
    assert rule == ("gray -> 3 channels by repetition; 16x16 -> 32x32 by bilinear interpolation; "
                    "re-quantised to 8-bit levels")
    same, rule = convert_images(x, (1, 16, 16))
    assert torch.equal(same, x) and rule == "re-quantised to 8-bit levels"  # already 8-bit: unchanged


def test_seeded_subset_spans_every_photograph():
    photos = load_dataset("photos")  # test crops ordered photograph by photograph
    idx = subset_indices(len(photos.test), 359)
    assert len(idx) == 359 and len(set(idx.tolist())) == 359 and torch.equal(idx, idx.sort().values)
    assert len(set(photos.test.y[idx].tolist())) == 8  # a first-359 cut would hold 3 photographs
    assert torch.equal(idx, subset_indices(len(photos.test), 359))  # seeded
    assert subset_indices(100, 359) is None  # a smaller set is used whole


# --- the metric --------------------------------------------------------------------------

def test_applies_only_to_unconditional_likelihood_models_on_embedded_images(digits):
    model = BrightnessModel()
    assert applies(model, digits.info) and applies(BrightnessIWAE(), digits.info)
    assert not applies(model, load_dataset("toy2d-ring8").info)  # points
    assert not applies(model, dataclasses.replace(digits.info, name="mnist"))  # on disk, not embedded
    assert not applies(GenerativeModel(), digits.info)  # no likelihood estimator (e.g. a GAN)

    class Conditional(BrightnessModel):
        class_conditional = True

    with pytest.raises(ValueError, match="likelihood=True"):  # an estimator needs a units convention
        Capabilities(nll="exact")
    assert not applies(Conditional(), digits.info)  # OOD data have no labels to condition on


def test_ood_sets_are_the_other_embedded_image_datasets():
    assert [s.name for s in ood_sets("digits")] == ["photos", "shapes"]
    assert [s.name for s in ood_sets("photos")] == ["digits", "shapes"]


def test_records_provenance_and_direction_on_a_known_nll(digits):
    ctx = EvalContext(BrightnessModel(), digits, torch.device("cpu"), batch_size=128)
    values = by_name(anomaly(ctx))
    assert set(values) == {"anomaly/id_bpd", "anomaly/auroc@photos", "anomaly/ood_bpd@photos",
                           "anomaly/auroc@shapes", "anomaly/ood_bpd@shapes"}
    assert values["anomaly/auroc@photos"].unit == "AUROC" and values["anomaly/id_bpd"].unit == "bits/dim"
    # The in-distribution score is the likelihood metric's, on the same prepared data.
    assert values["anomaly/id_bpd"].value == by_name(likelihood(ctx))["test/nll_bpd"].value
    photos, shapes = values["anomaly/auroc@photos"], values["anomaly/auroc@shapes"]
    assert 0.55 < photos.value < 0.7 and not photos.provenance["assigns_higher_likelihood_to_ood"]
    assert shapes.value == 0.0 and shapes.provenance["assigns_higher_likelihood_to_ood"]  # darker: "more likely"
    assert values["anomaly/ood_bpd@shapes"].value < values["anomaly/id_bpd"].value < values["anomaly/ood_bpd@photos"].value
    prov = photos.provenance
    assert (prov["n_id"], prov["n_ood"], prov["split"], prov["estimator"]) == (359, 359, "test", "exact")
    assert prov["conversion"].startswith("3 channels -> gray by the mean over channels; 32x32 -> 16x16")
    assert prov["ood_subset"].startswith("seeded subset") and prov["ood_dataset"] == "photos"
    assert "iwae_k" not in prov and prov["convention"].startswith("stand-in")
    # The AUROC is the Mann-Whitney formula's on the same examples, scored independently here.
    ood = embedded_test_split("photos").x[subset_indices(1024, 359)]
    expected = mann_whitney_auroc(brightness_nats(digits.test.x), brightness_nats(convert_images(ood, (1, 16, 16))[0]))
    assert photos.value == pytest.approx(expected, abs=1e-12)


def test_iwae_models_use_ctx_iwae_k(digits):
    ctx = EvalContext(BrightnessIWAE(), digits, torch.device("cpu"), batch_size=128, iwae_k=3)
    values = by_name(anomaly(ctx))
    exact = by_name(anomaly(EvalContext(BrightnessModel(), digits, torch.device("cpu"), batch_size=128)))
    assert values["anomaly/auroc@photos"].provenance["iwae_k"] == 3
    assert values["anomaly/auroc@photos"].provenance["estimator"] == "IWAE bound, K=3"
    for name, value in exact.items():
        assert values[name].value == pytest.approx(value.value, rel=1e-5)


def test_models_without_bits_per_dim_score_nats(digits):
    values = by_name(anomaly(EvalContext(BrightnessNats(), digits, torch.device("cpu"), batch_size=128)))
    assert set(values) == {"anomaly/id_nll", "anomaly/auroc@photos", "anomaly/ood_nll@photos",
                           "anomaly/auroc@shapes", "anomaly/ood_nll@shapes"}
    assert values["anomaly/id_nll"].unit == "nats/example"
    assert values["anomaly/id_nll"].value == pytest.approx(brightness_nats(digits.test.x).mean().item(), rel=1e-6)
    assert values["anomaly/auroc@photos"].provenance["score"] == "nats/example"


# --- a trained model ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_vae(digits):
    """A small Bernoulli MLP VAE trained briefly on digits (the `vae` model's defaults but
    narrower, so it trains in a few seconds on the CPU)."""
    run = resolve(run_config({"model": "vae", "device": "cpu", "steps": 300,
                              "model_options": {"hidden": 128, "latent_dim": 8}}, "test"))
    torch.manual_seed(0)
    model = build_model(run.model_spec, run.model_options, digits.info, "auto")
    fit(run, digits, model)
    return model.eval()


def test_trained_vae_separates_digits_from_photos(trained_vae, digits):
    """Measured here (torch CPU, 300 steps, 2.7 s to train, 0.07 s to score with K=8):
    id 0.625 bits/dim, photos 1.277 (AUROC 0.993), shapes 0.615 (AUROC 0.435: the
    Nalisnick failure, simple blobs are "more likely" than digits). The default `vae`
    (hidden 512, latent 16) after 1,000 steps (21 s): photos 0.9996, shapes 0.80."""
    ctx = EvalContext(trained_vae, digits, torch.device("cpu"), batch_size=512, iwae_k=8)
    values = by_name(anomaly(ctx))
    photos, shapes = values["anomaly/auroc@photos"], values["anomaly/auroc@shapes"]
    assert photos.value > 0.9 and not photos.provenance["assigns_higher_likelihood_to_ood"]
    assert values["anomaly/ood_bpd@photos"].value > values["anomaly/id_bpd"].value + 0.1
    higher = values["anomaly/ood_bpd@shapes"].value < values["anomaly/id_bpd"].value
    assert shapes.provenance["assigns_higher_likelihood_to_ood"] == higher
    # The known failure, reproduced: this small Bernoulli VAE gives the simple shapes a higher
    # likelihood than its own digits (measured AUROC 0.435), and the metric says so.
    assert shapes.value < 0.5 and higher
    assert photos.provenance["convention"].startswith("bernoulli") and photos.provenance["iwae_k"] == 8
