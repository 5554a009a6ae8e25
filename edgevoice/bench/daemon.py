"""The daemon `edgevoice bench` and the tests start for themselves, and what it costs: memory and CPU from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import select
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevoice.errors import EdgevoiceError

_log = logging.getLogger(__name__)
_SERVING = re.compile(r"serving .* on (https?)://127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.1


class BenchError(EdgevoiceError):
    """The benchmark cannot run: no clips, no daemon, no connection. One line, exit 2."""


def parse_status_kb(text: str, key: str) -> int | None:
    """A `Key:   1234 kB` line of /proc/PID/status, in kB."""
    found = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def parse_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from /proc/PID/stat; the command name may hold spaces and parentheses."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted after the name


@dataclass
class Usage:
    """What the daemon used while the benchmark ran."""

    peak_rss_kb: int = 0
    cpu_start_s: float | None = None
    cpu_end_s: float | None = None
    wall_start: float = 0.0
    wall_end: float = 0.0

    def to_json(self) -> dict[str, Any]:
        cpu_s = None if self.cpu_start_s is None or self.cpu_end_s is None else self.cpu_end_s - self.cpu_start_s
        wall_s = self.wall_end - self.wall_start
        return {
            "known": True,
            "peak_rss_mb": round(self.peak_rss_kb / 1024, 1),
            "cpu_s": None if cpu_s is None else round(cpu_s, 2),
            "wall_s": round(wall_s, 2),
            "cpu_percent": None if cpu_s is None or wall_s <= 0 else round(100.0 * cpu_s / wall_s, 1),
        }


class ProcessMonitor:
    """Polls /proc/PID every 100 ms: VmRSS and VmHWM for the peak, utime + stime for CPU time."""

    def __init__(self, pid: int, proc: Path = Path("/proc")) -> None:
        self._dir = proc / str(pid)
        self._tick = os.sysconf("SC_CLK_TCK")
        self.usage = Usage()

    def sample(self) -> bool:
        """Read the process once; False when it is gone."""
        try:
            status = (self._dir / "status").read_text()
            stat = (self._dir / "stat").read_text()
        except OSError:
            return False
        for key in ("VmRSS", "VmHWM"):
            self.usage.peak_rss_kb = max(self.usage.peak_rss_kb, parse_status_kb(status, key) or 0)
        cpu_s = parse_cpu_ticks(stat) / self._tick
        if self.usage.cpu_start_s is None:
            self.usage.cpu_start_s = cpu_s
            self.usage.wall_start = time.monotonic()
        self.usage.cpu_end_s = cpu_s
        self.usage.wall_end = time.monotonic()
        return True

    async def run(self) -> None:
        while True:
            if not self.sample():
                return  # the process is gone; the last sample stands
            await asyncio.sleep(POLL_S)


@dataclass(frozen=True)
class Launch:
    """What a caller may change about the daemon it starts: always `serve` on 127.0.0.1, without mDNS."""

    port: int = 0
    serve_args: tuple[str, ...] = ()
    """More options for `serve` (--mic, --tls)."""
    env: Mapping[str, str] | None = None
    """The daemon's whole environment; None: this process's."""
    program: tuple[str, ...] = (sys.executable, "-m", "edgevoice")
    """What runs the command line: the package, or a test's stand-in that lowers a constant first."""
    keep_lines: int = 20
    """How many of its last stdout and stderr lines are kept, for an error message or a test."""


