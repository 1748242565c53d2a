"""The report's "Diffusion samplers" section from synthetic records, and the diffusion suite file."""

from __future__ import annotations

import re

from genbench.report import render_report
from genbench.harness.spec import resolve_all
from genbench.harness.store import SCHEMA_VERSION, append_records
from genbench.harness.suites import SUITES_DIR, parse_suite
from genbench.metrics.samplers import sweep_points

OBJECTIVES = ("ddpm-simple", "ddpm-vlb")


def record(run_id, objective, seed, metric, value, unit, **provenance):
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "attempt": "a" + run_id, "suite": "diffusion",
        "model": "ddpm", "objective": objective, "dataset": "digits", "seed": seed, "step": None,
        "metric": metric, "value": value, "unit": unit, "backend": "torch", "device": "cpu: test (2 threads)",
        "precision": "fp32", "versions": {"torch": "x", "triton": None, "genbench": "0", "python": "3",
                                          "numpy": "1"},
        "git_commit": None, "timestamp": "2025-01-01T00:00:00+00:00", "provenance": provenance,
    }


def synthetic_run(objective, seed, timesteps=50):
    """The records one ddpm run would write: sweep, likelihood, quality, perf, status."""
    run_id = f"{objective}-{seed}"
    rows = []
    for point in sweep_points(timesteps):
        prov = {"metric_fn": "sampler_sweep", **point.provenance(), "timesteps": timesteps, "n_samples": 500,
                "sample_seed": seed, "weights": "EMA", "device": "cpu: test (2 threads)",
                "extractor": "genbench-classifier", "extractor_weights_hash": "abc"}
        penalty = 3.0 if point.variance == "fixed-large" else 1.0
        fid = penalty * 100.0 / point.steps + seed + (5.0 if objective == "ddpm-vlb" else 0.0)
        rows += [record(run_id, objective, seed, f"sampler/fid@{point.label}", fid, "fid", **prov),
                 record(run_id, objective, seed, f"sampler/kid@{point.label}", fid / 1000, "kid", **prov),
                 record(run_id, objective, seed, f"sampler/samples_per_s@{point.label}", 5000.0 / point.steps,
                        "samples/s", **prov, timing="batch / median time")]
    lik = {"metric_fn": "likelihood", "estimator": "variational bound", "convention": "dequantised",
           "n_examples": 359, "split": "test"}
    rows += [
        record(run_id, objective, seed, "test/nll", 400.0 - seed, "nats/example", **lik),
        record(run_id, objective, seed, "test/nll_bpd", (2.5 if objective == "ddpm-vlb" else 3.0) - seed / 100,
               "bits/dim", **lik),
        record(run_id, objective, seed, "quality/fid", 10.0 + seed, "fid", metric_fn="quality",
               samples="ddpm fixed-small, T steps, EMA weights"),
        record(run_id, objective, seed, "perf/train_throughput", 800.0 + seed, "examples/s",
               method="batch_size / median step time (synchronised)", warmup_steps=20),
        record(run_id, objective, seed, "perf/sample_throughput", 40.0, "samples/s"),
        record(run_id, objective, seed, "run/diverged", 0.0, "bool"),
        record(run_id, objective, seed, "run/complete", 1.0, "bool", artefacts={}, kernel_backends={},
               dataset={"content_hash": "h", "n_train": 1438, "n_test": 359}, config={"run": {"steps": 10}}),
    ]
    return rows


