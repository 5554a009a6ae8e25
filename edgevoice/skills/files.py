"""What the skills remember (timers, the shopping list) as small JSON files, each replaced whole.

A file that cannot be read is logged and treated as empty, so a damaged file never stops the
daemon; one that cannot be written is logged, and the state stays in memory until the next write.
Writes are synchronous, as the conversation store's are: a few hundred bytes, only when someone
changes something.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edgevoice.atomic import write_atomic

_log = logging.getLogger(__name__)


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it is missing or unreadable (logged)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        _log.warning("ignoring unreadable %s: %s", path, err)
        return None


def write_json(path: Path, data: Any) -> bool:
    """Replace the file with data as JSON; False (and a log line) when it could not be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"), 0o600)
    except OSError as err:
        _log.warning("kept in memory only: cannot write %s (%s)", path, err)
        return False
    return True
