"""Sampler sweep: sample quality and sampling speed against the number of sampler steps.

Applies to models declaring step_samplers (genbench/models/base.py): `sample_with(n,
generator, sampler, steps, eta, variance)`, an int `timesteps` (T, the diffusion steps it
was trained with) and `sampling_weights`: diffusion models. Scored
  - on image data by FID and KID, with exactly the `quality` metric's extractor, reference
    features (the whole train split, cached) and quantisation path (genbench/metrics/
    quality.py: images_to_features, features_to_fid_kid);
  - on 2-D mixtures with known modes (toy2d) by mode coverage (modes captured, %
    high-quality, reverse KL; genbench/metrics/coverage.py), since FID needs image
    features.

The sweep (docs/evaluation.md, "Diffusion specifics"): step counts STEP_GRID capped at T, plus
T itself, for each of
  ddpm  variance fixed-small  sigma_t^2 = beta~_t, the posterior variance (Ho et al. 2020)
  ddpm  variance fixed-large  sigma_t^2 = beta_t (Ho et al. 2020); it degrades when the
                              chain skips steps (Nichol & Dhariwal 2021, sec. 4), which
                              the sweep is there to show
  ddim  eta = 0               deterministic DDIM (Song et al. 2021)
A point with steps < T runs the sampler on an evenly strided subsequence of the T steps
(the model's `sample_with` decides the stride). Samples come from the weights the model's
`sampling_weights` names (the EMA weights, where it keeps them); the records say which.

Every point draws N = ctx.eval_samples samples (the suite's `eval_samples`, the same N
as the quality metric) in batches of ctx.batch_size from a generator seeded with the
run's seed -- the same seed at every point, so points differ by the sampler alone (common
random numbers). Speed: each generation batch is timed, device-synchronised
(genbench.utils.measure.timed), after one warm-up call per sampler (a 2-step chain at
the batch size); samples/s = batch / median batch time over the point's full batches
(the last, partial batch is left out when there is a full one), quantiles in the record.
Scoring is outside the timing.

Records: one metric name per (quantity, point), so no generic table or comparison ever
averages over sampler settings:
  sampler/<quantity>@<point>    e.g. sampler/fid@ddpm-fixed-small-50, sampler/kid@ddim-eta0-20,
                                sampler/samples_per_s@ddim-eta0-20
  quantity: fid, kid (KID's std over subsets in provenance kid_std), samples_per_s;
            on 2-D mixtures modes_captured, high_quality_pct, reverse_kl, samples_per_s
  point:    ddpm-<variance>-<steps> | ddim-eta<eta>-<steps>
and the same facts as structured provenance, which is what the report groups by (never by
parsing the name): sampler, steps, variance (None for ddim), eta (None for ddpm),
timesteps, point, n_samples, sample_seed, weights, device, batch, plus the extractor,
its weights hash and the reference set (images) or the coverage settings (points), and
for samples_per_s the timing method and batch-time quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from genbench.utils import measure
from genbench.metrics.base import EvalContext, MetricValue, register_metric
from genbench.metrics.coverage import NO_HQ_REVERSE_KL_RULE, mode_coverage
from genbench.metrics.quality import (FEATURE_CONDITIONS, QualitySettings, features_to_fid_kid,
                                      images_to_features)

STEP_GRID = (10, 20, 50, 100, 200, 500, 1000)  # sampler steps, capped at T; T is always added
WARMUP_STEPS = 2  # chain length of the untimed warm-up call per sampler (respaced chains need >= 2)
PREFIX = "sampler/"  # metric names: sampler/<quantity>@<point>
UNITS = {"fid": "fid", "kid": "kid", "samples_per_s": "samples/s", "modes_captured": "modes",
         "high_quality_pct": "%", "reverse_kl": "nats"}


@dataclass(frozen=True)
class SweepPoint:
    """One sampler setting of the sweep."""

    sampler: str  # "ddpm" | "ddim"
    steps: int  # network evaluations per sample (<= T)
    variance: str | None = None  # ddpm: "fixed-small" | "fixed-large"; ddim: None
    eta: float | None = None  # ddim: 0 = deterministic; ddpm: None

    @property
    def label(self) -> str:
        if self.sampler == "ddim":
            return f"ddim-eta{self.eta:g}-{self.steps}"
        return f"ddpm-{self.variance}-{self.steps}"

    def sample_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of model.sample_with for this point."""
        kwargs: dict[str, Any] = {"sampler": self.sampler, "steps": self.steps}
        if self.sampler == "ddim":
            kwargs["eta"] = float(self.eta or 0.0)
        else:
            kwargs["variance"] = self.variance
        return kwargs

    def provenance(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "steps": self.steps, "variance": self.variance, "eta": self.eta,
                "point": self.label}


