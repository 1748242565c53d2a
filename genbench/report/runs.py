"""Runs: how many runs each group has and how many diverged (a failure is a result, not a gap)."""

from __future__ import annotations

import pandas as pd

from genbench.harness.store import DIVERGED_METRIC
from genbench.report.base import DIRTY_MARK, GROUP, Inputs, short_commit
from genbench.report.references import not_learned_column
from genbench.report.tables import drop_uniform, markdown_table

TITLE = "Runs"
NOT_LEARNED_NOTE = ("\n\n`not learned`: runs whose headline metric does not beat the best trivial model "
                    "(the References section: % high quality on 2-D mixtures, bits/dim on 8-bit images).")


def section(inputs: Inputs) -> str:
    """Runs and failures per group."""
    rows = []
    not_learned = not_learned_column(inputs.final)
    for group, runs in inputs.final.groupby(GROUP, sort=True):
        diverged = runs[runs["metric"] == DIVERGED_METRIC]["value"]
        commits = sorted({short_commit(c) for c in runs.drop_duplicates("run_id")["git_commit"].fillna("unknown")})
        rows.append({**dict(zip(GROUP[:5], group[:5])), "settings": group[-1], "runs": len(diverged),
                     "diverged": f"{int(diverged.sum())}/{len(diverged)}",
                     "not learned": not_learned.get(group, ""), "code": ", ".join(commits)})
    # The header names the commit when there is one: the column shows only where rows differ,
    # or where a row's runs came from a modified working tree.
    frame = pd.DataFrame(rows)
    keep = frame["code"].str.contains(DIRTY_MARK).any() if len(frame) else False
    if not not_learned:
        frame = frame.drop(columns="not learned")
    table = markdown_table(drop_uniform(frame, ["settings"] + ([] if keep else ["code"])))
    return table + (NOT_LEARNED_NOTE if not_learned else "")
