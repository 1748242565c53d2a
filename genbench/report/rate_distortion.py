"""Rate and distortion: KL (nats) against reconstruction NLL (nats) per model and dataset,
one point per objective setting (e.g. a sweep of beta), mean over seeds with the seeds'
spread as error bars (Alemi et al. 2018, "Fixing a Broken ELBO")."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from genbench.report.base import SETTING, Inputs, rel, save_figure, setting_values
from genbench.report.tables import markdown_table, mean_std
from genbench.utils.hashing import json_hash

TITLE = "Rate and distortion"
RATE, DISTORTION = "test/kl", "test/elbo_recon_nll"
NOTE = ("Test-split terms of the single-sample ELBO (metric `elbo`): rate = KL, distortion = "
        "reconstruction NLL; their sum is -ELBO. Shown where one model and dataset were trained "
        "under two or more objective settings.\n\n")


def section(inputs: Inputs) -> str:
    final = inputs.final
    rd = final[final["metric"].isin([RATE, DISTORTION])]
    if rd.empty:
        return "(no run recorded a KL and a reconstruction term)"
    values = rd.pivot_table(index=[*SETTING, "objective", "run_id"], columns="metric",
                            values="value").dropna().reset_index()
    parts = [setting_part(setting, runs, inputs) for setting, runs in values.groupby(SETTING, sort=True)]
    parts = [p for p in parts if p]
    return NOTE + ("\n\n".join(parts) or "(no model was trained under more than one objective setting)")


def setting_part(setting: tuple, runs: pd.DataFrame, inputs: Inputs) -> str:
    """The table and figure of one model and dataset; '' with fewer than two objectives."""
    model, dataset = setting[:2]
    title = f"{model} on {dataset} | " + " | ".join(setting_values(setting)[2:])
    stats = runs.groupby("objective")[[RATE, DISTORTION]].agg(["mean", "std", "count"])
    if len(stats) < 2:
        return ""
    stats = stats.sort_values((RATE, "mean"))
    path = rd_figure(stats, title, inputs.figures / f"rate-distortion-{json_hash(setting_values(setting))}.png")
    rows = [{"objective": obj, "rate (KL nats)": mean_std(runs[runs["objective"] == obj][RATE]),
             "distortion (recon NLL nats)": mean_std(runs[runs["objective"] == obj][DISTORTION])}
            for obj in stats.index]
    return f"**{title}**\n\n{markdown_table(pd.DataFrame(rows))}\n\n![rate-distortion]({rel(path, inputs.out_dir)})"


def rd_figure(stats: pd.DataFrame, title: str, path):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for objective, row in stats.iterrows():
        ax.errorbar(row[(RATE, "mean")], row[(DISTORTION, "mean")], xerr=row[(RATE, "std")],
                    yerr=row[(DISTORTION, "std")], fmt="o", capsize=2)
        ax.annotate(objective, (row[(RATE, "mean")], row[(DISTORTION, "mean")]), fontsize=6)
    ax.plot(stats[(RATE, "mean")], stats[(DISTORTION, "mean")], lw=0.8, color="grey")
    ax.set_xlabel("rate: KL(q(z|x) || p(z)), nats")
    ax.set_ylabel("distortion: -log p(x|z), nats")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
