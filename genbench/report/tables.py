"""How report tables show numbers: one home for the cell formats."""

from __future__ import annotations

import pandas as pd
import scipy.stats
from tabulate import tabulate


def fmt(x: float, digits: int = 4) -> str:
    """Readable numbers: thousands separators for large ones, significant digits else."""
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def mean_std(values: pd.Series) -> str:
    return seeds_cell(values, lambda v: f"{fmt(v.mean())} ± {fmt(v.std(ddof=1), 2)}")


def seeds_cell(values: pd.Series, summary) -> str:
    """A cell over seeds: "" without values, the value with one, else summary(values) with n."""
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{fmt(values.iloc[0])} (n=1)"
    return f"{summary(values)} (n={len(values)})"


def pooled_cell(values: pd.Series, pooling: str = "mean", scale: float = 1.0) -> str:
    """A cell over seeds as the value's declaration says (genbench/values.py): mean ± std of
    value x scale, or, for p-values ("fisher"), Fisher's combined p and then each seed's p --
    p-values are never averaged."""
    values = values.dropna() * scale
    if pooling != "fisher" or len(values) < 2:
        return mean_std(values)
    combined = scipy.stats.combine_pvalues(values.clip(lower=1e-300).to_numpy(), method="fisher").pvalue
    seeds = ", ".join(fmt(v, 2) for v in values)
    return f"{fmt(combined, 2)} (Fisher, n={len(values)}; per seed {seeds})"


def versions_text(versions: dict) -> str:
    """A record's `versions` as "genbench 0.1.0, python 3.11.7, torch 2.4.0": sorted, unset
    ones (None, e.g. triton without a GPU stack) left out."""
    return ", ".join(f"{name} {value}" for name, value in sorted(versions.items()) if value is not None)


# A table row is one setting: these are never averaged together. A section that groups by
# them shows them as columns, and drops a column whose value is the same in every row (the
# provenance section names it once). "settings": the run settings in which runs of one model x
# objective x dataset differ (report.base.attach_settings), "" where they share them all.
SETTING_SPLIT = ["precision", "backend", "device", "settings"]


def drop_uniform(frame: pd.DataFrame, columns: list[str] = SETTING_SPLIT) -> pd.DataFrame:
    """`frame` without those of `columns` that hold a single value throughout."""
    return frame.drop(columns=[c for c in columns if c in frame and frame[c].nunique(dropna=False) <= 1])


def drop_blank(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """`frame` without `column` when every cell of it is empty (e.g. a verdict column where
    every run passed)."""
    return frame.drop(columns=column) if column in frame and not frame[column].astype(bool).any() else frame


def median_range(values: pd.Series) -> str:
    """median [min-max] (n) of the seeds: for values that span decades, where one seed's
    1e9 would swamp a mean."""
    return seeds_cell(values, lambda v: f"{fmt(v.median())} [{fmt(v.min())}–{fmt(v.max())}]")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of `frame`, cells as given (no number parsing beyond tabulate's);
    a `|` inside a cell is escaped, so that record text cannot split a cell in two."""
    if any(isinstance(c, str) and "|" in c for c in [*frame.columns, *frame.to_numpy().ravel()]):
        frame = frame.rename(columns=escape_pipes).map(escape_pipes)
    return tabulate(frame, headers="keys", tablefmt="github", showindex=False)


def escape_pipes(cell):
    return cell.replace("|", "\\|") if isinstance(cell, str) else cell
