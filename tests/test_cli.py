"""The CLI contract: list, run, report, and user errors as exit code 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from genbench.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_list_prints_one_name_per_line(capsys):
    assert main(["list", "datasets"]) == 0
    names = capsys.readouterr().out.split()
    assert {"digits", "shapes", "photos", "toy2d-ring8", "mnist", "cifar10"} <= set(names)
    assert names == sorted(names)
    for kind in ("models", "losses", "regularizers", "metrics", "kernels", "suites"):
        assert main(["list", kind]) == 0
    out = capsys.readouterr().out.split()
    assert {"ae", "vae", "elbo", "recon", "reparam_kl", "quick"} <= set(out)
    assert {"quality", "swd", "ms-ssim", "memorisation", "c2st", "coverage", "likelihood", "elbo",
            "reconstruction"} <= set(out)


def test_list_trainers_with_summaries(capsys):
    assert main(["list", "trainers"]) == 0
    assert capsys.readouterr().out.split() == ["adversarial", "single", "vaegan"]
    assert main(["list", "trainers", "-v"]) == 0
    lines = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert set(lines) == {"adversarial", "single", "vaegan"} and "data-parallel" in lines["single"]


def test_tiny_run_then_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--model", "vae", "--steps", "8", "--seeds", "2", "--set", "latent_dim=4",
                 "--objective-set", "beta=2", "--out", str(out), "--no-progress"]) == 0
    report = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert report == out / "report.md" and report.is_file()
    text = report.read_text()
    assert "vae[latent_dim=4]" in text and "elbo[beta=2.0]" in text and "(n=2)" in text
    report.unlink()
    elsewhere = tmp_path / "elsewhere"
    assert main(["report", str(out), "--out", str(elsewhere)]) == 0
    rendered = (elsewhere / "report.md").read_text()
    assert "## Provenance" in rendered and "../run/runs/" in rendered  # artefacts linked relative


@pytest.mark.parametrize("argv, message", [
    (["run", "--model", "vea"], "Did you mean 'vae'"),
    (["run", "--model", "ae", "--dataset", "mnist:/nonexistent/mnist"], "/nonexistent/mnist"),
    (["run", "--model", "ae", "--dataset", "digitz"], "Did you mean 'digits'"),
    (["run", "--model", "ae", "--set", "arch=transformer"], "'mlp', 'conv'"),
    (["run", "--model", "ae", "--set", "archh=mlp"], "Did you mean 'arch'"),
    (["run", "--suite", "quik"], "Did you mean 'quick'"),
    (["run", "--suite", "missing.toml"], "does not exist"),
    (["report", "/nonexistent/results"], "is not a folder"),
    (["run", "--model", "vae", "--feature-weights", "/nonexistent/pt_inception.pth"], "--feature-weights PATH"),
    (["run", "--model", "vae", "--feature-extractor", "inception-v3"], "weights not given"),
])
def test_user_errors_exit_2_with_a_message(argv, message, capsys, tmp_path):
    out = ["--out", str(tmp_path / "o")] if argv[0] == "run" else []
    assert main(argv + out) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_gan_run_with_trainer_options(tmp_path, capsys):
    out = tmp_path / "gan"
    assert main(["run", "--model", "gan", "--dataset", "toy2d-ring8", "--objective", "hinge", "--steps", "4",
                 "--set", "arch=mlp", "--set", "width=32", "--train-set", "n_critic=2", "--train-set",
                 "monitor_samples=50", "--eval-samples", "100", "--out", str(out), "--no-progress"]) == 0
    text = (out / "report.md").read_text()
    assert "hinge{monitor_samples=50,n_critic=2}" in text and "## Stability" in text
    assert main(["run", "--model", "gan", "--train-set", "n_critics=2", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'n_critic'" in capsys.readouterr().err


def test_unknown_kind_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list", "modls"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_bad_suite_file_is_rejected_before_running(tmp_path, capsys):
    suite = tmp_path / "bad.toml"
    suite.write_text('[defaults]\nstepz = 3\n[[runs]]\nmodel = "ae"\n')
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 2
    assert "Did you mean 'steps'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bench_py_is_the_cli():
    done = subprocess.run([sys.executable, "bench.py", "list", "models"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and {"ae", "vae", "gan"} <= set(done.stdout.split())
    done = subprocess.run([sys.executable, "bench.py", "run", "--model", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Unknown model" in done.stderr


# ---------------------------------------------------------------- run settings: one declaration

CLI_ONLY_RUN_FLAGS = {"-h", "--help", "--suite", "--seeds", "--out", "--shard", "--no-progress", "--dry-run"}


def run_parser_actions() -> dict:
    from genbench.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {flag: action for action in sub.choices["run"]._actions for flag in action.option_strings}


def test_run_flags_are_generated_from_run_config():
    """Every setting with a flag is one option of `genbench run`, typed from its annotation,
    with its choices, its default left to RunConfig; no run setting is written by hand."""
    import argparse
    import typing

    from genbench.harness.settings import SETTING_TYPES, SETTINGS, setting_flag

    actions = run_parser_actions()
    flags = {setting_flag(name): name for name in SETTINGS if setting_flag(name)}
    assert set(actions) == set(flags) | CLI_ONLY_RUN_FLAGS
    for flag, name in flags.items():
        action, annotation = actions[flag], SETTING_TYPES[name]
        assert action.dest == name and action.default is argparse.SUPPRESS, flag
        if typing.get_origin(annotation) is typing.Literal:
            assert list(action.choices) == list(typing.get_args(annotation)), flag
        elif annotation in (int, float):
            assert action.type is annotation, flag


def test_flags_not_given_leave_run_config_defaults(tmp_path):
    from genbench.cli import build_parser, given_settings
    from genbench.harness.settings import RunConfig
    from genbench.harness.suites import command_line_runs

    args = build_parser().parse_args(["run", "--model", "vae", "--steps", "7", "--eval-batch", "32", "--set",
                                      "latent_dim=4"])
    settings = given_settings(args)
    assert settings == {"model": "vae", "steps": 7, "eval_batch": 32, "model_options": {"latent_dim": "4"}}
    runs = command_line_runs(settings, 2)
    assert [r.config for r in runs] == [RunConfig(model="vae", steps=7, eval_batch=32, seed=s,
                                                  model_options={"latent_dim": "4"}) for s in (0, 1)]


@pytest.mark.parametrize("argv, message", [
    (["--eval-batch", "0"], "--eval-batch: must be >= 1; got 0."),
    (["--adam-beta1", "1"], "--adam-beta1: must be < 1; got 1.0."),
    (["--warmup-steps", "-1"], "--warmup-steps: must be >= 0; got -1."),
    (["--seeds", "0"], "--seeds 0: give a number of seeds >= 1"),
])
def test_setting_flags_are_checked_against_the_declared_range(argv, message, capsys, tmp_path):
    assert main(["run", "--model", "vae", *argv, "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


SUITE = """
[defaults]
model = "vae"
dataset = "digits?size=8"
[[runs]]
steps = 30
[[grid]]
steps = [40, 50]
seeds = [1]
"""


def test_setting_flags_apply_to_every_run_of_a_suite(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    assert main(["run", "--suite", str(suite), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    assert [(r[4], r[5], r[6]) for r in rows] == [("0", "30", "fp32"), ("1", "40", "fp32"), ("1", "50", "fp32")]
    assert main(["run", "--suite", str(suite), "--steps", "7", "--precision", "bf16", "--dry-run",
                 "--out", str(tmp_path / "o")]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:3]]
    assert [(r[4], r[5], r[6]) for r in rows] == [("0", "7", "bf16"), ("1", "7", "bf16")]  # the grid's axis too


@pytest.mark.parametrize("flags", [["--seeds", "2"], ["--set", "arch=conv"], ["--train-set", "n_critic=2"]])
def test_ad_hoc_only_flags_are_refused_with_a_suite(flags, tmp_path, capsys):
    assert main(["run", "--suite", "quick", *flags, "--dry-run", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} apply to ad-hoc runs (--model M)" in err and "copy the suite file" in err


def test_building_the_parser_imports_no_torch():
    """`kernels --check` sets TRITON_INTERPRET before genbench.kernels is imported, and `list`
    stays fast: the run flags come from settings.py, which imports no torch."""
    code = ("import sys; from genbench.cli import build_parser; build_parser().parse_args(['run', '--steps', '3']); "
            "print(sorted(m for m in ('torch', 'genbench.kernels', 'genbench.harness.spec') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
