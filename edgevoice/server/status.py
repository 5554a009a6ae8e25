"""The daemon's read-only status routes for the dashboard and for Prometheus.

GET /api/status   models (and which failed to load, why), engines, clients, uptime, CPU, memory, version,
                  timers (with the time each has left)
GET /api/turns    the newest turns from the turn log (?limit=1..1000)
GET /api/latency  p50/p95/p99 per stage over the last ?window= seconds
GET /api/events   Server-Sent Events: speech_started, transcript and turn_done as they happen
GET /metrics      Prometheus text format, every name prefixed edgevoice_
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgevoice import __version__
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.loader import ModelFailure
from edgevoice.engines.loader import report as model_report
from edgevoice.engines.remote import engine_states
from edgevoice.errors import EdgevoiceError
from edgevoice.events import Event, PartialTranscript, SpeechStarted, Transcript, TurnDone, to_message
from edgevoice.models.registry import Kind, resolve
from edgevoice.server.turnlog import QUANTILES, STAGES, LatencyLog

_log = logging.getLogger(__name__)
HEARTBEAT_S = 15.0
FEED_QUEUE = 100
MAX_TURNS_LIMIT = 1000
METRICS_WINDOW_S = 600.0
"""The window the /metrics summary quantiles cover; its _sum and _count run since the start."""


class EventFeed:
    """Fan-out of session events to SSE subscribers, each with a bounded queue that drops its oldest."""

    def __init__(self, max_queued: int = FEED_QUEUE) -> None:
        self._max_queued = max_queued
        self._subscribers: set[_Subscriber] = set()
        self.closed = False

    def publish(self, message: dict[str, Any]) -> None:
        for subscriber in self._subscribers:
            if len(subscriber.queue) == self._max_queued:
                subscriber.dropped += 1
            subscriber.queue.append(message)
            subscriber.wake.set()

    def subscribe(self) -> _Subscriber:
        subscriber = _Subscriber(collections.deque(maxlen=self._max_queued), asyncio.Event())
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def close(self) -> None:
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.wake.set()

    def __len__(self) -> int:
        return len(self._subscribers)


@dataclass(eq=False)
class _Subscriber:
    queue: collections.deque[dict[str, Any]]
    wake: asyncio.Event
    dropped: int = 0


def feed_message(event: Event, conversation: str, client: str, store_text: bool) -> dict[str, Any] | None:
    """What the dashboard is told about a session event; None for events it is not told about.

    The event's own wire message, with the client and conversation it came from. A box that keeps
    no text sends a turn_done's transcript and reply as null.
    """
    if not isinstance(event, SpeechStarted | PartialTranscript | Transcript | TurnDone):
        return None
    if isinstance(event, PartialTranscript | Transcript) and not store_text:
        return None
    message = to_message(event).to_json()
    if isinstance(event, TurnDone) and not store_text:
        message.update(transcript=None, reply=None)
    return {**message, "conversation": conversation, "client": client}


def memory_bytes() -> dict[str, int | None]:
    """Resident and peak resident memory of this process, from /proc (None off Linux)."""
    found: dict[str, int | None] = {"rss": None, "peak_rss": None}
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii", errors="replace") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found["rss" if key == "VmRSS" else "peak_rss"] = int(value.split()[0]) * 1024
    return found


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return "NaN" if math.isnan(value) else str(value)


class StatusApi:
    """The routes, reading the server's state through the callables it is given."""

    def __init__(
        self,
        *,
        config: Config,
        log: LatencyLog,
        feed: EventFeed,
        engines: Callable[[], Engines | None],
        connections: Callable[[], list[dict[str, Any]]],
        started: Callable[[], float],
        model_failures: Callable[[], Sequence[ModelFailure]] = tuple,
        timers: Callable[[], list[dict[str, Any]]] = list,
    ) -> None:
        self._config = config
        self._log = log
        self._feed = feed
        self._engines = engines
        self._connections = connections
        self._started = started
        self._model_failures = model_failures
        self._timers = timers
        self._cpu_mark = (time.monotonic(), _cpu_seconds())

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/status", self.status)
        app.router.add_get("/api/turns", self.turns)
        app.router.add_get("/api/latency", self.latency)
        app.router.add_get("/api/events", self.events)
        app.router.add_get("/metrics", self.metrics)

    def _models(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        for kind in Kind:
            try:
                choice = resolve(self._config, kind)
            except EdgevoiceError as err:
                models[kind.value] = {"error": str(err)}
                continue
            files = []
            for path in [choice.path, *choice.companion_files()]:
                try:
                    size: int | None = path.stat().st_size
                except OSError:
                    size = None
                files.append({"path": str(path), "bytes": size})
            models[kind.value] = {"default": choice.default, "files": files}
        return models

    def _engine_states(self) -> dict[str, Any]:
        engines = self._engines()
        if engines is None:
            return {}
        return {
            worker.name: {"state": "busy" if worker.busy else "idle", "waiting": worker.waiting}
            for worker in (engines.stt_worker, engines.llm_worker, engines.tts_worker)
        }

    def _engine_locations(self) -> dict[str, Any]:
        """Where each engine runs (this box or a server on the LAN) and whether that server answers."""
        engines = self._engines()
        return {} if engines is None else {state.pop("kind"): state for state in engine_states(engines)}

    def _cpu(self) -> dict[str, float]:
        """CPU seconds used, and the share of one core used since the previous /api/status call."""
        now, used = time.monotonic(), _cpu_seconds()
        then, used_then = self._cpu_mark
        self._cpu_mark = (now, used)
        percent = 100.0 * (used - used_then) / (now - then) if now > then else 0.0
        return {"seconds": round(used, 2), "percent": round(percent, 1), "over_s": round(now - then, 1)}

    async def status(self, _request: web.Request) -> web.Response:
        models = await asyncio.to_thread(self._models)
        connections = self._connections()
        return web.json_response(
            {
                "version": __version__,
                "uptime_s": round(time.monotonic() - self._started(), 1),
                "models": models,
                "engines": self._engine_states(),
                "engine_locations": self._engine_locations(),
                "clients": len(connections),
                "connections": connections,
                "cpu": self._cpu(),
                "memory": memory_bytes(),
                "turns": {"recorded": self._log.recorded, "dropped": self._log.dropped, "failed": self._log.failed},
                "subscribers": len(self._feed),
                "timers": self._timers(),
                **model_report(self._engines() is not None, self._model_failures()),
            }
        )

    async def turns(self, request: web.Request) -> web.Response:
        raw = request.query.get("limit", "50")
        try:
            limit = int(raw)
        except ValueError:
            return web.json_response({"error": f"limit must be a whole number, not {raw!r}"}, status=400)
        limit = max(1, min(MAX_TURNS_LIMIT, limit))
        records = await asyncio.to_thread(self._recent, limit)
        return web.json_response({"limit": limit, "turns": [record.to_json() for record in records]})

    def _recent(self, limit: int) -> list[Any]:
        self._log.flush(1.0)  # a turn that just ended is shown, not missed by a few milliseconds
        return self._log.recent(limit)

    async def latency(self, request: web.Request) -> web.Response:
        raw = request.query.get("window", "3600")
        try:
            window = float(raw)
        except ValueError:
            window = math.nan
        if not math.isfinite(window) or window <= 0:
            return web.json_response({"error": f"window must be a positive number of seconds, not {raw!r}"}, status=400)
        return web.json_response(await asyncio.to_thread(self._latency, window))

    def _latency(self, window_s: float) -> dict[str, Any]:
        self._log.flush(1.0)
        return self._log.latency(window_s)

    async def metrics(self, _request: web.Request) -> web.Response:
        latency = await asyncio.to_thread(self._latency, METRICS_WINDOW_S)
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP edgevoice_{name} {help_text}")
            lines.append(f"# TYPE edgevoice_{name} {kind}")
            lines.extend(f"edgevoice_{name}{labels} {_number(value)}" for labels, value in samples)

        memory = memory_bytes()
        metric("build_info", "gauge", "The running version.", [(f'{{version="{_escape(__version__)}"}}', 1)])
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the daemon opened its port.",
            [("", round(time.monotonic() - self._started(), 3))],
        )
        metric("clients", "gauge", "WebSocket clients connected.", [("", len(self._connections()))])
        failed = {failure.kind.value for failure in self._model_failures()}
        ready = self._engines() is not None
        metric("models_ready", "gauge", "1 while every model is loaded; 0 while degraded.", [("", int(ready))])
        metric(
            "model_ready",
            "gauge",
            "0 for a model that failed to load.",
            [(f'{{model="{kind.value}"}}', int(ready or kind.value not in failed)) for kind in Kind],
        )
        metric("turns_total", "counter", "Turns finished since the daemon started.", [("", self._log.recorded)])
        metric(
            "turns_dropped_total", "counter", "Turns the turn log could not keep up with.", [("", self._log.dropped)]
        )
        metric("turns_failed_total", "counter", "Turns the turn log could not write.", [("", self._log.failed)])
        metric("process_cpu_seconds_total", "counter", "User and system CPU time.", [("", round(_cpu_seconds(), 3))])
        if memory["rss"] is not None:
            metric("process_resident_memory_bytes", "gauge", "Resident memory.", [("", memory["rss"])])
        if memory["peak_rss"] is not None:
            metric("process_resident_memory_peak_bytes", "gauge", "Peak resident memory.", [("", memory["peak_rss"])])
        states = self._engine_states()
        metric(
            "engine_busy",
            "gauge",
            "1 while the engine runs a job.",
            [(f'{{engine="{name}"}}', 1 if state["state"] == "busy" else 0) for name, state in states.items()],
        )
        metric(
            "engine_waiting",
            "gauge",
            "Jobs waiting for the engine.",
            [(f'{{engine="{name}"}}', state["waiting"]) for name, state in states.items()],
        )
        samples: list[tuple[str, float]] = []
        for stage in STAGES:
            summary = latency["stages"][stage]
            for q in QUANTILES:
                value = summary[f"p{round(q * 100)}"]
                seconds = math.nan if value is None else value / 1000.0
                samples.append((f'{{stage="{stage}",quantile="{q}"}}', seconds))
            samples.append((f'_sum{{stage="{stage}"}}', round(self._log.stage_sums_ms[stage] / 1000.0, 4)))
            samples.append((f'_count{{stage="{stage}"}}', self._log.stage_counts[stage]))
        metric("turn_stage_seconds", "summary", "Time from the end of the user's speech to each stage.", samples)
        return web.Response(text="\n".join(lines) + "\n", headers={"Content-Type": "text/plain; version=0.0.4"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        subscriber = self._feed.subscribe()
        try:
            await response.write(b": subscribed\n\n")
            while not self._feed.closed:
                if not subscriber.queue:
                    subscriber.wake.clear()
                    try:
                        async with asyncio.timeout(HEARTBEAT_S):
                            await subscriber.wake.wait()
                    except TimeoutError:
                        await response.write(b": heartbeat\n\n")
                    continue
                message = subscriber.queue.popleft()
                data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
                await response.write(f"event: {message['type']}\ndata: {data}\n\n".encode())
        except ConnectionResetError:
            pass  # the dashboard went away
        finally:
            self._feed.unsubscribe(subscriber)
        return response
