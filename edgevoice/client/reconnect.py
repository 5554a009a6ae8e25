"""Why a connection to the box failed or ended, whether trying again may help, and when to try.

Plain functions and classes with no I/O: the client run (session.py) asks them after each
connection attempt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import aiohttp

from edgevoice.protocol import CLOSE_GOING_AWAY, CLOSE_SLOW_CLIENT, CLOSE_TRY_LATER

RETRYABLE_CLOSES = frozenset({CLOSE_GOING_AWAY, 1006, 1012, CLOSE_TRY_LATER, 1014, CLOSE_SLOW_CLIENT})
"""Close codes after which trying again may work (1006: the connection died without a close frame)."""
_CLOSE_REASONS = {
    1000: "the box closed the connection",
    1001: "the box is shutting down",
    1002: "the box reported a protocol error",
    1003: "the box cannot serve this sample rate",
    1006: "the connection was lost",
    1008: "the box refused this client (policy)",
    1009: "a message was too large for the box",
    1011: "the box had an internal error",
    1013: "the box is serving as many clients as it can",
    4001: "another client resumed this conversation",
    4002: "the box dropped this client for reading too slowly",
}


class Backoff:
    """Delays before each new connection attempt: base, 2 base, 4 base ... at most cap; None once spent."""

    def __init__(self, base_s: float = 1.0, cap_s: float = 30.0, tries: int = 10) -> None:
        if base_s <= 0 or cap_s < base_s or tries < 0:
            raise ValueError("backoff needs 0 < base_s <= cap_s and tries >= 0")
        self.base_s = base_s
        self.cap_s = cap_s
        self.tries = tries
        self.failures = 0

    def next_delay(self) -> float | None:
        if self.failures >= self.tries:
            return None
        delay = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 64))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Outcome:
    """How one connection ended: the conversation is over, trying again may help, or it cannot."""

    kind: Literal["done", "retry", "fatal"]
    reason: str = ""
    ready: bool = False
    """The box said `ready` on this connection, so the backoff starts afresh."""


def connect_reason(err: BaseException) -> str:
    """A person's words for a connection that failed or broke."""
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve the host name {err.host}"
    if isinstance(err, aiohttp.ClientConnectorError):
        return os.strerror(err.errno).lower() if err.errno else (err.strerror or str(err))
    if isinstance(err, TimeoutError):
        return "the connection timed out"
    return str(err) or type(err).__name__


def connect_failed(url: str, err: aiohttp.ClientError | OSError | TimeoutError) -> Outcome:
    """The outcome of a WebSocket handshake that failed: a refusal or bad TLS is fatal, the rest worth a retry."""
    if isinstance(err, aiohttp.WSServerHandshakeError):
        reason = f"the box refused the WebSocket at {url} (HTTP {err.status} {err.message})".rstrip()
        return Outcome("retry" if err.status >= 500 or err.status == 429 else "fatal", reason)
    if isinstance(err, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return Outcome("fatal", f"TLS failed with {url}: {err}")
    return Outcome("retry", connect_reason(err))


def closed(code: int | None, error: BaseException | None, fatal_error: str | None, ready: bool) -> Outcome:
    """The outcome of a connection the box closed (or that died): code None means no close frame came.

    error: what broke the connection, if anything; fatal_error: the box's last fatal `error` event.
    """
    reason = _CLOSE_REASONS.get(code or 1006, f"the connection closed (code {code})")
    if code in (None, 1006) and error is not None:
        reason = f"{reason} ({error})"
    if code is not None and code not in RETRYABLE_CLOSES:
        return Outcome("fatal", fatal_error or reason, ready)
    return Outcome("retry", reason, ready)
