"""`edgevoice serve`: the daemon until SIGTERM or SIGINT, telling systemd (when it started us) how it goes.

What it prints is read by tools (edgevoice.bench.daemon waits for the serving line): keep the
lines as they are.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from edgevoice.config import Config
from edgevoice.server.app import Server
from edgevoice.server.systemd import Notifier


async def serve(config: Config, host: str | None = None, port: int | None = None) -> int:
    server = Server(config)
    notifier = Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watched: list[asyncio.Task[None]] = []
    try:
        notifier.status("loading and warming the models")
        await server.start(host, port)
        serving = _say_serving(server)
        if server.degraded:
            watched.append(asyncio.create_task(_say_when_healed(server, notifier), name="healed"))
        # READY=1 only now: the models answer (or said why not) and the port is open. WatchdogSec= starts here.
        notifier.ready(serving)
        watchdog = notifier.start_watchdog()
        if watchdog is not None:
            watched.append(watchdog)
        await stop.wait()
        notifier.stopping("closing connections")
    finally:
        for task in watched:
            task.cancel()
        await asyncio.gather(*watched, return_exceptions=True)
        await server.stop()
        notifier.close()
    print("edgevoice: stopped", flush=True)
    return 0


def _say_serving(server: Server) -> str:
    """Print where the box serves (and the token, and why it is degraded); the status line for systemd."""
    print(f"edgevoice: serving {server.name} on {server.http_url} (voice client at /talk)", flush=True)
    if server.address.fingerprint:
        # what a browser's certificate warning, or the Python client's first connection, must match
        print(f"edgevoice: certificate SHA-256 fingerprint {server.address.fingerprint}", file=sys.stderr)
    if server.wyoming is not None:
        where = f"{server.address.url_host}:{server.wyoming.port}"
        print(f"edgevoice: Wyoming (Home Assistant) on tcp://{where}, no authentication", file=sys.stderr)
    if server.pairing.enabled and server.pairing.token_created:
        # printed once, when made: not into the journal at every start
        print(f"edgevoice: pairing token: {server.tokens.current()} (pair a browser at /pair)", file=sys.stderr)
    elif server.pairing.enabled:
        print("edgevoice: pairing token: `edgevoice token` prints it (pair a browser at /pair)", file=sys.stderr)
    if not server.degraded:
        return f"serving {server.name} on {server.http_url}"
    # Still READY=1: the port is open and says what is wrong; exiting would only loop restarts.
    failed = ", ".join(failure.kind.value for failure in server.models.failures)
    degraded = (
        f"degraded: models failed to load ({failed}), see {server.http_url}/healthz; "
        f"checking their files every {server.models.retry_interval_s:g} s"
    )
    print(f"edgevoice: {degraded}", file=sys.stderr, flush=True)
    return degraded


async def _say_when_healed(server: Server, notifier: Notifier) -> None:
    await server.models.loaded.wait()
    notifier.status(f"serving {server.name} on {server.http_url}")
