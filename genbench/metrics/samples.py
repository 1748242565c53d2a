"""Metrics of generated samples, registered for the runs they apply to. All of them use
the run's `eval_samples` generated samples (one set, drawn with the run's seed).

quality       FID, KID, IS, precision/recall through torch-fidelity (metrics/quality.py),
              generated vs the whole train split (images)
swd           sliced Wasserstein distance over a Laplacian pyramid (metrics/swd.py)
ms-ssim       mean MS-SSIM between generated pairs, with the training data's own value
memorisation  distance to the nearest training image relative to train-train distances
c2st          classifier two-sample test on extractor features, generated vs the held-out
              split where the dataset has one (photos), else the test split
coverage      modes captured, % high-quality, reverse KL of the mode histogram (2-D
              mixtures with known modes; docs/evaluation.md definitions)
"""

from __future__ import annotations

import dataclasses

import torch

from genbench.metrics.base import SAMPLE_CONDITIONS, SAMPLE_OUTCOMES, EvalContext, MetricValue, register_metric
from genbench.metrics.c2st import c2st
from genbench.metrics.coverage import NO_HQ_REVERSE_KL_RULE, mode_coverage
from genbench.metrics.memorisation import memorisation
from genbench.metrics.msssim import mean_pairwise_ms_ssim
from genbench.metrics.extractors import ROTATION_TASK
from genbench.metrics.quality import (FEATURE_CONDITIONS, NO_INCEPTION_SCORE, QualitySettings, features_to_quality,
                                      label_free, reference_features)
from genbench.metrics.swd import swd

QUALITY_UNITS = {"fid": "fid", "kid": "kid", "kid_std": "kid (std over subsets)", "is": "inception score",
                 "is_std": "inception score (std over splits)", "precision": "fraction", "recall": "fraction"}


def samples_images(model, info) -> bool:
    return model.capabilities.samples and info.kind == "image"


QUALITY_VALUES = {
    "quality/fid": ("lower", "fid", "Frechet distance between generated and reference feature statistics"),
    "quality/kid": ("lower", "kid", "kernel inception distance: unbiased MMD^2, mean over feature subsets",
                    "mean", 1e3),
    "quality/kid_std": ("neither", "kid (std over subsets)", "KID's standard deviation over the subsets",
                        "mean", 1e3),
    "quality/is": ("higher", "inception score", "Inception Score of the generated samples' class logits"),
    "quality/is_std": ("neither", "inception score (std over splits)", "IS standard deviation over the splits"),
    "quality/precision": ("higher", "fraction", "generated samples inside the reference manifold (k-NN balls)"),
    "quality/recall": ("higher", "fraction", "reference samples inside the generated manifold (k-NN balls)"),
}


@register_metric("quality", samples_images, "FID, KID, IS, precision/recall via torch-fidelity (images)",
                 values=QUALITY_VALUES, conditions=(*SAMPLE_CONDITIONS, *FEATURE_CONDITIONS, "kid_subsets",
                                                    "kid_subset_size", "isc_splits", "prc_neighborhood"),
                 outcomes=SAMPLE_OUTCOMES)
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


SWD_UNIT = "swd (raw; ProGAN tables show x1e3)"
# Pixel-space metrics score generated images on the real images' 8-bit levels
# (EvalContext.samples_as_data); a condition, so records scored on unrounded samples
# (before this was so) are never compared with these.
AS_DATA = {"generated_pixels": "rounded to 8-bit levels, as the real images"}
SWD_VALUES = {
    "swd/level*": ("lower", SWD_UNIT, "sliced Wasserstein distance of 7x7 patches at one pyramid level"),
    "swd/mean": ("lower", SWD_UNIT, "sliced Wasserstein distance averaged over the pyramid levels"),
}


@register_metric("swd", samples_images, "sliced Wasserstein distance over a Laplacian pyramid (ProGAN)",
                 values=SWD_VALUES, conditions=(*SAMPLE_CONDITIONS, *AS_DATA, "levels", "n_descriptors", "n_projections",
                                                "n_real", "n_repeats", "normalisation", "patch_size",
                                                "patches_per_image", "reference_split"),
                 outcomes=(*SAMPLE_OUTCOMES, "seed"))
def sliced_wasserstein(ctx: EvalContext) -> list[MetricValue]:
    result = swd(ctx.dataset.train.x, ctx.samples_as_data, seed=ctx.seed)
    prov = {**_provenance(result, "per_level", "mean"), **ctx.sample_provenance(), "reference_split": "train",
            **AS_DATA}
    values = [MetricValue(f"swd/level{res}", v, SWD_UNIT, prov) for res, v in zip(result.levels, result.per_level)]
    return values + [MetricValue("swd/mean", result.mean, SWD_UNIT, prov)]


MS_SSIM_VALUES = {
    "ms-ssim/ms_ssim": ("neither", "ms-ssim", "mean MS-SSIM of generated pairs: lower = more diverse, but the "
                                              "training data's own value (ms_ssim_real) is the target"),
    "ms-ssim/ms_ssim_real": ("neither", "ms-ssim", "mean MS-SSIM of training-image pairs: the reference value"),
}


@register_metric("ms-ssim", samples_images, "mean MS-SSIM between generated samples (diversity; ProGAN)",
                 values=MS_SSIM_VALUES, conditions=(*SAMPLE_CONDITIONS, *AS_DATA, "n_pairs", "n_samples", "settings"),
                 outcomes=(*SAMPLE_OUTCOMES, "seed", "std", "std_error"))
