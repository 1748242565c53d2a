"""Distributions over seeds: per dataset, the headline metric of every run, one column per
model/objective (box + each seed as a dot); failed runs are counted in the column label."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from genbench.harness.store import DIVERGED_METRIC
from genbench.report.base import Inputs, better_label, rel, save_figure, short
from genbench.utils.hashing import json_hash

TITLE = "Distributions over seeds"
HEADLINE = ("quality/fid", "coverage/modes_captured", "test/nll_bpd")  # per data kind: the first recorded


def section(inputs: Inputs) -> str:
    parts = []
    for dataset, rows in inputs.final.groupby("dataset", sort=True):
        metric = next((m for m in HEADLINE if m in set(rows["metric"])), None)
        if metric is not None:
            path = distribution_figure(dataset, rows, metric, inputs)
            parts.append(f"**{dataset}**: `{metric}`, every seed a dot\n\n![distribution]({rel(path, inputs.out_dir)})")
    return "\n\n".join(parts) or "(no headline metric recorded)"


def distribution_figure(dataset: str, rows: pd.DataFrame, metric: str, inputs: Inputs):
    groups = sorted(rows["group"].unique())
    one_model = rows["model"].nunique() == 1
    values, labels = [], []
    for group in groups:
        runs = rows[rows["group"] == group]
        values.append(runs[runs["metric"] == metric]["value"].dropna().tolist())
        failed = runs[runs["metric"].isin([DIVERGED_METRIC, "stability/failed"])].groupby("run_id")["value"].max()
        first = runs.iloc[0]
        name = first["objective"] if one_model else f"{first['model']}\n{first['objective']}"
        name += f"\n{first['settings']}" if first["settings"] else ""
        labels.append(f"{name}\nfailed {int(failed.sum())}/{len(failed)}")
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(groups)), 4))
    ax.boxplot([v if v else [float("nan")] for v in values], showfliers=False)
    for i, v in enumerate(values, 1):
        ax.scatter([i] * len(v), v, s=12, zorder=3)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel(short(metric) + better_label(rows[rows["metric"] == metric].iloc[0]), fontsize=8)
    model = rows["model"].iloc[0] if one_model else "several models"
    ax.set_title(f"{dataset}: {model}", fontsize=8)
    return save_figure(fig, inputs.figures / f"distribution-{json_hash(dataset)}.png")

