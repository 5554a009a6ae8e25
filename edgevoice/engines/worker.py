"""One thread per engine: jobs run one at a time, the wait queue is bounded, results come back to asyncio.

Streaming jobs hand items over through a bounded window: the engine thread blocks when the
consumer falls behind, and stops at its next item once the job is cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

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

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
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
    """A named thread that runs submitted callables one at a time."""

    def __init__(self, name: str, max_waiting: int = 8) -> None:
        self.name = name
        self._jobs: queue.Queue[_Job[object] | None] = queue.Queue(maxsize=max_waiting)
        self._thread = threading.Thread(target=self._loop, name=f"edgevoice-{name}", daemon=True)
        self._busy = False
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._busy = True
            try:
                job.run()
            finally:
                self._busy = False

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Queue fn for the engine thread; raise EngineBusy at once if too many jobs wait."""
        loop = asyncio.get_running_loop()
        job = _Job(fn)
        try:
            self._jobs.put_nowait(job)  # type: ignore[arg-type]
        except queue.Full:
            raise EngineBusy(f"the {self.name} engine is busy ({self._jobs.maxsize} requests waiting)") from None
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
        self._jobs.put(job)  # type: ignore[arg-type]
        return job.result.result()

    async def run_cancellable(self, fn: Callable[[CancelToken], T]) -> T:
        """Run fn(token) on the engine thread; cancelling the awaiting task cancels the token, so an
        engine that polls it stops mid-job instead of holding the thread for work nobody will use."""
        token = CancelToken()
        pending = self.submit(lambda: fn(token))
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            token.cancel()
            pending.cancel()  # still waiting: it never starts
            pending.add_done_callback(_consume_result)
            raise

    async def stream(self, produce: Callable[[CancelToken], Iterator[T]], window: int = 4) -> AsyncIterator[T]:
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

        pending = self.submit(job)
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
        """Drop the jobs still waiting, let the running one finish, and wait for the thread to end.

        The engine's native library must not be mid-inference when its model is freed or the
        interpreter exits: that is a segfault, not an error.
        """
        dropped = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                dropped += 1
                job.result.cancel()  # reaches an awaiting caller through its loop, if that still runs
        if dropped:
            _log.info("engine %s closed: %d waiting jobs dropped", self.name, dropped)
        self._jobs.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _log.warning("engine %s still busy %.0f s after close", self.name, timeout_s)


def _consume_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
