"""Anomaly detection by likelihood: AUROC of each model's NLL at telling its held-out test
split (negatives) from other embedded datasets (positives); below 0.5 the model gives the
other data higher likelihood (the `anomaly` metric, genbench/metrics/anomaly.py)."""

from __future__ import annotations

import pandas as pd

from genbench.report.base import Inputs, by_metric_fn
from genbench.report.producers import VALUES
from genbench.report.tables import SETTING_SPLIT, drop_blank, drop_uniform, markdown_table, mean_std, median_range
from genbench.report.verdicts import verdict_cell

METRIC_FN = "anomaly"
TITLE = VALUES.get(METRIC_FN).section  # as the metric declares it
SCORE_NOTE = ("Score: NLL in bits/dim (higher = more anomalous); AUROC by the Mann-Whitney statistic, "
              "ties counted half. Bits/dim on the other data are median [min–max] over seeds: a flow's "
              "likelihood of unseen data can reach 1e9 bits/dim in one seed, which a mean would report "
              "as the row's value.")


def section(inputs: Inputs) -> str:
    records = by_metric_fn(inputs.final, METRIC_FN)
    if records.empty:
        return "(no anomaly-detection records: only models with a likelihood on embedded image data record them)"
    rows, flagged = [], []
    for (model, objective, dataset, *split), runs in records.groupby(["model", "objective", "dataset",
                                                                      *SETTING_SPLIT], sort=True):
        row = {"model": model, "objective": objective, "trained on": dataset, **dict(zip(SETTING_SPLIT, split)),
               "verdict": verdict_cell(runs["run_id"], inputs.verdicts)}
        row["test bpd (own)"] = mean_std(runs[runs["metric"].str.startswith("anomaly/id_")]["value"])
        flagged += [f"{model} ({dataset}) vs {ood}" for ood in ood_columns(row, runs)]
        rows.append(row)
    table = markdown_table(drop_blank(drop_uniform(pd.DataFrame(rows)).fillna(""), "verdict"))
    failure = ("Known failure (Nalisnick et al. 2019) seen here: AUROC < 0.5, the model assigns higher likelihood "
               "to the other data: " + "; ".join(flagged) + "." if flagged
               else "No model assigned higher mean likelihood to another dataset than to its own test split.")
    conversions = sorted({str(p.get("conversion", "")) for p in records["provenance"] if p.get("conversion")})
    return table + "\n\n" + failure + "\n\n" + SCORE_NOTE + "\n\n" + "\n".join(f"- {c}" for c in conversions)


def ood_columns(row: dict, runs: pd.DataFrame) -> list[str]:
    """Add AUROC and bpd columns per other dataset to `row`; return those with AUROC < 0.5."""
    flagged = []
    for metric, values in runs.groupby("metric", sort=True):
        name = metric.split("/", 1)[1]
        if not name.startswith("auroc@"):
            continue
        ood = name.split("@", 1)[1]
        row[f"AUROC vs {ood}"] = mean_std(values["value"])
        row[f"bpd on {ood}"] = median_range(runs[runs["metric"].str.startswith("anomaly/ood_")
                                             & runs["metric"].str.endswith(f"@{ood}")]["value"])
        if values["value"].mean() < 0.5:
            flagged.append(ood)
    return flagged
