"""Report cells combine seeds as each value declares (genbench/values.py): p-values are never
averaged (Fisher's combined p, then each seed's), and KID is shown x1000 as papers print it."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import scipy.stats

import genbench.metrics  # noqa: F401  (declares the metrics' values)
from genbench.report.results import metric_table
from genbench.report.tables import pooled_cell


def test_p_values_combine_by_fishers_method_not_by_their_mean():
    p = [0.04, 0.30, 0.70]
    statistic = -2 * sum(math.log(x) for x in p)  # Fisher: chi-squared with 2k degrees of freedom
    expected = scipy.stats.chi2.sf(statistic, 2 * len(p))
    cell = pooled_cell(pd.Series(p), "fisher")
    assert cell.startswith(f"{expected:.2g} (Fisher, n=3; per seed 0.04, 0.3, 0.7)")
    assert "±" not in cell


def rows(metric: str, unit: str, values: list[float]) -> pd.DataFrame:
    common = {"model": "vae", "objective": "elbo", "dataset": "digits", "precision": "fp32", "backend": "torch",
              "device": "cpu", "settings": "", "unit": unit}
    metric_fn = metric.split("/")[0]
    return pd.DataFrame([{**common, "run_id": f"r{i}", "metric": metric, "value": v, "seed": i,
                          "provenance": {"metric_fn": metric_fn}}
                         for i, v in enumerate(values)])


@pytest.mark.parametrize("metric, unit, values, column, cell", [
    ("c2st/p_value", "one-sided binomial p vs 0.5", [0.04, 0.30, 0.70], "p_value", "(Fisher, n=3; per seed"),
    ("quality/kid", "kid", [0.0012, 0.0018], "kid ×1000", "1.5 ± 0.42 (n=2)"),
])
def test_the_results_table_follows_the_declaration(metric, unit, values, column, cell):
    family = "quality" if metric.startswith("quality") else "c2st"
    table = metric_table(family, rows(metric, unit, values), {})
    header, _, row = table.splitlines()[2:5]
    assert column in header and cell in row, table
