"""Runs that differ in a setting are never pooled (issue 20, point 3).

Two tiny result folders through the real runner, the same model, objective and dataset,
two seeds each, differing only in the learning rate. `report` over both gives one row per
lr with the lr shown, never one "(n=4)" row or two curves both labelled "seed 0";
`compare` refuses the pair and names `--across`, and `compare --across lr` pairs them with
the bootstrap interval; the dry-run plan of a suite whose runs differ in lr shows it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.harness.runner import run_all
from genbench.harness.settings import RESULT_SETTINGS, SETTINGS, RunConfig
from genbench.harness.spec import resolve_all, run_config
from genbench.report.compare import IMPROVED, REGRESSED, compare_paths
from genbench.report.compare import CHANGED, WITHIN_NOISE, render

LRS = (0.001, 0.0003)
TINY = {"model": "ae", "dataset": "digits?size=8", "device": "cpu", "steps": 20, "eval_samples": 200,
        "log_every": 5, "warmup_steps": 2}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """Folder A: lr 0.001, seeds 0 and 1; folder B: lr 0.0003, seeds 0 and 1."""
    root = tmp_path_factory.mktemp("settings")
    out = []
    for name, lr in zip("AB", LRS):
        runs = resolve_all([run_config({**TINY, "lr": lr, "seed": seed}, "test") for seed in (0, 1)], "test")
        run_all(runs, root / name, progress=False)
        out.append(root / name)
    return out[0], out[1]


def table(text: str, title: str) -> list[str]:
    """The table rows (header included) of the section `## title`."""
    part = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in part.splitlines() if line.startswith("|") and not line.startswith("|--")]


def test_the_settings_key_is_derived_from_run_config():
    """Every declared setting but the identity fields, the seed and the option tables (which
    the labels carry): a setting added to RunConfig keys results without another edit."""
    assert set(RESULT_SETTINGS) == set(SETTINGS) - {"model", "objective", "dataset", "precision", "backend",
                                                     "device", "seed", "model_options", "objective_options",
                                                     "trainer_options"}
    assert {"steps", "batch_size", "lr", "adam_beta1", "eval_samples", "iwae_k", "eval_batch",
            "warmup_steps", "feature_extractor", "log_every"} <= set(RESULT_SETTINGS)


def test_report_over_two_settings_gives_a_row_per_setting(folders, tmp_path):
    out = tmp_path / "report"
    assert main(["report", *map(str, folders), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    runs = table(text, "Runs")
    header = [c.strip() for c in runs[0].strip("|").split("|")]
    assert "settings" in header
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in runs[1:]]
    assert sorted((r["settings"], r["runs"]) for r in rows) == [("lr=0.0003", "2"), ("lr=0.001", "2")]
    assert "(n=4)" not in text  # two seeds per setting, never four pooled as seeds
    performance = table(text, "Performance")
    assert len(performance) == 3 and all(("lr=0.001" in r) != ("lr=0.0003" in r) for r in performance[1:])
    # curves and artefacts: one figure per setting, titled with it
    curves = text.split("## Training curves\n", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"^\*\*ae \| recon .*\| lr=0\.001\*\*$", curves, re.M)) == 1
    assert len(re.findall(r"^\*\*ae \| recon .*\| lr=0\.0003\*\*$", curves, re.M)) == 1
    assert len(set(re.findall(r"figures/curves-[0-9a-f]+\.png", curves))) == 2


def test_a_report_of_one_setting_shows_no_settings_column(folders, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(folders[0]), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "settings" not in table(text, "Runs")[0] and "lr=" not in text
    assert "(n=2)" in text


def test_compare_refuses_two_settings_and_names_across(folders, capsys):
    comparison = compare_paths(*folders)
    assert comparison.rows == [] and comparison.unmatched
    assert all("run.lr: A=0.001, B=0.0003" in u.reason and "--across lr" in u.reason for u in comparison.unmatched)
    assert main(["compare", *map(str, folders)]) == 0
    out = capsys.readouterr().out
    assert "--across" in out and "compared 0:" in out


def test_compare_across_lr_pairs_the_settings_with_a_bootstrap_interval(folders, capsys):
    comparison = compare_paths(*folders, across="lr")
    assert comparison.rows and not comparison.unmatched
    assert comparison.a.selection == "lr = 0.001" and comparison.b.selection == "lr = 0.0003"
    recon = next(r for r in comparison.rows if r.key.metric == "test/recon_mse")
    assert recon.a.n == 2 and recon.b.n == 2 and recon.method == "bootstrap"
    lo, hi = recon.interval
    assert lo <= recon.delta <= hi
    assert recon.verdict in (REGRESSED, IMPROVED, WITHIN_NOISE, CHANGED)
    assert main(["compare", *map(str, folders), "--across", "lr"]) == 0
    out = capsys.readouterr().out
    assert "runs with lr = 0.001" in out and "runs with lr = 0.0003" in out
    line = next(line for line in out.splitlines() if line.startswith("| test/recon_mse "))
    assert re.search(r"\[[-+]?[\d.e-]+, [-+]?[\d.e-]+\]", line) and "(n=2)" in line
    assert render(comparison) == out[:-1]  # stdout is the rendering


def test_compare_across_within_one_folder(folders, tmp_path):
    """One folder holding both settings, given twice: split by the value, the smaller the baseline."""
    both = tmp_path / "both"
    both.mkdir()
    (both / "results.jsonl").write_text("".join((f / "results.jsonl").read_text() for f in folders))
    comparison = compare_paths(both, both, across="lr")
    assert comparison.a.selection == "lr = 0.0003" and comparison.b.selection == "lr = 0.001"
    assert all(r.a.n == 2 and r.b.n == 2 for r in comparison.rows if r.key.metric == "test/recon_mse")


def test_compare_across_needs_two_values(folders, capsys):
    assert main(["compare", *map(str, folders), "--across", "steps"]) == 2
    assert "exactly two values of steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # not a run setting: argparse names the choices
        main(["compare", *map(str, folders), "--across", "seed"])
    assert "invalid choice: 'seed'" in capsys.readouterr().err


SUITE = """
[defaults]
model = "vae"
dataset = "digits?size=8"
steps = 30
[[runs]]
lr = 0.001
[[runs]]
lr = 0.0003
"""
ONE_SETTING = """
[defaults]
model = "vae"
dataset = "digits?size=8"
steps = 30
[[grid]]
seeds = [0, 1]
"""


def test_the_dry_run_plan_shows_the_setting_that_differs(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    assert main(["run", "--suite", str(suite), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["#", "model", "objective", "dataset", "seed", "steps", "precision", "settings",
                                "status"]
    assert "lr=0.0003" in lines[2] and "lr=" not in lines[1]  # the default is not repeated
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
    (tmp_path / "one.toml").write_text(ONE_SETTING)
    assert main(["run", "--suite", str(tmp_path / "one.toml"), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    assert "settings" not in capsys.readouterr().out.splitlines()[0]  # nothing differs: no column
    assert RunConfig(model="vae").lr == 0.001  # the default the plan leaves out
