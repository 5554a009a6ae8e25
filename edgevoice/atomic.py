"""Replace a file whole: after a crash or a power cut the old content or the new one is there, never a mix.

The data goes to a temporary file in the same directory (so the rename cannot cross file systems),
is fsynced, renamed over the target, and then the directory is fsynced so the rename itself is
durable. On any failure the temporary file is removed and the error reaches the caller. This is the
one writer every file the project keeps goes through: conversations, the token, the TLS key, timers,
recorded replies, the converted model and its stamp.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o600, verify: Callable[[Path], object] | None = None) -> Iterator[BinaryIO]:
    """A binary file to write that replaces path only when the block ends without an error.

    verify, when given, is called with the temporary file's path once it is complete and fsynced,
    before the rename: whatever it raises leaves the old file in place. The directory must exist.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")  # made 0600
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            yield file
            file.flush()
            os.fsync(file.fileno())
        if verify is not None:
            verify(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write data to path atomically and durably, the file's permission bits set to mode.

    The directory must exist. Raises OSError (the old file untouched) when any step fails.
    """
    with atomic_file(path, mode) as file:
        file.write(data)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in directory survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
