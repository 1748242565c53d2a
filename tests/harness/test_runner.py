"""The runner end to end: records, measurements, divergence, determinism, resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from genbench.errors import ConfigError, UnknownNameError
from genbench.report import render_report
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import FIELDS, completed_records, read_records
from genbench.objectives.autoencoding import ReconOptions, recon_loss
from genbench.objectives.base import register_objective
from genbench.registry import LOSSES

REPO = Path(__file__).resolve().parents[2]


def make_runs(*entries, suite="test"):
    # A small evaluation set keeps these harness tests fast; metrics have their own tests.
    return resolve_all([run_config({"device": "cpu", "eval_samples": 200, **e}, "test") for e in entries], suite)


def by_metric(records):
    out = {}
    for r in records:
        out.setdefault(r["metric"], []).append(r)
    return out


def test_tiny_vae_run_records_everything(tmp_path):
    runs = make_runs({"model": "vae", "steps": 30, "log_every": 5, "warmup_steps": 5})
    run_all(runs, tmp_path, progress=False)
    records = read_records(tmp_path / "results.jsonl")
    assert all(set(r) == set(FIELDS) for r in records)
    m = by_metric(records)
    losses = m["train/loss"]
    assert [r["step"] for r in losses] == [1, 5, 10, 15, 20, 25, 30]
    assert len(m["train/grad_norm"]) == len(losses) and all(r["value"] > 0 for r in m["train/grad_norm"])
    for metric in ("perf/train_throughput", "perf/sample_throughput", "perf/peak_memory", "time/train",
                   "time/evaluate", "test/elbo", "test/kl", "test/neg_elbo_bpd", "test/recon_mse"):
        assert len(m[metric]) == 1 and m[metric][0]["value"] > 0 or metric == "test/elbo", metric
    assert m["test/elbo"][0]["value"] < 0  # an ELBO of binary data is a log-probability
    assert m["run/diverged"][0]["value"] == 0.0
    complete = m["run/complete"][0]
    assert complete is records[-1]
    assert complete["backend"] == "torch" and complete["provenance"]["kernel_backends"] == {"reparam_kl": "torch"}
    for path in complete["provenance"]["artefacts"].values():
        assert (tmp_path / path).stat().st_size > 100
    assert m["test/elbo"][0]["provenance"]["n_examples"] == complete["provenance"]["dataset"]["n_test"]


@pytest.fixture
def nan_objective():
    """An autoencoder objective whose loss turns NaN at step 5."""
    calls = {"n": 0}

    def nan_at_five(model, x, options, generator, step=None):
        calls["n"] += 1
        terms = recon_loss(model, x, options, generator)
        if calls["n"] >= 5:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    register_objective("test-nan", "autoencoder", ReconOptions, "test only")(nan_at_five)
    yield "test-nan"
    LOSSES.unregister("test-nan")


def test_forced_nan_is_recorded_as_diverged_and_suite_goes_on(tmp_path, nan_objective):
    runs = make_runs({"model": "ae", "objective": nan_objective, "steps": 50},
                     {"model": "ae", "steps": 10})
    run_all(runs, tmp_path, progress=False)
    records = completed_records(read_records(tmp_path / "results.jsonl"))
    first = [r for r in records if r["run_id"] == runs[0].run_id]
    second = [r for r in records if r["run_id"] == runs[1].run_id]
    diverged = by_metric(first)["run/diverged"][0]
    assert diverged["value"] == 1.0 and diverged["provenance"]["at_step"] == 5
    assert "non-finite loss" in diverged["provenance"]["reason"]
    assert not [r for r in first if r["metric"].startswith("test/")]  # no quality from a diverged run
    nan_loss = [r for r in first if r["metric"] == "train/loss" and r["step"] == 5][0]
    assert nan_loss["value"] is None and nan_loss["provenance"]["nonfinite"] == "nan"
    assert by_metric(second)["run/diverged"][0]["value"] == 0.0  # the suite went on
    assert "test/recon_mse" in by_metric(second)
    render_report([tmp_path])
    summary = {row["objective"]: row for row in csv.DictReader((tmp_path / "summary.csv").open())}
    assert summary[nan_objective]["failed_rules"] == "diverged 1"  # the failure is counted, with its rule
    assert "diverged" not in summary["recon"]["failed_rules"]  # (10 steps may not beat the references)


def test_a_metric_that_fails_is_recorded_and_evaluation_goes_on(tmp_path):
    from genbench.metrics.base import register_metric
    from genbench.registry import METRICS

    @register_metric("test-broken", lambda model, info: True, "test only")
    def broken(ctx):
        raise ValueError("samples contain NaN")

    try:
        run_all(make_runs({"model": "ae", "steps": 3}), tmp_path, progress=False)
    finally:
        METRICS.unregister("test-broken")
    m = by_metric(read_records(tmp_path / "results.jsonl"))
    assert m["test-broken/failed"][0]["value"] is None
    assert m["test-broken/failed"][0]["provenance"]["error"] == "samples contain NaN"
    assert "quality/fid" in m and "run/complete" in m  # the other metrics and the run went on


def test_seed_fully_determines_a_cpu_run(tmp_path):
    def curve(out, seed):
        run_all(make_runs({"model": "vae", "steps": 20, "log_every": 2, "seed": seed,
                           "model_options": {"arch": "conv"}}), out, progress=False)
        recs = read_records(out / "results.jsonl")
        return [(r["metric"], r["step"], r["value"]) for r in recs
                if r["metric"].startswith(("train/", "test/"))]

    a, b, c = curve(tmp_path / "a", 3), curve(tmp_path / "b", 3), curve(tmp_path / "c", 4)
    assert a == b
    assert a != c


def test_rerun_skips_completed_runs(tmp_path):
    runs = make_runs({"model": "ae", "steps": 5}, {"model": "vae", "steps": 5})
    run_all(runs, tmp_path, progress=False)
    size = (tmp_path / "results.jsonl").stat().st_size
    messages = []
    run_all(runs, tmp_path, progress=False, echo=messages.append)
    assert (tmp_path / "results.jsonl").stat().st_size == size
    assert sum("skipped" in m for m in messages) == 2


SUITE = """
[defaults]
dataset = "digits"
device = "cpu"
eval_samples = 200
[[runs]]
model = "ae"
steps = 5
[[runs]]
model = "vae"
steps = 3000
log_every = 1
"""


def records_so_far(path):
    """The records of a file another process is appending to (its last line may be torn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_records(path)


def test_killed_suite_resumes(tmp_path):
    suite = tmp_path / "resume.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "genbench", "run", "--suite", str(suite), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    try:  # wait until the second run has started training, then kill the whole process
        while time.time() < deadline:
            if results.is_file() and sum(r["model"] == "vae" for r in records_so_far(results)) >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the second run never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    partial = read_records(results)  # every line is whole after a SIGKILL
    assert len({r["run_id"] for r in completed_records(partial)}) == 1

    # Resume: the same suite file, with the long run made short (its records are a
    # different run, since steps are part of the run id). The completed first run must be
    # skipped and the killed attempt ignored.
    suite.write_text(SUITE.replace("steps = 3000", "steps = 4"))
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[1/2] ae / recon / digits / seed 0: complete" in done.stderr
    records = read_records(results)
    completed = completed_records(records)
    assert len({r["run_id"] for r in completed}) == 2
    killed_attempts = {r["attempt"] for r in records} - {r["attempt"] for r in completed}
    assert len(killed_attempts) == 1  # the killed attempt's lines stay, but do not count
    assert Path(done.stdout.strip().splitlines()[-1]).is_file()  # the report's path


def test_bad_names_and_options_fail_before_anything_runs(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean 'vae'"):
        make_runs({"model": "vea"})
    with pytest.raises(ConfigError, match="latent_dm"):
        make_runs({"model": "vae", "model_options": {"latent_dm": 3}})
    with pytest.raises(ConfigError, match="trains vae models"):
        make_runs({"model": "ae", "objective": "elbo"})
    with pytest.raises(ConfigError, match="Run 1 and Run 2 both give the run ae / recon / digits / seed 0"):
        make_runs({"model": "ae"}, {"model": "ae"})
    assert not list(tmp_path.iterdir())


def test_triton_backend_on_cpu_without_interpreter_fails_validation(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):
        make_runs({"model": "vae", "backend": "triton"})
    make_runs({"model": "ae", "backend": "triton"})  # no kernel ops: nothing to check


def test_vae_run_with_triton_backend_records_it(tmp_path):
    run_all(make_runs({"model": "vae", "backend": "triton", "steps": 3, "eval_batch": 512}), tmp_path, progress=False)
    complete = by_metric(read_records(tmp_path / "results.jsonl"))["run/complete"][0]
    assert complete["backend"] == "triton"
    assert complete["provenance"]["kernel_backends"] == {"reparam_kl": "triton"}


def test_conv_model_on_points_is_a_clear_error(tmp_path):
    runs = make_runs({"model": "vae", "dataset": "toy2d-ring8", "model_options": {"arch": "conv"}})
    with pytest.raises(ConfigError, match="arch='mlp'"):
        run_all(runs, tmp_path, progress=False)


def test_vae_on_points_records_nats_without_bits_per_dim(tmp_path):
    runs = make_runs({"model": "vae", "dataset": "toy2d-ring8", "steps": 20,
                      "model_options": {"likelihood": "gaussian"}})
    run_all(runs, tmp_path, progress=False)
    m = by_metric(read_records(tmp_path / "results.jsonl"))
    assert "test/elbo" in m and "test/neg_elbo_bpd" not in m
    assert "unquantised" in m["test/elbo"][0]["provenance"]["convention"]
