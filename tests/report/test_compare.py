"""Tests for genbench/report/compare.py and `genbench compare A B [--fail-above PCT]`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genbench.cli import main
from genbench.report.compare import (
    CHANGED,
    IDENTICAL,
    IMPROVED,
    NO_ESTIMATE,
    REGRESSED,
    WITHIN_NOISE,
    bootstrap_interval,
    compare_paths,
    render,
)
from genbench.harness.store import COMPLETE_METRIC, RESULTS_FILE, SCHEMA_VERSION, append_records
from genbench.values import direction, fallback_direction

REPO = Path(__file__).resolve().parents[2]
DEVICE = "cpu: Test CPU (2 threads)"
QUALITY = {"n_generated": 2500, "extractor": "genbench-classifier", "extractor_weights_hash": "abc123"}


def record(metric, value, unit, *, seed=0, run_id=None, attempt="att", device=DEVICE, suite="t",
           model="vae", objective="elbo", dataset="digits", backend="torch", commit="c0ffee", **prov):
    """A valid end-of-run record (the schema of harness/store.py)."""
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id or f"{model}-{objective}-{device}-{seed}",
        "attempt": attempt, "suite": suite, "model": model, "objective": objective, "dataset": dataset,
        "seed": seed, "step": None, "metric": metric, "value": value, "unit": unit, "backend": backend,
        "device": device, "precision": "fp32", "git_commit": commit, "timestamp": "2026-01-01T00:00:00+00:00",
        "versions": {"torch": "2.4.0", "triton": "3.0.0", "genbench": "0.1.0"}, "provenance": prov,
    }


def run(seed, metrics, steps=500, **fields):
    """One completed run: its metrics {name: (value, unit, provenance)} and the completion
    marker, whose provenance holds the run's budget and data hash (as the runner writes them)."""
    out = [record(m, v, u, seed=seed, **fields, **p) for m, (v, u, p) in metrics.items()]
    marker = {"config": {"run": {"steps": steps, "batch_size": 64, "trainer_options": {}}},
              "dataset": {"content_hash": "feb9b51811559a0b"}}
    complete = record(COMPLETE_METRIC, 1.0, "bool", seed=seed, **fields)
    complete["provenance"] = marker  # not as keywords: "dataset" is also a record field
    return out + [complete]


