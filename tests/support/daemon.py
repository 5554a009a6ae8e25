"""Starting the daemon for a test: in this process (serving_with), or as `edgevoice serve` (Daemons).

In process it shares the session's loaded engines and is stopped when the block ends; as a
process it is edgevoice.bench.daemon.Daemon, the benchmark's own launcher, stopped when the test
ends. The fixtures on top of these (server, serve_env, daemons) are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from edgevoice.bench.daemon import Daemon, Launch
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.loader import ModelLoader
from edgevoice.models.registry import default_stt_path
from edgevoice.server.app import Server

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
KEEP_LINES = 10_000
"""Every line a test's daemon writes: tests read its whole log."""


@asynccontextmanager
async def serving_with(
    config: Config,
    engines: Engines | None = None,
    *,
    port: int = 0,
    loader: ModelLoader | None = None,
    **server: object,
) -> AsyncIterator[Server]:
    """A server on 127.0.0.1 (port 0: a free one), with some [server] settings changed.

    Without engines it loads its own, through loader if given (a stand-in that fails on purpose).
    """
    changed = dataclasses.replace(config, server=dataclasses.replace(config.server, **server))  # type: ignore[arg-type]
    running = Server(changed, engines, loader=loader)
    await asyncio.wait_for(running.start("127.0.0.1", port), START_TIMEOUT_S)
    try:
        yield running
    finally:
        await asyncio.wait_for(running.stop(), STOP_TIMEOUT_S)


def serve_environment(config: Config, data_dir: Path) -> dict[str, str]:
    """This process's environment for `edgevoice serve`, but with no settings, no systemd, its own data directory
    and the STT model the tests use."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEVOICE_", "NOTIFY_", "WATCHDOG_"))}
    env["EDGEVOICE_DATA_DIR"] = str(data_dir)
    env["EDGEVOICE_STT_MODEL"] = str(config.stt.model or default_stt_path(config))
    return env


class Daemons:
    """`edgevoice serve` processes for one test; stop_all() (the fixture's end) stops what is still running."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        """The environment each daemon gets unless told otherwise."""
        self._started: list[Daemon] = []

    def new(
        self,
        *serve_args: str,
        env: Mapping[str, str] | None = None,
        port: int = 0,
        config: Path | None = None,
        program: tuple[str, ...] | None = None,
        verbose: bool = False,
    ) -> Daemon:
        """A daemon not started yet: spawn() it, or start() it and wait for its serving line."""
        launch = Launch(port, serve_args, self.env if env is None else env, keep_lines=KEEP_LINES)
        if program is not None:
            launch = dataclasses.replace(launch, program=program)
        daemon = Daemon(config, verbose, launch)
        self._started.append(daemon)
        return daemon

    async def start(
        self, *serve_args: str, env: Mapping[str, str] | None = None, port: int = 0, verbose: bool = False
    ) -> Daemon:
        """A daemon serving: its serving line read (BenchError if it exits first)."""
        daemon = self.new(*serve_args, env=env, port=port, verbose=verbose)
        await daemon.start(START_TIMEOUT_S)
        return daemon

    async def stop_all(self) -> None:
        for daemon in self._started:
            await daemon.stop()
