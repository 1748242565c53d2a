"""Runs: how many runs each group has and how many diverged (a failure is a result, not a gap)."""

from __future__ import annotations

import pandas as pd

from genbench.harness.store import DIVERGED_METRIC
from genbench.report.base import GROUP, Inputs
from genbench.report.tables import drop_uniform, markdown_table

TITLE = "Runs"


def section(inputs: Inputs) -> str:
    """Runs and failures per group."""
    rows = []
    for group, runs in inputs.final.groupby(GROUP, sort=True):
        diverged = runs[runs["metric"] == DIVERGED_METRIC]["value"]
        rows.append({**dict(zip(GROUP[:5], group[:5])), "settings": group[-1], "runs": len(diverged),
                     "diverged": f"{int(diverged.sum())}/{len(diverged)}"})
    return markdown_table(drop_uniform(pd.DataFrame(rows), ["settings"]))
