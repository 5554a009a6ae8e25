"""Who gets in: the pairing token, the browser session cookie, and a limit on wrong guesses.

The token lives in data_dir/token (mode 0600). `edgevoice token --rotate` writes a new one; a
running daemon notices by the file's mtime, so the old token and every cookie made from it stop
working without a restart. The limiter is sans-I/O: callers pass the client's address, and the
clock is injectable for tests.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from edgevoice.atomic import write_atomic
from edgevoice.errors import ConfigError

MODES = ("auto", "token", "none")
COOKIE_NAME = "edgevoice_session"
TOKEN_FILE = "token"


def auth_required(mode: str, host: str) -> bool:
    """Whether a daemon listening on host asks for the token: auto asks off loopback only."""
    if mode not in MODES:
        raise ConfigError(f"server.auth must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != "auto":
        return mode == "token"
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or an empty host (every interface)
        return True


def new_token() -> str:
    return secrets.token_urlsafe(24)


def write_token(path: Path, token: str) -> None:
    """Atomically: a crash leaves the old token or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (token + "\n").encode(), 0o600)


def session_value(token: str) -> str:
    """The cookie for a paired browser: derived from the token, so rotating the token unpairs it."""
    return hmac.new(token.encode(), b"session", hashlib.sha256).hexdigest()


class TokenStore:
    """The token in one file, re-read when the file's mtime changes (one stat per check)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token = ""
        self._stamp: tuple[int, int, int] | None = None

    def load(self) -> tuple[str, bool]:
        """The token, making one if there is none yet; created says whether it was just made."""
        if not self.path.exists():
            write_token(self.path, new_token())
            return self.current(), True
        return self.current(), False

    def rotate(self) -> str:
        write_token(self.path, new_token())
        return self.current()

    def current(self) -> str:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return self._token  # removed under us: keep the last one rather than let everyone in
        stamp = (info.st_mtime_ns, info.st_ino, info.st_size)
        if stamp != self._stamp:
            token = self.path.read_text(encoding="utf-8").strip()
            if token:
                self._token, self._stamp = token, stamp
        return self._token

    def check_token(self, candidate: str | None) -> bool:
        token = self.current()
        if not candidate or not token:
            return False
        return hmac.compare_digest(candidate.encode(), token.encode())

    def check_cookie(self, candidate: str | None) -> bool:
        token = self.current()
        if not candidate or not token:
            return False
        return hmac.compare_digest(candidate.encode(), session_value(token).encode())


class FailureLimiter:
    """At most max_failures wrong tokens per window_s from one address; then blocked until they age out."""

    def __init__(
        self, max_failures: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        cutoff = self._clock() - self.window_s
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def blocked(self, address: str) -> bool:
        failures = self._recent(address)
        return failures is not None and len(failures) >= self.max_failures

    def fail(self, address: str) -> None:
        self._recent(address)
        if len(self._failures) > 4096:  # bounded: forget every address that is not blocked
            self._failures = {a: f for a, f in self._failures.items() if len(f) >= self.max_failures}
        self._failures.setdefault(address, deque(maxlen=self.max_failures)).append(self._clock())
