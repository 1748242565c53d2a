"""summary.csv beside report.md: one row per report group, for spreadsheets and scripts.

Columns: the group (model, objective, dataset, precision, backend, device), its full run
settings (every result-changing setting, with the values its runs share; a setting on which
they disagree cannot occur within a group), n runs, failed (runs for which a failure rule
of report/verdicts.py fired) and failed_rules (each rule that fired, with its count),
not_learned (runs that did not beat the best trivial model, where a reference applies), and
the headline metric: its name, median over the seeds and a 95% percentile bootstrap
interval of the median (scipy.stats.bootstrap, fixed seed; equal to the single value with
one seed).

Headline per group: references.HEADLINES -- % high-quality samples on 2-D mixtures,
held-out bits/dim on images with a likelihood, else FID where sample quality was scored,
else none.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
from scipy import stats

from genbench.harness.settings import RESULT_SETTINGS
from genbench.harness.store import COMPLETE_METRIC
from genbench.report.base import GROUP, IDENTITY, Inputs, run_settings
from genbench.report.references import HEADLINES
from genbench.report.verdicts import group_failures

SUMMARY_FILE = "summary.csv"
BOOTSTRAP_SEED, RESAMPLES, CONFIDENCE = 0, 10_000, 0.95


def summary_csv(inputs: Inputs) -> str:
    """The CSV text for a report's records (attach_settings already applied)."""
    final = inputs.final
    complete = final[final["metric"] == COMPLETE_METRIC]
    settings = {r: run_settings(p) for r, p in zip(complete["run_id"], complete["provenance"])}
    failures = group_failures(final, inputs.verdicts, GROUP)
    rows = [group_row(group, runs, settings, failures[group]) for group, runs in final.groupby(GROUP, sort=True)]
    out = io.StringIO()
    columns = [*IDENTITY, *RESULT_SETTINGS, "n", "failed", "failed_rules", "not_learned", "headline", "median",
               "ci95_low", "ci95_high"]
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def group_row(group: tuple, runs: pd.DataFrame, settings: dict, failures: dict) -> dict:
    run_ids = sorted(runs["run_id"].unique())
    shared = settings.get(run_ids[0], {})
    not_learned = failures["not learned"].split("/")[0]  # "" where no reference applies
    row = {**dict(zip(IDENTITY, group[:len(IDENTITY)])), **shared, "n": len(run_ids),
           "failed": int(failures["failed"].split("/")[0]), "failed_rules": failures["rules"],
           "not_learned": not_learned}
    return {**row, **headline(runs)}


def headline(runs: pd.DataFrame) -> dict:
    for metric in HEADLINES:
        values = runs.loc[runs["metric"] == metric, "value"].dropna().to_numpy(dtype=np.float64)
        if len(values):
            low, high = median_interval(values)
            return {"headline": metric, "median": float(np.median(values)), "ci95_low": low, "ci95_high": high}
    return {"headline": ""}


def median_interval(values: np.ndarray) -> tuple[float, float]:
    """95% percentile bootstrap interval of the median over seeds (the value itself with one)."""
    if len(values) == 1 or np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.median, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                             method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
