"""Engine worker threads: bounded waiting, results and errors back on the loop, cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from edgevoice.engines.worker import CancelToken, EngineBusy, EngineWorker


async def test_run_returns_result_and_raises_errors() -> None:
    worker = EngineWorker("t")
    try:
        assert await asyncio.wait_for(worker.run(lambda: 6 * 7), 5) == 42
        with pytest.raises(ZeroDivisionError):
            await asyncio.wait_for(worker.run(lambda: 1 // 0), 5)
    finally:
        worker.close()


async def test_full_queue_is_busy_not_unbounded() -> None:
    worker = EngineWorker("t", max_waiting=2)
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(5)

    try:
        running = worker.submit(block)
        assert await asyncio.to_thread(started.wait, 5)
        queued = [worker.submit(lambda: None) for _ in range(2)]
        with pytest.raises(EngineBusy, match="busy"):
            worker.submit(lambda: None)
        release.set()
        await asyncio.wait_for(asyncio.gather(running, *queued), 5)
    finally:
        release.set()
        worker.close()


async def test_stream_stops_producer_when_consumer_leaves() -> None:
    worker = EngineWorker("t")
    produced: list[int] = []
    stopped = threading.Event()

    def produce(token: CancelToken) -> Iterator[int]:
        try:
            for i in range(10_000):
                token.check()
                produced.append(i)
                yield i
        finally:
            stopped.set()

    try:
        async with asyncio.timeout(5):
            async for item in worker.stream(produce, window=2):
                if item == 3:
                    break
            assert await asyncio.to_thread(stopped.wait, 5)
        assert len(produced) < 10
    finally:
        worker.close()


async def test_stream_error_reaches_consumer() -> None:
    worker = EngineWorker("t")

    def produce(_token: CancelToken) -> Iterator[int]:
        yield 1
        raise ValueError("engine failed")

    try:
        got: list[int] = []

        async def consume() -> None:
            async with asyncio.timeout(5):
                async for item in worker.stream(produce):
                    got.append(item)

        with pytest.raises(ValueError, match="engine failed"):
            await consume()
        assert got == [1]
    finally:
        worker.close()
