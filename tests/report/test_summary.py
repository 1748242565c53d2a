"""summary.csv (issue 20, point 8): one row per group with its full settings, n, failures,
"not learned" and the headline's median with a 95% bootstrap interval over seeds."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from genbench.harness.store import COMPLETE_METRIC, DIVERGED_METRIC
from pathlib import Path

from genbench.report.base import Inputs, attach_settings
from genbench.report.summary import summary_csv


def run(run_id: str, fid: float | None, diverged: float = 0.0, lr: float = 1e-3) -> list[dict]:
    common = {"run_id": run_id, "git_commit": "c" * 40, "suite": "s", "model": "gan", "objective": "hinge",
              "dataset": "digits", "precision": "fp32", "backend": "none", "device": "cpu", "step": None,
              "unit": ""}
    rows = [{**common, "metric": COMPLETE_METRIC, "value": 1.0,
             "provenance": {"config": {"run": {"steps": 200, "lr": lr, "eval_samples": 1000}}}},
            {**common, "metric": DIVERGED_METRIC, "value": diverged, "provenance": {}}]
    if fid is not None:
        rows.append({**common, "metric": "quality/fid", "value": fid, "provenance": {"metric_fn": "quality"}})
    return rows


def summary(rows: list[dict]) -> pd.DataFrame:
    inputs = Inputs(attach_settings(pd.DataFrame(rows)), (Path("."),), Path("figures"), Path("."))
    return pd.read_csv(io.StringIO(summary_csv(inputs)))


def test_one_row_per_group_with_settings_failures_and_the_headline_interval():
    fids = [30.0, 50.0, 40.0, 45.0]
    table = summary([r for i, f in enumerate(fids) for r in run(f"r{i}", f)] + run("r9", None, diverged=1.0))
    (row,) = table.to_dict("records")
    assert (row["n"], row["failed"], row["failed_rules"]) == (5, 1, "diverged 1")
    assert (row["steps"], row["lr"], row["eval_samples"]) == (200, 1e-3, 1000)
    assert row["headline"] == "quality/fid" and row["median"] == pytest.approx(42.5)  # numpy's median of the four
    assert min(fids) <= row["ci95_low"] <= row["median"] <= row["ci95_high"] <= max(fids)


def test_different_settings_are_different_rows_and_one_seed_has_no_spread():
    table = summary(run("a", 30.0, lr=1e-3) + run("b", 60.0, lr=3e-4))
    assert sorted(table["lr"]) == [3e-4, 1e-3] and list(table["n"]) == [1, 1]
    assert (table["ci95_low"] == table["median"]).all() and (table["ci95_high"] == table["median"]).all()
