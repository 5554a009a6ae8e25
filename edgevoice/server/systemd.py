"""systemd's notify protocol (sd_notify(3)) without libsystemd: readiness, status, stop and watchdog.

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op. A message that cannot be sent is
logged once and dropped, never raised: telling systemd how the daemon is doing must not be the
thing that stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

_log = logging.getLogger(__name__)


class Notifier:
    """One daemon's line to its service manager, read from $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID."""

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        environ = os.environ if environ is None else environ
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_interval(environ, os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when systemd watches nothing."""
        return self._watchdog_s if self.enabled else None

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> None:
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def send(self, *assignments: str) -> bool:
        """One datagram of KEY=VALUE lines; False (and a warning, the first time) when it did not go."""
        if self._address is None or not assignments:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                # Non-blocking: a service manager that is slow to read must never stall the event loop.
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError as err:
            if not self._warned:
                self._warned = True
                _log.warning("cannot notify systemd at %s: %s (further failures are not logged)", self._address, err)
            return False
        return True

    def start_watchdog(self) -> asyncio.Task[None] | None:
        """Ping WATCHDOG=1 from the running event loop, or None when no watchdog is configured.

        The pings come from the loop itself, not a thread: if the loop hangs they stop, and systemd
        restarts the daemon. Cancel the task to stop them.
        """
        interval = self.watchdog_interval_s
        if interval is None:
            return None
        return asyncio.get_running_loop().create_task(self._pet(interval), name="systemd-watchdog")

    async def _pet(self, interval: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # Linux abstract namespace
    if value.startswith("/"):
        return value
    return None  # unset, or a form (vsock:...) this daemon has no use for


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid and watchdog_pid != str(pid):
        return None  # meant for another process: the parent that spawned us, not us
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None