class Daemon:
    """`edgevoice serve` as a process: started, waited for until it says where it serves, stopped.

    The benchmark runs one for itself, and tests run theirs through it. Its stderr is read from the
    start (a chatty daemon must never block on a full pipe), its stdout from serving() on: until
    then what it printed stays in the pipe, where printed() looks.
    """

    def __init__(self, config: Path | None = None, verbose: bool = False, launch: Launch = Launch()) -> None:
        self._command = list(launch.program)
        if config is not None:
            self._command += ["--config", str(config)]
        if verbose:
            self._command.append("-v")
        self._command += ["serve", "--host", "127.0.0.1", "--port", str(launch.port), "--no-discovery"]
        self._command += launch.serve_args
        self._env = None if launch.env is None else dict(launch.env)
        self._process: asyncio.subprocess.Process | None = None
        self._stdout_pipe: int | None = None
        """The read end of its stdout until serving() takes it over."""
        self._stdout: deque[str] = deque(maxlen=launch.keep_lines)
        self._stderr: deque[str] = deque(maxlen=launch.keep_lines)
        self._readers: list[asyncio.Task[None]] = []
        self.url = ""
        """The WebSocket URL it serves, once it said so."""

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """spawn(), then serving(): BenchError if it exits or stays silent instead."""
        await self.spawn()
        await self.serving(timeout_s)

    async def spawn(self) -> None:
        """Start the process; it loads its models and opens its port in its own time."""
        if self._process is not None:
            raise BenchError("this daemon was started already")
        read_end, write_end = os.pipe()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._command, env=self._env, stdout=write_end, stderr=asyncio.subprocess.PIPE
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self._stdout_pipe = read_end
        if self._process.stderr is None:
            raise BenchError("cannot read the daemon's log")
        self._readers.append(asyncio.create_task(_drain(self._process.stderr, self._stderr, echo=True)))

    async def serving(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Read stdout up to the line that says where it serves; that WebSocket URL."""
        stdout = await self._read_stdout()
        try:
            async with asyncio.timeout(timeout_s):
                while line := (await stdout.readline()).decode(errors="replace"):
                    self._stdout.append(line)
                    found = _SERVING.search(line)
                    if found:
                        scheme = "wss" if found.group(1) == "https" else "ws"
                        self.url = f"{scheme}://127.0.0.1:{found.group(2)}/ws"
                        break
        except TimeoutError:
            raise BenchError(f"the daemon did not start serving within {timeout_s:.0f} s") from None
        if not self.url:
            code = await self.wait()
            last = next((line for line in reversed(self._stderr) if line.strip()), "no message")
            raise BenchError(f"the daemon exited with status {code}: {last.strip()}")
        self._readers.append(asyncio.create_task(_drain(stdout, self._stdout, echo=False)))
        return self.url

    def printed(self) -> bool:
        """Whether something it printed waits in its stdout pipe: ask before serving() reads the pipe."""
        if self._stdout_pipe is None:
            raise BenchError("printed() looks into the stdout pipe before serving() reads it")
        return bool(select.select([self._stdout_pipe], [], [], 0)[0])

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def http_url(self) -> str:
        return self.url.replace("ws", "http", 1).removesuffix("/ws")

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def output(self) -> str:
        """What it printed to stdout (the last keep_lines lines)."""
        return "".join(self._stdout)

    @property
    def errors(self) -> str:
        """What it wrote to stderr, its log (the last keep_lines lines)."""
        return "".join(self._stderr)

    def send_signal(self, signum: int) -> None:
        process = self._running()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    async def wait(self, timeout_s: float | None = None) -> int:
        """Its exit status, once it has exited and what it wrote is read to the end."""
        process = self._running()
        async with asyncio.timeout(timeout_s):
            code = await process.wait()
            await asyncio.gather(*self._readers, return_exceptions=True)
        if self._stdout_pipe is not None:
            os.close(self._stdout_pipe)  # never read: nobody asked what it printed
            self._stdout_pipe = None
        return code

    async def kill(self) -> int:
        """SIGKILL: no goodbye to anyone, as when the power goes."""
        self.send_signal(signal.SIGKILL)
        return await self.wait()

    async def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL after STOP_TIMEOUT_S. The exit status (None: it was never started)."""
        if self._process is None:
            return None
        self.send_signal(signal.SIGTERM)
        try:
            return await self.wait(STOP_TIMEOUT_S)
        except TimeoutError:
            return await self.kill()

    def _running(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise BenchError("the daemon is not running")
        return self._process

    async def _read_stdout(self) -> asyncio.StreamReader:
        """Its stdout, read on the event loop from now on."""
        self._running()
        if self._stdout_pipe is None:
            raise BenchError("the daemon's stdout is read already")
        pipe, self._stdout_pipe = os.fdopen(self._stdout_pipe, "rb"), None
        stream = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
        return stream


async def _drain(stream: asyncio.StreamReader, keep: deque[str], *, echo: bool) -> None:
    """Keep reading, so a chatty daemon never blocks on a full pipe; its log goes to the debug log."""
    while line := (await stream.readline()).decode(errors="replace"):
        keep.append(line)
        if echo:
            _log.debug("daemon: %s", line.rstrip())
