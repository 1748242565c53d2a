"""References: trivial models scored by the same metric code on the same sample counts as the
runs (genbench/metrics/references.py), and which runs did not beat the best of them.

Headline metrics, per kind of result (a run's headline is the first of HEADLINES it
records), and the trivial models a run must beat on them:
- 2-D mixtures (coverage): % high-quality samples, against a Gaussian fitted to the data
  and a uniform box over its range (held-out real data is shown as the ceiling);
- 8-bit images with a held-out NLL: bits/dim, against the per-pixel 256-way histogram;
- 8-bit images scored by samples only: FID, against the mean image, per-pixel noise
  matched to the data's marginals and a fitted Gaussian, with the run's extractor, sample
  count and reference set (held-out data is the ceiling). Runs whose FID used another
  extractor (InceptionV3) or reference set are not judged: their references would need it.
A run that does not beat the best trivial model -- its mean over the reference's draws,
moved two standard deviations of those draws in the better direction (bar()) -- is marked
"not learned" wherever it is shown. A run that does not even beat the trivial models without structure -- those that
know only each coordinate's or pixel's marginal: the uniform box, the mean image, per-pixel
noise, the per-pixel histogram -- "never learned": that is a failure (report/verdicts.py).
The two differ where a fitted Gaussian is the best trivial model: with the small genbench
extractor a Gaussian fitted to the pixels of 16x16 digits scores an FID near 10, which most
GANs here do not beat, yet their samples are digits and the Gaussian's are not.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass

import pandas as pd

from genbench.data import load_dataset
from genbench.errors import GenbenchError
from genbench.metrics.references import (FOLDS, IMAGE_TRIVIAL, bits_per_dim_reference, coverage_references,
                                         gaussian_nll, image_quality_references)
from genbench.report.base import Inputs, binarised
from genbench.report.tables import fmt, markdown_table

TITLE = "References"
COVERAGE_HEADLINE = "coverage/high_quality_pct"  # 2-D mixtures
BPD_HEADLINE = "test/nll_bpd"  # images with a likelihood (8-bit data only: see binarised)
FID_HEADLINE = "quality/fid"  # images scored by samples
HEADLINES = (COVERAGE_HEADLINE, BPD_HEADLINE, FID_HEADLINE)  # a run's headline: the first it records
HIGHER_IS_BETTER = (COVERAGE_HEADLINE,)  # the other headlines (bits/dim, FID) are lower-better
REFERENCE_SEEDS = 5
IMAGE_REFERENCE_SEEDS = 3
BAR_SDS = 2.0  # a run must beat a reference's mean by this many standard deviations of its draws
TRIVIAL = ("fitted Gaussian", "uniform box")  # what a coverage run must beat; held-out data is the ceiling
STRUCTURELESS = ("uniform box", "mean image", "per-pixel noise")  # a run that does not beat these never learned
JUDGED_EXTRACTOR = "genbench-classifier"  # FID references are computed with it (the runs' own, on their data)


@dataclass(frozen=True)
class Judgement:
    not_learned: bool  # does not beat the best trivial model
    never_learned: bool  # does not beat the best trivial model without structure (STRUCTURELESS)
    never_detail: str  # the run's headline value against the best structureless model's bar


def section(inputs: Inputs) -> str:
    parts = [coverage_part(dataset, n) for dataset, n in coverage_settings(inputs.final)]
    parts += [likelihood_part(dataset) for dataset in bits_per_dim_datasets(inputs.final)]
    parts += [image_part(dataset, n) for dataset, n in fid_settings(inputs.final)]
    return "\n\n".join(parts) or ("(no result here has a trivial reference: 2-D mixtures' coverage, 8-bit "
                                    "bits/dim and FID with the genbench extractor do)")


def coverage_settings(final: pd.DataFrame) -> list[tuple[str, int]]:
    """(dataset, n_samples) of every coverage result."""
    records = final[final["metric"] == COVERAGE_HEADLINE]
    return sorted({(d, int(p["n_samples"])) for d, p in zip(records["dataset"], records["provenance"])})


def fid_records(final: pd.DataFrame) -> pd.DataFrame:
    """FID records a reference can judge: the genbench extractor against the whole train split."""
    fid = final[final["metric"] == FID_HEADLINE]
    if fid.empty:
        return fid
    usable = fid["provenance"].map(lambda p: p.get("extractor") == JUDGED_EXTRACTOR
                                   and p.get("reference_split") == "train")
    return fid[usable]


def fid_settings(final: pd.DataFrame) -> list[tuple[str, int]]:
    """(dataset, n_generated) of every FID a reference can judge."""
    records = fid_records(final)
    return sorted({(d, int(p["n_generated"])) for d, p in zip(records["dataset"], records["provenance"])})


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


@functools.cache
def image_reference(dataset: str, n_generated: int) -> dict[str, list[dict]] | None:
    """FID, KID, precision and recall of the image references; None when the dataset cannot
    be loaded here or its sizes do not allow FID."""
    try:
        return image_quality_references(load_dataset(dataset), n_generated, seeds=IMAGE_REFERENCE_SEEDS)
    except GenbenchError:
        return None


@functools.cache
def points_nll_reference(dataset: str):
    """The fitted Gaussian's held-out NLL on a 2-D point dataset; None for other kinds."""
    try:
        data = load_dataset(dataset)
    except GenbenchError:
        return None
    return gaussian_nll(data.train.x, data.test.x) if data.info.kind == "points" else None


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


