"""Replace a file whole: after a crash or a power cut the old content or the new one is there, never a mix.

The data goes to a temporary file in the same directory (so the rename cannot cross file systems),
is fsynced, renamed over the target, and then the directory is fsynced so the rename itself is
durable. On any failure the temporary file is removed and the OSError reaches the caller.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write data to path atomically and durably, the file's permission bits set to mode.

    The directory must exist. Raises OSError (the old file untouched) when any step fails.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # made 0600
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in directory survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
