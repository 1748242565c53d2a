"""Metric registration and the evaluation context metrics share.

A metric is registered in METRICS with a predicate saying which runs it applies to
(by the model's declared capabilities -- genbench.models.base.Capabilities -- and the
data's kind, never by name) and a function
returning MetricValues. Metrics see the test split prepared once per evaluation
(binarised or dequantised with a fixed seed, EVAL_SEED, the same for every run) so every
run is scored on identical data, and share one set of `eval_samples` generated samples
(drawn with the run's seed) and their extractor features.

At registration a metric also declares its values (genbench/values.py): for each value-name
pattern its direction, unit and meaning, and which provenance keys are conditions of
comparability (and which are per-measurement outcomes); `genbench compare` and the report
read them from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable, Mapping

import torch

from genbench.metrics.extractors import classifier_for, inception, wants_inception
from genbench.metrics.quality import images_to_features, reference_features
from genbench.registry import METRICS
from genbench.utils.pixels import images_to_uint8, uint8_to_images
from genbench.values import VALUES, declare_values

EVAL_SEED = 0  # seed of the evaluation data's binarisation/dequantisation, fixed across runs
# The provenance EvalContext.sample_provenance gives every sample-based value: how many samples
# of what are conditions of comparability; the seed that drew them is each run's own.
SAMPLE_CONDITIONS = ("n_generated", "samples")
SAMPLE_OUTCOMES = ("sample_seed",)


@dataclass(frozen=True)
class MetricValue:
    metric: str  # "<phase>/<name>", e.g. "test/elbo"
    value: float | None
    unit: str
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: str
    applies: Callable[[Any, Any], bool]  # (model, DatasetInfo) -> does this metric apply?
    evaluate: Callable[["EvalContext"], list[MetricValue]]
    summary: str


def register_metric(name: str, applies: Callable[[Any, Any], bool], summary: str, *,
                    values: Mapping[str, tuple[str, str, str]] | None = None, conditions: Iterable[str] = (),
                    outcomes: Iterable[str] = (), section: str | None = None):
    """Register a metric and declare its values: `values` maps name patterns to (direction,
    unit, meaning) (genbench/values.py); `conditions` and `outcomes` are provenance keys;
    `section` the report section of its own. A metric that fails records `<name>/failed`
    (declared here for every metric)."""
    def wrap(fn):
        METRICS.register(name, Metric(name, applies, fn, summary))
        if values is not None:
            failed = {f"{name}/failed": ("neither", "error", "the metric raised for this run; why is in `error`")}
            declare_values(name, {**values, **failed}, conditions=conditions, outcomes={*outcomes, "error"},
                           section=section, by_name=False)
        return fn

    return wrap


def unregister_metric(name: str) -> None:
    """Remove a metric and its value declaration (tests that register one of their own)."""
    METRICS.unregister(name)
    VALUES.unregister(name)


@dataclass
class EvalContext:
    model: Any
    dataset: Any  # genbench.data.Dataset
    device: torch.device
    batch_size: int
    seed: int = 0  # seeds the generated samples
    eval_samples: int = 2500  # generated samples for sample-based metrics (fixed per suite)
    iwae_k: int = 64  # importance samples for the IWAE likelihood bound
    feature_extractor: str = "auto"  # "auto" | "genbench" | "inception-v3"
    feature_weights: str | None = None  # InceptionV3 weights file

    @cached_property
    def samples(self) -> torch.Tensor:
        """eval_samples generated samples on the CPU: the decoder mean for images (as the
        image grids show), draws from p(x|z) for 2-D points and 1-D sequences."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        sizes = [min(self.batch_size, self.eval_samples - s) for s in range(0, self.eval_samples, self.batch_size)]
        draw = "mean" if self.dataset.info.kind == "image" else "sample"
        with torch.no_grad():
            return torch.cat([self.model.sample(n, generator, draw=draw).cpu() for n in sizes])

    @cached_property
    def samples_as_data(self) -> torch.Tensor:
        """The image samples on the 8-bit levels the real images are stored at (rounded, as
        the extractors' uint8 input is): pixel-space metrics (SWD, MS-SSIM, memorisation)
        then compare generated and real images quantised alike -- unrounded samples carry
        sub-level detail no real image has, which SWD's finest level counts as a difference."""
        return uint8_to_images(images_to_uint8(self.samples))

    @cached_property
    def extractor(self):
        if wants_inception(self.feature_extractor, self.feature_weights):
            return inception(self.feature_weights or "")
        return classifier_for(self.dataset)

    @cached_property
    def generated_features(self) -> dict[str, torch.Tensor]:
        return images_to_features(self.samples, self.extractor, self.device)

    @cached_property
    def reference(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(features, provenance) of the reference set: the whole train split."""
        return reference_features(self.dataset, "train", None, self.extractor, self.device)

    def sample_provenance(self) -> dict[str, Any]:
        if self.model.sample_description is not None:
            what = self.model.sample_description
        elif not self.model.capabilities.likelihood:
            what = "generator output"
        else:
            what = "decoder mean of p(x|z)" if self.dataset.info.kind == "image" else "draws from p(x|z)"
        return {"n_generated": int(self.samples.shape[0]), "sample_seed": self.seed, "samples": what}

    @cached_property
    def representations(self) -> dict[str, Any]:
        """The model's codes of the train and test splits as numpy (N, d) arrays, encoded
        once for every representation metric (see genbench/metrics/representation.py)."""
        from genbench.metrics.representation import encode_splits  # imports this module (a known cycle)

        return encode_splits(self)

    @cached_property
    def test_x(self) -> torch.Tensor:
        return self.dataset.test.x.to(self.device)  # (N, *shape)

    @cached_property
    def prepared_test(self) -> torch.Tensor:
        """The test split as the model's likelihood sees it (fixed-seed noise)."""
        return self.model.likelihood.prepare(self.test_x, self.generator())

    @cached_property
    def test_nll(self) -> torch.Tensor:
        """-log p(x) per test example (N,) in nats by the model's estimator, on the prepared
        test split (class-conditional models: given the test labels); computed once for every
        metric that scores it (likelihood, anomaly)."""
        from genbench.metrics.likelihood import nll_per_example  # imports this module (a known cycle)

        labels = self.dataset.test.y
        labels = None if labels is None else labels.to(self.device)
        with torch.no_grad():
            return nll_per_example(self.model, self.prepared_test, labels, self.batch_size, self.iwae_k,
                                   self.generator())

    def generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(EVAL_SEED)

    def batches(self, x: torch.Tensor):
        return x.split(self.batch_size)


def flat_finite(x, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Features (N, F) or images (N, C, H, W) as a finite (N, D) CPU matrix, or ValueError."""
    x = torch.as_tensor(x)
    if x.ndim not in (2, 4):
        raise ValueError(f"{name} must be features (N, F) or images (N, C, H, W); got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return x.detach().to("cpu", dtype).reshape(x.shape[0], -1)  # (N, D)


def applicable_metrics(model, info) -> list[Metric]:
    return [METRICS.get(name) for name in METRICS.names() if METRICS.get(name).applies(model, info)]
