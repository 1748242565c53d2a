"""The process around a run: Ctrl-C, `--out ""`, and one writer per results folder.

Fixed cases: Ctrl-C printed a traceback; `--out ""` silently wrote into the current folder;
two `genbench run` processes on one --out both trained every run.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import genbench.harness.runner as runner
from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.harness.lock import LOCK_FILE, folder_lock, shard_lock_name
from genbench.harness.runner import run_all
from genbench.harness.store import COMPLETE_METRIC, RESULTS_FILE, START_METRIC, completed_records, read_records
from tests.security.test_records import TINY_ARGV, tiny_runs

REPO = Path(__file__).resolve().parents[2]
ENV = {**{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
       "OMP_NUM_THREADS": "1"}
SUITE = """
description = "test: a quick run, then a long one to interrupt"
[defaults]
model = "ae"
dataset = "toy2d-ring8?n_train=256&n_test=64"
device = "cpu"
batch_size = 32
log_every = 1
warmup_steps = 1
eval_samples = 100
model_options = { hidden = 16, latent_dim = 2 }
[[runs]]
seeds = [0]
steps = 4
[[runs]]
seeds = [1]
steps = 600
"""


def genbench(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "genbench", *args], cwd=REPO, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"genbench exited ({proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def training_seed_1(results: Path) -> bool:
    """Seed 1 has logged a training loss (records are compact: the seed is in its run/start line)."""
    lines = results.read_bytes().split(b"\n")[:-1] if results.is_file() else []
    records = list(map(json.loads, lines))
    seed_1 = {r["run_id"] for r in records if r["metric"] == START_METRIC and r["seed"] == 1}
    return any(r["run_id"] in seed_1 and r["metric"] == "train/loss" for r in records)


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_says_what_was_saved_exits_130_and_the_rerun_resumes(tmp_path):
    suite, out = tmp_path / "two.toml", tmp_path / "out"
    suite.write_text(SUITE)
    argv = ["run", "--suite", str(suite), "--out", str(out), "--no-progress"]
    proc = genbench(*argv)
    said = []
    try:
        while not (said and said[-1].startswith("[2/2]") and said[-1].endswith("running")):
            line = proc.stderr.readline()
            if not line:
                pytest.fail(f"genbench exited before run 2 started: {''.join(said)[-2000:]}")
            said.append(line.rstrip("\n"))
        wait_for(lambda: training_seed_1(out / RESULTS_FILE), proc, "run 2 trained")
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert rest.splitlines() == [
        f"genbench: interrupted; the runs completed so far are saved in {out / RESULTS_FILE}. "
        f"Rerun the same command with --out {out} to resume (the interrupted run starts over)."]
    before = read_records(out / RESULTS_FILE)
    first = {r["run_id"] for r in before if r["metric"] == COMPLETE_METRIC}
    assert len(first) == 1  # run 1 finished, run 2 was interrupted

    rerun = genbench(*argv)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    assert "[1/2]" in err and "skipped" in err
    after = read_records(out / RESULTS_FILE)
    assert after[:len(before)] == before
    complete = [r["run_id"] for r in after if r["metric"] == COMPLETE_METRIC]
    assert len(complete) == 2 and set(complete) >= first  # run 1 kept, run 2 done once
    steps = [r["step"] for r in completed_records(after) if r["seed"] == 1 and r["metric"] == "train/loss"]
    assert steps == list(range(1, 601))


def test_ctrl_c_in_other_commands_is_one_line_and_130(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("genbench.harness.suites.suite_listing", interrupted)
    assert main(["list", "suites"]) == 130
    err = capsys.readouterr().err
    assert err == "genbench: interrupted; `genbench list` did not finish: rerun it.\n"
    monkeypatch.setattr(runner, "execute_run", interrupted)
    out = tmp_path / "new"
    assert main([*TINY_ARGV, "--out", str(out)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"genbench: interrupted before any run recorded results in {out}; rerun the command to start again.")
    assert (out / LOCK_FILE).read_text() == ""  # the lock was let go and its holder line cleared


# ---------------------------------------------------------------- --out ""


@pytest.mark.parametrize("argv", [["run", "--model", "ae", "--out", ""], ["run", "--out", " "],
                                  ["report", "somewhere", "--out", ""], ["kernels", "--out", ""]])
def test_empty_out_is_refused(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "execute_run", lambda *a, **k: pytest.fail("ran into the current folder"))
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --out: an empty folder name would mean the current folder" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- one writer per folder


HOLDER = ("import sys; from pathlib import Path; from genbench.harness.lock import folder_lock\n"
          "with folder_lock(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()")


def test_second_run_on_the_same_out_is_refused_naming_the_holder(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=REPO, env=ENV, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == "held\n"
        monkeypatch.setattr(runner, "execute_run", lambda *a, **k: pytest.fail("trained beside the holder"))
        assert main([*TINY_ARGV, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{out} is in use by another genbench run (pid {holder.pid} on " in err
        assert "Wait for it to finish" in err and "--shard I/N" in err and "Traceback" not in err
        assert main([*TINY_ARGV, "--out", str(out), "--shard", "0/2"]) == 2  # nor as a shard beside it
        assert f"without --shard (pid {holder.pid} on " in capsys.readouterr().err
        assert not (out / RESULTS_FILE).exists()
    finally:
        holder.kill()  # SIGKILL: no cleanup; the kernel drops the flock with the process
        holder.wait()
    assert f"pid {holder.pid} " in (out / LOCK_FILE).read_text()  # a stale holder line ...
    with folder_lock(out):  # ... does not block
        assert f"pid {os.getpid()} " in (out / LOCK_FILE).read_text()


def test_shards_share_a_folder_but_not_with_an_unsharded_run(tmp_path):
    out = tmp_path
    with folder_lock(out, (0, 2)), folder_lock(out, (1, 2)):  # the shards of one split run together
        with pytest.raises(GenbenchError, match=r"in use by sharded genbench runs \(shard 0/2: pid \d+ .*"
                                                r"shard 1/2: pid \d+"):
            with folder_lock(out):
                pass
        with pytest.raises(GenbenchError, match="Shard 0/2 of .* is already running"):
            with folder_lock(out, (0, 2)):
                pass
        with pytest.raises(GenbenchError, match=r"shards of another split \(shard 0/2: pid .*this one is 2/3"):
            with folder_lock(out, (2, 3)):
                pass
    with folder_lock(out):
        with pytest.raises(GenbenchError, match="without --shard"):
            with folder_lock(out, (0, 2)):
                pass
    with folder_lock(out, (0, 3)):  # every lock was released, and no holder line is left behind
        pass
    assert all(p.read_text() == "" for p in out.glob(".genbench*.lock"))
    assert (out / shard_lock_name(0, 3)).exists()


def test_a_lock_file_that_cannot_be_opened_is_a_user_error(tmp_path, monkeypatch, capsys):
    """A lock file left by another user (simulated: root ignores permissions)."""
    real_open = os.open

    def denied(path, flags, *args):
        if str(path).endswith(LOCK_FILE):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    (tmp_path / LOCK_FILE).write_text("")
    monkeypatch.setattr(os, "open", denied)
    monkeypatch.setattr(runner, "execute_run", lambda *a, **k: pytest.fail("ran without the lock"))
    assert main([*TINY_ARGV, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"Permission denied (EACCES) at {tmp_path / LOCK_FILE}" in err and "Traceback" not in err


def test_the_lock_is_held_for_the_whole_run_all(tmp_path, monkeypatch):
    seen = []

    def execute_run(run, out_dir, *args):
        for shard in (None, (1, 2)):
            try:
                with folder_lock(out_dir, shard):
                    seen.append((shard, "free"))
            except GenbenchError:
                seen.append((shard, "held"))
        return "done"

    monkeypatch.setattr(runner, "execute_run", execute_run)
    run_all(tiny_runs((0,)), tmp_path, progress=False, echo=lambda s: None)
    run_all(tiny_runs((0,)), tmp_path, progress=False, echo=lambda s: None, shard=(0, 2))
    assert seen == [(None, "held"), ((1, 2), "held"), (None, "held"), ((1, 2), "free")]
    with folder_lock(tmp_path):  # released after
        pass


def test_refused_rank_0_stops_every_torchrun_rank(tmp_path):
    """Under torchrun rank 0 alone takes the lock; when it is refused the other ranks must
    stop too, not wait for rank 0 at the next collective."""
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "genbench",
           *TINY_ARGV, "--out", str(out)]
    with folder_lock(out):
        done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert done.stderr.count(f"{out} is in use by another genbench run (pid {os.getpid()} ") == 2, done.stderr[-3000:]
    assert not (out / RESULTS_FILE).exists()
