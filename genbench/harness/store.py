"""Result records: long-format JSON lines, appended atomically.

A record (in memory, and as `read_records` and `load_frame` return it) has every field
below (None when unknown):

  schema_version  int      2 (files written before this layout say 1; both are read)
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

Run-level records have step None. Status records: `run/start` (the first record of an
attempt), `run/diverged` (1.0 or 0.0; the step and reason in provenance `at_step`,
`reason`) and `run/complete` (always the last record of an attempt; its provenance holds
artefact paths, kernel backends, the dataset's provenance and the full run config).

On disk (schema 2): the fields that describe the run rather than the number (SHARED:
schema_version aside, suite, model, objective, dataset, seed, backend, device, precision,
versions, git_commit) are written once per attempt, in its `run/start` line; the attempt's
other lines carry run_id, attempt, step, metric, value, unit, timestamp and provenance
only, and the reader fills the rest in from that `run/start`. Files of schema 1 (every
field on every line) and lines written whole (kernel benchmarks) read the same way. Plain
pandas reads the file too (`pandas.read_json(path, lines=True)`: run/start rows carry the
shared columns, join them to the other rows on run_id and attempt); `load_frame` does it.

Committed results may be gzipped (`results.jsonl.gz`): every reader takes a folder and
reads `results.jsonl.gz` then `results.jsonl` there (new records always go to the latter).

Appending: each batch of lines goes out in one os.write on a file opened with O_APPEND,
so a killed process leaves whole lines; a truncated last line (power loss, full disk)
is reported and ignored on read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import json
import math
import os
import re
import reprlib
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from genbench.errors import GenbenchError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
RESULTS_FILE = "results.jsonl"
ARCHIVE_FILE = "results.jsonl.gz"  # committed results, gzipped; read before RESULTS_FILE
START_METRIC = "run/start"
COMPLETE_METRIC = "run/complete"
DIVERGED_METRIC = "run/diverged"
PROBE_SUFFIX = ".probe"  # check_writable's temporary file

FIELDS = (
    "schema_version", "run_id", "attempt", "suite", "model", "objective", "dataset", "seed",
    "step", "metric", "value", "unit", "backend", "device", "precision", "versions",
    "git_commit", "timestamp", "provenance",
)
# Written once per attempt (in its run/start line) when an attempt's records are compact.
SHARED_FIELDS = ("suite", "model", "objective", "dataset", "seed", "backend", "device", "precision", "versions",
                 "git_commit")


def validate_record(record: dict[str, Any]) -> None:
    """Raise ValueError unless `record` has exactly the schema's fields, typed."""
    missing = [f for f in FIELDS if f not in record]
    extra = [f for f in record if f not in FIELDS]
    if missing or extra:
        raise ValueError(f"record fields: missing {missing}, unexpected {extra}")
    if type(record["schema_version"]) is not int or record["schema_version"] not in READABLE_VERSIONS:
        raise ValueError(f"schema_version {short(record['schema_version'])} is not one of {READABLE_VERSIONS}")
    if record["value"] is not None and not is_number(record["value"], float):
        raise ValueError(f"value must be a number or None, got {short(record['value'])}")
    for key in ("run_id", "attempt", "model", "objective", "dataset", "metric", "unit"):
        if not isinstance(record[key], str) or not record[key]:
            raise ValueError(f"{key} must be a non-empty string, got {short(record[key])}")
    for key in ("backend", "device", "precision", "timestamp"):
        if not isinstance(record[key], str):
            raise ValueError(f"{key} must be a string, got {short(record[key])}")
    for key in ("suite", "git_commit"):
        if record[key] is not None and not isinstance(record[key], str):
            raise ValueError(f"{key} must be a string or None, got {short(record[key])}")
    if not is_number(record["seed"], int) or (record["step"] is not None and not is_number(record["step"], int)):
        raise ValueError(f"seed and step must be integers (step may be None), got {short(record['seed'])} "
                         f"and {short(record['step'])}")
    if not isinstance(record["provenance"], dict) or not isinstance(record["versions"], dict):
        raise ValueError("provenance and versions must be objects")


def is_number(value: Any, kind: type) -> bool:
    """An int (kind int) or an int or float (kind float); bool is not a number here."""
    allowed = (int,) if kind is int else (int, float)
    return isinstance(value, allowed) and not isinstance(value, bool)


def short(value: Any) -> str:
    """repr for messages, cut short: a corrupt line can hold megabytes."""
    return reprlib.repr(value)