def image_part(dataset: str, n_generated: int) -> str:
    results = image_reference(dataset, n_generated)
    if results is None:
        return f"**{dataset}**, {n_generated:,} samples: no image reference (the dataset could not be loaded here)."
    rows = [{"reference": name, "images": f"{draws[0]['n']:,}", "FID": mean_std([r["fid"] for r in draws]),
             "KID ×1000": mean_std([1000 * r["kid"] for r in draws]),
             "precision": mean_std([r["precision"] for r in draws]), "recall": mean_std([r["recall"] for r in draws])}
            for name, draws in results.items()]
    return (f"**{dataset}**, {n_generated:,} samples against the whole training split, genbench extractor, "
            f"{IMAGE_REFERENCE_SEEDS} draws each (headline: FID; a run must beat the best of "
            f"{', '.join(IMAGE_TRIVIAL)}; held-out data scores at most the whole test split, without repeats, "
            f"since repeated images would lower its recall):\n\n{markdown_table(pd.DataFrame(rows))}")


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.mean(values))} ± {fmt(statistics.stdev(values), 2)}"


def judged_runs(final: pd.DataFrame) -> dict[str, Judgement]:
    """run id -> its Judgement, for every run whose headline metric has a reference."""
    judged: dict[str, Judgement] = {}
    headline = headline_of_runs(final)
    for metric, judge in ((COVERAGE_HEADLINE, judge_coverage), (BPD_HEADLINE, judge_bits_per_dim),
                          (FID_HEADLINE, judge_fid)):
        records = final[(final["metric"] == metric) & (final["run_id"].map(headline) == metric)]
        judged.update(judge(records))
    return judged


def headline_of_runs(final: pd.DataFrame) -> dict[str, str]:
    """run id -> its headline metric: the first of HEADLINES it records (8-bit bits/dim only)."""
    usable = final[final["metric"].isin(HEADLINES) & ~final["provenance"].map(binarised)]
    rank = usable["metric"].map(HEADLINES.index)
    return dict(usable.assign(rank=rank).sort_values("rank").drop_duplicates("run_id")[["run_id", "metric"]].values)


def judge_coverage(records: pd.DataFrame) -> dict[str, Judgement]:
    sizes = records["provenance"].map(lambda p: int(p["n_samples"]))
    judged = {}
    for (dataset, n), group in records.groupby([records["dataset"], sizes]):
        results = coverage_reference(dataset, n)
        if results is not None:
            bars = {name: bar([r.high_quality_pct for r in results[name]], higher=True) for name in TRIVIAL}
            judged.update({run: judgement(value, bars, "% high quality", higher=True)
                           for run, value in zip(group["run_id"], group["value"])})
    return judged


def judge_bits_per_dim(records: pd.DataFrame) -> dict[str, Judgement]:
    judged = {}
    for dataset, group in records.groupby("dataset"):
        fit = bits_per_dim_reference_of(dataset)
        if fit is not None:  # the histogram is both the best trivial model and one without structure
            means = {"per-pixel histogram": fit.bits_per_dim}
            judged.update({run: judgement(value, means, "bits/dim", higher=False, structureless=tuple(means))
                           for run, value in zip(group["run_id"], group["value"])})
    return judged