# (sampler, variance, eta) of the default sweep, in the order the report shows them
DEFAULT_SAMPLERS: tuple[tuple[str, str | None, float | None], ...] = (
    ("ddpm", "fixed-small", None),
    ("ddpm", "fixed-large", None),
    ("ddim", None, 0.0),
)


def sweep_steps(timesteps: int, grid: tuple[int, ...] = STEP_GRID) -> list[int]:
    """The grid's step counts below T, then T itself (sorted, no duplicates)."""
    if timesteps < 1:
        raise ValueError(f"the model's timesteps must be >= 1; got {timesteps}")
    return sorted({s for s in grid if 1 <= s < timesteps} | {timesteps})


def sweep_points(timesteps: int, grid: tuple[int, ...] = STEP_GRID,
                 samplers: tuple[tuple[str, str | None, float | None], ...] = DEFAULT_SAMPLERS) -> list[SweepPoint]:
    """Every (sampler, variance, eta) of `samplers` at every step count of sweep_steps(T)."""
    return [SweepPoint(sampler, steps, variance, eta)
            for sampler, variance, eta in samplers for steps in sweep_steps(timesteps, grid)]


def applies(model, info) -> bool:
    return model.capabilities.step_samplers and (
        info.kind == "image" or (info.kind == "points" and "modes" in info.extras))


# --- sampling ---------------------------------------------------------------------------


@torch.no_grad()
def warm_up(model, points: list[SweepPoint], batch: int, device: torch.device) -> None:
    """One short untimed chain per sampler at the batch size (allocator, kernels, caches)."""
    generator = torch.Generator(device=device).manual_seed(0)
    first: dict[str, SweepPoint] = {}
    for p in points:
        first.setdefault(p.sampler, p)
    for point in first.values():
        kwargs = {**point.sample_kwargs(), "steps": min(WARMUP_STEPS, point.steps)}
        model.sample_with(batch, generator, **kwargs)
    measure.synchronize(device)


@torch.no_grad()
def points_to_samples(model, point: SweepPoint, n: int, batch: int, seed: int,
                      device: torch.device) -> tuple[torch.Tensor, list[float], list[int]]:
    """n samples of one sweep point on the CPU, each batch's seconds and size."""
    generator = torch.Generator(device=device).manual_seed(seed)
    parts, seconds, sizes = [], [], []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        timing: dict[str, float] = {}
        with measure.timed(device, timing, "t"):
            x = model.sample_with(size, generator, **point.sample_kwargs())
        if x.shape[0] != size:
            raise ValueError(f"sample_with({size}, ...) returned {x.shape[0]} samples at {point.label}")
        parts.append(x.detach().to("cpu", torch.float32))
        seconds.append(timing["t"])
        sizes.append(size)
    return torch.cat(parts), seconds, sizes


def batches_to_rate(seconds: list[float], sizes: list[int]) -> tuple[float, dict[str, Any]]:
    """samples/s from the median time of the full batches (all batches if none is full)."""
    full = [s for s, size in zip(seconds, sizes) if size == max(sizes)]
    rate, q = measure.median_rate(full, max(sizes))
    return rate, {"batch_seconds": q, "timed_batches": len(full), "batch": max(sizes),
                  "timing": f"batch / median time of {len(full)} full batch(es), device-synchronised, "
                            f"after a {WARMUP_STEPS}-step warm-up per sampler"}


# --- scoring ----------------------------------------------------------------------------


def images_to_scores(samples: torch.Tensor, ctx: EvalContext,
                     settings: QualitySettings) -> tuple[dict[str, float | None], dict[str, Any]]:
    """FID and KID against the quality metric's reference features, and their provenance."""
    ref, ref_prov = ctx.reference
    prov = {**ctx.extractor.provenance(), **ref_prov,
            **settings.provenance(len(samples), len(ref["features"])),
            "preprocessing": "generated and real alike: [-1,1] -> uint8 levels -> extractor"}
    bad = int((~torch.isfinite(samples.reshape(len(samples), -1))).any(1).sum())
    if bad:
        return {"fid": None, "kid": None}, {**prov, "failed": f"{bad} of {len(samples)} samples non-finite"}
    gen = images_to_features(samples, ctx.extractor, ctx.device)
    scores = features_to_fid_kid(gen["features"], ref["features"], ctx.seed, settings)
    return {"fid": scores["fid"], "kid": scores["kid"]}, {**prov, "kid_std": scores["kid_std"]}


