"""Distributions over seeds: per dataset, the headline metric of every run (references.HEADLINES),
one column per model/objective (box + each seed as a dot, a failed seed as a cross); failed
runs are counted in the column label. The trivial references are drawn as horizontal lines
(the best trivial model dashed, held-out data dotted) and the axis is logarithmic where the
values span more than two decades."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from genbench.report.base import CONFIGURATION, Inputs, better_label, configuration_label, rel, save_figure, short
from genbench.report.references import HEADLINES, reference_lines
from genbench.utils.hashing import json_hash

TITLE = "Distributions over seeds"
LOG_SPAN = 100.0  # max / min above which the axis is logarithmic


def section(inputs: Inputs) -> str:
    parts = []
    for dataset, rows in inputs.final.groupby("dataset", sort=True):
        metric = next((m for m in HEADLINES if m in set(rows["metric"])), None)
        if metric is not None:
            path = distribution_figure(dataset, rows, metric, inputs)
            parts.append(f"**{dataset}**: `{metric}`, every seed a dot\n\n![distribution]({rel(path, inputs.out_dir)})")
    return "\n\n".join(parts) or "(no headline metric recorded)"


def distribution_figure(dataset: str, rows: pd.DataFrame, metric: str, inputs: Inputs):
    groups = dict(tuple(rows.groupby(CONFIGURATION, sort=True)))
    one_model = rows["model"].nunique() == 1
    values, failed_values, labels = [], [], []
    for key, runs in groups.items():
        scored = runs[runs["metric"] == metric].dropna(subset=["value"])
        failed = {r for r in runs["run_id"].unique() if inputs.verdicts[r].failed}
        values.append(scored["value"].tolist())
        failed_values.append(scored.loc[scored["run_id"].isin(failed), "value"].tolist())
        name = configuration_label(key, rows).replace(" · ", "\n")
        labels.append(f"{name}\nfailed {len(failed)}/{runs['run_id'].nunique()}")
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(groups)), 4))
    ax.boxplot([v if v else [float("nan")] for v in values], showfliers=False)
    for i, (v, bad) in enumerate(zip(values, failed_values), 1):
        ax.scatter([i] * len(v), v, s=12, zorder=3)
        ax.scatter([i] * len(bad), bad, s=30, marker="x", color="black", zorder=4)
    for name, value, style in reference_lines(dataset, metric, rows[rows["metric"] == metric]):
        ax.axhline(value, linestyle=style, linewidth=0.8, color="grey")
        ax.annotate(name, (len(groups) + 0.5, value), fontsize=6, color="grey", va="bottom", ha="right")
    shown = [x for v in values for x in v]
    if shown and min(shown) > 0 and max(shown) / min(shown) > LOG_SPAN:  # a zero (0 % high quality) keeps it linear
        ax.set_yscale("log")
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylabel(short(metric) + better_label(rows[rows["metric"] == metric].iloc[0]), fontsize=8)
    model = rows["model"].iloc[0] if one_model else "several models"
    ax.set_title(f"{dataset}: {model}", fontsize=8)
    return save_figure(fig, inputs.figures / f"distribution-{json_hash(dataset)}.png")

