"""Crash safety: a SIGKILL mid-suite resumes without losing or duplicating runs, and an
unwritable or full results folder fails before any training.

(A NaN mid-run is covered in test_runner.py:
test_forced_nan_is_recorded_as_diverged_and_suite_goes_on, through run_all with two runs.)
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import genbench.harness.runner as runner
from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import COMPLETE_METRIC, RESULTS_FILE, check_writable, completed_records, read_records

REPO = Path(__file__).resolve().parents[2]

SUITE = """
description = "crash-safety test: three tiny VAE runs"
[defaults]
model = "vae"
dataset = "digits?size=8"
device = "cpu"
steps = 30
log_every = 1
eval_samples = 200
model_options = { arch = "mlp" }
[[grid]]
seeds = [0, 1, 2]
"""


def complete_counts(records) -> Counter:
    return Counter(r["run_id"] for r in records if r["metric"] == COMPLETE_METRIC)


def wait_for_second_run(results: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll the results file until run 1 is complete and run 2 (seed 1) has written records."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = results.read_bytes().split(b"\n")[:-1] if results.is_file() else []  # whole lines only
        records = [json.loads(line) for line in lines]  # run/start lines carry the seed (compact records)
        if any(r["metric"] == COMPLETE_METRIC for r in records) and any(r.get("seed") == 1 for r in records):
            return
        if proc.poll() is not None:
            pytest.fail(f"the suite exited (code {proc.returncode}) before it could be killed: "
                        f"{proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    pytest.fail("the second run never started")


def test_sigkill_mid_suite_then_rerun_redoes_only_the_interrupted_run(tmp_path):
    suite = tmp_path / "crash.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    results = out / RESULTS_FILE
    cmd = [sys.executable, "-m", "genbench", "run", "--suite", str(suite), "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for_second_run(results, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    before = read_records(results)  # a SIGKILL leaves whole lines only: this parses
    assert len(complete_counts(before)) == 1, "the kill came too late: run 2 had finished"
    (first_id,) = complete_counts(before)
    first_attempt = next(r["attempt"] for r in before if r["metric"] == COMPLETE_METRIC)
    killed = {r["attempt"] for r in before if r["run_id"] != first_id}
    assert len(killed) == 1  # run 2 had started; run 3 had not

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[1/3] vae / elbo / digits?size=8 / seed 0: complete" in done.stderr and "skipped" in done.stderr
    after = read_records(results)
    counts = complete_counts(after)
    assert len(counts) == 3 and set(counts.values()) == {1}  # every run once: no duplicates
    assert after[:len(before)] == before  # nothing rewritten: the kept run and the killed lines stay
    completed = completed_records(after)
    assert {r["attempt"] for r in completed if r["run_id"] == first_id} == {first_attempt}  # kept, not redone
    assert not killed & {r["attempt"] for r in completed}  # the interrupted attempt does not count ...
    for run_id in counts:  # ... and the redone one is whole: one loss per step, once
        steps = [r["step"] for r in completed if r["run_id"] == run_id and r["metric"] == "train/loss"]
        assert steps == list(range(1, 31))


def tiny_runs():
    return resolve_all([run_config({"model": "ae", "steps": 3, "device": "cpu", "eval_samples": 200}, "test")])


@pytest.fixture
def no_training(monkeypatch):
    """Any run that starts fails the test: the folder check must come first."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a run started although the results folder is not writable")

    monkeypatch.setattr(runner, "execute_run", forbidden)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores file permissions; test_simulated_full_or_denied_disk covers it")
def test_unwritable_results_folder_fails_before_training(tmp_path, no_training, capsys):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(GenbenchError, match=r"Cannot write results to .*locked: Permission denied") as exc:
            run_all(tiny_runs(), out, progress=False)
        assert "chmod u+w" in str(exc.value) and "--out DIR" in str(exc.value)
        assert main(["run", "--model", "ae", "--steps", "3", "--out", str(out / "sub"), "--no-progress"]) == 2
        assert "Permission denied" in capsys.readouterr().err
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


@pytest.mark.parametrize("err, call, fix", [
    (errno.ENOSPC, "fsync", "Free space on that file system"),
    (errno.EACCES, "open", "chmod u+w"),
])
def test_simulated_full_or_denied_disk_fails_before_training(tmp_path, monkeypatch, no_training, err, call, fix):
    real = getattr(os, call)

    def failing(path_or_fd, *args, **kwargs):
        if call == "fsync" or ".genbench-write-probe" in str(path_or_fd):
            raise OSError(err, os.strerror(err), str(path_or_fd) if call == "open" else None)
        return real(path_or_fd, *args, **kwargs)

    monkeypatch.setattr(os, call, failing)
    out = tmp_path / "out"
    with pytest.raises(GenbenchError) as exc:
        run_all(tiny_runs(), out, progress=False)
    message = str(exc.value)
    assert f"Cannot write results to {out}: {os.strerror(err)} ({errno.errorcode[err]})" in message
    assert fix in message and "Nothing was run" in message
    assert list(out.iterdir()) == []  # the probe file is gone, nothing else was written


def test_read_only_results_file_fails_before_training(tmp_path, monkeypatch, no_training):
    """An existing results file that cannot take an append is named (simulated: root ignores chmod)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / RESULTS_FILE).write_text("")
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(RESULTS_FILE) and flags & os.O_WRONLY:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(GenbenchError, match=rf"Permission denied \(EACCES\) at {out / RESULTS_FILE}"):
        run_all(tiny_runs(), out, progress=False)


def test_results_path_that_is_a_file_is_a_clear_error(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    with pytest.raises(GenbenchError, match="Cannot write results to .*taken: .*is a file, not a folder"):
        check_writable(path)


def test_writability_check_creates_the_folder_and_leaves_nothing(tmp_path):
    out = tmp_path / "a" / "b"
    check_writable(out)
    assert out.is_dir() and list(out.iterdir()) == []
