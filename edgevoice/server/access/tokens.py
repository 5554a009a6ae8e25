"""Who gets in: the pairing token, the browser session cookie, and a limit on wrong guesses.

The token lives in data_dir/token (mode 0600). `edgevoice token --rotate` writes a new one; a
running daemon notices by the file's mtime, so the old token and every cookie made from it stop
working without a restart. The limiter is sans-I/O: callers pass the client's address, and the
clock is injectable for tests.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from edgevoice.atomic import write_atomic
from edgevoice.errors import ConfigError
from edgevoice.server.access.peers import peer_key

_log = logging.getLogger(__name__)
MODES = ("auto", "token", "none")
COOKIE_NAME = "edgevoice_session"
"""The paired browser's cookie: a random per-device session (edgevoice.server.access.devices)."""
TOKEN_FILE = "token"


def auth_required(mode: str, host: str) -> bool:
    """Whether a daemon listening on host asks for the token: auto asks off loopback only."""
    if mode not in MODES:
        raise ConfigError(f"server.auth must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != "auto":
        return mode == "token"
    return not loopback(host)


def loopback(host: str) -> bool:
    """Whether host (as listened on) is this machine only; a name or an empty host (every interface) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_wanted(tls: str, has_certificate: bool, auth: str, host: str) -> bool:
    """Whether the daemon serves HTTPS: a certificate was given, tls is "on", or tls is "auto" and the box asks
    for its token off loopback (the token and the session cookie must not cross the LAN in clear)."""
    if has_certificate or tls == "on":
        return True
    return tls == "auto" and auth_required(auth, host) and not loopback(host)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def write_token(path: Path, token: str) -> None:
    """Atomically: a crash leaves the old token or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (token + "\n").encode(), 0o600)
    own_as_directory(path)


def own_as_directory(path: Path) -> None:
    """Root writing into the daemon's state directory (`edgevoice token --rotate` on a systemd box): the file
    belongs to whoever owns the directory, so the daemon can still read it."""
    if os.geteuid() != 0:
        return
    folder = path.parent.stat()
    os.chown(path, folder.st_uid, folder.st_gid)


class TokenStore:
    """The token in one file, re-read when the file's mtime changes (one stat per check)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token = ""
        self._stamp: tuple[int, int, int] | None = None
        self._failed = ""
        """The last error reading the file, logged once."""

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
        """The token in the file; the last one read when the file is gone or cannot be read (logged once)."""
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_ino, info.st_size)
            if stamp != self._stamp:
                token = self.path.read_text(encoding="utf-8").strip()
                if token:
                    self._token, self._stamp = token, stamp
        except (OSError, UnicodeDecodeError) as err:
            # removed, unreadable, its owner changed under us: keep the last one rather than let everyone in
            if self._failed != str(err):
                self._failed = str(err)
                _log.error("cannot read the pairing token %s (%s): keeping the one read before", self.path, err)
            return self._token
        self._failed = ""
        return self._token

    def check_token(self, candidate: str | None) -> bool:
        token = self.current()
        if not candidate or not token:
            return False
        return hmac.compare_digest(candidate.encode(), token.encode())


class FailureLimiter:
    """At most max_failures wrong tokens per window_s from one peer; then blocked until they age out.

    A peer is an IPv4 address or an IPv6 /64 (edgevoice.server.access.peers). At most max_addresses
    peers are remembered: past that, those whose failures all aged out go first, then those with the
    fewest and oldest failures; never the peer being counted, so spreading guesses over many
    addresses never wipes a guesser's count.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 4096,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, key: str) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        cutoff = self._clock() - self.window_s
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def blocked(self, address: str) -> bool:
        failures = self._recent(peer_key(address))
        return failures is not None and len(failures) >= self.max_failures

    def fail(self, address: str) -> None:
        key = peer_key(address)
        self._recent(key)
        self._failures.setdefault(key, deque(maxlen=self.max_failures)).append(self._clock())
        if len(self._failures) > self.max_addresses:
            self._forget(keep=key)

    def _forget(self, keep: str) -> None:
        """Back under max_addresses (to nine tenths, so this runs seldom): by age first, never keep."""
        cutoff = self._clock() - self.window_s
        self._failures = {k: f for k, f in self._failures.items() if k == keep or f[-1] > cutoff}
        excess = len(self._failures) - self.max_addresses * 9 // 10
        if excess > 0:
            candidates = sorted(
                (k for k in self._failures if k != keep), key=lambda k: (len(self._failures[k]), self._failures[k][-1])
            )
            for k in candidates[:excess]:
                del self._failures[k]
