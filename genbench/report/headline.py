"""Headline: the answer first. Per suite and dataset, the configurations ranked by the median
of the family's headline metric (references.HEADLINES) over seeds, with a 95% bootstrap
interval of the median, the failure rate and rules (report/verdicts.py), the "not learned"
mark, the trivial references as rows of their own, and caveats written from the records.

Where the suite names a reference configuration (its `reference` key, e.g. the
non-saturating loss in gan-losses), every other row is tested against it: a two-sided
Mann-Whitney U test on the per-seed headline values (exact for small samples, no
normality assumed; a failed seed keeps its value -- it is part of what the configuration
does), Holm-corrected over the rows of the table. Runs without a headline value (diverged)
count in the failure rate only.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import special, stats

from genbench.errors import GenbenchError
from genbench.harness.suites import load_suite
from genbench.report.base import CONFIGURATION as ROW, Inputs, configuration_label, run_settings
from genbench.report.references import (HEADLINES, HIGHER_IS_BETTER, best_trivial, headline_of_runs,
                                        headline_reference_rows, reference_scores)
from genbench.report.summary import median_interval
from genbench.report.tables import fmt, markdown_table
from genbench.report.verdicts import group_failures
from genbench.report.producers import value_spec

TITLE = "Headline"
ALPHA = 0.05


def section(inputs: Inputs) -> str:
    """One table per suite, dataset and headline metric: each run sits in the table of its own
    headline (a VAE scored on binarised data is judged by its FID, not ranked among 8-bit
    bits/dim); a run without one (diverged before evaluation) in its dataset's first table."""
    final = inputs.final.assign(suite=inputs.final["suite"].fillna("(ad-hoc runs)"))
    headline_of = headline_of_runs(final)
    parts = []
    for (suite, dataset), records in final.groupby(["suite", "dataset"]):
        metrics = [m for m in HEADLINES if m in set(records["run_id"].map(headline_of))]
        table_of = records["run_id"].map(headline_of).fillna(metrics[0] if metrics else "")
        parts += [table_for(suite, dataset, metric, records[table_of == metric], inputs) for metric in metrics]
    return "\n\n".join(parts) or "(no run recorded a headline metric: % high quality, bits/dim or FID)"


def table_for(suite: str, dataset: str, metric: str, final: pd.DataFrame, inputs: Inputs) -> str:
    lower = metric not in HIGHER_IS_BETTER
    failures = group_failures(final, inputs.verdicts, ROW)
    rows = []
    for key, runs in final.groupby(ROW, sort=True):
        values = runs.loc[runs["metric"] == metric, "value"].dropna().to_numpy(dtype=np.float64)
        rows.append({"key": key, "values": values, **failures[key]})
    rows.sort(key=lambda r: (len(r["values"]) == 0, np.median(r["values"]) * (1 if lower else -1)
                             if len(r["values"]) else 0))
    reference = reference_row(suite, rows)
    if reference is not None:
        add_tests(rows, reference)
    table = pd.DataFrame([shown(rank, row, final, reference) for rank, row in enumerate(rows, 1)])
    table = pd.concat([table, headline_reference_rows(dataset, metric, final[final["metric"] == metric])],
                      ignore_index=True).astype(object).fillna("")
    table = table.loc[:, [c for c in table.columns if (table[c] != "").any()]]
    direction = "lower" if lower else "higher"
    title = f"### {suite} · {dataset}: `{metric}` ({direction} is better)"
    scores = reference_scores(dataset, metric, final[final["metric"] == metric])
    return f"{title}\n\n{markdown_table(table)}\n\n" + caveats(final, rows, metric, reference, scores)


def shown(rank: int, row: dict, final: pd.DataFrame, reference: dict | None) -> dict:
    values = row["values"]
    if len(values):
        low, high = median_interval(values)
        cell = f"{fmt(float(np.median(values)))} [{fmt(low)}, {fmt(high)}]"
    else:
        cell = "no value (diverged before evaluation)"
    out = {"rank": rank, "configuration": configuration_label(row["key"], final), "n": len(values), "median [95% CI]": cell,
           "failed": row["failed"] + (f" ({row['rules']})" if row["rules"] else ""),
           "not learned": row["not learned"]}
    if reference is not None:
        out["vs reference (Holm p)"] = "reference" if row is reference else row.get("test", "")
    return out


