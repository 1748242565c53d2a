"""The report's precision ledger: for each model trained at more than one precision, the
training speed-up of bf16 / fp16 autocast against fp32 and the change in quality, each with
its seed noise, so a reader sees when mixed precision is free and when it is not.

Rows pair a reduced-precision setting with the fp32 setting that differs from it only in
precision (same model, objective, dataset, backend, device). Speed-up is the ratio of mean
training throughputs. Quality is each headline metric the runs recorded, one row each:
sample quality (FID, else KID) and likelihood (held-out bits/dim, else NLL); which way is
better, each value's producer declares (lower, for all of them). Its change is mean(reduced) -
mean(fp32) with a noise band: +- (std_reduced^2/n_r + std_fp32^2/n_f)^0.5, the standard error
of the difference of means (shown only with two or more seeds on each side). "free" means the
change is within twice that band, so the speed-up costs no measurable quality.
"""

from __future__ import annotations

import math

import pandas as pd

from genbench.report.base import Inputs
from genbench.report.producers import producer_of, sign_of
from genbench.report.tables import drop_uniform, fmt, markdown_table

TITLE = "Precision ledger"

PAIR_KEYS = ["model", "objective", "dataset", "backend", "device", "settings"]  # all of GROUP but precision
QUALITY = (("quality/fid", "quality/kid"), ("test/nll_bpd", "test/nll"))  # per kind, the first recorded
THROUGHPUT = "perf/train_throughput"


def values(runs: pd.DataFrame, metric: str) -> pd.Series:
    return runs[runs["metric"] == metric]["value"].dropna()


def quality_change(reduced: pd.Series, full: pd.Series) -> tuple[float, float | None]:
    """(mean difference, its standard error or None without two seeds on each side)."""
    delta = float(reduced.mean() - full.mean())
    if len(reduced) < 2 or len(full) < 2:
        return delta, None
    return delta, math.sqrt(reduced.var(ddof=1) / len(reduced) + full.var(ddof=1) / len(full))


def first_recorded(metrics: tuple[str, ...], reduced: pd.DataFrame, full: pd.DataFrame) -> str | None:
    """The first of `metrics` that both sides recorded."""
    return next((m for m in metrics if len(values(reduced, m)) and len(values(full, m))), None)


def ledger_rows(setting: tuple, precision: str, reduced: pd.DataFrame, full: pd.DataFrame) -> list[dict]:
    """One row per kind of quality both sides recorded (sample quality, likelihood)."""
    row = dict(zip(PAIR_KEYS[:3], setting[:3]))
    row["settings"] = setting[-1]
    row["precision"] = f"{precision} vs fp32"
    speed_r, speed_f = values(reduced, THROUGHPUT), values(full, THROUGHPUT)
    row["train speed-up"] = (f"{speed_r.mean() / speed_f.mean():.2f}x (n={len(speed_r)}/{len(speed_f)})"
                             if len(speed_r) and len(speed_f) else "")
    metrics = [m for m in (first_recorded(kind, reduced, full) for kind in QUALITY) if m]
    if not metrics:
        return [{**row, "quality metric": "", "fp32": "", "reduced": "", "change": "",
                 "verdict": "no quality recorded"}]
    return [quality_row(dict(row), metric, reduced, full) for metric in metrics]


def quality_row(row: dict, metric: str, reduced: pd.DataFrame, full: pd.DataFrame) -> dict:
    q_r, q_f = values(reduced, metric), values(full, metric)
    delta, noise = quality_change(q_r, q_f)
    row.update({"quality metric": metric, "fp32": fmt(q_f.mean()), "reduced": fmt(q_r.mean()),
                "change": f"{delta:+.4g}" + (f" ± {noise:.2g}" if noise is not None else " (n=1, no noise band)")})
    if noise is None:
        row["verdict"] = "needs two seeds each"
    elif abs(delta) <= 2 * noise:
        row["verdict"] = "free (within noise)"
    else:
        row["verdict"] = "better" if delta * direction(full, metric) > 0 else "worse"
    return row


def direction(runs: pd.DataFrame, metric: str) -> int:
    """+1 / -1 when higher / lower is better, as the producer of `metric`'s records declares."""
    record = runs[runs["metric"] == metric].iloc[0]
    return sign_of(producer_of(metric, record["provenance"]), metric, record["unit"])


def section(inputs: Inputs) -> str:
    """One row per (model, objective, dataset, backend, device, reduced precision) that has
    an fp32 counterpart."""
    rows = []
    for setting, runs in inputs.final.groupby(PAIR_KEYS, sort=True):
        precisions = set(runs["precision"])
        if "fp32" not in precisions or len(precisions) < 2:
            continue
        full = runs[runs["precision"] == "fp32"]
        for precision in sorted(precisions - {"fp32"}):
            rows += ledger_rows(setting, precision, runs[runs["precision"] == precision], full)
    if not rows:
        return ("(no model was trained at both fp32 and a reduced precision: add `precision = [\"fp32\", \"bf16\"]` "
                "to a suite's [[grid]] to fill this ledger)")
    note = ("Speed-up: mean training throughput at the reduced precision over fp32 (same batch size and device). "
            "Change: reduced minus fp32 of the quality metric (lower is better for all of them), ± the standard "
            "error of the difference of the seed means; 'free' = within twice that.")
    return markdown_table(drop_uniform(pd.DataFrame(rows), ["settings"]).fillna("")) + "\n\n" + note
