"""Adding a metric touches one module: this one. It registers a small metric with its value
declaration, runs it in tiny runs, and finds it in `genbench list metrics`, in the report
and in `genbench compare` -- with the direction it declared -- without any other file
knowing about it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genbench.cli import main
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import RESULTS_FILE, read_records
from genbench.metrics.base import SAMPLE_CONDITIONS, SAMPLE_OUTCOMES, MetricValue, register_metric, unregister_metric
from genbench.report import render_report
from genbench.report.compare import IMPROVED, REGRESSED, compare_paths

NAME, VALUE = "mode_distance", "mode_distance/mean"


def register() -> None:
    @register_metric(NAME, lambda model, info: info.kind == "points" and "modes" in info.extras,
                     "mean distance of generated 2-D points to their nearest mixture mode",
                     values={VALUE: ("lower", "data units", "mean distance of a generated point to its nearest mode")},
                     conditions=SAMPLE_CONDITIONS, outcomes=SAMPLE_OUTCOMES)
    def mode_distance(ctx) -> list[MetricValue]:
        modes = torch.tensor(ctx.dataset.info.extras["modes"], dtype=torch.float32)  # (K, 2)
        nearest = torch.cdist(ctx.samples.float(), modes).min(dim=1).values  # (N,)
        return [MetricValue(VALUE, float(nearest.mean()), "data units", ctx.sample_provenance())]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two seeds of a tiny VAE on 2-D mixture data; the new metric is registered while this
    module's tests run."""
    register()
    try:
        out = tmp_path_factory.mktemp("new-metric") / "a"
        runs = resolve_all([run_config({"model": "vae", "dataset": "toy2d-ring8", "steps": 5, "seed": seed,
                                        "device": "cpu", "eval_samples": 200}, "demo") for seed in (0, 1)], "demo")
        run_all(runs, out, progress=False)
        yield out
    finally:
        unregister_metric(NAME)


def worse_copy(folder: Path, to: Path) -> Path:
    """The same records with the new metric's values ten times larger (worse, by its
    declaration) and every other value unchanged."""
    to.mkdir()
    with open(to / RESULTS_FILE, "w") as f:
        for record in read_records(folder):
            if record["metric"] == VALUE:
                record["value"] *= 10
            f.write(json.dumps(record) + "\n")
    return to


def test_it_is_recorded_by_the_harness(results):
    values = [r for r in read_records(results) if r["metric"] == VALUE]
    assert len(values) == 2 and all(r["provenance"]["metric_fn"] == NAME for r in values)
    assert all(0 <= r["value"] < 10 for r in values)  # distances on data of radius 1


def test_it_is_listed(results, capsys):
    assert main(["list", "metrics", "-v"]) == 0
    assert f"{NAME}\tmean distance of generated 2-D points" in capsys.readouterr().out


def test_it_gets_a_table_in_the_report(results):
    report = render_report([results]).read_text()
    table = report.split(f"### {NAME}\n\n", 1)[1].split("\n\n", 1)[0]
    header, _, *rows = table.splitlines()
    assert "| mean " in header and len(rows) == 1 and "(n=2)" in rows[0]
    assert "- `mean`: data units" in report  # its unit, under the table
    assert f'<h3 id="mode-distance">{NAME}</h3>' in results.joinpath("report.html").read_text()


@pytest.mark.parametrize("worse_side, verdict", [("B", REGRESSED), ("A", IMPROVED)])
def test_compare_reads_its_declared_direction(results, tmp_path, worse_side, verdict):
    worse = worse_copy(results, tmp_path / "worse")
    a, b = (results, worse) if worse_side == "B" else (worse, results)
    comparison = compare_paths(a, b)
    (row,) = [r for r in comparison.rows if r.key.metric == VALUE]
    assert row.direction == -1 and row.verdict == verdict
    others = {r.verdict for r in comparison.rows if r.key.metric != VALUE}
    assert others <= {"identical"}  # nothing else moved


def test_compare_command_fails_on_its_regression(results, tmp_path, capsys):
    worse = worse_copy(results, tmp_path / "worse")
    assert main(["compare", str(results), str(worse), "--fail-above", "50"]) == 1
    captured = capsys.readouterr()
    assert f"{VALUE} (+900.0% worse)" in captured.err
    (line,) = [line for line in captured.out.splitlines() if f"| {VALUE} " in line]
    assert "| lower " in line and "| REGRESSION " in line
