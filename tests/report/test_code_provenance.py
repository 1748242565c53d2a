"""A report says which code made its runs (issue 20, point 7): the commit(s) in the header,
and runs from a working tree with uncommitted changes marked, never mixed in silently."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genbench.harness.store import DIVERGED_METRIC
from genbench.report import code_line, runs
from genbench.report.base import Inputs, attach_settings

A, B = "a" * 40, "b" * 40


def frame(commits: dict[str, str]) -> pd.DataFrame:
    """One end-of-run record per run (the divergence flag), model = the run's row."""
    rows = [{"run_id": run_id, "git_commit": commit, "suite": "s", "model": model, "objective": "elbo",
             "dataset": "digits", "precision": "fp32", "backend": "torch", "device": "cpu", "step": None,
             "metric": DIVERGED_METRIC, "value": 0.0, "unit": "bool", "provenance": {}}
            for run_id, (model, commit) in commits.items()]
    return attach_settings(pd.DataFrame(rows))


def runs_table(data: pd.DataFrame) -> str:
    return runs.section(Inputs(data, (Path("."),), Path("figures"), Path(".")))


def test_one_clean_commit_is_named_once_and_the_table_has_no_code_column():
    data = frame({"r1": ("vae", A), "r2": ("vae", A)})
    assert code_line(data) == "Code: `aaaaaaa` (2 runs)."
    assert "code" not in runs_table(data).splitlines()[0]


def test_two_commits_are_both_named_with_their_rows():
    data = frame({"r1": ("vae", A), "r2": ("ae", B)})
    assert code_line(data).startswith("Code: these runs come from 2 commits: `aaaaaaa` (1 run), `bbbbbbb` (1 run).")
    table = runs_table(data)
    assert "code" in table.splitlines()[0]
    assert any("ae " in line and "bbbbbbb" in line for line in table.splitlines())


def test_runs_from_a_modified_tree_are_counted_and_marked_in_their_row():
    data = frame({"r1": ("vae", A), "r2": ("vae", A + "-dirty"), "r3": ("ae", A)})
    line = code_line(data)
    assert "1 of 3 runs were made from a working tree with uncommitted changes" in line
    vae_row = next(row for row in runs_table(data).splitlines() if row.startswith("| vae"))
    assert "aaaaaaa ✱ modified" in vae_row and "aaaaaaa," in vae_row
