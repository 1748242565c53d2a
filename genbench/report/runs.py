"""Runs: how many runs each group has, how many failed and by which rule, and how many did
not beat the best trivial model (a failure is a result, not a gap)."""

from __future__ import annotations

import pandas as pd

from genbench.report.base import DIRTY_MARK, GROUP, Inputs, short_commit
from genbench.report.tables import drop_uniform, markdown_table
from genbench.report.verdicts import FAILURE_NOTE, NOT_LEARNED_NOTE, group_failures

TITLE = "Runs"


def section(inputs: Inputs) -> str:
    """Runs and failures per group."""
    rows = []
    failures = group_failures(inputs.final, inputs.verdicts, GROUP)
    for group, runs in inputs.final.groupby(GROUP, sort=True):
        commits = sorted({short_commit(c) for c in runs.drop_duplicates("run_id")["git_commit"].fillna("unknown")})
        rows.append({**dict(zip(GROUP[:5], group[:5])), "settings": group[-1], "runs": runs["run_id"].nunique(),
                     **failures[group], "code": ", ".join(commits)})
    # The header names the commit when there is one: the column shows only where rows differ,
    # or where a row's runs came from a modified working tree.
    frame = pd.DataFrame(rows)
    keep = frame["code"].str.contains(DIRTY_MARK).any() if len(frame) else False
    marked = len(frame) and frame["not learned"].astype(bool).any()
    if not marked:
        frame = frame.drop(columns="not learned")
    table = markdown_table(drop_uniform(frame, ["settings"] + ([] if keep else ["code"])))
    return table + "\n\n" + FAILURE_NOTE + (" " + NOT_LEARNED_NOTE if marked else "")
