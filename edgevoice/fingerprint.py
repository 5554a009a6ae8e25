"""A TLS certificate's SHA-256 fingerprint: what the box prints and advertises, and what a client pins.

Written as browsers show it: 32 upper-case hex bytes joined by colons. Read leniently (any case,
with or without colons or spaces), so one pasted from a browser's certificate viewer matches.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

_HEX = re.compile(r"[0-9A-F]{64}")


def of_der(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def of_pem_file(path: Path) -> str:
    """The fingerprint of the first certificate in a PEM file (OSError, ValueError when there is none)."""
    return of_der(ssl.PEM_cert_to_DER_cert(path.read_text(encoding="ascii")))


def normalize(text: str) -> str | None:
    """A fingerprint as typed or advertised, in the form of_der writes; None when it is not one."""
    bare = re.sub(r"[\s:]", "", text).upper().removeprefix("SHA256")
    if not _HEX.fullmatch(bare):
        return None
    return ":".join(bare[i : i + 2] for i in range(0, len(bare), 2))
