"""Write and read failures of `genbench report` and `genbench compare --markdown` (and an
unreadable --feature-weights file) end with exit 2 and a message naming the path, the
cause and the fix -- no traceback -- and never leave a report truncated."""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.harness.store import append_records
from tests.report.test_report_html import synthetic_run

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder with two finished runs (and their sample grids)."""
    root = tmp_path / "results"
    append_records(root / "results.jsonl", [r for seed in (0, 1) for r in synthetic_run(root, "ns", seed)])
    return root


@pytest.fixture
def read_only(monkeypatch):
    """Make a folder read-only: chmod where permissions bind; as root (which they do not
    stop) every write under it fails with EACCES, as the OS would report it."""
    locked: list[Path] = []

    def lock(folder: Path) -> None:
        folder = folder.resolve()
        if not ROOT:
            folder.chmod(0o500)
            locked.append(folder)
            return

        def inside(path) -> bool:
            return isinstance(path, (str, os.PathLike)) and Path(os.path.abspath(path)).is_relative_to(folder)

        def denied(path):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        real_open, real_mkdir, real_builtin_open = os.open, os.mkdir, builtins.open

        def os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
                raise denied(path)
            return real_open(path, flags, *args, **kwargs)

        def mkdir(path, *args, **kwargs):
            if inside(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) if os.path.exists(path) \
                    else denied(path)
            return real_mkdir(path, *args, **kwargs)

        def builtin_open(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") and inside(file):
                raise denied(file)
            return real_builtin_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(builtins, "open", builtin_open)
        monkeypatch.setattr(io, "open", builtin_open)  # what pathlib's write_text opens with

    yield lock
    for folder in locked:
        folder.chmod(0o700)


@pytest.fixture
def disk_fills_up(monkeypatch):
    """os.write writes part of its data, then the disk is full (ENOSPC) for good."""
    real_write = os.write
    state = {"full": False}

    def write(fd, data):
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        state["full"] = True
        return real_write(fd, bytes(data)[: max(1, len(data) // 2)])

    monkeypatch.setattr(os, "write", write)


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- report


def test_report_out_that_is_a_file(results, tmp_path, capsys):
    taken = tmp_path / "taken.md"
    taken.write_text("keep me")
    assert main(["report", str(results), "--out", str(taken)]) == 2
    err = error_of(capsys)
    assert str(taken) in err and "is a file, not a folder" in err and "--out DIR" in err
    assert taken.read_text() == "keep me"


def test_report_out_to_a_read_only_folder(results, tmp_path, read_only, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    assert main(["report", str(results), "--out", str(locked)]) == 2
    err = error_of(capsys)
    assert str(locked) in err and "Permission denied (EACCES)" in err
    assert f"chmod u+w {locked}" in err and "--out DIR" in err
    assert list(locked.iterdir()) == []


def test_read_only_results_folder_at_report_time(results, read_only, capsys):
    """The default --out is the results folder itself; an earlier report there survives."""
    assert main(["report", str(results)]) == 0
    before = (results / "report.md").read_text()
    read_only(results)
    assert main(["report", str(results)]) == 2
    err = error_of(capsys)
    assert str(results) in err and "Permission denied (EACCES)" in err and "chmod u+w" in err
    assert (results / "report.md").read_text() == before


def test_full_disk_never_leaves_report_md_truncated(results, disk_fills_up, capsys):
    """The original failure: report.md left at 0 bytes. Now the earlier report stays whole."""
    (results / "report.md").write_text("an earlier report\n")
    assert main(["report", str(results)]) == 2
    err = error_of(capsys)
    assert str(results / "report.md") in err and "No space left on device (ENOSPC)" in err
    assert "Free space on that file system" in err and "earlier copy, if any, is unchanged" in err
    assert (results / "report.md").read_text() == "an earlier report\n"
    assert leftovers(results) == []


def test_full_disk_while_writing_report_html(results, monkeypatch, capsys):
    (results / "report.html").write_text("<p>an earlier page</p>")
    real_write = os.write
    html_fds: set[int] = set()
    real_open = os.open

    def track_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if ".report.html." in str(path):
            html_fds.add(fd)
        return fd

    def write(fd, data):
        if fd in html_fds:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", track_open)
    monkeypatch.setattr(os, "write", write)
    assert main(["report", str(results)]) == 2
    err = error_of(capsys)
    assert str(results / "report.html") in err and "ENOSPC" in err
    assert (results / "report.html").read_text() == "<p>an earlier page</p>"
    assert leftovers(results) == []


# ----------------------------------------------------------------------------- compare


def test_compare_markdown_to_a_folder(results, tmp_path, capsys):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    assert main(["compare", str(results), str(results), "--markdown", str(folder)]) == 2
    err = error_of(capsys)
    assert f"--markdown {folder} is a folder" in err and str(folder / "comparison.md") in err
    assert list(folder.iterdir()) == []


def test_compare_markdown_to_a_read_only_path(results, tmp_path, read_only, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    target = locked / "compare.md"
    assert main(["compare", str(results), str(results), "--markdown", str(target)]) == 2
    err = error_of(capsys)
    assert str(target) in err and "Permission denied (EACCES)" in err
    assert f"chmod u+w {locked}" in err and "--markdown FILE" in err and "--out DIR" not in err
    assert list(locked.iterdir()) == []


def test_compare_markdown_on_a_full_disk_keeps_the_earlier_file(results, tmp_path, disk_fills_up, capsys):
    target = tmp_path / "compare.md"
    target.write_text("an earlier comparison\n")
    assert main(["compare", str(results), str(results), "--markdown", str(target)]) == 2
    err = error_of(capsys)
    assert str(target) in err and "No space left on device (ENOSPC)" in err and "--markdown FILE" in err
    assert target.read_text() == "an earlier comparison\n"
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- feature weights


def test_unreadable_feature_weights_file(tmp_path, monkeypatch):
    from genbench.metrics.extractors import inception

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"unreadable")
    if ROOT:  # root reads anything: the OS error as a non-root user would get it
        def denied(self):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

        monkeypatch.setattr(Path, "read_bytes", denied)
    else:
        weights.chmod(0o000)
    try:
        with pytest.raises(GenbenchError) as exc:
            inception(weights)
    finally:
        weights.chmod(0o600)
    message = str(exc.value)
    assert f"Cannot read the InceptionV3 weights {weights}: Permission denied" in message
    assert f"chmod u+r {weights}" in message and "--feature-weights PATH" in message