def test_sampler_section_tables_figures_and_bound_view(tmp_path):
    append_records(tmp_path / "results.jsonl",
                   [r for objective in OBJECTIVES for seed in (0, 1) for r in synthetic_run(objective, seed)])
    report = render_report([tmp_path]).read_text()
    section = report.split("## Diffusion samplers")[1].split("## Stability")[0]

    # One table per objective: a row per (sampler, steps), FID / KID / samples/s with the seeds' spread.
    assert "### ddpm on digits" in section
    for objective in OBJECTIVES:
        assert f"*{objective}* (fp32, backend torch" in section
    header = next(line for line in section.splitlines() if line.startswith("| sampler"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["sampler", "steps", "FID", "KID ×1000", "samples/s"]
    rows = [line for line in section.splitlines() if re.match(r"\| (DDPM|DDIM)", line)]
    assert len(rows) == 2 * 9  # 2 objectives x (3 samplers x steps {10, 20, 50})
    simple_10 = next(r for r in rows if r.startswith("| DDPM fixed-small ") and "|      10 |" in r)
    assert "10.5 ± 0.71 (n=2)" in simple_10  # FID 100/10 + seed over seeds 0, 1
    assert simple_10.count("10.5 ± 0.71 (n=2)") == 2  # and KID = FID / 1000, shown x1000
    assert "500 ± 0 (n=2)" in simple_10  # samples/s
    assert any(r.startswith("| DDPM fixed-large ") for r in rows) and any(r.startswith("| DDIM eta=0 ") for r in rows)

    # Figures: quality and speed against steps, and bits/dim against FID.
    assert re.search(r"!\[sampler sweep\]\(figures/samplers-\w+\.png\)", section)
    assert re.search(r"!\[likelihood bound vs FID\]\(figures/bound-\w+\.png\)", section)
    assert len(list((tmp_path / "figures").glob("samplers-*.png"))) == 1
    assert len(list((tmp_path / "figures").glob("bound-*.png"))) == 1

    # The bound view: one row per objective, bits/dim next to FID and training throughput.
    bound = section.split("Likelihood bound by objective")[1]
    assert "NLL bound (bits/dim)" in bound and "FID" in bound and "train ex/s" in bound
    vlb = next(line for line in bound.splitlines() if line.startswith("| ddpm-vlb"))
    assert "2.495 ± 0.0071 (n=2)" in vlb and "800.5 ± 0.71 (n=2)" in vlb
    assert "variational bound (dequantised, 359 test examples)" in bound

    # Provenance of the sweep under it; the generic Results table points here instead.
    assert "- n_samples: 500" in section and "- weights: EMA" in section and "genbench-classifier" in section
    results = report.split("## Results")[1].split("## Distributions")[0]
    assert "### sampler_sweep\n\nIn its own section below: Diffusion samplers." in results
    assert "fid@ddim" not in results
    # Training throughput stays in the performance table.
    assert "train ex/s" in report.split("## Performance")[1]


def test_sampler_section_says_when_no_sweep_was_recorded(tmp_path):
    rows = [r for r in synthetic_run("ddpm-simple", 0) if not r["metric"].startswith("sampler/")]
    append_records(tmp_path / "results.jsonl", rows)
    report = render_report([tmp_path]).read_text()
    assert "(no run recorded a sampler sweep" in report.split("## Diffusion samplers")[1]


def test_diffusion_suite_file_parses():
    suite = parse_suite("diffusion", SUITES_DIR / "diffusion.toml")
    assert suite.description
    objectives = {run.objective for run in suite.runs}
    assert {"ddpm-simple", "ddpm-vlb"} <= objectives
    assert {run.model for run in suite.runs} == {"ddpm"}
    assert "digits" in {run.dataset for run in suite.runs}
    assert {run.seed for run in suite.runs} == {0, 1}


def test_diffusion_suite_resolves_against_the_registered_model_and_objectives():
    """Every model option and objective name in the suite exists (checked before anything runs)."""
    runs = resolve_all(parse_suite("diffusion", SUITES_DIR / "diffusion.toml").runs, "diffusion")
    assert len(runs) == 8 and {r.model_spec.family for r in runs} == {"diffusion"}
    for run in runs:
        assert run.model_options.timesteps == 100 and run.config.seed in (0, 1)
        assert run.model_options.sample_steps <= run.model_options.timesteps
