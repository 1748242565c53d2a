"""The sampler sweep (genbench/metrics/samplers.py) on stub diffusion models whose samples
get better with more steps: records, provenance, capping at T, timing, failures."""

from __future__ import annotations

import time

import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics import EvalContext, applicable_metrics
from genbench.metrics.samplers import SweepPoint, applies, run_sweep, sweep_points, sweep_steps
from genbench.models.base import Capabilities
from genbench.registry import METRICS

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))


class StubDiffusion:
    """Draws real examples plus noise of std `noise / steps` (twice that for fixed-large):
    more steps, better samples. Sleeps `sleep` seconds per call, so timing is known."""

    capabilities = Capabilities(step_samplers=True)
    sampling_weights = "EMA"

    def __init__(self, data: torch.Tensor, timesteps: int, noise: float = 10.0, sleep: float = 0.0,
                 nan_at: str | None = None):
        self.data, self.timesteps, self.noise, self.sleep, self.nan_at = data, timesteps, noise, sleep, nan_at
        self.calls: list[tuple[int, str, int, float, str]] = []

    def sample_with(self, n, generator, sampler, steps, eta=0.0, variance="fixed-small"):
        assert sampler in ("ddpm", "ddim") and 1 <= steps <= self.timesteps
        self.calls.append((n, sampler, steps, eta, variance))
        time.sleep(self.sleep)
        idx = torch.randint(len(self.data), (n,), generator=generator)
        sigma = self.noise / steps * (2.0 if (sampler, variance) == ("ddpm", "fixed-large") else 1.0)
        x = self.data[idx] + sigma * torch.randn(self.data[idx].shape, generator=generator)
        if self.nan_at == f"{sampler}-{variance if sampler == 'ddpm' else eta}-{steps}":
            x[0] = float("nan")
        return x


def by_metric(values):
    return {v.metric: v for v in values}


def test_sweep_steps_cap_at_t_and_always_include_it():
    assert sweep_steps(1000) == [10, 20, 50, 100, 200, 500, 1000]
    assert sweep_steps(50) == [10, 20, 50]
    assert sweep_steps(30) == [10, 20, 30]
    assert sweep_steps(5) == [5]
    points = sweep_points(30)
    assert [p.label for p in points] == [
        "ddpm-fixed-small-10", "ddpm-fixed-small-20", "ddpm-fixed-small-30",
        "ddpm-fixed-large-10", "ddpm-fixed-large-20", "ddpm-fixed-large-30",
        "ddim-eta0-10", "ddim-eta0-20", "ddim-eta0-30",
    ]
    assert SweepPoint("ddim", 20, eta=0.5).sample_kwargs() == {"sampler": "ddim", "steps": 20, "eta": 0.5}
    assert SweepPoint("ddpm", 20, "fixed-large").sample_kwargs() == {"sampler": "ddpm", "steps": 20,
                                                                     "variance": "fixed-large"}


def test_applies_by_capability_and_data_kind(digits):
    ring = load_dataset("toy2d-ring8")
    model = StubDiffusion(digits.train.x, 50)
    assert applies(model, digits.info) and applies(model, ring.info)
    assert "sampler_sweep" in [m.name for m in applicable_metrics(model, digits.info)]

    class NoSweep:  # samples, has timesteps, but declares no step samplers
        capabilities = Capabilities(samples=True)
        timesteps = 50

        def sample(self, n, generator, draw="mean"):
            return torch.zeros(n, 1, 16, 16)

    assert not applies(NoSweep(), digits.info)
    mixture_without_modes = ring.info.__class__(**{**ring.info.__dict__, "extras": {}})
    assert not applies(model, mixture_without_modes)


def test_image_sweep_records_fid_kid_and_speed_with_provenance(digits):
    model = StubDiffusion(digits.train.x, timesteps=50, sleep=0.002)
    ctx = EvalContext(model, digits, CPU, batch_size=128, seed=3, eval_samples=300)
    values = METRICS.get("sampler_sweep").evaluate(ctx)
    m = by_metric(values)
    labels = [p.label for p in sweep_points(50)]
    expected = {f"sampler/{q}@{label}" for q in ("fid", "kid", "samples_per_s") for label in labels}
    assert set(m) == expected and len(values) == len(expected)  # one record per (quantity, point)

    fid = {label: m[f"sampler/fid@{label}"].value for label in labels}
    for sampler in ("ddpm-fixed-small", "ddpm-fixed-large", "ddim-eta0"):
        assert fid[f"{sampler}-10"] > fid[f"{sampler}-20"] > fid[f"{sampler}-50"], fid
    for steps in (10, 20):  # twice the noise: fixed-large is worse when it skips steps
        assert fid[f"ddpm-fixed-large-{steps}"] > fid[f"ddpm-fixed-small-{steps}"]

    prov = m["sampler/fid@ddim-eta0-20"].provenance
    assert prov["sampler"] == "ddim" and prov["steps"] == 20 and prov["eta"] == 0.0 and prov["variance"] is None
    assert prov["point"] == "ddim-eta0-20" and prov["timesteps"] == 50
    assert prov["n_samples"] == 300 and prov["sample_seed"] == 3 and prov["weights"] == "EMA"
    assert prov["extractor"] == "genbench-classifier" and prov["extractor_weights_hash"]
    assert prov["reference_split"] == "train" and prov["n_reference"] == len(digits.train)
    assert prov["device"].startswith("cpu") and "kid_std" in prov
    assert m["sampler/fid@ddim-eta0-20"].unit == "fid"
    large = m["sampler/kid@ddpm-fixed-large-10"].provenance
    assert large["sampler"] == "ddpm" and large["variance"] == "fixed-large" and large["eta"] is None

    speed = m["sampler/samples_per_s@ddpm-fixed-small-50"]
    assert speed.unit == "samples/s" and speed.provenance["timed_batches"] == 2  # 128, 128 (44 left out)
    assert speed.provenance["batch"] == 128 and speed.provenance["batch_seconds"]["n"] == 2
    assert 0 < speed.value < 128 / 0.002  # each batch slept 2 ms
    assert "warm-up" in speed.provenance["timing"]

    # Warm-up: one 2-step call per sampler, first; then 3 batches (128, 128, 44) per point.
    assert model.calls[:2] == [(128, "ddpm", 2, 0.0, "fixed-small"), (128, "ddim", 2, 0.0, "fixed-small")]
    assert len(model.calls) == 2 + 3 * len(labels)
    assert [c[0] for c in model.calls[2:5]] == [128, 128, 44]


