"""The systemd unit (verified, scored) and the notify protocol, from the unit tests to a real daemon."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from edgevoice.server.systemd import Notifier
from tests.support.daemon import Daemons

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edgevoice.service"
INSTALLED_EXECUTABLE = "/opt/edgevoice/.venv/bin/edgevoice"
MAX_EXPOSURE = 2.5

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's, in a short directory (sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ev-") as folder:
        path = os.path.join(folder, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(10)
            yield sock, path


def test_unit_runs_the_installed_daemon_as_a_notify_service() -> None:
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_EXECUTABLE} --config /etc/edgevoice/edgevoice.toml serve" in text
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "StateDirectory=edgevoice"):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line


@needs_systemd_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze checks that the executables exist: point them at this checkout's."""
    here = Path(sys.prefix) / "bin" / "edgevoice"
    assert here.is_file(), f"{here} is missing: ./install.sh installs it"
    unit = tmp_path / "edgevoice.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_EXECUTABLE, str(here)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "--generators=no", str(unit)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys and bad values are only warnings


@needs_systemd_analyze
def test_unit_exposure_is_ok() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for edgevoice\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"exposure {found.group(1)} {found.group(2)}")
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout
    assert found.group(2) == "OK"


def test_no_notify_socket_is_a_no_op() -> None:
    notifier = Notifier(environ={"WATCHDOG_USEC": "200000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.send("READY=1") is False
    notifier.ready("serving")
    notifier.stopping()
    notifier.status("anything")
    notifier.close()


async def test_no_notify_socket_starts_no_watchdog() -> None:
    assert Notifier(environ={}).start_watchdog() is None


def test_abstract_socket_gets_ready_status_and_stopping() -> None:
    name = f"edgevoice-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = Notifier(environ={"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        notifier.ready("serving kitchen on http://127.0.0.1:8765")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving kitchen on http://127.0.0.1:8765"
        notifier.status("loading")
        assert sock.recv(4096) == b"STATUS=loading"
        notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()


def test_send_failure_is_logged_once_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(environ={"NOTIFY_SOCKET": "/nonexistent/edgevoice/notify"})
    assert notifier.send("READY=1") is False
    assert notifier.send("WATCHDOG=1") is False
    notifier.stopping()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1
    notifier.close()


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ: dict[str, str], interval: float | None) -> None:
    notifier = Notifier(environ={"NOTIFY_SOCKET": "@edgevoice-unused", **environ}, pid=4242)
    assert notifier.watchdog_interval_s == interval


async def test_watchdog_pets_from_the_loop_until_cancelled(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    notifier = Notifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    task = notifier.start_watchdog()
    assert task is not None
    await asyncio.sleep(0.22)
    task.cancel()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    pings = _drain(sock)
    assert pings == [b"WATCHDOG=1"] * len(pings)
    assert 3 <= len(pings) <= 6, pings  # at 0, 50, 100, 150, 200 ms, give or take a busy machine
    await asyncio.sleep(0.12)
    assert _drain(sock) == [], "pings went on after the task was cancelled"
    notifier.close()


def _drain(sock: socket.socket) -> list[bytes]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096))
        except BlockingIOError:
            return messages


def _pings(sock: socket.socket, for_s: float) -> list[float]:
    """When each WATCHDOG=1 arrived over for_s seconds; anything else fails."""
    started = time.monotonic()
    pings = []
    while time.monotonic() - started < for_s:
        message = sock.recv(4096)
        assert message == b"WATCHDOG=1", message
        pings.append(time.monotonic())
    return pings


def _after_pings(sock: socket.socket) -> bytes:
    """The first message that is not WATCHDOG=1."""
    while (message := sock.recv(4096)) == b"WATCHDOG=1":
        pass
    return message


@pytest.mark.slow
async def test_daemon_speaks_the_notify_protocol(daemons: Daemons, listener: tuple[socket.socket, str]) -> None:
    """READY=1 once /healthz answers, WATCHDOG=1 every 100 ms while serving, STOPPING=1 on SIGTERM."""
    sock, path = listener
    daemon = daemons.new(env={**daemons.env, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    await daemon.spawn()
    sock.settimeout(120)  # the models load and warm before anything but STATUS arrives
    assert await asyncio.to_thread(sock.recv, 4096) == b"STATUS=loading and warming the models"
    ready = await asyncio.to_thread(sock.recv, 4096)
    # The serving line was printed before READY=1 went: it is waiting in the pipe already.
    assert daemon.printed(), "READY=1 came before the serving line"
    await daemon.serving(10)
    found = re.search(r"on (http://127\.0\.0\.1:\d+)", daemon.output.splitlines()[0])
    assert found, daemon.output
    url = found.group(1)
    assert ready.startswith(b"READY=1\nSTATUS=serving "), ready
    assert url.encode() in ready
    async with asyncio.timeout(10), aiohttp.ClientSession() as http, http.get(url + "/healthz") as response:
        assert response.status == 200

    sock.settimeout(5)
    pings = await asyncio.to_thread(_pings, sock, 1.0)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert 8 <= len(pings) <= 12, gaps
    assert max(gaps) < 0.5, gaps  # well inside WATCHDOG_USEC: systemd would not have fired

    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(_after_pings, sock) == b"STOPPING=1\nSTATUS=closing connections"
    assert await daemon.wait(30) == 0
    assert "Traceback" not in daemon.errors
    sock.setblocking(False)
    assert _drain(sock) == [], "a message after STOPPING=1"
