"""The kernel path on a bare GPU machine (issue 19): torch, triton, numpy, pandas, scipy,
tabulate and pytest only. `genbench list kernels|benches`, `genbench kernels --check`, the
kernel tests' collection and `scripts/gpu-check.sh --dry-run` must run with torch-fidelity,
torchvision, scikit-learn, scikit-image and matplotlib absent, and from a copy of the tree
that was never installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABSENT = ("torch_fidelity", "torchvision", "sklearn", "skimage", "matplotlib")

# Hides the packages as if they were not installed: find_spec answers None (torch itself
# probes optional packages with importlib.util.find_spec), imports raise ModuleNotFoundError.
HIDE = f"""
import sys
ABSENT = {set(ABSENT)!r}
class Hide:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
"""


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("bare-site")
    (site / "sitecustomize.py").write_text(HIDE)
    env = {**os.environ, "PYTHONPATH": str(site), "TRITON_INTERPRET": "1"}
    return env


def run(args: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_heavy_packages_are_really_hidden(bare_env):
    for name in ABSENT:
        done = run([sys.executable, "-c", f"import {name}"], bare_env)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, name


@pytest.mark.parametrize("kind, expected", [("kernels", {"attention", "reparam_kl", "vq_nearest"}),
                                            ("benches", {"train_step", "conv_transpose2d"})])
def test_list_kernels_and_benches(bare_env, kind, expected):
    done = run([sys.executable, "-m", "genbench", "list", kind], bare_env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expected <= set(done.stdout.split())


def test_kernels_check_including_the_training_step(bare_env):
    done = run([sys.executable, "-m", "genbench", "kernels", "--check", "--ops", "reparam_kl", "train_step"], bare_env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "all kernels match their references" in done.stdout + done.stderr
    assert all(variant in done.stdout for variant in ("gan-dcgan", "vae-conv", "ddpm-unet")), done.stdout


def test_kernel_and_perf_tests_collect(bare_env):
    done = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                "tests/kernels", "tests/perf"], bare_env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def test_gpu_check_dry_run(bare_env):
    env = {**bare_env, "PYTHON": sys.executable}
    done = run(["bash", "scripts/gpu-check.sh", "--dry-run"], env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "every command exists and parses" in done.stdout


def test_an_uninstalled_copy_imports_its_own_kernels(bare_env, tmp_path):
    """A copy of the tree (as the GPU machine receives it) run from its root, never installed:
    genbench.kernels and genbench.baselines resolve to the copy's kernels/ and baselines/."""
    copy = tmp_path / "tree"
    for top in ("genbench", "kernels", "baselines", "scripts", "pyproject.toml"):
        source = REPO / top
        if source.is_dir():
            shutil.copytree(source, copy / top, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / top)
    env = {**bare_env, "PYTHONPATH": f"{copy}{os.pathsep}{bare_env['PYTHONPATH']}"}
    where = run([sys.executable, "-c", "import genbench.kernels, genbench.baselines; "
                 "print(genbench.kernels.__file__); print(genbench.baselines.__file__)"], env, cwd=copy)
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(Path(line).is_relative_to(copy) for line in where.stdout.split()), where.stdout
    listed = run([sys.executable, "-m", "genbench", "list", "kernels"], env, cwd=copy)
    assert listed.returncode == 0 and "reparam_kl" in listed.stdout, listed.stderr[-2000:]
