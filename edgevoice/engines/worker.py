"""One thread per engine: jobs run one at a time, best claim first (schedule.py), the wait queue is
bounded, results come back to asyncio.

Streaming jobs hand items over through a bounded window: the engine thread blocks when the
consumer falls behind, and stops at its next item once the job is cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from edgevoice.engines.schedule import Claim, Rank, Scheduler
from edgevoice.errors import EdgevoiceError

T = TypeVar("T")
_log = logging.getLogger(__name__)


class EngineBusy(EdgevoiceError):
    """The engine's wait queue is full."""


class Cancelled(Exception):
    """Raised inside an engine job whose consumer has gone."""


class CancelToken:
    """Set from the event loop, polled by engine code between tokens, sentences or segments."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled


class _Job(Generic[T]):
    """fn, to run on the engine thread; its result is a thread-safe future that async callers wrap."""

    def __init__(self, fn: Callable[[], T], token: CancelToken | None = None) -> None:
        self.fn = fn
        self.queued = time.monotonic()
        self.token = token
        """Cancelled when the job must stop early (background work that a turn outranks)."""
        self.result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run(self) -> None:
        if not self.result.set_running_or_notify_cancel():
            return  # its caller gave up while it waited: nobody wants the work
        try:
            value = self.fn()
        except BaseException as err:  # handed to the caller, which decides
            self.result.set_exception(err)
        else:
            self.result.set_result(value)


class EngineWorker:
    """A named thread that runs submitted callables one at a time, best claim first (schedule.py)."""

    def __init__(self, name: str, max_waiting: int = 8, on_idle: Callable[[], object] | None = None) -> None:
        """on_idle: run on the engine thread each time a job leaves its queue empty (housekeeping)."""
        self.name = name
        self._on_idle = on_idle
        self._lock = threading.Condition(threading.RLock())
        self._queue: Scheduler[_Job[Any]] = Scheduler(max_waiting)
        self._running: tuple[_Job[Any], Claim] | None = None
        self._closing = False
        self._job_s = 0.0
        """A running average of how long a turn's job takes here (background work stops for turns)."""
        self._thread = threading.Thread(target=self._loop, name=f"edgevoice-{name}", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._running is not None

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def serving_turns(self) -> bool:
        """Whether a turn's job (not background work) runs or waits here."""
        with self._lock:
            running = self._running is not None and self._running[1].rank != Rank.BACKGROUND
            return running or self._queue.has_turns_waiting()

    @property
    def max_waiting(self) -> int:
        return self._queue.max_waiting

    def expected_wait_s(self, claim: Claim) -> float:
        """About how long a new job with this claim would wait before it runs: the running job (unless
        it is background work, which stops for it) and the jobs that go before it, at the average
        time a turn's job takes here."""
        with self._lock:
            running = self._running is not None and self._running[1].rank != Rank.BACKGROUND
            return (self._queue.ahead_of(claim) + running) * self._job_s

    def should_yield(self, claim: Claim) -> bool:
        """Whether the job running with claim should give way at its next break (Scheduler.should_yield)."""
        with self._lock:
            return self._queue.should_yield(claim)

    def give_way(self, claim: Claim, before: Callable[[], None], after: Callable[[], None]) -> int:
        """Called by the running job, on the engine thread, between its pieces: run now, one after
        another, the waiting jobs that should go before it (Scheduler.should_yield), with before()
        called first and after() last so that the job can put its state aside and take it back.
        How many ran (0: none waited, and neither callback was called)."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("give_way is for the job running on the engine thread")
        with self._lock:
            if not self._queue.should_yield(claim):
                return 0
        ran = 0
        before()
        try:
            while True:
                with self._lock:
                    picked = self._queue.pop() if self._queue.should_yield(claim) else None
                    if picked is None:
                        break
                    outer, self._running = self._running, picked
                try:
                    picked[0].run()
                finally:
                    with self._lock:
                        self._running = outer
                ran += 1
        finally:
            after()
            _log.debug("engine %s: %d jobs ran while a %s job gave way", self.name, ran, claim.rank.name.lower())
        return ran

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                picked = self._queue.pop()
                if picked is None:
                    return  # closing, nothing left
                self._running = picked
            job = picked[0]
            started = time.monotonic()
            try:
                job.run()
            finally:
                took = time.monotonic() - started
                with self._lock:
                    self._running = None
                    if picked[1].rank != Rank.BACKGROUND and not job.result.cancelled():
                        self._job_s = took if self._job_s == 0.0 else 0.8 * self._job_s + 0.2 * took
                _log.debug(
                    "engine %s: %s job waited %.0f ms, ran %.0f ms",
                    self.name,
                    picked[1].rank.name.lower(),
                    (started - job.queued) * 1000,
                    took * 1000,
                )
            self._idle()

    def _idle(self) -> None:
        with self._lock:
            if self._queue or self._on_idle is None:
                return
        try:
            self._on_idle()
        except Exception:  # housekeeping must not stop the engine
            _log.exception("engine %s: idle housekeeping failed", self.name)

    def _add(self, job: _Job[T], claim: Claim) -> None:
        with self._lock:
            if self._closing:
                raise EngineBusy(f"the {self.name} engine is closing")
            added = self._queue.add(job, claim)
            if not added.queued:
                raise EngineBusy(f"the {self.name} engine is busy ({self._queue.max_waiting} requests waiting)")
            if added.dropped is not None:
                added.dropped.result.cancel()  # background work nobody waits for
            running = self._running
            if running is not None and running[0].token is not None and running[1].rank == Rank.BACKGROUND:
                self._stop_if_outranked(running[0].token, running[1])
            self._lock.notify()
        job.result.add_done_callback(lambda done: self._forget(job) if done.cancelled() else None)

    def _stop_if_outranked(self, token: CancelToken, claim: Claim) -> None:
        """Background work stops at its next check once a turn waits for the engine."""
        if self._queue.should_yield(claim):
            token.cancel()

    def _forget(self, job: _Job[Any]) -> None:
        with self._lock:
            self._queue.remove(job)

    def submit(
        self, fn: Callable[[], T], claim: Claim | None = None, token: CancelToken | None = None
    ) -> asyncio.Future[T]:
        """Queue fn for the engine thread; raise EngineBusy at once if too many jobs wait.

        claim: the standing of the turn it is for (default: a confirmed turn, from now).
        token: cancelled should the job have to stop early (background work a turn outranks).
        """
        loop = asyncio.get_running_loop()
        job = _Job(fn, token)
        self._add(job, claim or Claim(time.monotonic()))
        # Cancelling the asyncio future cancels the job too, if it has not started.
        return asyncio.wrap_future(job.result, loop=loop)

    async def run(self, fn: Callable[[], T]) -> T:
        return await self.submit(fn)

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn on the engine thread and block until it is done: for start-up, off the event loop.

        Native engines keep per-thread state made on first use (OpenMP thread pools, allocator
        arenas); warming them up on the thread that will serve them makes the first turns as fast
        as the rest, and keeps a second, idle set of pool threads from getting in the way.
        """
        if threading.current_thread() is self._thread:
            return fn()
        job = _Job(fn)
        self._add(job, Claim(0.0))
        return job.result.result()

    async def run_cancellable(self, fn: Callable[[CancelToken], T], claim: Claim | None = None) -> T:
        """Run fn(token) on the engine thread; cancelling the awaiting task cancels the token, so an
        engine that polls it stops mid-job instead of holding the thread for work nobody will use."""
        token = CancelToken()
        pending = self.submit(lambda: fn(token), claim, token)
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            token.cancel()
            pending.cancel()  # still waiting: it never starts
            pending.add_done_callback(_consume_result)
            raise

    async def stream(
        self, produce: Callable[[CancelToken], Iterator[T]], window: int = 4, claim: Claim | None = None
    ) -> AsyncIterator[T]:
        """Iterate produce(token) on the engine thread, yielding its items here as they come.

        Leaving the async for early (break, exception, task cancellation) cancels the token, so the
        engine stops at its next check instead of finishing work nobody will use.
        """
        loop = asyncio.get_running_loop()
        token = CancelToken()
        items: asyncio.Queue[tuple[bool, object]] = asyncio.Queue()
        room = threading.Semaphore(window)

        def hand_over(done: bool, item: object) -> None:
            loop.call_soon_threadsafe(items.put_nowait, (done, item))

        def job() -> None:
            try:
                for item in produce(token):
                    while not room.acquire(timeout=0.05):
                        token.check()
                    token.check()
                    hand_over(False, item)
            except Cancelled:
                pass
            except BaseException as err:
                hand_over(True, err)
                return
            hand_over(True, None)

        pending = self.submit(job, claim, token)
        try:
            while True:
                done, item = await items.get()
                if done:
                    if isinstance(item, BaseException):
                        raise item
                    break
                room.release()
                yield item  # type: ignore[misc]
            await pending
        finally:
            token.cancel()
            if not pending.done():
                # The job will notice the token and end on its own; nobody waits for it.
                pending.add_done_callback(_consume_result)

    def close(self, timeout_s: float = 30.0) -> None:
        """Drop the jobs still waiting, stop the running one at its next check, and wait for the thread.

        The engine's native library must not be mid-inference when its model is freed or the
        interpreter exits: that is a segfault, not an error.
        """
        with self._lock:
            self._closing = True
            jobs = self._queue.drain()
            running = self._running
            self._lock.notify()
        if running is not None and running[0].token is not None:
            # A job that polls its token stops at its next check: a reply whose reader has gone quiet
            # (a client that stopped reading) would otherwise hold the thread, and the daemon, for ever.
            running[0].token.cancel()
        for job in jobs:
            job.result.cancel()  # reaches an awaiting caller through its loop, if that still runs
        dropped = len(jobs)
        if dropped:
            _log.info("engine %s closed: %d waiting jobs dropped", self.name, dropped)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _log.warning("engine %s still busy %.0f s after close", self.name, timeout_s)


def _consume_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
