"""Stability: adversarial runs' failure rate, collapses, time to collapse, final and best
quality (the `stability/*` records of genbench/train/stability.py)."""

from __future__ import annotations

import pandas as pd

from genbench.report.base import GROUP, Inputs, short
from genbench.report.tables import drop_uniform, markdown_table, mean_std

TITLE = "Stability"
FAILED, COLLAPSE_STEP = "stability/failed", "stability/collapse_step"
NOTE = ("failed = diverged, or collapsed at the final evaluation; collapse rule and interval "
        "quality per step are in the records (`stability/*`).")


def section(inputs: Inputs) -> str:
    final = inputs.final
    stab = final[final["metric"].str.startswith("stability/")]
    if stab.empty:
        return "(no stability records: only adversarial training records them)"
    rows = [group_row(group, runs) for group, runs in stab.groupby(GROUP, sort=True)]
    return markdown_table(drop_uniform(pd.DataFrame(rows)).fillna("")) + "\n\n" + NOTE


def group_row(group: tuple, runs: pd.DataFrame) -> dict:
    row = dict(zip(GROUP, group))
    failed = runs[runs["metric"] == FAILED]["value"]
    row["failed"] = f"{int(failed.sum())}/{len(failed)}"
    collapse = runs[runs["metric"] == COLLAPSE_STEP]["value"]
    row["collapsed"] = f"{int(collapse.notna().sum())}/{len(collapse)}"
    row["collapse step"] = mean_std(collapse)
    for metric in sorted(set(runs["metric"]) - {FAILED, COLLAPSE_STEP}):
        row[short(metric)] = mean_std(runs[runs["metric"] == metric]["value"])
    return row