def points_to_scores(samples: torch.Tensor, ctx: EvalContext) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Mode coverage as the `coverage` metric defines it (non-finite points: not high-quality)."""
    extras = ctx.dataset.info.extras
    result = mode_coverage(samples, torch.tensor(extras["modes"]), extras["mode_sigma"])
    prov = {"n_modes": result.n_modes, "mode_sigma": result.sigma, "n_sigmas": result.n_sigmas,
            "n_high_quality": result.n_high_quality, "reverse_kl_without_hq": NO_HQ_REVERSE_KL_RULE}
    return ({"modes_captured": float(result.modes_captured), "high_quality_pct": result.high_quality_pct,
             "reverse_kl": result.reverse_kl}, prov)


# --- the metric -------------------------------------------------------------------------


def run_sweep(ctx: EvalContext, points: list[SweepPoint]) -> list[MetricValue]:
    """Generate, time and score every point; one MetricValue per (quantity, point)."""
    model, n, batch = ctx.model, ctx.eval_samples, ctx.batch_size
    for p in points:
        if not 1 <= p.steps <= model.timesteps:
            raise ValueError(f"sweep point {p.label}: steps must be in [1, T={model.timesteps}]")
    common = {"timesteps": model.timesteps, "n_samples": n, "sample_seed": ctx.seed,
              "weights": str(model.sampling_weights), "device": measure.device_name(ctx.device)}
    settings = QualitySettings()
    warm_up(model, points, min(batch, n), ctx.device)
    values: list[MetricValue] = []
    for point in points:
        samples, seconds, sizes = points_to_samples(model, point, n, batch, ctx.seed, ctx.device)
        base = {**common, **point.provenance()}
        rate, timing = batches_to_rate(seconds, sizes)
        values.append(MetricValue(f"{PREFIX}samples_per_s@{point.label}", rate, UNITS["samples_per_s"],
                                  {**base, **timing}))
        if ctx.dataset.info.kind == "image":
            scores, prov = images_to_scores(samples, ctx, settings)
        else:
            scores, prov = points_to_scores(samples, ctx)
        for quantity, value in scores.items():
            if value is not None and not math.isfinite(value):
                value = None
            values.append(MetricValue(f"{PREFIX}{quantity}@{point.label}", value, UNITS[quantity],
                                      {**base, **prov}))
    return values


SWEEP_VALUES = {  # <quantity>@<point>: the point's sampler, variance/eta and steps are in the provenance
    f"{PREFIX}fid@*": ("lower", UNITS["fid"], "FID (the quality metric's) of the samples of one sweep point"),
    f"{PREFIX}kid@*": ("lower", UNITS["kid"], "KID (the quality metric's) of the samples of one sweep point"),
    f"{PREFIX}samples_per_s@*": ("higher", UNITS["samples_per_s"], "samples per second at one sweep point"),
    f"{PREFIX}modes_captured@*": ("higher", UNITS["modes_captured"], "modes captured (coverage) at one point"),
    f"{PREFIX}high_quality_pct@*": ("higher", UNITS["high_quality_pct"], "% high-quality samples at one point"),
    f"{PREFIX}reverse_kl@*": ("lower", UNITS["reverse_kl"], "reverse KL of the mode histogram at one point"),
}


@register_metric("sampler_sweep", applies,
                 "FID/KID (or mode coverage) and samples/s against sampler steps: DDPM fixed-small/large vs DDIM",
                 values=SWEEP_VALUES, section="Diffusion samplers",
                 conditions=(*FEATURE_CONDITIONS, "sampler", "steps", "variance", "eta", "point", "timesteps",
                             "weights", "n_samples", "batch", "timed_batches", "timing", "device", "kid_subsets",
                             "kid_subset_size", "isc_splits", "prc_neighborhood", "n_modes", "mode_sigma", "n_sigmas",
                             "reverse_kl_without_hq"),
                 outcomes=("sample_seed", "batch_seconds", "kid_std", "n_high_quality", "failed"))
def sampler_sweep(ctx: EvalContext) -> list[MetricValue]:
    return run_sweep(ctx, sweep_points(ctx.model.timesteps))
