"""The report's likelihood sections from real runs: tiny PixelCNN, Glow and VAE runs on
8x8 digits through the runner, then report.md's "Likelihood across families", "Anomaly
detection by likelihood" and "Autoregressive samplers" sections; and the likelihood suite
file resolves."""

from __future__ import annotations

import re

import pytest

from genbench.report import render_report
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import read_records
from genbench.harness.suites import SUITES_DIR, parse_suite

TINY = [
    {"model": "pixelcnn", "model_options": {"hidden": 6, "layers": 2, "first_kernel": 3}},
    {"model": "glow", "model_options": {"levels": 1, "steps_per_level": 1, "hidden": 8}},
    {"model": "vae", "model_options": {"likelihood": "gaussian", "hidden": 32, "latent_dim": 4}},
]


def section(report: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[str, list[dict]]:
    out = tmp_path_factory.mktemp("likelihood")
    base = {"dataset": "digits?size=8", "device": "cpu", "steps": 6, "batch_size": 16, "eval_samples": 100,
            "eval_batch": 25, "log_every": 3, "warmup_steps": 2, "iwae_k": 4}
    runs = resolve_all([run_config({**base, **entry}, "test") for entry in TINY], "test")
    run_all(runs, out, progress=False, echo=lambda s: None)
    return render_report([out]).read_text(), read_records(out / "results.jsonl")


def test_one_bits_per_dim_table_across_families_sorted_best_first(report):
    text, records = report
    part = section(text, "Likelihood across families")
    rows = [line for line in part.splitlines() if line.startswith("| ") and "bits/dim" not in line
            and not line.startswith("| model ")]
    table_rows = [r for r in rows if re.match(r"\| (pixelcnn|glow|vae)", r)]
    models = [r.split("|")[1].strip().split("[")[0] for r in table_rows[:3]]
    assert sorted(models) == ["glow", "pixelcnn", "vae"]
    bpd = {r["model"].split("[")[0]: r["value"] for r in records if r["metric"] == "test/nll_bpd"}
    assert models == sorted(bpd, key=bpd.get)  # best (lowest) bits/dim first
    for estimator in ("exact", "IWAE bound, K=4"):
        assert estimator in part
    assert "uniformly dequantised" in part and "exact discrete NLL" in part  # each model's convention
    assert "### Model families" in part and "autoregressive" in part and "flow" in part


def test_anomaly_section_has_an_auroc_per_other_dataset(report):
    text, records = report
    part = section(text, "Anomaly detection by likelihood")
    header = next(line for line in part.splitlines() if line.startswith("| model"))
    assert "AUROC vs shapes" in header and "AUROC vs photos" in header
    aurocs = [r for r in records if r["metric"].startswith("anomaly/auroc@")]
    assert len(aurocs) == 2 * len(TINY) and all(0.0 <= r["value"] <= 1.0 for r in aurocs)
    flagged = [r for r in aurocs if r["value"] < 0.5]
    assert ("Known failure" in part) == bool(flagged)


def test_autoregressive_sampler_section_reports_both_samplers(report):
    text, _ = report
    part = section(text, "Autoregressive samplers")
    assert "samples_per_s@naive" in part and "samples_per_s@cached" in part and "identical" in part
    assert re.search(r"\| pixelcnn[^|]*\| digits\?size=8", part)


def test_the_likelihood_suite_resolves():
    suite = parse_suite("likelihood", SUITES_DIR / "likelihood.toml")
    runs = resolve_all(suite.runs, "likelihood")
    models = {r.config.model for r in runs}
    assert {"vae", "pixelcnn", "realnvp", "glow", "ddpm", "vq-vae", "wavenet"} <= models
    objectives = {(r.config.model, r.objective.name) for r in runs}
    assert ("vae", "iwae") in objectives and ("vae", "elbo") in objectives


def test_precisions_stay_apart_and_binarised_data_get_their_own_table(tmp_path):
    """A setting is never averaged with another precision, and bits/dim on binarised data
    (Bernoulli decoders) are not ranked beside bits/dim on the 8-bit levels."""
    base = {"model": "vae", "dataset": "digits?size=8", "device": "cpu", "steps": 4, "batch_size": 16,
            "eval_samples": 100, "eval_batch": 25, "warmup_steps": 1, "iwae_k": 2}
    gaussian = {"likelihood": "gaussian", "hidden": 16, "latent_dim": 2}
    entries = [{"model_options": gaussian}, {"model_options": gaussian, "precision": "bf16"},
               {"model_options": {**gaussian, "likelihood": "bernoulli"}}]
    runs = resolve_all([run_config({**base, **entry}, "test") for entry in entries], "test")
    run_all(runs, tmp_path, progress=False, echo=lambda s: None)
    text = render_report([tmp_path]).read_text()

    part = section(text, "Likelihood across families")
    eight_bit, binarised = part.split("### digits?size=8, binarised")
    header = next(line for line in eight_bit.splitlines() if line.startswith("| model"))
    assert "| precision" in header
    rows = [line for line in eight_bit.splitlines() if line.startswith("| vae[")]
    assert len(rows) == 2 and {"fp32", "bf16"} == {r.split("|")[3].strip() for r in rows}
    assert all("(n=1)" in r for r in rows)  # one seed each: not pooled into n=2
    assert len([line for line in binarised.splitlines() if line.startswith("| vae[")]) == 1
    assert "binarisation" in binarised and "binarisation" not in eight_bit

    anomaly = [line for line in section(text, "Anomaly detection by likelihood").splitlines()
               if line.startswith("| vae[")]
    assert len(anomaly) == 3 and not any("(n=2)" in line for line in anomaly)
