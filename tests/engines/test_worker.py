"""Engine worker threads: bounded waiting, results and errors back on the loop, cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from edgevoice.engines.schedule import Claim, Rank
from edgevoice.engines.worker import CancelToken, EngineBusy, EngineWorker


class _Blocker:
    """A job that holds the engine thread until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        self.started.set()
        self.release.wait(5)


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
    block = _Blocker()
    started, release = block.started, block.release

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


async def test_closing_stops_a_stream_whose_reader_went_quiet() -> None:
    # A client that stops reading mid-reply: its turn neither reads on nor closes the stream, so the
    # engine thread waits for room in the window. Closing the worker (the daemon stopping) must end it.
    worker = EngineWorker("t")
    stopped = threading.Event()

    def produce(token: CancelToken) -> Iterator[int]:
        try:
            for i in range(10_000):
                token.check()
                yield i
        finally:
            stopped.set()

    stream = worker.stream(produce, window=2)
    assert await anext(stream) == 0
    await asyncio.sleep(0.2)  # the window fills and the thread waits for the reader
    started = asyncio.get_running_loop().time()
    await asyncio.to_thread(worker.close, 10.0)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert stopped.is_set()
    await stream.aclose()


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


def test_call_runs_on_the_engine_thread_and_returns() -> None:
    worker = EngineWorker("t")
    try:
        assert worker.call(threading.current_thread) is not threading.current_thread()
        assert worker.call(threading.current_thread).name == "edgevoice-t"
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 // 0)
    finally:
        worker.close()


async def test_a_job_given_up_while_waiting_never_runs() -> None:
    worker = EngineWorker("t")
    block = _Blocker()
    started, release = block.started, block.release
    ran: list[str] = []

    try:
        running = worker.submit(block)
        assert await asyncio.to_thread(started.wait, 5)
        waiting = asyncio.ensure_future(worker.run_cancellable(lambda token: ran.append("late")))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await asyncio.wait_for(running, 5)
        assert await asyncio.wait_for(worker.run(lambda: "next"), 5) == "next"
        assert ran == []
    finally:
        release.set()
        worker.close()


async def test_cancelling_the_caller_cancels_the_running_job() -> None:
    worker = EngineWorker("t")
    seen = threading.Event()
    started = threading.Event()

    def job(token: CancelToken) -> None:
        started.set()
        for _ in range(500):
            if token.cancelled:
                seen.set()
                return
            threading.Event().wait(0.01)

    try:
        task = asyncio.ensure_future(worker.run_cancellable(job))
        assert await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(seen.wait, 5)
    finally:
        worker.close()


async def test_waiting_jobs_run_best_claim_first() -> None:
    worker = EngineWorker("t")
    block = _Blocker()
    started, release = block.started, block.release
    ran: list[str] = []

    try:
        running = worker.submit(block)
        assert await asyncio.to_thread(started.wait, 5)
        jobs = [
            worker.submit(lambda: ran.append("background"), Claim(0.0, Rank.BACKGROUND)),
            worker.submit(lambda: ran.append("speculative"), Claim(0.0, Rank.SPECULATIVE)),
            worker.submit(lambda: ran.append("young turn"), Claim(2.0)),
            worker.submit(lambda: ran.append("old turn"), Claim(1.0)),
        ]
        assert worker.expected_wait_s(Claim(1.5)) >= 0.0
        release.set()
        await asyncio.wait_for(asyncio.gather(running, *jobs), 5)
        assert ran == ["old turn", "young turn", "speculative", "background"]
    finally:
        release.set()
        worker.close()


async def test_a_turn_stops_running_background_work() -> None:
    worker = EngineWorker("t")
    started = threading.Event()

    def background(token: CancelToken) -> str:
        started.set()
        for _ in range(500):
            if token.cancelled:
                return "stopped"
            threading.Event().wait(0.01)
        return "ran to the end"

    try:
        pending = asyncio.ensure_future(worker.run_cancellable(background, Claim(0.0, Rank.BACKGROUND)))
        assert await asyncio.to_thread(started.wait, 5)
        turn = worker.submit(lambda: "answered")
        assert await asyncio.wait_for(pending, 5) == "stopped"
        assert await asyncio.wait_for(turn, 5) == "answered"
    finally:
        worker.close()


async def test_a_cancelled_waiting_job_frees_its_place() -> None:
    worker = EngineWorker("t", max_waiting=1)
    block = _Blocker()
    started, release = block.started, block.release

    try:
        running = worker.submit(block)
        assert await asyncio.to_thread(started.wait, 5)
        given_up = worker.submit(lambda: None)
        given_up.cancel()
        await asyncio.sleep(0.05)
        assert worker.waiting == 0
        again = worker.submit(lambda: 1)
        release.set()
        assert await asyncio.wait_for(again, 5) == 1
        await running
    finally:
        release.set()
        worker.close()


async def test_serving_turns_counts_turns_running_or_waiting_not_background_work() -> None:
    worker = EngineWorker("t")
    block = _Blocker()
    started, release = block.started, block.release

    try:
        assert not worker.serving_turns
        background = worker.submit(block, Claim(0.0, Rank.BACKGROUND))
        assert await asyncio.to_thread(started.wait, 5)
        assert not worker.serving_turns  # a partial transcript, a prompt read ahead: nobody waits
        early = worker.submit(lambda: None, Claim(1.0, Rank.SPECULATIVE))
        assert worker.serving_turns  # a turn's work waits
        release.set()
        await asyncio.wait_for(asyncio.gather(background, early), 5)
        assert not worker.serving_turns
        started.clear()
        release.clear()
        confirmed = worker.submit(block, Claim(2.0))
        assert await asyncio.to_thread(started.wait, 5)
        assert worker.serving_turns  # a turn's work runs
        release.set()
        await asyncio.wait_for(confirmed, 5)
    finally:
        release.set()
        worker.close()