def folder(path: Path, records: list[dict]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    append_records(path / RESULTS_FILE, records)
    return path


def quality_runs(fids, throughputs, **fields):
    """One run per seed with a FID (lower is better) and a throughput (higher is better)."""
    return [r for seed, (fid, thr) in enumerate(zip(fids, throughputs)) for r in run(
        seed, {"quality/fid": (fid, "fid", QUALITY), "perf/train_throughput": (thr, "examples/s", {})}, **fields)]


def row(comparison, metric):
    (found,) = [r for r in comparison.rows if r.key.metric == metric]
    return found


# ---------------------------------------------------------------- statistics


def test_bootstrap_interval_covers_the_true_difference_of_normal_data():
    rng = np.random.default_rng(1)
    true_delta, covered = 0.7, 0
    for _ in range(100):
        a, b = rng.normal(0.0, 1.0, 20), rng.normal(true_delta, 1.0, 20)
        lo, hi = bootstrap_interval(list(a), list(b), resamples=2000)
        assert lo < b.mean() - a.mean() < hi
        covered += lo <= true_delta <= hi
    assert covered >= 85  # nominal 95%; the percentile bootstrap runs a little short at n = 20


def test_bootstrap_interval_matches_a_direct_percentile_bootstrap():
    """scipy's percentile interval against the definition computed with numpy: resample each
    side with replacement, take the difference of means, read its 2.5% and 97.5% quantiles.
    Different random draws, so they agree to the Monte Carlo error of 10,000 resamples."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(5.0, 1.0, 6), rng.normal(6.0, 2.0, 4)
    draws = np.random.default_rng(99)
    deltas = (b[draws.integers(0, len(b), (200_000, len(b)))].mean(1)
              - a[draws.integers(0, len(a), (200_000, len(a)))].mean(1))
    expected = np.percentile(deltas, [2.5, 97.5])
    lo, hi = bootstrap_interval(list(a), list(b))
    width = expected[1] - expected[0]
    assert lo == pytest.approx(expected[0], abs=0.03 * width) and hi == pytest.approx(expected[1], abs=0.03 * width)


def test_bootstrap_interval_excludes_zero_for_a_clear_shift_and_is_reproducible():
    rng = np.random.default_rng(2)
    a, b = list(rng.normal(10.0, 0.1, 5)), list(rng.normal(11.0, 0.1, 5))
    lo, hi = bootstrap_interval(a, b)
    assert 0 < lo < 1.0 < hi
    assert bootstrap_interval(a, b) == (lo, hi)  # fixed generator seed
    lo_same, hi_same = bootstrap_interval(a, a)
    assert lo_same < 0 < hi_same


# ---------------------------------------------------------------- direction


# (metric, unit, its metric_fn or None, direction): as each value's producer declares it --
# the metric named by metric_fn, or the runner, trainer or kernel benchmark that records the name.
DIRECTIONS = [
    ("quality/fid", "fid", "quality", -1), ("quality/kid", "kid", "quality", -1),
    ("test/nll_bpd", "bits/dim", "likelihood", -1), ("test/nll", "nats/example", "likelihood", -1),
    ("train/loss", "loss", None, -1), ("perf/peak_memory", "bytes", None, -1), ("fwd/time", "ms", None, -1),
    ("time/train", "s", None, -1), ("swd/mean", "swd (raw; ProGAN tables show x1e3)", "swd", -1),
    ("run/diverged", "bool", None, -1), ("stability/failed", "bool", None, -1),
    ("perf/train_throughput", "examples/s", None, +1),
    ("sampler/samples_per_s@ddim-eta0-10", "samples/s", "sampler_sweep", +1),
    ("fwd/throughput", "TFLOP/s", None, +1), ("fwd/bandwidth", "GB/s", None, +1),
    ("anomaly/auroc@svhn", "AUROC", "anomaly", +1), ("coverage/modes_captured", "modes of 8", "coverage", +1),
    ("test/probe_linear_acc_n10", "accuracy", "probe", +1),
    ("test/elbo", "nats/example", "elbo", +1),  # the bound itself (negative nats): higher is better
    ("c2st/accuracy", "accuracy (0.5 = indistinguishable)", "c2st", 0),  # 0.5 is best
    ("anomaly/ood_bpd@svhn", "bits/dim", "anomaly", 0),  # the other data should score high, not low
    ("test/kl", "nats/example", "elbo", 0), ("stability/collapse_step", "step", None, 0),
]


@pytest.mark.parametrize("metric, unit, metric_fn, expected", DIRECTIONS)
def test_directions_are_the_producers_declarations(metric, unit, metric_fn, expected):
    provenance = {"metric_fn": metric_fn} if metric_fn else {}
    assert direction(metric, unit, provenance) == expected
    assert direction(metric, unit) == expected  # an older record without metric_fn: the same, by name


@pytest.mark.parametrize("metric, unit, expected", [
    ("custom/widgets", "widgets", 0),  # nothing declares it, and the unit says nothing
    ("custom/latency", "ms", -1), ("custom/rate", "samples/s", +1),  # the fallback's units
    ("quality/fid", "widgets", -1),  # a declared name: the declaration, whatever the unit
])
def test_records_of_unknown_origin_fall_back_to_declared_names_then_units(metric, unit, expected):
    newer = {"metric_fn": "a-metric-of-a-newer-genbench"}
    assert direction(metric, unit, newer) == fallback_direction(metric, unit) == expected


def test_fid_up_is_a_regression_and_throughput_up_an_improvement(tmp_path):
    a = folder(tmp_path / "a", quality_runs([20.0, 20.5, 19.5, 20.2], [100, 101, 99, 100]))
    b = folder(tmp_path / "b", quality_runs([25.0, 25.5, 24.5, 25.2], [120, 121, 119, 120]))
    comparison = compare_paths(a, b)
    fid, thr = row(comparison, "quality/fid"), row(comparison, "perf/train_throughput")
    assert fid.verdict == REGRESSED and fid.interval[0] > 0 and fid.rel_pct == pytest.approx(100 * 5.0 / 20.05)
    assert thr.verdict == IMPROVED and thr.badness_pct < 0
    assert comparison.rows[0] is fid  # regressions first
    assert comparison.failures(20.0) == [fid] and comparison.failures(30.0) == []
    reverse = compare_paths(b, a)  # the same change seen from the other side
    assert row(reverse, "quality/fid").verdict == IMPROVED
    assert row(reverse, "perf/train_throughput").verdict == REGRESSED


def test_unknown_direction_is_a_change_never_a_regression(tmp_path, capsys):
    a = folder(tmp_path / "a", [r for s in range(3) for r in run(s, {"custom/widgets": (1.0 + s / 100, "widgets", {})})])
    b = folder(tmp_path / "b", [r for s in range(3) for r in run(s, {"custom/widgets": (2.0 + s / 100, "widgets", {})})])
    assert row(compare_paths(a, b), "custom/widgets").verdict == CHANGED
    assert main(["compare", str(a), str(b), "--fail-above", "0"]) == 0
    assert "0 regressed" in capsys.readouterr().out


# ---------------------------------------------------------------- the command


def test_fail_above_exit_codes_and_markdown(tmp_path, capsys):
    a = folder(tmp_path / "a", quality_runs([20.0, 20.5, 19.5], [100, 101, 99]))
    b = folder(tmp_path / "b", quality_runs([24.0, 24.5, 23.5], [100, 101, 99]))  # FID +20%
    assert main(["compare", str(a), str(b), "--fail-above", "10"]) == 1
    captured = capsys.readouterr()
    assert "quality/fid (+20.0% worse)" in captured.err
    assert main(["compare", str(a), str(b), "--fail-above", "25"]) == 0
    markdown = tmp_path / "out" / "compare.md"
    assert main(["compare", str(a), str(b), "--markdown", str(markdown)]) == 0  # no threshold: report only
    out = capsys.readouterr().out
    assert markdown.read_text().strip() in out.strip()
    table = out[out.index("## Deltas"):]
    assert table.index("REGRESSION") < table.index("identical")  # regressions sorted first
    assert "Summary: compared 2: 0 improved, 1 regressed, 1 unchanged" in out


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir() or p, "without results.jsonl"),
    (lambda p: p / "missing", "does not exist"),
])
def test_user_errors_exit_2(tmp_path, capsys, make, message):
    good = folder(tmp_path / "good", quality_runs([1.0], [1.0]))
    assert main(["compare", str(make(tmp_path / "bad")), str(good)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert main(["compare", str(good), str(good), "--fail-above", "-1"]) == 2


def test_identical_folders_are_all_unchanged(tmp_path, capsys):
    a = folder(tmp_path / "a", quality_runs([20.0, 20.5, 19.5], [100, 101, 99]) + quality_runs(
        [30.0], [50], model="ae", objective="recon"))
    comparison = compare_paths(a, a)
    assert {r.verdict for r in comparison.rows} == {IDENTICAL}
    assert comparison.count(IDENTICAL) == len(comparison.rows) == 4 and not comparison.unmatched
    assert main(["compare", str(a), str(a), "--fail-above", "0"]) == 0
    assert "4 unchanged" in capsys.readouterr().out


def test_real_committed_results_compared_with_themselves(capsys):
    results = REPO / "results" / "diffusion" / "cpu-run"
    assert main(["compare", str(results), str(results), "--fail-above", "0"]) == 0
    out = capsys.readouterr().out
    assert "0 improved, 0 regressed" in out and "only in A: 0, only in B: 0" in out
    assert "a7e8cfa12ee505053eb034e907180b2dd6faa392" in out  # provenance: the commit measured
    assert "| REGRESSION " not in out and "0 without a noise estimate" in out
    assert "252 unchanged" in out  # every metric of 4 configurations x 2 seeds, none split or pooled


# ---------------------------------------------------------------- grouping


def test_different_devices_are_never_pooled(tmp_path):
    a = folder(tmp_path / "a", quality_runs([20.0, 21.0], [100, 100]) + quality_runs(
        [40.0, 41.0], [10, 10], device="cuda: H100"))
    b = folder(tmp_path / "b", quality_runs([20.0, 21.0], [100, 100], device="cpu: Other CPU"))
    comparison = compare_paths(a, b)
    assert comparison.rows == []  # no device in common
    reasons = {u.side: u.reason for u in comparison.unmatched if u.key.metric == "quality/fid"
               and u.key.get("device") != "cuda: H100"}
    assert "device: A=cpu: Test CPU (2 threads), B=cpu: Other CPU" in reasons["A"]
    same = compare_paths(a, a)  # two devices within one side: two groups of two seeds each
    assert sorted(r.a.n for r in same.rows if r.key.metric == "quality/fid") == [2, 2]
    assert {r.a.mean for r in same.rows if r.key.metric == "quality/fid"} == {20.5, 40.5}


def test_different_sample_counts_are_never_pooled(tmp_path, capsys):
    fewer = {**QUALITY, "n_generated": 500}
    a = folder(tmp_path / "a", [r for s in range(2) for r in run(s, {"quality/fid": (20.0 + s, "fid", QUALITY)})])
    b = folder(tmp_path / "b", [r for s in range(2) for r in run(s, {"quality/fid": (30.0 + s, "fid", fewer)})])
    comparison = compare_paths(a, b)
    assert comparison.rows == [] and len(comparison.unmatched) == 2
    assert all("n_generated: A=2500, B=500" in u.reason for u in comparison.unmatched)
    assert main(["compare", str(a), str(b), "--fail-above", "0"]) == 0
    out = capsys.readouterr().out
    assert "Only in one side" in out and "only in A: 1, only in B: 1" in out


def test_different_training_budgets_are_never_pooled(tmp_path):
    a = folder(tmp_path / "a", [r for s in range(2) for r in run(s, {"quality/fid": (20.0 + s, "fid", QUALITY)})])
    b = folder(tmp_path / "b", [r for s in range(2) for r in run(
        s, {"quality/fid": (10.0 + s, "fid", QUALITY)}, steps=2000)])
    comparison = compare_paths(a, b)
    assert comparison.rows == []
    assert all("run.steps: A=500, B=2000" in u.reason for u in comparison.unmatched)


def test_per_seed_outcomes_in_provenance_do_not_split_groups(tmp_path):
    """Unlisted provenance entries that vary between seeds (e.g. a per-seed count) are
    outcomes; those constant within a side and different between sides are conditions."""
    a = folder(tmp_path / "a", [r for s in range(3) for r in run(
        s, {"x/score": (1.0 + s, "accuracy", {"n_hits": 10 + s, "protocol_v": "1"})})])
    b = folder(tmp_path / "b", [r for s in range(3) for r in run(
        s, {"x/score": (1.0 + s, "accuracy", {"n_hits": 20 + s, "protocol_v": "2"})})])
    assert [r.a.n for r in compare_paths(a, a).rows if r.key.metric == "x/score"] == [3]
    reasons = [u.reason for u in compare_paths(a, b).unmatched if u.key.metric == "x/score"]
    assert reasons and all("protocol_v" in why and "n_hits" not in why for why in reasons)


def test_interrupted_runs_are_left_out(tmp_path):
    records = quality_runs([20.0, 21.0], [100, 100])
    records += [record("quality/fid", 999.0, "fid", seed=7, **QUALITY)]  # no run/complete: interrupted
    a = folder(tmp_path / "a", records)
    comparison = compare_paths(a, a)
    assert row(comparison, "quality/fid").a.values == [20.0, 21.0]
    assert "1 interrupted, left out" in render(comparison)


# ---------------------------------------------------------------- n = 1


def test_one_value_per_side_has_no_interval(tmp_path, capsys):
    a = folder(tmp_path / "a", quality_runs([20.0], [100]))
    b = folder(tmp_path / "b", quality_runs([30.0], [100]))
    comparison = compare_paths(a, b)
    fid = row(comparison, "quality/fid")
    assert fid.verdict == NO_ESTIMATE and fid.interval is None and fid.method == "n=1, no interval"
    assert row(comparison, "perf/train_throughput").verdict == IDENTICAL
    assert comparison.failures(0.0) == []
    assert main(["compare", str(a), str(b), "--fail-above", "0"]) == 0  # not significant: no failure
    out = capsys.readouterr().out
    assert "n=1, no interval" in out and "1 without a noise estimate" in out


def test_timing_quantiles_give_n1_throughput_a_band(tmp_path):
    def steps(median, q20, q80):
        return {"step_seconds": {"median": median, "q20": q20, "q80": q80, "n": 100}, "batch_size": 64}

    a = folder(tmp_path / "a", run(0, {"perf/train_throughput": (64 / 0.010, "examples/s", steps(0.010, 0.009, 0.011))}))
    b = folder(tmp_path / "b", run(0, {"perf/train_throughput": (64 / 0.020, "examples/s", steps(0.020, 0.019, 0.021))}))
    thr = row(compare_paths(a, b), "perf/train_throughput")
    assert thr.method == "q20-q80" and thr.verdict == REGRESSED
    assert thr.interval == pytest.approx((64 / 0.021 - 64 / 0.009, 64 / 0.019 - 64 / 0.011))


# ---------------------------------------------------------------- kernel benchmarks


def kernel_records(time_ms, q20, q80, *, repeat=0, provider="triton", device="cuda: NVIDIA H100 80GB HBM3"):
    """What bench_records writes for one case x provider: time, TFLOP/s, peak memory; no run/complete."""
    flops = 2 * 4096**3
    prov = {"q20_ms": q20, "q80_ms": q80, "method": "triton.testing.do_bench, cold L2, median",
            "flops": flops, "tflops": flops / (time_ms * 1e-3) / 1e12, "matmul_peak_tflops": 700.0}
    common = {"suite": "kernels", "model": "attention", "objective": provider, "backend": provider,
              "dataset": "B=4,H=8,S=1024,D=64,fp16", "run_id": f"attention-{provider}", "attempt": f"stamp{repeat}",
              "device": device}
    out = [record("fwd/time", time_ms, "ms", **common, **prov),
           record("fwd/throughput", prov["tflops"], "TFLOP/s", **common, **prov),
           record("fwd_bwd/peak_memory", 2**30, "bytes", **common, measured="max_memory_allocated above baseline")]
    for r in out:
        r["precision"] = "fp16"
    return out


def test_kernel_records_use_their_own_quantiles(tmp_path, capsys):
    base = tmp_path / "kernels" / "baselines" / "main.jsonl"
    base.parent.mkdir(parents=True)
    append_records(base, kernel_records(1.00, 0.98, 1.02) + kernel_records(2.0, 1.9, 2.1, provider="eager"))
    slower = folder(tmp_path / "slower", kernel_records(1.20, 1.18, 1.23) + kernel_records(2.02, 1.92, 2.12, provider="eager"))
    comparison = compare_paths(base, slower)
    triton = {r.key.metric: r for r in comparison.rows if r.key.get("objective") == "triton"}
    assert triton["fwd/time"].verdict == REGRESSED and triton["fwd/time"].method == "q20-q80"
    assert triton["fwd/time"].interval == pytest.approx((1.18 - 1.02, 1.23 - 0.98))
    assert triton["fwd/throughput"].verdict == REGRESSED  # TFLOP/s down, band from the same timing
    assert triton["fwd_bwd/peak_memory"].verdict == IDENTICAL
    eager_time = [r for r in comparison.rows if r.key.get("objective") == "eager" and r.key.metric == "fwd/time"]
    assert eager_time[0].verdict == WITHIN_NOISE  # 2.0 -> 2.02, quantile ranges overlap
    assert main(["compare", str(base), str(slower), "--fail-above", "10"]) == 1  # +20% time
    out = capsys.readouterr().out
    assert "op = attention" in out and "| provider " in out and "case = B=4,H=8,S=1024,D=64,fp16" in out
    assert main(["compare", str(base), str(slower), "--fail-above", "25"]) == 0


def test_repeated_kernel_records_are_samples(tmp_path):
    def repeats(times):
        return [r for i, t in enumerate(times) for r in kernel_records(t, t - 0.2, t + 0.2, repeat=i)]

    a = folder(tmp_path / "a", repeats([1.00, 1.01, 0.99, 1.00]))
    b = folder(tmp_path / "b", repeats([0.80, 0.81, 0.79, 0.80]))
    time = row(compare_paths(a, b), "fwd/time")
    assert time.a.n == time.b.n == 4 and time.method == "bootstrap"
    assert time.verdict == IMPROVED  # quantile ranges overlap, but the repeats say faster
    other_gpu = folder(tmp_path / "c", [r | {"device": "cuda: NVIDIA H200"} for r in repeats([0.5])])
    assert compare_paths(a, other_gpu).rows == []  # never compared across GPU kinds
