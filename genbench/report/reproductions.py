"""Reproductions: published results re-checked by genbench (`genbench reproduce`), paper and
genbench side by side -- per reproduction its paper, setup and budget, one row per claim
(the published figure or behaviour, what genbench measured, the verdict and why), a count
of verdicts, and the measured curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from genbench.harness.store import COMPLETE_METRIC
from genbench.report.base import Inputs, rel, save_figure
from genbench.report.tables import markdown_table
from genbench.utils.hashing import json_hash

TITLE = "Reproductions"
CLAIM = "reproduce/claim"  # genbench.reproduce.base.CLAIM_METRIC (the report reads records, not that package)


def section(inputs: Inputs) -> str:
    claims = inputs.final[inputs.final["metric"] == CLAIM]
    if claims.empty:
        return "(no reproductions here: `genbench reproduce list` names them)"
    parts = [reproduction_part(run_id, rows, inputs) for run_id, rows in claims.groupby("run_id", sort=False)]
    verdicts = claims["provenance"].map(lambda p: p["verdict"]).value_counts()
    summary = ", ".join(f"{n} {verdict}" for verdict, n in verdicts.items())
    return f"{len(claims)} claims: {summary}.\n\n" + "\n\n".join(parts)


def reproduction_part(run_id: str, claims: pd.DataFrame, inputs: Inputs) -> str:
    complete = inputs.final[(inputs.final["run_id"] == run_id) & (inputs.final["metric"] == COMPLETE_METRIC)]
    prov = complete.iloc[0]["provenance"] if len(complete) else {}
    first = claims.iloc[0]
    rows = [{"claim": p["claim"], "paper": p["published"], "genbench": p["measured"], "verdict": p["verdict"],
             "why": p["reason"]} for p in claims["provenance"]]
    head = (f"### {first['model']} ({first['objective']})\n\n{prov.get('paper', '')}; {prov.get('where', '')}.\n\n"
            f"Setup: {prov.get('setup', '')}\n\nBudget: {prov.get('budget', '')}; wall time "
            f"{prov.get('wall_seconds', float('nan')):.1f} s.")
    figure = curves_figure(run_id, f"{first['model']} ({first['objective']})", inputs)
    return head + "\n\n" + markdown_table(pd.DataFrame(rows)) + (f"\n\n{figure}" if figure else "")


def curves_figure(run_id: str, title: str, inputs: Inputs) -> str:
    """Every per-step curve of the reproduction on one log-y axis."""
    steps = inputs.frame[(inputs.frame["run_id"] == run_id) & inputs.frame["step"].notna()]
    if steps.empty:
        return ""
    fig, ax = plt.subplots(figsize=(7, 4))
    for metric, curve in steps.groupby("metric", sort=True):
        curve = curve.sort_values("step")
        ax.plot(curve["step"], curve["value"].clip(lower=1e-12), lw=1, label=metric.split("@", 1)[-1])
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(steps["unit"].iloc[0])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    path = save_figure(fig, inputs.figures / f"reproduction-{json_hash(run_id)}.png")
    return f"![{title}]({rel(path, inputs.out_dir)})"
