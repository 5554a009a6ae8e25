"""What `edgevoice client` is told: its options, the box's URL as the user typed it, and the flags.

Every option is checked once, before the first connection; a bad one is a ClientError (exit 2).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from yarl import URL

from edgevoice.errors import EdgevoiceError
from edgevoice.protocol import WS_PATH, valid_conversation_id

DEFAULT_PORT = 8765


class ClientError(EdgevoiceError):
    """A bad URL or option, or no box to talk to: said in one line, exit code 2."""


@dataclass(frozen=True)
class ClientOptions:
    url: str | None = None
    """The box's WebSocket URL (ws:// or wss://; a bare HOST[:PORT] means ws://HOST:PORT/ws); None: find it by mDNS."""
    wav: Path | None = None
    """Take the user's speech from this file (any rate, paced in real time) instead of the microphone."""
    out: Path | None = None
    """Write the reply audio of all turns to this WAV file at the end instead of playing it."""
    json: bool = False
    """Print every server event, and the client's own facts, as JSON lines on stdout."""
    retries: int = 10
    """Connection attempts after a failure before giving up; counted afresh after each `ready`."""
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0
    client_name: str = ""
    """The name the box shows for this client; empty: this machine's host name."""
    conversation: str | None = None
    """Resume this conversation id (from an earlier `ready`) instead of starting a new one."""
    playback_buffer_s: float = 30.0
    """Reply audio held for the speaker at most; beyond it the oldest is dropped."""
    outgoing_buffer_s: float = 2.0
    """Microphone audio held while the connection is down; beyond it the oldest is dropped."""
    linger_s: float = 3.0
    """After a --wav file ends, how long to wait with no turn under way before saying bye."""
    turn_timeout_s: float = 120.0
    """After a --wav file ends, how long to wait for a turn under way to finish."""
    connect_timeout_s: float = 10.0
    discovery_timeout_s: float = 3.0
    interface: str | None = None
    """Network interface to look for boxes on (mDNS); None: all."""
    token: str | None = field(default=None, repr=False)
    """The box's pairing token (`edgevoice token` on the box), sent in hello; None: the box asks for none."""
    fingerprint: str | None = None
    """The SHA-256 fingerprint the box's certificate must have (`edgevoice token` on the box prints it)."""
    cafile: Path | None = None
    """Verify the box's certificate against this CA bundle instead of pinning it."""
    known_boxes: Path | None = None
    """Where pinned certificate fingerprints are kept; None: $XDG_CONFIG_HOME/edgevoice/known_boxes.json."""

    def check(self) -> None:
        if self.retries < 0:
            raise ClientError("--retries must not be negative")
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ClientError("the backoff base delay must be positive and at most the cap")
        if self.conversation is not None and not valid_conversation_id(self.conversation):
            raise ClientError("a conversation id is 1 to 64 letters, digits, '-' or '_'")
        if self.playback_buffer_s <= 0 or self.outgoing_buffer_s <= 0:
            raise ClientError("buffer lengths must be positive")


def normalize_url(text: str) -> str:
    """The WebSocket URL for what the user typed: ws(s)://HOST[:PORT][/PATH], or HOST[:PORT] alone."""
    candidate = text.strip()
    if "://" not in candidate:
        candidate = f"ws://{candidate}"
    try:
        url = URL(candidate)
    except ValueError as err:
        raise ClientError(f"{text!r} is not a URL ({err})") from None
    if url.scheme not in ("ws", "wss") or not url.host:
        raise ClientError(f"{text!r} is not a box's address: give ws://HOST:{DEFAULT_PORT}{WS_PATH} or HOST")
    if url.explicit_port is None and "://" not in text:
        url = url.with_port(DEFAULT_PORT)
    if url.path in ("", "/"):
        url = url.with_path(WS_PATH)
    return str(url)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", nargs="?", help=f"the box: ws://HOST:{DEFAULT_PORT}/ws or HOST (default: find it by mDNS)"
    )
    parser.add_argument("--wav", type=Path, help="speak this audio file (paced in real time) instead of the microphone")
    parser.add_argument("--out", type=Path, help="write the replies to this WAV file instead of playing them")
    parser.add_argument("--json", action="store_true", help="print every event as a JSON line")
    parser.add_argument("--retries", type=int, default=10, help="connection attempts before giving up (default 10)")
    parser.add_argument("--name", default="", help="this client's name on the box (default: the host name)")
    parser.add_argument("--conversation", help="resume this conversation id")
    parser.add_argument("--interface", help="network interface to look for boxes on")
    parser.add_argument(
        "--token",
        default=os.environ.get("EDGEVOICE_TOKEN") or None,
        help="the box's pairing token (`edgevoice token` on the box; default: $EDGEVOICE_TOKEN); "
        "visible to others in `ps`: prefer --token-file or the variable",
    )
    parser.add_argument("--token-file", type=Path, help="read the box's pairing token from this file")
    parser.add_argument(
        "--fingerprint", help="the SHA-256 fingerprint the box's certificate must have (`edgevoice token` on the box)"
    )
    parser.add_argument("--cafile", type=Path, help="verify the box's certificate with this CA bundle instead")


def options_from_args(args: argparse.Namespace) -> ClientOptions:
    """The options for what add_client_arguments parsed; checked later, by run_client."""
    token = args.token
    if getattr(args, "token_file", None) is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip() or None
        except OSError as err:
            raise ClientError(f"cannot read the token from {args.token_file}: {err.strerror or err}") from None
    return ClientOptions(
        url=args.url,
        wav=args.wav,
        out=args.out,
        json=args.json,
        retries=args.retries,
        client_name=args.name,
        conversation=args.conversation,
        interface=args.interface,
        token=token,
        fingerprint=args.fingerprint,
        cafile=args.cafile,
    )
