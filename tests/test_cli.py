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
                 "eval_samples=50", "--eval-samples", "100", "--out", str(out), "--no-progress"]) == 0
    text = (out / "report.md").read_text()
    assert "hinge{eval_samples=50,n_critic=2}" in text and "## Stability" in text
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
