"""Tests for genbench/harness/store.py: result records as JSON lines, appended atomically."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from genbench.errors import GenbenchError
from genbench.harness.store import (
    COMPLETE_METRIC,
    FIELDS,
    RESULTS_FILE,
    SCHEMA_VERSION,
    append_records,
    completed_records,
    completed_run_ids,
    load_frame,
    read_records,
    sanitize_value,
    validate_record,
)


def make_record(**overrides) -> dict:
    """A valid record with every field in FIELDS; keyword arguments override fields."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": "run-a",
        "attempt": "attempt-1",
        "suite": "quick",
        "model": "vae",
        "objective": "elbo",
        "dataset": "digits",
        "seed": 0,
        "step": None,
        "metric": "test/elbo",
        "value": 1.5,
        "unit": "nats/example",
        "backend": "torch",
        "device": "cpu: test",
        "precision": "fp32",
        "versions": {"torch": "2.x", "triton": None, "genbench": "0.1.0"},
        "git_commit": None,
        "timestamp": "2024-01-01T00:00:00+00:00",
        "provenance": {"n_examples": 128},
    }
    unknown = set(overrides) - set(FIELDS)
    assert not unknown, f"make_record: {unknown} are not schema fields"
    record.update(overrides)
    assert set(record) == set(FIELDS)
    return record


def run_records(run_id: str, attempt: str, n: int = 2, complete: bool = True) -> list[dict]:
    """One attempt of a run: n metric records, then run/complete if `complete`."""
    records = [
        make_record(run_id=run_id, attempt=attempt, step=i, metric="train/loss", value=float(i))
        for i in range(n)
    ]
    if complete:
        records.append(make_record(run_id=run_id, attempt=attempt, metric=COMPLETE_METRIC,
                                   value=1.0, unit="bool"))
    return records


# ---------------------------------------------------------------- validate_record


def test_helper_record_is_valid():
    validate_record(make_record())
    validate_record(make_record(value=None))
    validate_record(make_record(value=3))


@pytest.mark.parametrize("field", FIELDS)
def test_missing_field_rejected(field):
    record = make_record()
    del record[field]
    with pytest.raises(ValueError, match=field):
        validate_record(record)


def test_extra_field_rejected():
    record = make_record()
    record["colour"] = "blue"
    with pytest.raises(ValueError, match="colour"):
        validate_record(record)


@pytest.mark.parametrize("version", [0, 3, "1", None])
def test_wrong_schema_version_rejected(version):
    with pytest.raises(ValueError, match="schema_version"):
        validate_record(make_record(schema_version=version))


@pytest.mark.parametrize("value", ["1.5", "N/A", [1.0], {"v": 1}])
def test_non_numeric_value_rejected(value):
    with pytest.raises(ValueError, match="value"):
        validate_record(make_record(value=value))


@pytest.mark.parametrize("provenance", [None, "seed=0", [("seed", 0)]])
def test_non_dict_provenance_rejected(provenance):
    with pytest.raises(ValueError, match="provenance"):
        validate_record(make_record(provenance=provenance))


def test_non_dict_versions_rejected():
    with pytest.raises(ValueError, match="versions"):
        validate_record(make_record(versions="2.4"))


@pytest.mark.parametrize("key", ["run_id", "attempt", "model", "objective", "dataset", "metric", "unit"])
@pytest.mark.parametrize("bad", ["", None, 3])
def test_required_strings(key, bad):
    with pytest.raises(ValueError, match=key):
        validate_record(make_record(**{key: bad}))


# ---------------------------------------------------------------- sanitize_value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_sanitize_nonfinite_becomes_none_and_is_flagged(value):
    provenance: dict = {"seed": 1}
    assert sanitize_value(value, provenance) is None
    assert provenance["seed"] == 1
    assert "nonfinite" in provenance
    assert provenance["nonfinite"] == str(value)
    # The sanitised record is valid and serialises as strict JSON.
    record = make_record(value=None, provenance=provenance)
    validate_record(record)
    json.dumps(record, allow_nan=False)


@pytest.mark.parametrize("value, expected", [(1.25, 1.25), (3, 3.0), (0.0, 0.0), (-2.5, -2.5)])
def test_sanitize_finite_passes_through(value, expected):
    provenance: dict = {}
    result = sanitize_value(value, provenance)
    assert result == expected and isinstance(result, float)
    assert "nonfinite" not in provenance


def test_sanitize_none_stays_none():
    provenance: dict = {}
    assert sanitize_value(None, provenance) is None
    assert "nonfinite" not in provenance


def test_sanitize_accepts_numpy_and_torch_scalars():
    np = pytest.importorskip("numpy")
    provenance: dict = {}
    assert sanitize_value(np.float32(0.5), provenance) == 0.5
    assert sanitize_value(np.float64("nan"), provenance) is None
    assert provenance["nonfinite"] == "nan"