@functools.cache
def suite_reference(suite: str) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(load_suite(suite).reference.items())
    except GenbenchError:
        return ()


def reference_row(suite: str, rows: list[dict]) -> dict | None:
    """The row of the suite's reference configuration, when the suite names one and exactly
    one row matches it."""
    wanted = dict(suite_reference(suite))
    if not wanted:
        return None
    matches = [r for r in rows if all(str(dict(zip(ROW, r["key"])).get(k, "")).split("{")[0].split("[")[0] == v
                                      for k, v in wanted.items())]
    return matches[0] if len(matches) == 1 else None


def add_tests(rows: list[dict], reference: dict) -> None:
    """Mann-Whitney U of each row against the reference, Holm-corrected over the rows."""
    tested = [r for r in rows if r is not reference and len(r["values"]) and len(reference["values"])]
    raw = [stats.mannwhitneyu(r["values"], reference["values"], alternative="two-sided").pvalue for r in tested]
    for row, p, adjusted in zip(tested, raw, holm(raw)):
        verdict = "differs" if adjusted < ALPHA else "n.s."
        row["test"] = f"{fmt(adjusted, 2)} {verdict}"


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
    order = np.argsort(p_values)
    m, running, adjusted = len(p_values), 0.0, [1.0] * len(p_values)
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[index]))
        adjusted[index] = running
    return adjusted


def caveats(final: pd.DataFrame, rows: list[dict], metric: str, reference: dict | None,
            scores: dict[str, float]) -> str:
    """Plain-language caveats, from the records and the references' scores."""
    notes = []
    budgets = sorted({budget(p) for p in final.loc[final["metric"] == "run/complete", "provenance"]} - {""})
    if budgets:
        notes.append("Budget: " + "; ".join(budgets) + ". Rankings at a small budget need not hold at a larger one.")
    notes.append("Hyperparameters: the suite's settings, one shared setting per table; no per-configuration "
                 "search was run, so a configuration may rank low for want of tuning.")
    seeds = sorted({len(r["values"]) for r in rows})
    if seeds and seeds[0] <= 1:
        notes.append("Some rows have one seed: no interval, and their rank is one draw.")
    learned = [r["not learned"] for r in rows if r["not learned"]]
    if learned and all(n.split("/")[0] == n.split("/")[1] for n in learned):
        notes.append("No configuration beat the best trivial model in any seed: the ranking orders failures.")
    elif learned and all(n.split("/")[0] != "0" for n in learned):
        notes.append("Every configuration has seeds that did not beat the best trivial model.")
    if scores:
        name = best_trivial(scores, metric)
        lower = metric not in HIGHER_IS_BETTER
        beaten = [r for r in rows if len(r["values"])
                  and not ((np.median(r["values"]) < scores[name]) if lower else (np.median(r["values"]) > scores[name]))]
        if rows and len(beaten) * 2 > len(rows):
            notes.append(f"The best trivial model, the {name} ({fmt(scores[name])}), is at least as good as the "
                         f"median of {len(beaten)} of {len(rows)} configurations: on this metric their order says "
                         "little about what they learned (the References section shows the trivial models on the "
                         "other metrics too).")
    all_failed = [r for r in rows if r["failed"].split("/")[0] == r["failed"].split("/")[1]]
    if all_failed:
        notes.append(f"{len(all_failed)} of {len(rows)} configurations failed in every seed.")
    if reference is not None:
        n = max(len(reference["values"]), 1)
        notes.append(f"Tests: Mann-Whitney U against the reference row, Holm over {len(rows) - 1} rows; with {n} "
                     "seeds per row the smallest attainable p is "
                     f"{fmt(2 / special.comb(2 * n, n), 2)} before correction, so only large, consistent "
                     "differences can reach significance.")
    first = final[final["metric"] == metric].iloc[0]
    spec = value_spec(metric, first["provenance"])
    if spec is not None and spec.meaning:
        notes.append(f"`{metric}`: {spec.meaning}.")
    return "Caveats:\n\n" + "\n".join(f"- {n}" for n in notes)


def budget(provenance: dict) -> str:
    run = run_settings(provenance)
    steps, batch = run.get("steps"), run.get("batch_size")
    if not steps or not batch:
        return ""
    return f"{steps:,} steps of batch {batch} ({steps * batch:,} examples seen)"