def diversity(ctx: EvalContext) -> list[MetricValue]:
    generated = mean_pairwise_ms_ssim(ctx.samples_as_data, seed=ctx.seed)
    real = mean_pairwise_ms_ssim(ctx.dataset.train.x, seed=ctx.seed)
    prov = {**_provenance(generated, "mean"), **ctx.sample_provenance(), **AS_DATA,
            "note": "lower = more diverse; ms_ssim_real is the training data's own value"}
    return [MetricValue("ms-ssim/ms_ssim", generated.mean, "ms-ssim", prov),
            MetricValue("ms-ssim/ms_ssim_real", real.mean, "ms-ssim", prov)]


MEMORISATION_VALUES = {
    "memorisation/fraction_copies": ("lower", "fraction", "generated samples flagged as near-copies of a "
                                                          "training example"),
    "memorisation/median_ratio": ("neither", "ratio to train NN median", "median nearest-training distance of "
                                  "generated samples over the training set's own nearest-neighbour median"),
}


@register_metric("memorisation", samples_images, "nearest-training-example distance ratio; flags copies",
                 values=MEMORISATION_VALUES, conditions=(*SAMPLE_CONDITIONS, *AS_DATA, "copy_threshold", "dim", "n_train",
                                                         "space"),
                 outcomes=(*SAMPLE_OUTCOMES, "flagged_indices"))
def memorised(ctx: EvalContext) -> list[MetricValue]:
    result = memorisation(ctx.samples_as_data, ctx.dataset.train.x)
    prov = {**_provenance(result, "fraction_copies", "mean_ratio", "median_ratio", "n_copies"),
            **ctx.sample_provenance(), **AS_DATA}
    return [MetricValue("memorisation/fraction_copies", result.fraction_copies, "fraction", prov),
            MetricValue("memorisation/median_ratio", result.median_ratio, "ratio to train NN median", prov)]


C2ST_VALUES = {
    "c2st/accuracy": ("neither", "accuracy (0.5 = indistinguishable)", "held-out accuracy of a classifier "
                      "telling generated from real features; 0.5 is best, not higher"),
    "c2st/p_value": ("neither", "one-sided binomial p vs 0.5", "p-value of that accuracy under chance (0.5)",
                     "fisher"),
}


def c2st_reference_split(dataset) -> str:
    """The real side of the two-sample test: "heldout" where the dataset has one, else "test"."""
    return "heldout" if getattr(dataset, "heldout", None) is not None else "test"


@register_metric("c2st", samples_images, "classifier two-sample test accuracy (0.5 = indistinguishable)",
                 values=C2ST_VALUES, conditions=(*SAMPLE_CONDITIONS, *FEATURE_CONDITIONS, "C", "classifier",
                                                 "max_iter", "n_features", "n_per_class", "n_real", "n_test",
                                                 "n_train"),
                 outcomes=(*SAMPLE_OUTCOMES, "seed", "n_correct", "std_error", "null_std_error"))
def two_sample_test(ctx: EvalContext) -> list[MetricValue]:
    # Real = examples of the training distribution the extractor was not trained on: the
    # train split's features would differ from any unseen image, generated or real. That is
    # the test split where it comes from the training distribution (most datasets), else the
    # dataset's held-out split (photos: its test crops come from another band of each photo,
    # and real training crops score about 0.74 against them, so no model could reach 0.5;
    # its held-out crops come from the train band and overlap training crops). The records'
    # reference_split says which, a condition of comparability (FEATURE_CONDITIONS).
    split = c2st_reference_split(ctx.dataset)
    real, ref_prov = reference_features(ctx.dataset, split, None, ctx.extractor, ctx.device)
    result = c2st(real["features"], ctx.generated_features["features"], seed=ctx.seed)
    prov = {**_provenance(result, "accuracy", "p_value"), **ctx.extractor.provenance(), **ref_prov,
            **ctx.sample_provenance()}
    return [MetricValue("c2st/accuracy", result.accuracy, "accuracy (0.5 = indistinguishable)", prov),
            MetricValue("c2st/p_value", result.p_value, "one-sided binomial p vs 0.5", prov)]


def samples_points_with_modes(model, info) -> bool:
    return model.capabilities.samples and info.kind == "points" and "modes" in info.extras


COVERAGE_VALUES = {
    "coverage/modes_captured": ("higher", "modes of *", "modes nearest to at least one high-quality sample"),
    "coverage/high_quality_pct": ("higher", "%", "samples within n_sigmas mode standard deviations of a mode"),
    "coverage/reverse_kl": ("lower", "nats", "KL(high-quality samples' mode histogram || uniform over modes)"),
}


@register_metric("coverage", samples_points_with_modes, "modes captured, % high quality, reverse KL (toy2d)",
                 values=COVERAGE_VALUES, conditions=(*SAMPLE_CONDITIONS, "n_modes", "n_samples", "n_sigmas", "sigma",
                                                     "threshold", "reverse_kl_without_hq"),
                 outcomes=(*SAMPLE_OUTCOMES, "counts", "n_high_quality"))
def coverage(ctx: EvalContext) -> list[MetricValue]:
    extras = ctx.dataset.info.extras
    result = mode_coverage(ctx.samples, torch.tensor(extras["modes"]), extras["mode_sigma"])
    prov = {**_provenance(result, "modes_captured", "high_quality_pct", "reverse_kl"), **ctx.sample_provenance(),
            "reverse_kl_without_hq": NO_HQ_REVERSE_KL_RULE}  # a condition: records before it had None there
    return [MetricValue("coverage/modes_captured", result.modes_captured, f"modes of {result.n_modes}", prov),
            MetricValue("coverage/high_quality_pct", result.high_quality_pct, "%", prov),
            MetricValue("coverage/reverse_kl", result.reverse_kl, "nats", prov)]
