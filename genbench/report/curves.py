"""Training curves: one figure per group, training loss and gradient norm against step, a
line per seed (the runner's train/* records). A group is one setting (base.GROUP): runs that
differ in a setting get figures of their own, titled with it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from genbench.report.base import Inputs, rel, save_figure
from genbench.utils.hashing import json_hash

TITLE = "Training curves"
# Curves drawn per group, when recorded (single-objective and adversarial loops).
CURVE_METRICS = ["train/loss", "train/d_loss", "train/g_loss", "train/loss_enc", "train/loss_dec",
                 "train/loss_dis", "train/grad_norm", "train/grad_norm_d", "train/grad_norm_g",
                 "train/grad_norm_enc", "train/grad_norm_dec", "train/grad_norm_dis",
                 "train/mse", "train/vlb_bpd"]  # diffusion: epsilon MSE, and the bound for ddpm-vlb


def section(inputs: Inputs) -> str:
    frame = inputs.frame
    curves = frame[frame["step"].notna() & frame["metric"].isin(CURVE_METRICS)]
    parts = [f"**{group}**\n\n![training curves]({rel(curve_figure(group, runs, inputs), inputs.out_dir)})"
             for group, runs in curves.groupby("group", sort=True)]
    return "\n\n".join(parts) or "(no training curves recorded)"


def curve_figure(group: str, runs: pd.DataFrame, inputs: Inputs):
    present = [m for m in CURVE_METRICS if m in set(runs["metric"])]
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3), squeeze=False)
    axes = axes[0]
    for ax, metric in zip(axes, present):
        lines = runs[runs["metric"] == metric].groupby(["seed", "source_dir", "run_id"], sort=True)
        seeds = [seed for seed, _, _ in lines.groups]
        for (seed, source, run_id), seed_runs in lines:
            again = f" ({run_id}, {source})" if seeds.count(seed) > 1 else ""  # the same seed twice: say which run
            ax.plot(seed_runs["step"], seed_runs["value"], label=f"seed {seed}{again}", lw=1)
        ax.set_xlabel("step")
        ax.set_title(metric, fontsize=9)
        clip_first_steps(ax, runs[runs["metric"] == metric])
    axes[0].legend(fontsize=7)
    fig.suptitle(group, fontsize=8)
    return save_figure(fig, inputs.figures / f"curves-{json_hash(group)}.png")


def clip_first_steps(ax, values: pd.DataFrame) -> None:
    """Fit the y-axis to the curve after its first 5% of steps, so the large values at
    initialisation do not flatten the rest (they are still drawn, off the top)."""
    late = values[values["step"] > 0.05 * values["step"].max()]["value"].dropna()
    if len(late) > 1 and late.max() > late.min():
        pad = 0.1 * (late.max() - late.min())
        ax.set_ylim(late.min() - pad, late.max() + pad)