def judge_fid(records: pd.DataFrame) -> dict[str, Judgement]:
    records = fid_records(records)
    sizes = records["provenance"].map(lambda p: int(p["n_generated"]))
    judged = {}
    for (dataset, n), group in records.groupby([records["dataset"], sizes]):
        results = image_reference(dataset, n)
        if results is not None:
            bars = {name: bar([r["fid"] for r in results[name]], higher=False) for name in IMAGE_TRIVIAL}
            judged.update({run: judgement(value, bars, "FID", higher=False)
                           for run, value in zip(group["run_id"], group["value"])})
    return judged


def bar(draws: list[float], higher: bool) -> float:
    """What a run must beat to beat a reference scored over several draws: its mean, moved
    BAR_SDS standard deviations of the draws in the better direction -- a run that edges past
    the mean by less than the reference's own draw-to-draw spread has not shown it beats it
    (the uniform box's 2.54 +- 0.19 % high quality on the grid)."""
    spread = BAR_SDS * statistics.stdev(draws) if len(draws) > 1 else 0.0
    return statistics.mean(draws) + (spread if higher else -spread)


def judgement(value: float, means: dict[str, float], what: str, higher: bool,
              structureless: tuple[str, ...] = STRUCTURELESS) -> Judgement:
    """The run's value against the best of `means` (trivial model -> the score to beat: bar())
    and the best of those without structure; NaN beats nothing."""
    def best_of(names):
        present = {n: means[n] for n in names if n in means}
        name = (max if higher else min)(present, key=present.get)
        return name, present[name]

    def beats(best: float) -> bool:
        return bool(value > best) if higher else bool(value < best)

    _, best = best_of(means)
    plain, plain_best = best_of(structureless)
    return Judgement(not beats(best), not beats(plain_best),
                     f"{what} {fmt(value)} against the {plain}'s bar {fmt(plain_best)}")


def reference_lines(dataset: str, metric: str, records: pd.DataFrame) -> list[tuple[str, float, str]]:
    """(label, value, line style) of the references for a headline metric's records on a
    dataset: the ceiling (held-out data) dotted, the best trivial model dashed and the best
    without structure dash-dotted."""
    scores = reference_scores(dataset, metric, records)
    if metric == BPD_HEADLINE:
        return [(name, value, "--") for name, value in scores.items()]
    if not scores:
        return []
    top, plain = best_trivial(scores, metric), best_trivial(scores, metric, STRUCTURELESS)
    lines = [("held-out data", scores["held-out data"], ":"), (top, scores[top], "--")]
    return lines + ([(plain, scores[plain], "-.")] if plain != top else [])


def best_trivial(scores: dict[str, float], metric: str, among: tuple[str, ...] | None = None) -> str:
    """The name of the best trivial model in `scores` (of those `among`, if given)."""
    trivial, best = (TRIVIAL, max) if metric in HIGHER_IS_BETTER else (IMAGE_TRIVIAL, min)
    if metric == BPD_HEADLINE:
        trivial = tuple(scores)
    return best((n for n in trivial if n in scores and (among is None or n in among)), key=scores.get)


def headline_reference_rows(dataset: str, metric: str, records: pd.DataFrame) -> pd.DataFrame:
    """The references of a headline table, as rows: held-out data and every trivial model,
    their mean over draws at the records' sample count."""
    how = "(fitted to the training split)" if metric == BPD_HEADLINE else "(mean of draws)"
    rows = [{"configuration": f"reference: {name}", "median [95% CI]": f"{fmt(value)} {how}"}
            for name, value in reference_scores(dataset, metric, records).items()]
    return pd.DataFrame(rows)


def reference_scores(dataset: str, metric: str, records: pd.DataFrame) -> dict[str, float]:
    """reference name -> its mean score on a headline metric, at the records' (most common)
    sample count; {} where no reference applies or can be computed here."""
    if records.empty:
        return {}
    if metric == BPD_HEADLINE:
        fit = bits_per_dim_reference_of(dataset)
        return {"per-pixel histogram": fit.bits_per_dim} if fit else {}
    if metric == COVERAGE_HEADLINE:
        n = int(records["provenance"].map(lambda p: p["n_samples"]).mode().iloc[0])
        return {name: statistics.mean(r.high_quality_pct for r in runs)
                for name, runs in (coverage_reference(dataset, n) or {}).items()}
    if metric == FID_HEADLINE and len(fid_records(records)):
        n = int(fid_records(records)["provenance"].map(lambda p: p["n_generated"]).mode().iloc[0])
        return {name: statistics.mean(r["fid"] for r in draws) for name, draws in (image_reference(dataset, n) or {}).items()}
    return {}
