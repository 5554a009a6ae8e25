"""Whom the client trusts over wss://: a real CA (--cafile), or the box's own certificate pinned on first use.

A box makes its own certificate (`[server] tls`), which no CA signed. The first time the client
meets a box it reads the certificate's SHA-256 fingerprint and checks it against what it was told
(--fingerprint, else the mDNS record's `fp`), then pins it under the box's name in
known_boxes.json. Every later connection must present exactly that certificate: a changed one is
refused with a message that says what to check, never silently accepted. `edgevoice token` on the
box prints the fingerprint to compare with.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from pathlib import Path

import aiohttp
from yarl import URL

from edgevoice.atomic import write_atomic
from edgevoice.client.options import ClientError, ClientOptions
from edgevoice.fingerprint import normalize, of_der

Trust = ssl.SSLContext | aiohttp.Fingerprint | bool
"""What ws_connect's ssl= is given: a CA's context, a pinned fingerprint, or True for plain ws://."""


def default_known_boxes() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgevoice" / "known_boxes.json"


class KnownBoxes:
    """Pinned fingerprints by box name, in one small JSON file (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, str]:
        try:
            pins = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise ClientError(f"cannot read the pinned boxes in {self.path}: {err}") from None
        if not isinstance(pins, dict):
            raise ClientError(f"{self.path} is not a list of pinned boxes; remove it to start afresh")
        return {str(name): str(fp) for name, fp in pins.items()}

    def pin(self, box: str, fingerprint: str) -> None:
        pins = self.read() | {box: fingerprint}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(pins, indent=1, sort_keys=True).encode(), 0o600)


async def peer_fingerprint(url: str, timeout_s: float) -> str:
    """The SHA-256 fingerprint of the certificate the server at url presents (not verified: that is the point)."""
    parsed = URL(url)
    look = ssl.create_default_context()
    look.check_hostname = False
    look.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout_s):
            _reader, writer = await asyncio.open_connection(parsed.host, parsed.port, ssl=look)
    except (OSError, TimeoutError, ssl.SSLError) as err:
        raise ClientError(f"cannot reach the box at {url} to read its certificate: {err}") from None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return of_der(der)


async def trust_for(options: ClientOptions, url: str, box: str, advertised: str | None = None) -> tuple[Trust, str]:
    """How to check the box at url (named box; advertised: its mDNS fingerprint), and a line to tell the user."""
    if URL(url).scheme != "wss":
        return True, ""
    if options.cafile is not None:
        try:
            return ssl.create_default_context(cafile=str(options.cafile)), ""
        except (OSError, ssl.SSLError) as err:
            raise ClientError(f"cannot use --cafile {options.cafile}: {err}") from None
    expected = None
    if options.fingerprint is not None:
        expected = normalize(options.fingerprint)
        if expected is None:
            raise ClientError("--fingerprint takes the 64 hex digits of a SHA-256 (colons allowed)")
    known = KnownBoxes(options.known_boxes or default_known_boxes())
    pinned = (await asyncio.to_thread(known.read)).get(box)
    seen = await peer_fingerprint(url, options.connect_timeout_s)
    note = ""
    if expected is not None:
        if seen != expected:
            raise ClientError(
                f"the box at {url} presents a certificate with SHA-256 {seen}, not the {expected} given with "
                "--fingerprint: not connecting (`edgevoice token` on the box prints its fingerprint)"
            )
    elif pinned is not None:
        if seen != pinned:
            raise ClientError(
                f"the certificate of box {box!r} changed: pinned {pinned}, now {seen}. Someone may be "
                "impersonating the box. If the box made itself a new certificate, check the new fingerprint "
                f"(`edgevoice token` on the box) and pass it with --fingerprint, or remove {box!r} from {known.path}"
            )
    elif advertised is not None and seen != advertised:
        raise ClientError(
            f"box {box!r} advertises certificate SHA-256 {advertised} but presents {seen}: not connecting"
        )
    if pinned != seen:
        await asyncio.to_thread(known.pin, box, seen)
        note = f"trusting box {box!r} with certificate SHA-256 {seen}; pinned in {known.path}"
    return aiohttp.Fingerprint(bytes.fromhex(seen.replace(":", ""))), note
