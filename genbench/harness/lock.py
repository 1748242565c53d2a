"""One writer per results folder: a lock that `run_all` holds for its whole length.

Two processes running the same suite into one --out would both train every run (each
reads the completed runs when it starts). So a process takes an flock on
`.genbench.lock` in the folder, without waiting, and a second process is refused with
the holder's pid, host and command, which the holder writes into the lock file:

- a process without --shard takes it exclusively: it trains every run;
- shards (--shard I/N) take it shared, so the N shards of one split can run together but
  never beside a process without --shard (either way round); each also takes
  `.genbench-shard-I-of-N.lock` exclusively, refusing a second copy of the same shard and
  shards of a different N, whose runs would overlap with its own.

flock, not a pid file: the kernel drops a lock when its process dies however it dies,
so a stale lock from a killed run never blocks. Under torchrun rank 0 alone takes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import socket
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from genbench.errors import GenbenchError
from genbench.harness.store import unwritable_message

LOCK_FILE = ".genbench.lock"
SHARD_LOCK = re.compile(r"\.genbench-shard-(\d+)-of-(\d+)\.lock")
SPLIT_HINT = "to split a suite across processes, start each with --shard I/N (0/2 and 1/2, say) and the same --out"


def shard_lock_name(index: int, count: int) -> str:
    return f".genbench-shard-{index}-of-{count}.lock"


@contextlib.contextmanager
def folder_lock(out_dir: Path, shard: tuple[int, int] | None = None) -> Iterator[None]:
    """Hold `out_dir`'s lock for the block: exclusively, or as shard `shard` = (I, N).
    A GenbenchError, naming the holder and what to do, when another process has it."""
    with contextlib.ExitStack() as stack:
        main = take(stack, out_dir / LOCK_FILE, exclusive=shard is None)
        if main is None:
            raise GenbenchError(busy_message(out_dir, shard))
        if shard is None:
            claim(stack, main)
        else:
            os.ftruncate(main, 0)  # shards write their own files; clear a line a killed holder left
            claim_shard(stack, out_dir, *shard)
        yield


def claim_shard(stack: contextlib.ExitStack, out_dir: Path, index: int, count: int) -> None:
    other_splits = [f"shard {i}/{n}: {who}" for (i, n), who in sorted(live_shards(out_dir).items()) if n != count]
    if other_splits:
        raise GenbenchError(
            f"{out_dir} is in use by shards of another split ({'; '.join(other_splits)}), and shards of "
            f"different N take overlapping runs (this one is {index}/{count}). Start this process with "
            "their N, or wait for them to finish."
        )
    fd = take(stack, out_dir / shard_lock_name(index, count), exclusive=True)
    if fd is None:
        who = holder_line(out_dir / shard_lock_name(index, count))
        raise GenbenchError(f"Shard {index}/{count} of {out_dir} is already running ({who}). Wait for it to "
                            "finish, or start a shard index that is not running.")
    claim(stack, fd)


def take(stack: contextlib.ExitStack, path: Path, exclusive: bool) -> int | None:
    """The locked file's descriptor (released by `stack`), or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # e.g. a lock file left by another user
        raise GenbenchError(unwritable_message(path.parent, exc)) from None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:  # a file system without locks (some network or FUSE mounts)
        warnings.warn(f"Cannot lock {path} ({exc.strerror}): nothing stops a second genbench process "
                      "from training the same runs into this folder.")
    stack.callback(os.close, fd)
    return fd


def claim(stack: contextlib.ExitStack, fd: int) -> None:
    """Write who holds the lock into its file; cleared again on release."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder_text().encode(), 0)
    stack.callback(os.ftruncate, fd, 0)  # runs before the close that releases the lock


def holder_text() -> str:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()} since {started}: {shlex.join(sys.argv)}"


def holder_line(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return text or "a genbench process that has not written its details yet"


def live_shards(out_dir: Path) -> dict[tuple[int, int], str]:
    """The shards of `out_dir` whose lock a live process holds, with their holder lines."""
    live = {}
    for path in out_dir.glob(".genbench-shard-*-of-*.lock"):
        match = SHARD_LOCK.fullmatch(path.name)
        if match and is_held(path):
            live[(int(match[1]), int(match[2]))] = holder_line(path)
    return live


def is_held(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's lock


def busy_message(out_dir: Path, shard: tuple[int, int] | None) -> str:
    """Why the folder lock was refused: who holds it, and what to do."""
    shards = live_shards(out_dir)
    if shard is not None:
        return (f"{out_dir} is in use by a genbench run without --shard ({holder_line(out_dir / LOCK_FILE)}), "
                "which trains every run, so a shard would train some of them a second time. Wait for it "
                "to finish (rerunning it resumes), or stop it and start every process with --shard I/N.")
    if shards:
        who = "; ".join(f"shard {i}/{n}: {line}" for (i, n), line in sorted(shards.items()))
        return (f"{out_dir} is in use by sharded genbench runs ({who}); a run without --shard would train "
                "their runs a second time. Wait for them to finish (then rerun to resume), or start this "
                "process as a missing shard of their split with --shard I/N.")
    return (f"{out_dir} is in use by another genbench run ({holder_line(out_dir / LOCK_FILE)}): two processes "
            "on one results folder would both train every run. Wait for it to finish, then rerun this "
            f"command to resume from its results; or, {SPLIT_HINT}.")
