"""Damaged results files and a full disk: exit 2 naming the file and the line, the file
untouched, resume intact.

Every case here once ended in a traceback: non-UTF-8 bytes (UnicodeDecodeError), a line
that is JSON but not a record object (AttributeError/TypeError), a record without
run_id (KeyError in completed_run_ids), a full disk during an append (OSError).
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

import pytest

import genbench.harness.runner as runner
from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import (COMPLETE_METRIC, RESULTS_FILE, append_records, completed_records,
                                    completed_run_ids, load_frame, read_records, validate_record)
from tests.harness.test_store import make_record, run_records

TINY = {"model": "ae", "dataset": "toy2d-ring8?n_train=256&n_test=64", "device": "cpu", "steps": 4,
        "batch_size": 32, "log_every": 1, "warmup_steps": 1, "eval_samples": 100,
        "model_options": {"hidden": 16, "latent_dim": 2}}
TINY_ARGV = ["run", "--model", "ae", "--dataset", "toy2d-ring8?n_train=256&n_test=64", "--device", "cpu",
             "--steps", "3", "--batch-size", "32", "--eval-samples", "100", "--set", "hidden=16",
             "--set", "latent_dim=2", "--no-progress"]


def tiny_runs(seeds=(0, 1)):
    return resolve_all([run_config({**TINY, "seed": s}, "test") for s in seeds], "test")


def without(key: str) -> bytes:
    record = make_record()
    del record[key]
    return json.dumps(record).encode()


# A bad second line, and what the message must say about it.
BAD_LINES = {
    "non-UTF-8 bytes": (b'{"run_id": "\xff\xfe"}', "is not UTF-8 text"),
    "JSON array": (b"[1, 2, 3]", "a JSON array where a record object belongs"),
    "JSON null": (b"null", "null where a record object belongs"),
    "JSON number": (b"42", "a number where a record object belongs"),
    "JSON string": (b'"run/complete"', "a JSON string where a record object belongs"),
    "missing run_id": (without("run_id"), "missing ['run_id']"),
    "missing attempt": (without("attempt"), "missing ['attempt']"),
    "missing metric": (without("metric"), "missing ['metric']"),
    "seed as text": (json.dumps(make_record(seed="0")).encode(), "seed and step must be integers"),
    "run_id as object": (json.dumps(make_record(run_id={"a": 1})).encode(), "run_id must be a non-empty string"),
    "NaN literal": (json.dumps(make_record(value=float("nan"))).encode(), "NaN is not JSON"),
    "nested too deep": (b"[" * 100_000, "nested too deep"),
    "4,301-digit number": (b"1" * 4301, "is not a genbench record"),
    "lone surrogate": (json.dumps(make_record(model="\ud800")).encode(), "is not UTF-8 text"),
    "not JSON": (b"this is not json", "is not valid JSON"),
}


def damaged(folder: Path, bad: bytes) -> Path:
    """A results file: a completed run, the bad line, another completed run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULTS_FILE
    append_records(path, run_records("run-a", "att-1"))
    with open(path, "ab") as f:
        f.write(bad + b"\n")
    append_records(path, run_records("run-b", "att-1"))
    return path


@pytest.mark.parametrize("case", BAD_LINES)
def test_bad_line_is_named_and_the_file_is_untouched(tmp_path, case):
    bad, problem = BAD_LINES[case]
    path = damaged(tmp_path / "out", bad)
    before = path.read_bytes()
    for read in (read_records, completed_run_ids, lambda p: load_frame([p.parent])):
        with pytest.raises(GenbenchError) as info:
            read(path)
        message = str(info.value)
        assert f"{path}, line 4, " in message and problem in message  # run-a wrote lines 1-3
        assert "Delete that line" in message and len(message) < 1000
    assert path.read_bytes() == before


