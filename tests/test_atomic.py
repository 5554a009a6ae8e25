"""write_atomic: the whole new content or the whole old one, the mode asked for, no temporary files left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgevoice import atomic
from edgevoice.atomic import write_atomic


def test_replaces_the_content_whole_with_the_mode_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"an old and much longer content than the new one\n")
    write_atomic(path, b"new\n", 0o640)
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    write_atomic(path, b"newer\n")
    assert path.read_bytes() == b"newer\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the default
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_fsyncs_the_file_and_then_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    write_atomic(tmp_path / "state", b"data")
    assert synced == ["file", "directory"]


def test_a_failed_fsync_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_an_unwritable_directory_raises_and_keeps_the_old_file(tmp_path: Path) -> None:
    directory = tmp_path / "locked"
    directory.mkdir()
    path = directory / "state"
    path.write_bytes(b"old")
    directory.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            write_atomic(path, b"new")
    finally:
        directory.chmod(0o700)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in directory.iterdir()) == ["state"]


def test_a_failed_rename_removes_the_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.mkdir()  # a directory in the way: os.replace of a file over it fails
    with pytest.raises(IsADirectoryError):
        write_atomic(path, b"new")
    assert path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_a_streamed_file_that_fails_its_check_leaves_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"old model")
    checked: list[bytes] = []

    def reject(temporary: Path) -> None:
        checked.append(temporary.read_bytes())
        raise ValueError("not a model")

    def write_in_two_parts() -> None:
        with atomic.atomic_file(path, 0o644, verify=reject) as out:
            out.write(b"new ")
            out.write(b"model")

    with pytest.raises(ValueError, match="not a model"):
        write_in_two_parts()
    assert checked == [b"new model"]  # complete and flushed when checked
    assert path.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_an_error_while_streaming_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "reply.wav"
    path.write_bytes(b"old")

    def break_halfway() -> None:
        with atomic.atomic_file(path) as out:
            out.write(b"half of it")
            raise RuntimeError("the writer broke")

    with pytest.raises(RuntimeError, match="the writer broke"):
        break_halfway()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reply.wav"]