# ---------------------------------------------------------------- append / read


def test_append_read_round_trip(tmp_path):
    path = tmp_path / RESULTS_FILE
    first = run_records("run-a", "att-1", n=3)
    second = [make_record(run_id="run-b", metric="test/x", value=None,
                          provenance={"nested": {"list": [1, 2], "s": "é ✓"}})]
    append_records(path, first)
    append_records(path, second)
    append_records(path, [])  # no-op
    back = read_records(path)
    assert back == first + second
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == len(first) + len(second)  # one line per record


def test_append_validates_before_writing(tmp_path):
    path = tmp_path / RESULTS_FILE
    append_records(path, [make_record()])
    before = path.read_bytes()
    bad = make_record()
    del bad["unit"]
    with pytest.raises(ValueError):
        append_records(path, [make_record(run_id="run-z"), bad])
    assert path.read_bytes() == before  # nothing of the batch was written


def test_append_refuses_nan_values(tmp_path):
    path = tmp_path / RESULTS_FILE
    with pytest.raises(ValueError):
        append_records(path, [make_record(value=float("nan"))])
    assert not path.exists() or path.read_bytes() == b""


def test_read_missing_file_is_user_error(tmp_path):
    with pytest.raises(GenbenchError, match="No result records"):
        read_records(tmp_path / RESULTS_FILE)


def _append_worker(path: str, worker: int, n_records: int, batch: int) -> None:
    """Child process body: append n_records records (several KB each) in batches."""
    filler = f"w{worker}-" + "x" * 6000  # lines ~6 KB: larger than PIPE_BUF and io buffers
    pending = []
    for i in range(n_records):
        pending.append(make_record(run_id=f"run-{worker}", attempt=f"att-{worker}", step=i,
                                   metric="train/loss", value=float(i),
                                   provenance={"worker": worker, "i": i, "filler": filler}))
        if len(pending) == batch:
            append_records(path, pending)
            pending = []
    if pending:
        append_records(path, pending)


