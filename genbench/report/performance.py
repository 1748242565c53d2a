"""Performance: training and sampling throughput, peak memory and training time per group,
with how each was measured (the runner's perf/* and time/* records)."""

from __future__ import annotations

import pandas as pd

from genbench.report.base import GROUP, Inputs
from genbench.report.tables import drop_blank, drop_uniform, markdown_table, mean_std
from genbench.report.verdicts import verdict_cell

TITLE = "Performance"
# Metrics shown in the performance table, with how to display them.
PERF_COLUMNS = {
    "perf/train_throughput": ("train ex/s", 1.0),
    "perf/sample_throughput": ("samples/s", 1.0),
    "perf/peak_memory": ("peak mem MiB", 1 / 2**20),
    "time/train": ("train s", 1.0),
}


def section(inputs: Inputs) -> str:
    return perf_table(inputs.final, inputs.verdicts) + "\n\n" + perf_note(inputs.final)


def perf_table(final: pd.DataFrame, verdicts: dict) -> str:
    rows = []
    for group, runs in final.groupby(GROUP, sort=True):
        row = dict(zip(["model", "objective", "dataset", "precision", "backend"], group[:5]))
        row["settings"] = group[-1]
        row["verdict"] = verdict_cell(runs["run_id"], verdicts)
        for metric, (title, scale) in PERF_COLUMNS.items():
            row[title] = mean_std(runs[runs["metric"] == metric]["value"] * scale)
        rows.append(row)
    return markdown_table(drop_blank(drop_uniform(pd.DataFrame(rows), ["settings"]).fillna(""), "verdict"))


def perf_note(final: pd.DataFrame) -> str:
    mem = final[final["metric"] == "perf/peak_memory"]["provenance"]
    kinds = sorted({p.get("measured", "") for p in mem})
    thr = final[final["metric"] == "perf/train_throughput"]["provenance"]
    methods = sorted({f"{p.get('method')}, first {p.get('warmup_steps')} steps excluded" for p in thr})
    return "\n".join(
        [f"- training throughput: {m}" for m in methods]
        + [f"- peak memory: {k}" for k in kinds]
        + ["- sampling throughput: median of timed batches after a warm-up; see records for quantiles"]
    )
