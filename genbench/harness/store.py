"""Result records: long-format JSON lines, appended atomically.

Schema (version 1), one JSON object per line, every field present (None when unknown):

  schema_version  int      1
  run_id          str      hash of the run's full spec (model, options, objective,
                           dataset, seed, budget, precision, device, backend)
  attempt         str      one id per execution of a run; a rerun after a kill is a new
                           attempt, and only attempts that wrote `run/complete` count
  suite           str|None suite name, None for ad-hoc runs
  model           str      model label: registry name + non-default options
  objective       str      objective label: registry name + non-default options
  dataset         str      dataset spec
  seed            int
  step            int|None training step the value belongs to (None: end of run)
  metric          str      "<phase>/<name>", e.g. train/loss, test/elbo, perf/train_throughput
  value           float|None  NaN/Inf are written as None with provenance["nonfinite"]
  unit            str      e.g. "nats/example", "bits/dim", "examples/s", "bytes", "s"
  backend         str      kernel backend(s) that ran, e.g. "torch" or "reparam_kl=triton"
  device          str      "cpu: <model name>" or "cuda: <gpu name>"
  precision       str      fp32 | bf16 | fp16
  versions        dict     torch, triton, genbench, python, numpy
  git_commit      str|None commit of the genbench checkout (+ "-dirty" when modified)
  timestamp       str      ISO-8601 UTC
  provenance      dict     what else makes the number comparable: sample counts,
                           conventions, seeds, quantiles, artefact paths ...

Run-level records have step None. Status records: `run/diverged` (1.0 or 0.0; the
step and reason in provenance `at_step`, `reason`) and `run/complete` (always the last
record of an attempt; its provenance holds artefact paths, kernel backends, the dataset's
provenance and the full run config).

Appending: each batch of lines goes out in one os.write on a file opened with O_APPEND,
so a killed process leaves whole lines; a truncated last line (power loss, full disk)
is reported and ignored on read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from genbench.errors import GenbenchError

SCHEMA_VERSION = 1
RESULTS_FILE = "results.jsonl"
COMPLETE_METRIC = "run/complete"
DIVERGED_METRIC = "run/diverged"
PROBE_SUFFIX = ".probe"  # check_writable's temporary file

FIELDS = (
    "schema_version", "run_id", "attempt", "suite", "model", "objective", "dataset", "seed",
    "step", "metric", "value", "unit", "backend", "device", "precision", "versions",
    "git_commit", "timestamp", "provenance",
)


def validate_record(record: dict[str, Any]) -> None:
    """Raise ValueError unless `record` has exactly the schema's fields, typed."""
    missing = [f for f in FIELDS if f not in record]
    extra = [f for f in record if f not in FIELDS]
    if missing or extra:
        raise ValueError(f"record fields: missing {missing}, unexpected {extra}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"schema_version {record['schema_version']} != {SCHEMA_VERSION}")
    if record["value"] is not None and (
        isinstance(record["value"], bool) or not isinstance(record["value"], (int, float))
    ):
        raise ValueError(f"value must be a number or None, got {record['value']!r}")
    for key in ("run_id", "attempt", "model", "objective", "dataset", "metric", "unit"):
        if not isinstance(record[key], str) or not record[key]:
            raise ValueError(f"{key} must be a non-empty string, got {record[key]!r}")
    if not isinstance(record["provenance"], dict) or not isinstance(record["versions"], dict):
        raise ValueError("provenance and versions must be objects")


def sanitize_value(value: Any, provenance: dict[str, Any]) -> float | None:
    """Floats as JSON allows them: NaN/Inf become None, flagged in provenance."""
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return value
    provenance["nonfinite"] = str(value)
    return None


def append_records(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Validate and append records as whole lines in one write."""
    lines = []
    for record in records:
        validate_record(record)
        lines.append(json.dumps(record, allow_nan=False, separators=(",", ":"), default=str) + "\n")
    if not lines:
        return
    data = "".join(lines).encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # genbench writers take turns: no torn-tail race
        drop_torn_tail(fd, path)
        written = os.write(fd, data)
        while written < len(data):  # regular files write fully; loop for safety
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)  # releases the lock


def drop_torn_tail(fd: int, path: str | Path) -> None:
    """Cut a partial last line (left by a crash mid-write) so new lines start clean.

    genbench only ever writes whole lines, so a file not ending in a newline has a
    torn tail that no reader can use; appending onto it would corrupt the next record.
    """
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - (1 << 20))
    chunk = os.pread(fd, size - start, start)
    last_newline = chunk.rfind(b"\n")
    keep = start + last_newline + 1 if last_newline >= 0 else 0
    warnings.warn(f"{path}: dropping a torn last line of {size - keep} bytes before appending")
    os.ftruncate(fd, keep)


def check_writable(out_dir: str | Path) -> None:
    """Fail before training, not at the first record an hour later: the folder must take a write.

    Creates `out_dir`, writes and fsyncs a small probe file there (fsync: a full disk can
    accept the write into the page cache and fail only on flush) and removes it; an
    existing results file must open for appending.
    """
    out_dir = Path(out_dir)
    probe = out_dir / f".genbench-write-probe-{os.getpid()}{PROBE_SUFFIX}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"genbench write probe\n" * 200)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
        if (out_dir / RESULTS_FILE).exists():
            os.close(os.open(out_dir / RESULTS_FILE, os.O_WRONLY | os.O_APPEND))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(probe)
        raise GenbenchError(unwritable_message(out_dir, exc)) from None


def unwritable_message(out_dir: Path, exc: OSError) -> str:
    """Cause (the OS error, and the file when it is not the folder or the probe) and the fix."""
    reason = f"{exc.strerror or exc}" + (f" ({errno.errorcode[exc.errno]})" if exc.errno in errno.errorcode else "")
    culprit = Path(exc.filename) if exc.filename and not str(exc.filename).endswith(PROBE_SUFFIX) else out_dir
    while not culprit.exists() and culprit.parent != culprit:  # mkdir failed: the fix is on the parent
        culprit = culprit.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "Free space on that file system (or raise the quota), or choose another folder with --out DIR."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"Make it writable (e.g. `chmod u+w {culprit}`) or choose a folder you can write with --out DIR."
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        fix = f"{culprit} is a file, not a folder: choose another path with --out DIR."
    else:
        fix = "Choose a writable folder with --out DIR."
    where = f" at {culprit}" if culprit != out_dir else ""
    return f"Cannot write results to {out_dir}: {reason}{where}. Nothing was run. {fix}"


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records in a results file; a torn last line is warned about and skipped."""
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"No result records at {path}: run `genbench run ... --out {path.parent}` first.")
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) and not raw.endswith(b"\n"):
                warnings.warn(f"{path}: ignoring a truncated last line (an interrupted write).")
                continue
            raise GenbenchError(
                f"{path}, line {number}, is not valid JSON: the results file is corrupt. "
                "Move it aside and rerun the suite (completed runs in a copy can be "
                "recovered by deleting the broken line)."
            ) from None
    return records


def completed_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of completed attempts only, the latest completed attempt per run."""
    latest: dict[str, str] = {}
    for record in records:
        if record.get("metric") == COMPLETE_METRIC:
            latest[record["run_id"]] = record["attempt"]
    return [r for r in records if latest.get(r.get("run_id")) == r.get("attempt")]


def completed_run_ids(path: str | Path) -> set[str]:
    path = Path(path)
    if not path.is_file():
        return set()
    return {r["run_id"] for r in read_records(path) if r.get("metric") == COMPLETE_METRIC}


def load_frame(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Completed records from one or more result folders (or files) as a DataFrame."""
    records: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        file = p / RESULTS_FILE if p.is_dir() else p
        for r in completed_records(read_records(file)):
            r["source_dir"] = str(file.parent)
            records.append(r)
    if not records:
        raise GenbenchError(
            "No completed runs in " + ", ".join(map(str, paths)) + ": every run there was "
            "interrupted before finishing. Rerun the suite with the same --out to resume."
        )
    return pd.DataFrame.from_records(records)