def test_concurrent_appends_are_atomic(tmp_path):
    path = tmp_path / RESULTS_FILE
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    n_workers, n_records = 4, 200
    procs = [
        ctx.Process(target=_append_worker, args=(str(path), w, n_records, 1 + w % 3))
        for w in range(n_workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]

    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == n_workers * n_records
    seen = set()
    for number, line in enumerate(lines, 1):
        record = json.loads(line)  # every line is one whole record
        validate_record(record)
        w, i = record["provenance"]["worker"], record["provenance"]["i"]
        assert record["provenance"]["filler"].startswith(f"w{w}-")
        assert len(record["provenance"]["filler"]) == len(f"w{w}-") + 6000
        assert record["step"] == i and record["run_id"] == f"run-{w}"
        seen.add((w, i))
    assert seen == {(w, i) for w in range(n_workers) for i in range(n_records)}
    assert len(read_records(path)) == n_workers * n_records


def test_torn_last_line_is_skipped_with_warning(tmp_path):
    path = tmp_path / RESULTS_FILE
    records = run_records("run-a", "att-1", n=2)
    append_records(path, records)
    with open(path, "ab") as f:
        f.write(b'{"schema_version": 1, "run_id": "run-b", "attem')  # no newline
    with pytest.warns(UserWarning, match="truncated"):
        back = read_records(path)
    assert back == records
    with pytest.warns(UserWarning):
        assert completed_run_ids(path) == {"run-a"}


def test_records_appended_after_a_torn_line_stay_readable(tmp_path):
    """Resume after a torn write: the rerun appends to the same file.

    The torn fragment must not swallow the first record of the next append, and the
    file must stay readable (the store promises torn lines are ignored on read)."""
    path = tmp_path / RESULTS_FILE
    first = run_records("run-a", "att-1", n=1)
    append_records(path, first)
    with open(path, "ab") as f:
        f.write(b'{"schema_version": 1, "run_id": "run-b", "attem')  # no newline
    resumed = run_records("run-b", "att-2", n=1)
    append_records(path, resumed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = read_records(path)  # must not raise "corrupt"
    assert first[0] in back
    for record in resumed:
        assert record in back
    assert completed_run_ids(path) == {"run-a", "run-b"}


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / RESULTS_FILE
    append_records(path, [make_record(step=0)])
    with open(path, "ab") as f:
        f.write(b"this is not json\n")
    append_records(path, [make_record(step=2)])
    with pytest.raises(GenbenchError) as info:
        read_records(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 2" in message


def test_corrupt_last_line_with_newline_is_an_error(tmp_path):
    # A complete (newline-terminated) line that is not JSON is corruption, not a torn write.
    path = tmp_path / RESULTS_FILE
    append_records(path, [make_record()])
    with open(path, "ab") as f:
        f.write(b'{"broken": \n')
    with pytest.raises(GenbenchError, match="line 2"):
        read_records(path)


def test_blank_lines_are_ignored(tmp_path):
    path = tmp_path / RESULTS_FILE
    rec = make_record()
    path.write_text("\n" + json.dumps(rec) + "\n\n")
    assert read_records(path) == [rec]


# ---------------------------------------------------------------- completed records


def test_completed_records_keeps_only_completed_attempts():
    done = run_records("run-a", "att-1", n=2)
    killed = run_records("run-b", "att-1", n=3, complete=False)
    kept = completed_records(done + killed)
    assert kept == done
    assert all(r["run_id"] == "run-a" for r in kept)


def test_completed_records_latest_completed_attempt_wins():
    killed = run_records("run-a", "att-0", n=1, complete=False)
    first = run_records("run-a", "att-1", n=2)
    second = run_records("run-a", "att-2", n=3)
    other = run_records("run-b", "att-9", n=1)
    kept = completed_records(killed + first + other + second)
    assert kept == other + second


def test_completed_records_interleaved_attempts():
    # Two runs' records interleaved (e.g. two processes writing one file).
    a = run_records("run-a", "a1", n=2)
    b = run_records("run-b", "b1", n=2, complete=False)
    mixed = [x for pair in zip(a, b) for x in pair] + a[len(b):]
    assert completed_records(mixed) == a


def test_completed_records_empty():
    assert completed_records([]) == []


def test_completed_run_ids(tmp_path):
    path = tmp_path / RESULTS_FILE
    append_records(path, run_records("run-a", "att-1"))
    append_records(path, run_records("run-b", "att-1", complete=False))
    append_records(path, run_records("run-c", "att-1"))
    assert completed_run_ids(path) == {"run-a", "run-c"}


def test_completed_run_ids_missing_file_is_empty(tmp_path):
    assert completed_run_ids(tmp_path / "nowhere" / RESULTS_FILE) == set()


# ---------------------------------------------------------------- load_frame


def test_load_frame_no_completed_run_is_user_error(tmp_path):
    append_records(tmp_path / RESULTS_FILE, run_records("run-a", "att-1", complete=False))
    with pytest.raises(GenbenchError, match="No completed runs"):
        load_frame([tmp_path])


def test_load_frame_missing_results_is_user_error(tmp_path):
    with pytest.raises(GenbenchError):
        load_frame([tmp_path])


def test_load_frame_matches_read_json(tmp_path):
    path = tmp_path / RESULTS_FILE
    records = run_records("run-a", "att-1", n=3)
    append_records(path, records)
    frame = load_frame([tmp_path])
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(records)
    assert set(FIELDS) <= set(frame.columns)
    assert set(frame["source_dir"]) == {str(tmp_path)}
    assert list(frame["metric"]) == [r["metric"] for r in records]
    steps = frame["step"].tolist()
    for got, want in zip(steps, [r["step"] for r in records]):
        assert pd.isna(got) if want is None else got == want

    # The file itself is what pandas.read_json(lines=True) reads.
    direct = pd.read_json(path, lines=True)
    assert len(direct) == len(records)
    assert set(direct.columns) == set(FIELDS)
    assert list(direct["metric"]) == list(frame["metric"])
    assert list(direct["run_id"]) == list(frame["run_id"])
    assert direct["value"].tolist() == pytest.approx(frame["value"].tolist())
    assert direct["provenance"].tolist() == frame["provenance"].tolist()


def test_load_frame_several_folders_and_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    append_records(a / RESULTS_FILE, run_records("run-a", "att-1", n=1))
    append_records(a / RESULTS_FILE, run_records("run-x", "att-1", n=5, complete=False))
    append_records(b / RESULTS_FILE, run_records("run-b", "att-1", n=2))
    frame = load_frame([a, b / RESULTS_FILE])  # a folder and a file
    assert len(frame) == 2 + 3
    assert set(frame["run_id"]) == {"run-a", "run-b"}
    by_run = frame.groupby("run_id")["source_dir"].first().to_dict()
    assert by_run == {"run-a": str(a), "run-b": str(b)}


def test_load_frame_keeps_nonfinite_as_missing(tmp_path):
    provenance: dict = {}
    value = sanitize_value(math.inf, provenance)
    records = [make_record(value=value, provenance=provenance),
               make_record(metric=COMPLETE_METRIC, value=1.0, unit="bool")]
    append_records(tmp_path / RESULTS_FILE, records)
    frame = load_frame([tmp_path])
    assert pd.isna(frame.loc[0, "value"])
    assert frame.loc[0, "provenance"]["nonfinite"] == "inf"
    assert os.path.exists(Path(frame.loc[0, "source_dir"]) / RESULTS_FILE)
