"""Autoregressive samplers: samples/s of the naive sampler (the whole network re-run per
generated value) and the cached one, timed side by side in one process, and whether they
drew identical samples (the `ar_samplers` metric, genbench/metrics/ar_samplers.py)."""

from __future__ import annotations

import pandas as pd

from genbench.report.base import Inputs, by_metric_fn
from genbench.report.producers import VALUES
from genbench.report.tables import SETTING_SPLIT, drop_uniform, markdown_table, mean_std

METRIC_FN = "ar_samplers"
TITLE = VALUES.get(METRIC_FN).section  # as the metric declares it


def section(inputs: Inputs) -> str:
    records = by_metric_fn(inputs.final, METRIC_FN)
    if records.empty:
        return "(no autoregressive sampler records)"
    rows = []
    for (model, dataset, *split), runs in records.groupby(["model", "dataset", *SETTING_SPLIT], sort=True):
        row = {"model": model, "dataset": dataset, **dict(zip(SETTING_SPLIT, split))}
        for metric, values in runs.groupby("metric", sort=True):
            row[metric.split("/", 1)[1]] = mean_std(values["value"])
        rows.append(row)
    prov = records[records["metric"].str.contains("samples_per_s")]["provenance"].iloc[0]
    detail = ", ".join(f"{k}={prov[k]}" for k in ("method", "n", "device") if k in prov)
    return (markdown_table(drop_uniform(pd.DataFrame(rows)).fillna(""))
            + f"\n\nMeasured side by side in one process ({detail}); identical = 1 when both samplers drew the "
            "same samples from the same seed.")
