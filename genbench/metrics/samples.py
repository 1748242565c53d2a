"""Metrics of generated samples, registered for the runs they apply to. All of them use
the run's `eval_samples` generated samples (one set, drawn with the run's seed).

quality       FID, KID, IS, precision/recall through torch-fidelity (metrics/quality.py),
              generated vs the whole train split (images)
swd           sliced Wasserstein distance over a Laplacian pyramid (metrics/swd.py)
ms-ssim       mean MS-SSIM between generated pairs, with the training data's own value
memorisation  distance to the nearest training image relative to train-train distances
c2st          classifier two-sample test on extractor features, generated vs test split
coverage      modes captured, % high-quality, reverse KL of the mode histogram (2-D
              mixtures with known modes; EVALUATION.md definitions)
"""

from __future__ import annotations

import dataclasses

import torch

from genbench.metrics.base import EvalContext, MetricValue, register_metric
from genbench.metrics.c2st import c2st
from genbench.metrics.coverage import mode_coverage
from genbench.metrics.memorisation import memorisation
from genbench.metrics.msssim import mean_pairwise_ms_ssim
from genbench.metrics.extractors import ROTATION_TASK
from genbench.metrics.quality import (NO_INCEPTION_SCORE, QualitySettings, features_to_quality, label_free,
                                      reference_features)
from genbench.metrics.swd import swd

QUALITY_UNITS = {"fid": "fid", "kid": "kid", "kid_std": "kid (std over subsets)", "is": "inception score",
                 "is_std": "inception score (std over splits)", "precision": "fraction", "recall": "fraction"}


def samples_images(model, info) -> bool:
    return hasattr(model, "sample") and info.kind == "image"


@register_metric("quality", samples_images, "FID, KID, IS, precision/recall via torch-fidelity (images)")
def quality(ctx: EvalContext) -> list[MetricValue]:
    ref, ref_prov = ctx.reference
    gen = ctx.generated_features
    settings = QualitySettings()
    rotations = label_free(ctx.dataset, ctx.extractor)
    values = features_to_quality(gen, ref, ctx.seed, settings, inception_score=not rotations)
    prov = {**ctx.extractor.provenance(), **ref_prov, **ctx.sample_provenance(),
            **settings.provenance(len(gen["features"]), len(ref["features"])),
            "preprocessing": "generated and real alike: [-1,1] -> uint8 levels -> extractor",
            **({"extractor_task": ROTATION_TASK, "inception_score": NO_INCEPTION_SCORE} if rotations else {})}
    return [MetricValue(f"quality/{name}", value, QUALITY_UNITS[name], prov) for name, value in values.items()]


def _provenance(result, *values: str) -> dict:
    """A result dataclass's settings and counts (its value fields left out)."""
    return {k: v for k, v in dataclasses.asdict(result).items() if k not in values}


@register_metric("swd", samples_images, "sliced Wasserstein distance over a Laplacian pyramid (ProGAN)")
def sliced_wasserstein(ctx: EvalContext) -> list[MetricValue]:
    result = swd(ctx.dataset.train.x, ctx.samples, seed=ctx.seed)
    prov = {**_provenance(result, "per_level", "mean"), **ctx.sample_provenance(), "reference_split": "train"}
    unit = "swd (raw; ProGAN tables show x1e3)"
    values = [MetricValue(f"swd/level{res}", v, unit, prov) for res, v in zip(result.levels, result.per_level)]
    return values + [MetricValue("swd/mean", result.mean, unit, prov)]


@register_metric("ms-ssim", samples_images, "mean MS-SSIM between generated samples (diversity; ProGAN)")
def diversity(ctx: EvalContext) -> list[MetricValue]:
    generated = mean_pairwise_ms_ssim(ctx.samples, seed=ctx.seed)
    real = mean_pairwise_ms_ssim(ctx.dataset.train.x, seed=ctx.seed)
    prov = {**_provenance(generated, "mean"), **ctx.sample_provenance(),
            "note": "lower = more diverse; ms_ssim_real is the training data's own value"}
    return [MetricValue("ms-ssim/ms_ssim", generated.mean, "ms-ssim", prov),
            MetricValue("ms-ssim/ms_ssim_real", real.mean, "ms-ssim", prov)]


@register_metric("memorisation", samples_images, "nearest-training-example distance ratio; flags copies")
def memorised(ctx: EvalContext) -> list[MetricValue]:
    result = memorisation(ctx.samples, ctx.dataset.train.x)
    prov = {**_provenance(result, "fraction_copies", "mean_ratio", "median_ratio", "n_copies"),
            **ctx.sample_provenance()}
    return [MetricValue("memorisation/fraction_copies", result.fraction_copies, "fraction", prov),
            MetricValue("memorisation/median_ratio", result.median_ratio, "ratio to train NN median", prov)]


@register_metric("c2st", samples_images, "classifier two-sample test accuracy (0.5 = indistinguishable)")
def two_sample_test(ctx: EvalContext) -> list[MetricValue]:
    # Real = the test split: the extractor was trained on the train split, whose features
    # would differ from any unseen image, generated or real.
    real, ref_prov = reference_features(ctx.dataset, "test", None, ctx.extractor, ctx.device)
    result = c2st(real["features"], ctx.generated_features["features"], seed=ctx.seed)
    prov = {**_provenance(result, "accuracy", "p_value"), **ctx.extractor.provenance(), **ref_prov,
            **ctx.sample_provenance()}
    return [MetricValue("c2st/accuracy", result.accuracy, "accuracy (0.5 = indistinguishable)", prov),
            MetricValue("c2st/p_value", result.p_value, "one-sided binomial p vs 0.5", prov)]


def samples_points_with_modes(model, info) -> bool:
    return hasattr(model, "sample") and info.kind == "points" and "modes" in info.extras


@register_metric("coverage", samples_points_with_modes, "modes captured, % high quality, reverse KL (toy2d)")
def coverage(ctx: EvalContext) -> list[MetricValue]:
    extras = ctx.dataset.info.extras
    result = mode_coverage(ctx.samples, torch.tensor(extras["modes"]), extras["mode_sigma"])
    prov = {**_provenance(result, "modes_captured", "high_quality_pct", "reverse_kl"), **ctx.sample_provenance()}
    return [MetricValue("coverage/modes_captured", result.modes_captured, f"modes of {result.n_modes}", prov),
            MetricValue("coverage/high_quality_pct", result.high_quality_pct, "%", prov),
            MetricValue("coverage/reverse_kl", result.reverse_kl, "nats", prov)]
