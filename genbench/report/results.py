"""Results: one table per registered metric, with the provenance of its numbers beneath.

A metric whose registration names a section of its own (genbench/values.py: `section`)
gets a pointer here instead; a metric of unknown origin (its records name a metric_fn
that is not registered here) gets a table like any other.
"""

from __future__ import annotations

import pandas as pd

from genbench.report.base import GROUP, Inputs, short
from genbench.report.producers import producer_of, value_spec
from genbench.report.tables import drop_blank, drop_uniform, markdown_table, pooled_cell
from genbench.report.verdicts import verdict_cell

TITLE = "Results"


def section(inputs: Inputs) -> str:
    final = inputs.final
    evaluated = final[final["provenance"].map(lambda p: "metric_fn" in p)]
    family = evaluated["provenance"].map(lambda p: p["metric_fn"])
    parts = []
    for name in sorted(family.unique()):
        records = evaluated[family == name]
        own = own_section(records)
        parts.append(f"### {name}\n\nIn its own section below: {own}." if own
                     else metric_table(name, records, inputs.verdicts))
    return "\n\n".join(parts) or "(no evaluation metrics: every run diverged)"


def own_section(records: pd.DataFrame) -> str | None:
    """The section of their own the records' producer declares, if any."""
    first = records.iloc[0]
    producer = producer_of(first["metric"], first["provenance"])
    return producer.section if producer else None


def metric_table(name: str, records: pd.DataFrame, verdicts: dict) -> str:
    """One row per group, one column per value (mean ± std over seeds), then the provenance;
    the "verdict" column names the row's failed and not-learned runs (report/verdicts.py)."""
    rows = []
    for group, runs in records.groupby(GROUP, sort=True):
        row = dict(zip(GROUP[:3], group[:3]))
        row["precision"], row["backend"], row["settings"] = group[3], group[4], group[-1]
        row["verdict"] = verdict_cell(runs["run_id"], verdicts)
        for metric, values in runs.groupby("metric", sort=False):
            spec = value_spec(metric, values["provenance"].iloc[0])
            column = short(metric)  # the full name where the short one is a row key (quality/precision)
            column = metric if column in GROUP else column
            if spec and spec.shown_scale != 1:
                column = f"{column} ×{spec.shown_scale:g}"
            row[column] = pooled_cell(values["value"], *((spec.pooling, spec.shown_scale) if spec else ()))
        rows.append(row)
    table = markdown_table(drop_blank(drop_uniform(pd.DataFrame(rows), ["settings"]).fillna(""), "verdict"))
    return f"### {name}\n\n{table}\n\n{provenance_note(records)}"


def provenance_note(records: pd.DataFrame) -> str:
    """Units, then every provenance field with its distinct values."""
    units = records.drop_duplicates("metric")[["metric", "unit"]]
    lines = [f"- `{short(m)}`: {u}" for m, u in zip(units["metric"], units["unit"])]
    values: dict[str, set[str]] = {}
    for prov in records["provenance"]:
        for key, value in prov.items():
            if key != "metric_fn":
                values.setdefault(key, set()).add(str(value))
    for key in sorted(values):
        shown = sorted(values[key])
        more = f" (+{len(shown) - 6} more)" if len(shown) > 6 else ""
        lines.append(f"- {key}: {'; '.join(shown[:6])}{more}")
    return "Units and provenance:\n\n" + "\n".join(lines)
