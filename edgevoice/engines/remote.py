"""What the engines that run on another machine share: their health, and a cancel that cuts the connection.

A remote engine runs on its engine thread like a local one and blocks in socket reads. A barge-in
must not wait for the server's next piece: while a request is open, a watcher shuts the socket
down as soon as the job's token is cancelled, so the blocked read returns at once.

Health is what the last request found. A request that fails marks the engine down (one journal
line), and from then on a prober asks the server every PROBE_INTERVAL_S whether it answers again,
so the dashboard and /healthz recover without waiting for someone to speak.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edgevoice.engines.worker import Cancelled, CancelToken
from edgevoice.errors import EdgevoiceError, ModelError

if TYPE_CHECKING:
    from edgevoice.engines.engines import Engines

_log = logging.getLogger(__name__)
PROBE_INTERVAL_S = 3.0
"""How often a remote engine that is down asks its server again (a test may lower it)."""
CONNECT_TIMEOUT_S = 5.0
_WATCH_S = 0.02


class RemoteError(ModelError):
    """A server an engine is configured to use cannot be reached, or answered something unusable."""


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise RemoteError(f"{url!r} names no host")
    return parts.hostname, parts.port or default_port


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str
    """Why it is down; empty while it is up."""
    since: float
    """Wall-clock time of the last change."""


class RemoteHealth:
    """Whether a remote engine's server answered its last request. Thread-safe: engine threads and probers set it."""

    def __init__(self, kind: str, url: str, probe: Callable[[], object]) -> None:
        self.kind = kind
        self.url = url
        self._probe = probe
        self._lock = threading.Lock()
        self._state = Health(True, "", time.time())
        self._prober: threading.Thread | None = None
        self._closed = threading.Event()

    def snapshot(self) -> Health:
        with self._lock:
            return self._state

    @property
    def ok(self) -> bool:
        return self.snapshot().ok

    def succeeded(self) -> None:
        with self._lock:
            previous = self._state
            if previous.ok:
                return
            self._state = Health(True, "", time.time())
        _log.warning(
            "%s server at %s answers again (down %.0f s)", self.kind, self.url, self._state.since - previous.since
        )

    def failed(self, reason: str) -> None:
        with self._lock:
            was_ok = self._state.ok
            self._state = Health(False, reason, time.time() if was_ok else self._state.since)
            start = self._prober is None and not self._closed.is_set()
            if start:
                self._prober = threading.Thread(target=self._probe_until_up, name=f"edgevoice-{self.kind}-probe")
                self._prober.daemon = True
        if was_ok:
            _log.error("%s server at %s unreachable: %s; turns fail until it answers", self.kind, self.url, reason)
        if start and self._prober is not None:
            self._prober.start()

    def _probe_until_up(self) -> None:
        try:
            while not self._closed.wait(PROBE_INTERVAL_S):
                if self.ok:
                    return  # a request found it up first
                try:
                    self._probe()
                except (RemoteError, OSError) as err:
                    self.failed(str(err))
                else:
                    self.succeeded()
                    return
        finally:
            with self._lock:
                self._prober = None

    def close(self) -> None:
        self._closed.set()


@contextlib.contextmanager
def cut_on_cancel(token: CancelToken | None, sock: socket.socket | None) -> Iterator[None]:
    """While inside, a cancelled token shuts sock down, so a read blocked on it returns at once."""
    if token is None or sock is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(_WATCH_S):
            if token.cancelled:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return

    watcher = threading.Thread(target=watch, name="edgevoice-remote-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def failure(health: RemoteHealth, token: CancelToken | None, what: str, err: BaseException) -> RemoteError:
    """The error to raise for a request that broke: Cancelled if the turn gave it up, else a RemoteError
    (and the engine marked down)."""
    if token is not None and token.cancelled:
        raise Cancelled from None
    reason = f"{what}: {_describe(err)}"
    health.failed(reason)
    return RemoteError(f"the {health.kind} server at {health.url}: {reason}")


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    return str(err) or type(err).__name__


def engine_states(engines: Engines) -> list[dict[str, Any]]:
    """describe_engine for each engine that is loaded."""
    states = []
    for kind, engine in (("stt", lambda: engines.stt), ("llm", lambda: engines.llm), ("tts", lambda: engines.tts)):
        try:
            loaded = engine()
        except EdgevoiceError:
            continue  # not loaded in this process (a command that needs only some)
        states.append(describe_engine(kind, loaded))
    return states


def describe_engine(kind: str, engine: Any) -> dict[str, Any]:
    """Where one engine runs and whether it answers: for /healthz, /api/status and the dashboard."""
    health: RemoteHealth | None = getattr(engine, "health", None)
    if health is None:
        return {"kind": kind, "location": "local", "url": None, "ok": True, "reason": ""}
    state = health.snapshot()
    return {
        "kind": kind,
        "location": "remote",
        "url": health.url,
        "ok": state.ok,
        "reason": state.reason,
        "since": round(state.since, 3),
    }