def sanitize_value(value: Any, provenance: dict[str, Any]) -> float | None:
    """Floats as JSON allows them: NaN/Inf become None, flagged in provenance."""
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return value
    provenance["nonfinite"] = str(value)
    return None


def append_records(path: str | Path, records: Iterable[dict[str, Any]], compact: bool = False) -> None:
    """Validate and append records as whole lines in one write.

    compact: write SHARED_FIELDS only in `run/start` lines; the caller guarantees its
    attempt's run/start is in the file already or earlier in this batch (RunRecorder does).

    A write that fails (full disk, quota, I/O error) leaves the file as it was before this
    batch and ends with a GenbenchError: the records written earlier stay readable, and a
    batch that ends in `run/complete` is never half there.
    """
    lines = []
    for record in records:
        validate_record(record)
        if compact and record["metric"] != START_METRIC:
            record = {k: v for k, v in record.items() if k not in SHARED_FIELDS}
        lines.append(json.dumps(record, allow_nan=False, separators=(",", ":"), default=str) + "\n")
    if not lines:
        return
    path = Path(path)
    try:
        write_whole(path, "".join(lines).encode())
    except OSError as exc:
        raise GenbenchError(unwritable_message(path.parent, exc, kept_message(path))) from None


def write_whole(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # genbench writers take turns: no torn-tail race
        drop_torn_tail(fd, path)
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write: the disk filled up, or a signal came
                written += os.write(fd, data[written:])
        except BaseException:  # also Ctrl-C between two partial writes
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # the batch goes in whole or not at all
            raise
    finally:
        os.close(fd)  # releases the lock


def kept_message(path: Path) -> str:
    return (f"The records already in {path} are intact; the run in progress is not counted as complete, "
            f"and rerunning the same command with --out {path.parent} resumes after the completed runs.")


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


def unwritable_message(out_dir: Path, exc: OSError, outcome: str = "Nothing was run.",
                       option: str = "--out DIR") -> str:
    """Cause (the OS error, and the file when it is not the folder or the probe), what
    became of the work (`outcome`) and the fix (`option`: how to write elsewhere)."""
    reason = f"{exc.strerror or exc}" + (f" ({errno.errorcode[exc.errno]})" if exc.errno in errno.errorcode else "")
    culprit = Path(exc.filename) if exc.filename and not str(exc.filename).endswith(PROBE_SUFFIX) else out_dir
    while not culprit.exists() and culprit.parent != culprit:  # mkdir failed: the fix is on the parent
        culprit = culprit.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"Free space on that file system (or raise the quota), or choose another folder with {option}."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"Make it writable (e.g. `chmod u+w {culprit}`) or choose a folder you can write with {option}."
    elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
        fix = f"{culprit} is a file, not a folder: choose another path with {option}."
    else:
        fix = f"Choose a writable folder with {option}."
    where = f" at {culprit}" if culprit != out_dir else ""
    return f"Cannot write results to {out_dir}: {reason}{where}. {outcome} {fix}"


def write_text_atomic(path: Path, text: str, option: str = "--out DIR") -> None:
    """Write a whole text file or nothing: a new file in the same folder, flushed to disk,
    then renamed over `path`, so a full disk or a kill never leaves it truncated. A failure
    is a GenbenchError naming the path, the cause and the fix (`option`: where else to write)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode as open() gives, less the umask
        try:
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)  # a full disk can accept the write and fail only on flush
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        outcome = f"{path.name} was not written (an earlier copy, if any, is unchanged)."
        raise GenbenchError(unwritable_message(path, exc, outcome, option)) from None


def record_files(path: str | Path) -> list[Path]:
    """The files a results folder's records are in (archive first), or [path] for a file."""
    path = Path(path)
    if path.is_dir():
        files = [path / ARCHIVE_FILE, path / RESULTS_FILE]
        return [f for f in files if f.is_file()] or [path / RESULTS_FILE]
    return [path]


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All records in a results folder (results.jsonl.gz, then results.jsonl) or one file
    (.jsonl or .jsonl.gz), each checked against the schema; compact lines get their
    attempt's shared fields back. A torn last line (no newline: an interrupted write) is
    warned about and skipped, any other bad line is a GenbenchError naming the file and the
    line. Files are never changed."""
    headers: dict[tuple[str, str], dict[str, Any]] = {}  # (run_id, attempt) -> its run/start record
    return [record for file in record_files(path) for record in read_file_records(file, headers)]


def read_file_records(path: Path, headers: dict) -> list[dict[str, Any]]:
    raw = read_raw(path)
    lines = raw.split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(line, headers))
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            if number == len(lines) and not raw.endswith(b"\n"):
                warnings.warn(f"{path}: ignoring a truncated last line (an interrupted write).")
                continue
            raise GenbenchError(
                f"{path}, line {number}, {line_problem(exc)}: the results file is corrupt. "
                "Delete that line (keep a copy of the file first) to use the other records, "
                "or move the file aside and rerun the suite to start over."
            ) from None
    return records


def read_raw(path: Path) -> bytes:
    """The file's bytes (decompressed when gzipped), or a GenbenchError saying why not."""
    if not path.is_file():
        raise GenbenchError(f"No result records at {path}: run `genbench run ... --out {path.parent}` first.")
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except OSError as exc:  # gzip.BadGzipFile is an OSError
        if isinstance(exc, gzip.BadGzipFile) or exc.errno is None:
            raise GenbenchError(f"{path} is not a readable gzip file ({exc}): the archive is corrupt. Restore it "
                                "from version control, or move it aside.") from None
        raise GenbenchError(f"Cannot read {path}: {exc.strerror or exc}. Make it readable "
                            f"(e.g. `chmod u+r {path}`) or pass another results folder.") from None
    except EOFError:
        raise GenbenchError(f"{path} ends early (a truncated gzip file): restore it from version control, "
                            "or move it aside.") from None


# A JSON escape of a UTF-16 surrogate: paired ones decode to one character, lone ones
# give a str that cannot be written out as UTF-8 (the report would fail on it).
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_record(line: bytes, headers: dict | None = None) -> dict[str, Any]:
    """One line as a record; ValueError (or RecursionError) when it is not one. A compact
    line (schema 2, no shared fields) takes them from its attempt's run/start in `headers`."""
    record = json.loads(line.decode("utf-8"), parse_constant=reject_constant)
    if not isinstance(record, dict):
        raise ValueError(f"{JSON_KINDS.get(type(record), 'a value')} where a record object belongs")
    if SURROGATE_ESCAPE.search(line):
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    if headers is not None and record.get("schema_version") == 2 and "model" not in record:
        record = with_shared_fields(record, headers)
    validate_record(record)
    if headers is not None and record["metric"] == START_METRIC:
        headers[(record["run_id"], record["attempt"])] = record
    return record


def with_shared_fields(record: dict[str, Any], headers: dict) -> dict[str, Any]:
    key = (record.get("run_id"), record.get("attempt"))
    start = headers.get(key) if all(isinstance(k, str) for k in key) else None
    if start is None:
        raise ValueError(f"a compact record of run {short(key[0])}, attempt {short(key[1])}, before (or "
                         f"without) its {START_METRIC} line")
    return {**{k: start[k] for k in SHARED_FIELDS}, **record}


JSON_KINDS = {list: "a JSON array", str: "a JSON string", int: "a number", float: "a number",
              bool: "true/false", type(None): "null"}


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (genbench writes non-finite values as null)")


def line_problem(exc: BaseException) -> str:
    """What is wrong with a line, for the corrupt-file message."""
    if isinstance(exc, UnicodeError):
        return "is not UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        return "is not valid JSON"
    if isinstance(exc, RecursionError):
        return "is JSON nested too deep to be a record"
    return f"is not a genbench record: {exc}"


def completed_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of completed attempts only, the latest completed attempt per run."""
    latest: dict[str, str] = {}
    for record in records:
        if record.get("metric") == COMPLETE_METRIC:
            latest[record["run_id"]] = record["attempt"]
    return [r for r in records if latest.get(r.get("run_id")) == r.get("attempt")]


def completed_run_ids(path: str | Path) -> set[str]:
    """run_ids with a completed attempt in a results folder (or file); empty if it has none."""
    files = record_files(path)
    if not any(f.is_file() for f in files):
        return set()
    return {r["run_id"] for r in read_records(path) if r.get("metric") == COMPLETE_METRIC}


def load_frame(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Completed records from one or more result folders (or files) as a DataFrame."""
    records: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        for r in completed_records(read_records(p)):
            if r["metric"] != START_METRIC:  # its fields are on every record now
                r["source_dir"] = str(p if p.is_dir() else p.parent)
                records.append(r)
    if not records:
        raise GenbenchError(
            "No completed runs in " + ", ".join(map(str, paths)) + ": every run there was "
            "interrupted before finishing. Rerun the suite with the same --out to resume."
        )
    return pd.DataFrame.from_records(records)
