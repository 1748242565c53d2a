"""The report's references and "not learned" marks (issue 20, point 1): a run whose headline
metric does not beat the best trivial model is counted as not learned in its Runs row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genbench.report import references, runs
from genbench.report.base import Inputs, attach_settings


def record(run_id: str, objective: str, dataset: str, metric: str, value: float, provenance: dict) -> dict:
    return {"run_id": run_id, "git_commit": "c" * 40, "suite": "s", "model": "m", "objective": objective,
            "dataset": dataset, "precision": "fp32", "backend": "none", "device": "cpu", "step": None,
            "metric": metric, "value": value, "unit": "", "provenance": {"metric_fn": metric.split("/")[0], **provenance}}


def frame() -> pd.DataFrame:
    ring = {"n_samples": 2500}
    rows = [record("flat", "a", "toy2d-ring8", "coverage/high_quality_pct", 0.2, ring),  # below the box (~0.5%)
            record("good", "b", "toy2d-ring8", "coverage/high_quality_pct", 60.0, ring),
            record("nan", "c", "toy2d-ring8", "coverage/high_quality_pct", float("nan"), ring),
            record("worse", "d", "digits", "test/nll_bpd", 6.35, {"convention": "dequantised"}),  # histogram: 5.39
            record("better", "e", "digits", "test/nll_bpd", 3.0, {"convention": "dequantised"}),
            record("binary", "f", "digits", "test/nll_bpd", 0.57, {"convention": "bernoulli: binarised"})]
    rows += [{**r, "metric": "run/diverged", "value": 0.0} for r in rows]
    return attach_settings(pd.DataFrame(rows))


def test_runs_that_do_not_beat_the_best_trivial_model_are_judged_not_learned():
    judged = {run: j.not_learned for run, j in references.judged_runs(frame()).items()}
    assert judged == {"flat": True, "good": False, "nan": True, "worse": True, "better": False}  # binarised: no reference


def test_the_runs_table_counts_them_and_the_references_section_shows_the_trivial_rows():
    inputs = Inputs(frame(), (Path("."),), Path("figures"), Path("."))
    table = runs.section(inputs)
    assert "not learned" in table.splitlines()[0]
    row = {line.split("|")[2].strip(): line for line in table.splitlines()[2:] if line.startswith("|")}
    assert "1/1" in row["a"] and "0/1" in row["b"] and "1/1" in row["d"]
    text = references.section(inputs)
    assert "fitted Gaussian" in text and "uniform box" in text and "held-out data" in text
    assert "per-pixel independent 256-way histogram 5.39" in text