@pytest.mark.parametrize("case", ["non-UTF-8 bytes", "JSON null", "missing run_id"])
def test_commands_on_a_damaged_folder_exit_2_without_traceback(tmp_path, monkeypatch, capsys, case):
    path = damaged(tmp_path / "out", BAD_LINES[case][0])
    before = path.read_bytes()
    monkeypatch.setattr(runner, "execute_run", lambda *a, **k: pytest.fail("resumed a run on a corrupt file"))
    for argv in (["report", str(path.parent)], ["compare", str(path.parent), str(path.parent)],
                 [*TINY_ARGV, "--out", str(path.parent)], [*TINY_ARGV, "--out", str(path.parent), "--dry-run"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{path}, line 4" in err and "Traceback" not in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("tail", [b'{"schema_version": 1, "run_id": "run-b", "attem', b'{"model": "caf\xc3',
                                  b"[1, 2", b"null"])
def test_torn_last_line_is_dropped_with_a_warning(tmp_path, tail):
    """A last line without its newline is an interrupted write (a cut UTF-8 character too)."""
    path = tmp_path / RESULTS_FILE
    records = run_records("run-a", "att-1")
    append_records(path, records)
    with open(path, "ab") as f:
        f.write(tail)
    with pytest.warns(UserWarning, match="truncated last line"):
        assert read_records(path) == records


def test_records_read_back_satisfy_the_schema(tmp_path):
    path = tmp_path / RESULTS_FILE
    records = run_records("run-a", "att-1") + [make_record(model="emoji \U0001F600 é")]
    append_records(path, records)
    back = read_records(path)
    assert back == records  # a paired surrogate escape (the emoji) is a character, not an error
    for record in back:
        validate_record(record)


# ---------------------------------------------------------------- full disk


def full_disk_after(monkeypatch, good_writes: int, partial: bool = True):
    """os.write into results.jsonl succeeds `good_writes` times, then the disk is full: the
    next write puts half its bytes down (a short write) and the one after raises ENOSPC."""
    real_write = os.write
    calls = {"n": 0}

    def write(fd, data):
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(RESULTS_FILE):
            return real_write(fd, data)
        calls["n"] += 1
        if calls["n"] <= good_writes:
            return real_write(fd, data)
        if partial and calls["n"] == good_writes + 1 and len(data) > 1:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)


def test_full_disk_keeps_the_written_records_whole(tmp_path, monkeypatch):
    path = tmp_path / RESULTS_FILE
    first = run_records("run-a", "att-1")
    append_records(path, first)
    before = path.read_bytes()
    full_disk_after(monkeypatch, good_writes=0)
    with pytest.raises(GenbenchError) as info:
        append_records(path, run_records("run-b", "att-1"))
    message = str(info.value)
    assert f"Cannot write results to {tmp_path}: No space left on device (ENOSPC)" in message
    assert f"The records already in {path} are intact" in message and "Free space" in message
    assert path.read_bytes() == before  # the half-written batch is gone: no torn line, no partial run
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torn line to warn about
        assert read_records(path) == first


def test_full_disk_mid_suite_then_resume(tmp_path, monkeypatch):
    """The disk fills while run 2 writes its completion marker: run 2 is not complete, run 1
    is; once there is space again the same call redoes run 2 only."""
    runs, out = tiny_runs(), tmp_path / "out"
    results = out / RESULTS_FILE
    real_write = os.write
    markers = {"n": 0}

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(RESULTS_FILE) and COMPLETE_METRIC.encode() in data:
            markers["n"] += 1
            if markers["n"] == 2:
                real_write(fd, data[:-10])  # most of the batch, marker line included but cut
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(GenbenchError, match="No space left on device"):
        run_all(runs, out, progress=False, echo=lambda s: None)
    monkeypatch.undo()
    assert completed_run_ids(results) == {runs[0].run_id}  # the run in progress does not count
    said: list[str] = []
    run_all(runs, out, progress=False, echo=said.append)
    assert said[0].endswith("skipped") and said[1].endswith("running") and said[2].endswith("done")
    records = read_records(results)
    markers_per_run = [r["run_id"] for r in records if r["metric"] == COMPLETE_METRIC]
    assert sorted(markers_per_run) == sorted(run.run_id for run in runs)  # each run complete once
    kept = completed_records(records)
    steps = [r["step"] for r in kept if r["run_id"] == runs[1].run_id and r["metric"] == "train/loss"]
    assert steps == [1, 2, 3, 4]  # the redone attempt, whole


def test_full_disk_in_the_cli_is_exit_2_with_path_and_cause(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    full_disk_after(monkeypatch, good_writes=0, partial=False)
    assert main([*TINY_ARGV, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"Cannot write results to {out}: No space left on device (ENOSPC)" in err and "Traceback" not in err
    monkeypatch.undo()
    assert read_records(out / RESULTS_FILE) == []


def test_full_disk_outside_the_records_is_exit_2_too(tmp_path, monkeypatch):
    """ENOSPC from an artefact (a figure) during a run: the same message, not a traceback."""
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "out" / "runs" / "x.png"))

    monkeypatch.setattr(runner, "write_artefacts", no_space)
    with pytest.raises(GenbenchError, match=r"No space left on device \(ENOSPC\).*not counted as complete"):
        run_all(tiny_runs((0,)), tmp_path / "out", progress=False, echo=lambda s: None)
    assert completed_run_ids(tmp_path / "out" / RESULTS_FILE) == set()
