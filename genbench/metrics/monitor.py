"""The quality signal a trainer watches during training (the adversarial stability monitor).

Trainers sit below metrics in genbench's layers, so they never import a metric: the harness
builds this probe for the run and hands it to the trainer in its TrainContext. The signal
is the one the data supports: on 2-D mixtures with known modes, modes captured and %
high-quality samples (coverage definitions); on images, FID and KID with the genbench
extractor against the train split; none otherwise (1-D sequences, points without modes).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from genbench.metrics.coverage import mode_coverage
from genbench.metrics.extractors import classifier_for
from genbench.metrics.quality import features_to_fid_kid, images_to_features, reference_features
from genbench.train.stability import modes_countable
from genbench.values import declare_values

# probe(samples, step) -> (quality, higher is better; its name; whether it is evidence of a
# collapse: train/stability.py), or (None, None, False) without a signal
QualityProbe = Callable[[torch.Tensor, int], tuple[float | None, str | None, bool]]

declare_values("quality-probe", {
    "stability/fid": ("lower", "fid (genbench extractor)", "FID of the generator's samples at a training interval"),
    "stability/kid": ("lower", "kid (genbench extractor)", "KID of the generator's samples at a training interval"),
    "stability/modes_captured": ("higher", "modes of *", "modes captured at a training interval"),
    "stability/high_quality_pct": ("higher", "%", "% high-quality samples at a training interval"),
}, conditions=("n_generated", "n_samples", "extractor", "extractor_weights_hash"))


def quality_probe(data, device: torch.device, seed: int, emit) -> QualityProbe:
    """The run's probe; it records what it measures as stability/<name> at the step."""
    info = data.info
    if "modes" in info.extras:
        return functools.partial(coverage_probe, info.extras, emit)
    if info.kind == "image":
        return FidProbe(data, device, seed, emit)
    return lambda samples, step: (None, None, False)


def coverage_probe(extras: dict, emit, samples: torch.Tensor, step: int) -> tuple[float, str, bool]:
    cov = mode_coverage(samples, torch.tensor(extras["modes"]), extras["mode_sigma"])
    n = int(samples.shape[0])
    emit("stability/modes_captured", cov.modes_captured, f"modes of {cov.n_modes}", step, n_samples=n)
    emit("stability/high_quality_pct", cov.high_quality_pct, "%", step, n_samples=n)
    return float(cov.modes_captured), "modes_captured", modes_countable(cov.n_high_quality, cov.n_modes)


class FidProbe:
    """FID/KID of generated images against the train split's features (computed at the first call)."""

    def __init__(self, data, device: torch.device, seed: int, emit):
        self.data, self.device, self.seed, self.emit = data, device, seed, emit

    @functools.cached_property
    def reference(self):
        extractor = classifier_for(self.data)
        return extractor, reference_features(self.data, "train", None, extractor, self.device)[0]

    def __call__(self, samples: torch.Tensor, step: int) -> tuple[float, str, bool]:
        extractor, reference = self.reference
        generated = images_to_features(samples, extractor, self.device)
        fid_kid = features_to_fid_kid(generated["features"], reference["features"], self.seed)
        prov = {"n_generated": int(samples.shape[0]), "extractor": extractor.name,
                "extractor_weights_hash": extractor.weights_hash}
        self.emit("stability/fid", fid_kid["fid"], "fid (genbench extractor)", step, **prov)
        self.emit("stability/kid", fid_kid["kid"], "kid (genbench extractor)", step, **prov)
        return -fid_kid["fid"], "fid", True
