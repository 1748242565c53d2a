"""The report's precision ledger from synthetic records: speed-up against fp32 and the
quality change with its seed noise, per model."""

from __future__ import annotations

import re

from genbench.report import render_report
from genbench.harness.store import append_records
from tests.report.test_sampler_report import record


def run_records(model: str, precision: str, seed: int, throughput: float, fid: float,
                bpd: float | None = None) -> list[dict]:
    run_id = f"{model}-{precision}-{seed}"
    rows = [record(run_id, "elbo", seed, "perf/train_throughput", throughput, "examples/s",
                   method="batch_size / median step time (synchronised)", warmup_steps=20),
            record(run_id, "elbo", seed, "quality/fid", fid, "fid", metric_fn="quality"),
            *([record(run_id, "elbo", seed, "test/nll_bpd", bpd, "bits/dim", metric_fn="likelihood")]
              if bpd is not None else []),
            record(run_id, "elbo", seed, "run/diverged", 0.0, "bool"),
            record(run_id, "elbo", seed, "run/complete", 1.0, "bool", artefacts={}, kernel_backends={},
                   dataset={"content_hash": "h"}, config={})]
    for r in rows:
        r["model"], r["precision"] = model, precision
    return rows


def ledger(tmp_path, runs) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    append_records(tmp_path / "results.jsonl", [r for args in runs for r in run_records(*args)])
    text = render_report([tmp_path]).read_text()
    return re.search(r"^## Precision ledger\n(.*?)(?=^## )", text, re.S | re.M).group(1)


def row_of(part: str, model: str, precision: str, metric: str = "quality/fid") -> list[str]:
    line = next(line for line in part.splitlines()
                if line.startswith(f"| {model} ") and f"{precision} vs fp32" in line and metric in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_likelihood_model_gets_a_row_for_sample_quality_and_one_for_bits_per_dim(tmp_path):
    runs = [(m, p, seed, 100.0, 10.0 + seed, bpd + 0.01 * seed)
            for seed in (0, 1) for m, p, bpd in (("flow", "fp32", 2.0), ("flow", "bf16", 2.5))]
    part = ledger(tmp_path, runs)
    assert "free (within noise)" in row_of(part, "flow", "bf16", "quality/fid")
    bpd = row_of(part, "flow", "bf16", "test/nll_bpd")
    assert "worse" in bpd and any(c.startswith("+0.5 ±") for c in bpd)


def test_ledger_reports_speed_up_and_whether_quality_moved_beyond_seed_noise(tmp_path):
    runs = []
    for seed in (0, 1, 2):
        runs += [("vae", "fp32", seed, 100.0, 10.0 + seed * 0.1), ("vae", "bf16", seed, 180.0, 10.05 + seed * 0.1),
                 ("gan", "fp32", seed, 50.0, 20.0 + seed * 0.1), ("gan", "fp16", seed, 75.0, 30.0 + seed * 0.1)]
    part = ledger(tmp_path, runs)
    vae = row_of(part, "vae", "bf16")
    assert "1.80x (n=3/3)" in vae and "quality/fid" in vae and "free (within noise)" in vae
    gan = row_of(part, "gan", "fp16")
    assert "1.50x (n=3/3)" in gan and "worse" in gan and any(c.startswith("+10 ±") for c in gan)


def test_one_seed_gives_no_verdict_and_fp32_only_suites_explain_how_to_fill_it(tmp_path):
    part = ledger(tmp_path / "a", [("vae", "fp32", 0, 100.0, 10.0), ("vae", "bf16", 0, 150.0, 12.0)])
    assert "needs two seeds each" in row_of(part, "vae", "bf16")
    empty = ledger(tmp_path / "b", [("vae", "fp32", 0, 100.0, 10.0)])
    assert "no model was trained at both fp32 and a reduced precision" in empty
