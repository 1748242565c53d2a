"""Stability: adversarial runs' failures by rule, and the quality the monitor recorded over
training (final and best; the `stability/*` records of genbench/train/stability.py).

Failures are the report's verdicts (report/verdicts.py), which re-judge collapse from the
per-interval records with the noise-aware rule; the monitor's own `stability/failed` and
`stability/collapse_step` records, written with the rule of the code that made the run,
stay in the records and are not shown here.
"""

from __future__ import annotations

import pandas as pd

from genbench.report.base import GROUP, Inputs, short
from genbench.report.tables import drop_uniform, markdown_table, mean_std
from genbench.report.verdicts import FAILURE_NOTE, group_failures

TITLE = "Stability"
SUPERSEDED = ("stability/failed", "stability/collapse_step", "stability/collapsed")


def section(inputs: Inputs) -> str:
    final = inputs.final
    stab = final[final["metric"].str.startswith("stability/")]
    if stab.empty:
        return "(no stability records: only adversarial training records them)"
    failures = group_failures(stab, inputs.verdicts, GROUP)
    rows = [group_row(group, runs, failures[group]) for group, runs in stab.groupby(GROUP, sort=True)]
    return markdown_table(drop_uniform(pd.DataFrame(rows)).fillna("")) + "\n\n" + FAILURE_NOTE


def group_row(group: tuple, runs: pd.DataFrame, failures: dict) -> dict:
    row = {**dict(zip(GROUP, group)), "failed": failures["failed"], "rules": failures["rules"]}
    for metric in sorted(set(runs["metric"]) - set(SUPERSEDED)):
        row[short(metric)] = mean_std(runs[runs["metric"] == metric]["value"])
    return row
