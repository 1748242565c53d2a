"""summary.csv beside report.md: one row per report group, for spreadsheets and scripts.

Columns: the group (model, objective, dataset, precision, backend, device), its full run
settings (every result-changing setting, with the values its runs share; a setting on which
they disagree cannot occur within a group), n runs, failed (with the rule that fired:
"diverged" for now), not_learned (runs that did not beat the best trivial model, where a
reference applies), and the headline metric: its name, median over the seeds and a 95%
percentile bootstrap interval of the median (scipy.stats.bootstrap, fixed seed; equal to
the single value with one seed).

Headline per group: % high-quality samples on 2-D mixtures, held-out bits/dim on images
with a likelihood, else FID where sample quality was scored, else none.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
from scipy import stats

from genbench.harness.settings import RESULT_SETTINGS
from genbench.harness.store import COMPLETE_METRIC, DIVERGED_METRIC
from genbench.report.base import GROUP, IDENTITY, run_settings
from genbench.report.references import BPD_HEADLINE, COVERAGE_HEADLINE, judged_runs

SUMMARY_FILE = "summary.csv"
HEADLINES = (COVERAGE_HEADLINE, BPD_HEADLINE, "quality/fid")  # first recorded wins
BOOTSTRAP_SEED, RESAMPLES, CONFIDENCE = 0, 10_000, 0.95


def summary_csv(frame: pd.DataFrame) -> str:
    """The CSV text for a report's records (attach_settings already applied)."""
    final = frame[frame["step"].isna()]
    complete = final[final["metric"] == COMPLETE_METRIC]
    settings = {r: run_settings(p) for r, p in zip(complete["run_id"], complete["provenance"])}
    judged = judged_runs(final)
    rows = [group_row(group, runs, settings, judged) for group, runs in final.groupby(GROUP, sort=True)]
    out = io.StringIO()
    columns = [*IDENTITY, *RESULT_SETTINGS, "n", "failed", "failed_rules", "not_learned", "headline", "median",
               "ci95_low", "ci95_high"]
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def group_row(group: tuple, runs: pd.DataFrame, settings: dict, judged: dict) -> dict:
    run_ids = sorted(runs["run_id"].unique())
    diverged = runs[(runs["metric"] == DIVERGED_METRIC) & (runs["value"] > 0)]["run_id"].nunique()
    shared = settings.get(run_ids[0], {})
    verdicts = [judged[r] for r in run_ids if r in judged]  # none where no reference applies
    row = {**dict(zip(IDENTITY, group[:len(IDENTITY)])), **shared, "n": len(run_ids), "failed": diverged,
           "failed_rules": "diverged" if diverged else "", "not_learned": sum(verdicts) if verdicts else ""}
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
