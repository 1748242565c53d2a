"""Autoregressive samplers side by side: the speed of each way of drawing from one model,
and whether they draw the same samples.

Applies to models declaring ar_samplers (genbench/models/base.py): `sampler_names` (a tuple;
the first is the reference, e.g. ("naive", "cached")) and `sample_with(n, generator, sampler)`, which must give identical samples for
the same generator whichever sampler runs: PixelCNN (re-running the network per pixel vs
caching the vertical stack per row), WaveNet (re-running it per step vs Fast WaveNet
queues). Whatever the model, the quantity is the same: samples/s of each sampler on the
same n, in one process, one after the other.

Method: n = min(N_MAX, eval batch) samples per call; for each sampler one warm-up call
from a generator seeded with the run's seed (its samples are the identity check), then up
to REPEATS timed calls from the same seed, device-synchronised (genbench.utils.measure.
timed), stopping early once a sampler's timed calls take more than TIME_BUDGET_S in all
(at least one). The naive sampler is a full network pass per pixel (H W C passes per
call) and must stay cheap on a CPU: a warm-up call that itself takes longer than
TIME_BUDGET_S is the one timed call (one-off costs are negligible at that length; the
record says so). samples/s = n / median call time, quantiles in the record.

Records:
  ar_sampler/samples_per_s@<sampler>  samples/s of each sampler
  ar_sampler/speedup@<sampler>        its rate / the reference sampler's, for every other sampler
  ar_sampler/identical                1.0 when every sampler gave the reference's samples exactly
with provenance n, seed, repeats, timing method and device.
"""

from __future__ import annotations

from typing import Any

import torch

from genbench.utils import measure
from genbench.metrics.base import EvalContext, MetricValue, register_metric

PREFIX = "ar_sampler/"
N_MAX = 8  # samples per call: enough to batch, few enough for the naive sampler on a CPU
REPEATS = 3  # timed calls per sampler at most (the median is reported)
TIME_BUDGET_S = 10.0  # a sampler's timed calls stop once they have taken this long in all


def applies(model, info) -> bool:
    return model.capabilities.ar_samplers


@torch.no_grad()
def draw(model, sampler: str, n: int, seed: int, device: torch.device) -> torch.Tensor:
    """n samples from `sampler`, from a generator seeded with `seed` (the same for every call)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return model.sample_with(n, generator, sampler)


def time_sampler(model, sampler: str, n: int, seed: int, device: torch.device) -> tuple[torch.Tensor, list[float], bool]:
    """(warm-up samples on the CPU, the seconds of each timed call, whether a warm-up call
    preceded them)."""
    timing: dict[str, float] = {}
    with measure.timed(device, timing, "warm-up"):
        samples = draw(model, sampler, n, seed, device).detach().cpu()
    if timing["warm-up"] > TIME_BUDGET_S:
        return samples, [timing["warm-up"]], False
    seconds: list[float] = []
    while len(seconds) < REPEATS and (not seconds or sum(seconds) < TIME_BUDGET_S):
        with measure.timed(device, timing, "t"):
            draw(model, sampler, n, seed, device)
        seconds.append(timing["t"])
    return samples, seconds, True


def timing_provenance(seconds: list[float], warmed: bool, q: dict[str, float]) -> dict[str, Any]:
    if warmed:
        method = (f"n / median time of {len(seconds)} call(s) (at most {REPEATS}, stopping after "
                  f"{TIME_BUDGET_S:g} s), device-synchronised, after 1 untimed warm-up call")
    else:
        method = (f"n / time of the first call, device-synchronised: it took over {TIME_BUDGET_S:g} s, so it "
                  "is the only call (no separate warm-up)")
    return {"call_seconds": q, "repeats": len(seconds), "warm_up": warmed, "method": method}


def samplers_to_values(names: tuple[str, ...], rates: dict[str, float], timings: dict[str, dict[str, Any]],
                       identical: bool, common: dict[str, Any]) -> list[MetricValue]:
    reference = names[0]
    values = [MetricValue(f"{PREFIX}samples_per_s@{name}", rates[name], "samples/s",
                          {**common, "sampler": name, **timings[name]}) for name in names]
    for name in names[1:]:
        values.append(MetricValue(f"{PREFIX}speedup@{name}", rates[name] / rates[reference], "ratio",
                                  {**common, "sampler": name, "reference": reference,
                                   "method": f"samples/s of {name} / samples/s of {reference}, same n and seed, "
                                             "measured one after the other in one process"}))
    values.append(MetricValue(f"{PREFIX}identical", float(identical), "bool",
                              {**common, "samplers": list(names), "reference": reference,
                               "method": "torch.equal of each sampler's samples with the reference's, same seed"}))
    return values


AR_SAMPLER_VALUES = {
    f"{PREFIX}samples_per_s@*": ("higher", "samples/s", "samples per second of the sampler named after @"),
    f"{PREFIX}speedup@*": ("higher", "ratio", "that sampler's samples/s over the reference sampler's"),
    f"{PREFIX}identical": ("higher", "bool", "1 when every sampler drew the reference's samples exactly"),
}


@register_metric("ar_samplers", applies,
                 "autoregressive samplers side by side (naive vs cached): samples/s, speedup, identical samples",
                 values=AR_SAMPLER_VALUES, section="Autoregressive samplers",
                 conditions=("n", "sampler", "samplers", "reference", "method", "device"),
                 outcomes=("sample_seed", "call_seconds", "repeats", "warm_up"))
def ar_samplers(ctx: EvalContext) -> list[MetricValue]:
    model, device = ctx.model, ctx.device
    names = tuple(model.sampler_names)
    n = min(N_MAX, ctx.batch_size)
    rates: dict[str, float] = {}
    timings: dict[str, dict[str, Any]] = {}
    samples: dict[str, torch.Tensor] = {}
    for name in names:
        samples[name], seconds, warmed = time_sampler(model, name, n, ctx.seed, device)
        rates[name], q = measure.median_rate(seconds, n)
        timings[name] = timing_provenance(seconds, warmed, q)
    identical = all(torch.equal(samples[name], samples[names[0]]) for name in names[1:])
    common = {"n": n, "sample_seed": ctx.seed, "device": measure.device_name(device)}
    return samplers_to_values(names, rates, timings, identical, common)
