"""References: trivial models scored by the same metric code on the same sample counts as the
runs (genbench/metrics/references.py), and which runs did not beat the best of them.

Headline metrics, per kind of result, and the trivial models a run must beat on them:
- 2-D mixtures (coverage): % high-quality samples, against a Gaussian fitted to the data
  and a uniform box over its range (held-out real data is shown as the ceiling);
- 8-bit images with a held-out NLL: bits/dim, against the per-pixel 256-way histogram.
A run that does not beat the best trivial model is "not learned"; the Runs table counts
such runs per row.
"""

from __future__ import annotations

import functools
import statistics

import pandas as pd

from genbench.data import load_dataset
from genbench.errors import GenbenchError
from genbench.metrics.references import FOLDS, bits_per_dim_reference, coverage_references
from genbench.report.base import GROUP, Inputs
from genbench.report.likelihood import binarised
from genbench.report.tables import fmt, markdown_table

TITLE = "References"
COVERAGE_HEADLINE = "coverage/high_quality_pct"  # 2-D mixtures
BPD_HEADLINE = "test/nll_bpd"  # images with a likelihood (8-bit data only: see binarised)
REFERENCE_SEEDS = 5
TRIVIAL = ("fitted Gaussian", "uniform box")  # what a coverage run must beat; held-out data is the ceiling


def section(inputs: Inputs) -> str:
    parts = [coverage_part(dataset, n) for dataset, n in coverage_settings(inputs.final)]
    parts += [likelihood_part(dataset) for dataset in bits_per_dim_datasets(inputs.final)]
    return "\n\n".join(parts) or "(no result here has a trivial reference: 2-D mixtures' coverage and 8-bit bits/dim do)"


def coverage_settings(final: pd.DataFrame) -> list[tuple[str, int]]:
    """(dataset, n_samples) of every coverage result."""
    records = final[final["metric"] == COVERAGE_HEADLINE]
    return sorted({(d, int(p["n_samples"])) for d, p in zip(records["dataset"], records["provenance"])})


def bits_per_dim_datasets(final: pd.DataFrame) -> list[str]:
    records = final[(final["metric"] == BPD_HEADLINE) & ~final["provenance"].map(binarised)]
    return sorted(records["dataset"].unique())


@functools.cache
def coverage_reference(dataset: str, n_samples: int) -> dict[str, list] | None:
    try:
        return coverage_references(load_dataset(dataset), n_samples, REFERENCE_SEEDS)
    except GenbenchError:
        return None


@functools.cache
def bits_per_dim_reference_of(dataset: str):
    """The histogram reference of an 8-bit image dataset; None for other kinds, or when the
    dataset cannot be loaded here."""
    try:
        data = load_dataset(dataset)
    except GenbenchError:
        return None
    return bits_per_dim_reference(data) if data.info.kind == "image" else None


def coverage_part(dataset: str, n_samples: int) -> str:
    results = coverage_reference(dataset, n_samples)
    if results is None:
        return f"**{dataset}**: the dataset could not be loaded here, so no reference."
    rows = [{"reference": name, "modes captured": mean_std([r.modes_captured for r in runs]),
             "% high quality": mean_std([r.high_quality_pct for r in runs]),
             "reverse KL (nats)": mean_std([r.reverse_kl for r in runs])} for name, runs in results.items()]
    return (f"**{dataset}**, {n_samples:,} samples, {REFERENCE_SEEDS} draws each (headline: % high quality; a run "
            f"must beat the best of {', '.join(TRIVIAL)}):\n\n{markdown_table(pd.DataFrame(rows))}")


def likelihood_part(dataset: str) -> str:
    fit = bits_per_dim_reference_of(dataset)
    if fit is None:
        return f"**{dataset}**: no bits/dim reference (not 8-bit images, or not loadable here)."
    return (f"**{dataset}**, held-out bits/dim on 8-bit data: per-pixel independent 256-way histogram "
            f"{fmt(fit.bits_per_dim)} (pseudo-count {fit.pseudo_count:g}, chosen by {FOLDS}-fold cross-validation "
            "on the training split). A model must score below it (headline: bits/dim).")


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values), 2)}"


def judged_runs(final: pd.DataFrame) -> dict[str, bool]:
    """run id -> True when its headline metric does not beat the best trivial model, for
    every run a reference applies to."""
    judged: dict[str, bool] = {}
    coverage = final[final["metric"] == COVERAGE_HEADLINE]
    sizes = coverage["provenance"].map(lambda p: int(p["n_samples"]))
    for (dataset, n), records in coverage.groupby([coverage["dataset"], sizes]):
        results = coverage_reference(dataset, n)
        if results is not None:
            best = max(statistics.mean(r.high_quality_pct for r in results[name]) for name in TRIVIAL)
            judged.update(zip(records["run_id"], ~(records["value"] > best)))  # NaN: not learned
    nll = final[(final["metric"] == BPD_HEADLINE) & ~final["provenance"].map(binarised)]
    for dataset, records in nll.groupby("dataset"):
        fit = bits_per_dim_reference_of(dataset)
        if fit is not None:
            judged.update(zip(records["run_id"], ~(records["value"] < fit.bits_per_dim)))
    return judged


def not_learned_column(final: pd.DataFrame) -> dict[tuple, str]:
    """Per GROUP row whose runs a reference judges, "k/n": its runs that did not beat it."""
    judged = judged_runs(final)
    rows = final[final["run_id"].isin(judged)].drop_duplicates("run_id")
    return {group: f"{sum(judged[r] for r in runs['run_id'])}/{len(runs)}"
            for group, runs in rows.groupby(GROUP, sort=True)}