def test_every_point_draws_from_the_same_seed(digits):
    """Common random numbers: the same generator seed at every point."""
    model = StubDiffusion(digits.train.x, timesteps=20, noise=0.0)
    ctx = EvalContext(model, digits, CPU, batch_size=100, seed=7, eval_samples=100)
    seen = []
    original = model.sample_with

    def spy(n, generator, **kwargs):
        x = original(n, generator, **kwargs)
        seen.append(x)
        return x

    model.sample_with = spy
    run_sweep(ctx, [SweepPoint("ddpm", 20, "fixed-small"), SweepPoint("ddim", 10, eta=0.0)])
    assert torch.equal(seen[-1], seen[-2])  # noise 0: the samples are the indices drawn


def test_steps_beyond_t_are_rejected(digits):
    model = StubDiffusion(digits.train.x, timesteps=20)
    ctx = EvalContext(model, digits, CPU, batch_size=100, seed=0, eval_samples=100)
    with pytest.raises(ValueError, match="steps must be in"):
        run_sweep(ctx, [SweepPoint("ddim", 50, eta=0.0)])


def test_non_finite_samples_fail_their_point_only(digits):
    model = StubDiffusion(digits.train.x, timesteps=20, nan_at="ddpm-fixed-large-10")
    ctx = EvalContext(model, digits, CPU, batch_size=200, seed=0, eval_samples=200)
    m = by_metric(run_sweep(ctx, sweep_points(20)))
    bad = m["sampler/fid@ddpm-fixed-large-10"]
    assert bad.value is None and "1 of 200 samples non-finite" in bad.provenance["failed"]
    assert m["sampler/samples_per_s@ddpm-fixed-large-10"].value > 0
    assert m["sampler/fid@ddpm-fixed-large-20"].value is not None


def test_points_sweep_scores_mode_coverage():
    ring = load_dataset("toy2d-ring8")
    modes = torch.tensor(ring.info.extras["modes"])
    # Mode centres plus noise of std 0.3 / steps: at 10 steps 3x the high-quality radius's
    # sigma (0.03 vs 0.01), at 30 steps exactly sigma.
    model = StubDiffusion(modes.repeat(100, 1), timesteps=30, noise=0.3)
    ctx = EvalContext(model, ring, CPU, batch_size=500, seed=0, eval_samples=1000)
    m = by_metric(run_sweep(ctx, sweep_points(30)))
    assert {k.split("@")[0] for k in m} == {"sampler/modes_captured", "sampler/high_quality_pct",
                                           "sampler/reverse_kl", "sampler/samples_per_s"}
    hq = [m[f"sampler/high_quality_pct@ddim-eta0-{s}"].value for s in (10, 20, 30)]
    assert hq[0] < hq[1] < hq[2] and hq[2] > 95, hq
    assert m["sampler/modes_captured@ddim-eta0-30"].value == 8
    assert m["sampler/high_quality_pct@ddim-eta0-30"].provenance["n_modes"] == 8


def test_sweep_runs_on_the_registered_ddpm_model(digits):
    """The real interface (genbench/models/diffusion.py), untrained and tiny: every point
    samples, is scored and timed, and the weights' provenance comes from the model."""
    from genbench.models.diffusion import DDPM, DDPMOptions

    torch.manual_seed(0)
    options = DDPMOptions(timesteps=20, schedule="cosine", channels=8, num_res_blocks=1, attention_resolutions=(),
                          groups=4, sample_steps=10)
    model = DDPM(options, digits.info, "torch").eval()
    assert applies(model, digits.info)
    ctx = EvalContext(model, digits, CPU, batch_size=100, seed=0, eval_samples=100)
    m = by_metric(run_sweep(ctx, sweep_points(model.timesteps)))
    assert len(m) == 3 * 2 * 3  # (fid, kid, samples/s) x steps {10, 20} x 3 samplers
    assert all(v.value is not None and v.value > 0 for k, v in m.items() if "fid@" in k or "samples_per_s@" in k)
    assert m["sampler/fid@ddim-eta0-20"].provenance["weights"] == "EMA (decay 0.999)"
