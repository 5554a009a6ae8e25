"""Free memory handed back when an engine falls idle (engines/memory.py, EngineWorker's on_idle)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import threading

import pytest

import edgevoice.engines.engines as engines_module
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.memory import give_back_free_memory
from edgevoice.engines.schedule import Claim
from edgevoice.engines.worker import EngineWorker

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def test_freed_chunks_held_by_malloc_go_back_to_the_system() -> None:
    # 64 KB chunks stay below malloc's mmap threshold, and every other one stays in use, so the
    # freed ones are holes in the heap that malloc keeps: about 100 MB the process holds for nothing.
    chunks = [_libc.malloc(64 * 1024) for _ in range(3200)]
    for chunk in chunks:
        ctypes.memset(chunk, 1, 64 * 1024)
    for chunk in chunks[::2]:
        _libc.free(chunk)
    held = _rss_mb()
    try:
        assert give_back_free_memory()
        assert _rss_mb() < held - 60
    finally:
        for chunk in chunks[1::2]:
            _libc.free(chunk)


async def test_housekeeping_runs_once_the_queue_is_empty_and_its_failure_stops_nothing() -> None:
    calls: list[int] = []
    release = threading.Event()

    def housekeeping() -> None:
        calls.append(worker.waiting)
        if len(calls) == 1:
            raise OSError("nothing to give back")

    worker = EngineWorker("test", on_idle=housekeeping)
    try:
        first = worker.submit(lambda: release.wait(10), Claim(0.0))
        queued = [worker.submit(lambda k=k: k, Claim(0.0)) for k in range(3)]  # type: ignore[misc]
        release.set()
        assert await first
        assert [await job for job in queued] == [0, 1, 2]
        await asyncio.sleep(0.1)
        assert calls == [0]  # once, after the last job, with nothing waiting
        assert await worker.submit(lambda: 7, Claim(0.0)) == 7  # the failure stopped nothing
        await asyncio.sleep(0.1)
        assert calls == [0, 0]
    finally:
        worker.close()


async def test_memory_goes_back_only_once_no_engine_has_work(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[str] = []
    monkeypatch.setattr(engines_module, "give_back_free_memory", lambda: given.append(threading.current_thread().name))
    engines = Engines(config, None, None, None)
    try:
        release = threading.Event()
        reply = engines.llm_worker.submit(lambda: release.wait(10))
        assert await engines.stt_worker.submit(lambda: "heard") == "heard"
        await asyncio.sleep(0.1)
        assert given == []  # the model is still at work on a reply
        release.set()
        assert await reply
        await asyncio.sleep(0.1)
        assert given == ["edgevoice-llm"]  # the last engine to finish hands it back, on its own thread
    finally:
        engines.close()
