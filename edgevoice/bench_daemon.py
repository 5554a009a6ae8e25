"""The daemon `edgevoice bench` starts for itself, and what it costs: peak memory and CPU time from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections import deque
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


class Daemon:
    """`edgevoice serve` on 127.0.0.1, a free port, no mDNS: started, watched and stopped by the benchmark."""

    def __init__(self, config: Path | None, verbose: bool) -> None:
        self._command = [sys.executable, "-m", "edgevoice"]
        if config is not None:
            self._command += ["--config", str(config)]
        if verbose:
            self._command.append("-v")
        self._command += ["serve", "--host", "127.0.0.1", "--port", "0", "--no-discovery"]
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: deque[str] = deque(maxlen=20)
        self._readers: list[asyncio.Task[None]] = []
        self.url = ""

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self._command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout, stderr = self._process.stdout, self._process.stderr
        if stdout is None or stderr is None:
            raise BenchError("cannot read the daemon's output")
        self._readers.append(asyncio.create_task(self._drain(stderr, self._stderr, echo=True)))
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while line := (await stdout.readline()).decode(errors="replace"):
                    found = _SERVING.search(line)
                    if found:
                        scheme = "wss" if found.group(1) == "https" else "ws"
                        self.url = f"{scheme}://127.0.0.1:{found.group(2)}/ws"
                        break
        except TimeoutError:
            raise BenchError(f"the daemon did not start serving within {START_TIMEOUT_S:.0f} s") from None
        if not self.url:
            await self._process.wait()
            await asyncio.gather(*self._readers, return_exceptions=True)
            last = next((line for line in reversed(self._stderr) if line.strip()), "no message")
            raise BenchError(f"the daemon exited with status {self._process.returncode}: {last.strip()}")
        self._readers.append(asyncio.create_task(self._drain(stdout, deque(maxlen=20), echo=False)))

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchError("the daemon is not running")
        return self._process.pid

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, keep: deque[str], *, echo: bool) -> None:
        """Keep reading, so a chatty daemon never blocks on a full pipe; its log goes to the debug log."""
        while line := (await stream.readline()).decode(errors="replace"):
            keep.append(line)
            if echo:
                _log.debug("daemon: %s", line.rstrip())

    async def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL after STOP_TIMEOUT_S. The exit status (None: it was never started)."""
        process = self._process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return process.returncode
