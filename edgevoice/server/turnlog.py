"""The latency log: one row per conversation turn in SQLite, written off the event loop, read for percentiles.

A single writer thread owns the write connection and drains a bounded queue, so the event loop
only ever does a put_nowait. The database is in WAL mode, every turn is its own committed
transaction, and every connection (the writer's and each reader's) sets synchronous=NORMAL and a
busy timeout. In WAL mode NORMAL loses no committed turn when the process crashes or is killed
(kill -9 loses at most the turns still in the queue); only an OS crash or a power cut can lose the
last few commits, and the database stays consistent either way. A full disk, a locked or
unwritable database is logged and the turn dropped; it never reaches a conversation. Rows older
than keep_days, or beyond max_turns, are pruned every prune_every inserts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevoice.events import TurnDone

_log = logging.getLogger(__name__)
Written = concurrent.futures.Future[None]
"""Done when a recorded turn's row is committed, or given up on."""

STAGES = ("stt_done", "first_token", "first_audio", "last_audio", "interrupted", "decided", "felt_first_audio")
"""Stages stored: the first five in ms after the end-of-turn decision (the turn's own `at`); `decided`
and `felt_first_audio` in ms after the last voiced audio the box heard (what the speaker feels)."""
QUANTILES = (0.5, 0.95, 0.99)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    conversation TEXT NOT NULL,
    client TEXT NOT NULL,
    turn INTEGER NOT NULL,
    transcript TEXT,
    reply TEXT,
    interrupted INTEGER NOT NULL,
    {", ".join(f"{stage}_ms REAL" for stage in STAGES)},
    {"intent TEXT NOT NULL DEFAULT ''"}
);
CREATE INDEX IF NOT EXISTS turns_at ON turns (at);
"""
_COLUMNS = (
    "at",
    "conversation",
    "client",
    "turn",
    "transcript",
    "reply",
    "interrupted",
    *(f"{s}_ms" for s in STAGES),
    "intent",
)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A turn log written before a stage (or the intent) was added gets its column (NULL for a stage,
    "" for the intent, in the turns it holds)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(turns)")}
    with db:
        for stage in STAGES:
            if f"{stage}_ms" not in present:
                db.execute(f"ALTER TABLE turns ADD COLUMN {stage}_ms REAL")
        if "intent" not in present:
            db.execute("ALTER TABLE turns ADD COLUMN intent TEXT NOT NULL DEFAULT ''")


def connect(path: Path, *, busy_timeout_s: float, read_only: bool = False) -> sqlite3.Connection:
    """A connection to the turn log with the settings every connection needs.

    synchronous is per connection, so it is set on each; the busy timeout (sqlite3's `timeout`)
    makes a reader or the writer wait for a lock instead of failing at once.
    """
    if read_only:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout_s)
    else:
        db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level="DEFERRED")
    try:
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


@dataclass(frozen=True)
class TurnRecord:
    at: float
    """Unix time at which the user's speech ended."""
    conversation: str
    client: str
    """The client's hello name, or "mic" for the box's own microphone."""
    turn: int
    transcript: str | None
    """None when text is not stored."""
    reply: str | None
    interrupted: bool
    stages_ms: dict[str, float | None]
    intent: str = ""
    """The skill that answered the turn, or "" when the model did."""

    @classmethod
    def of(cls, event: TurnDone, conversation: str, client: str, store_text: bool) -> TurnRecord:
        # TurnTimings are monotonic stamps: place speech end on the wall clock through "now" on both.
        at = time.time() - (time.monotonic() - event.timings.speech_end)
        stages = event.timings.as_ms()
        return cls(
            at=at,
            conversation=conversation,
            client=client,
            turn=event.turn,
            transcript=event.transcript if store_text else None,
            reply=event.reply if store_text else None,
            interrupted=event.interrupted,
            stages_ms={stage: stages.get(stage) for stage in STAGES},
            intent=event.intent,
        )

    def row(self) -> tuple[Any, ...]:
        head = (self.at, self.conversation, self.client, self.turn, self.transcript, self.reply, int(self.interrupted))
        return (*head, *(self.stages_ms.get(stage) for stage in STAGES), self.intent)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> TurnRecord:
        at, conversation, client, turn, transcript, reply, interrupted = row[:7]
        return cls(
            at,
            conversation,
            client,
            turn,
            transcript,
            reply,
            bool(interrupted),
            dict(zip(STAGES, row[7 : 7 + len(STAGES)], strict=True)),
            row[7 + len(STAGES)],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 3),
            "conversation": self.conversation,
            "client": self.client,
            "turn": self.turn,
            "transcript": self.transcript,
            "reply": self.reply,
            "interrupted": self.interrupted,
            "timings_ms": dict(self.stages_ms),
            "intent": self.intent,
        }


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of values sorted ascending."""
    if not ordered:
        raise ValueError("no values")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """n and p50/p95/p99 of the values (None when there are none)."""
    ordered = sorted(values)
    summary: dict[str, float | int | None] = {"n": len(ordered)}
    for q in QUANTILES:
        summary[f"p{round(q * 100)}"] = round(percentile(ordered, q), 1) if ordered else None
    return summary


class LatencyLog:
    """Turns in data_dir/edgevoice.db. record() never blocks and never raises; reads are blocking calls."""

    def __init__(
        self,
        path: Path,
        *,
        keep_days: float = 30,
        max_turns: int = 100_000,
        prune_every: int = 100,
        max_queued: int = 1000,
        busy_timeout_s: float = 2.0,
    ) -> None:
        self.path = path
        self.keep_days = keep_days
        self.max_turns = max_turns
        self.prune_every = prune_every
        self.busy_timeout_s = busy_timeout_s
        self._queue: queue.Queue[tuple[TurnRecord, Written] | None] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._done = threading.Condition()
        self._submitted = 0
        self._handled = 0
        self._db: sqlite3.Connection | None = None
        self._since_prune = 0
        self.recorded = 0
        """Turns handed to record() since the process started (the Prometheus counter)."""
        self.dropped = 0
        self.failed = 0
        self.stage_sums_ms = dict.fromkeys(STAGES, 0.0)
        self.stage_counts = dict.fromkeys(STAGES, 0)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_loop, name="edgevoice-turns", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to timeout_s), then stop the writer."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            _log.warning("turn log: writer did not drain its queue; %d turns not written", self._queue.qsize())
        self._thread.join(timeout_s)
        self._thread = None

    def record(self, record: TurnRecord) -> Written:
        """Queue a turn for writing; drop it (logged) when the writer is this far behind.

        The future is done once the row is committed (or given up on): a client is told a turn is
        over only then, so a kill -9 right after cannot lose a turn the client saw end.
        """
        written: Written = concurrent.futures.Future()
        self.recorded += 1
        for stage, value in record.stages_ms.items():
            if value is not None:
                self.stage_sums_ms[stage] += value
                self.stage_counts[stage] += 1
        with self._done:
            try:
                self._queue.put_nowait((record, written))
            except queue.Full:
                self.dropped += 1
                if self.dropped % 100 == 1:
                    _log.warning("turn log: %s is not keeping up; %d turns dropped", self.path, self.dropped)
                written.set_result(None)
                return written
            self._submitted += 1
        return written

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until every turn recorded before this call has been written (or failed). Blocking."""
        with self._done:
            target = self._submitted
            return self._done.wait_for(lambda: self._handled >= target, timeout_s)

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            record, written = item
            try:
                self._write(record)
            except (sqlite3.Error, OSError) as err:
                self.failed += 1
                _log.warning(
                    "turn log: turn %d of %s not written to %s: %s", record.turn, record.client, self.path, err
                )
                self._close_db()  # reopened for the next turn: the disk may have room again
            written.set_result(None)
            with self._done:
                self._handled += 1
                self._done.notify_all()
        self._close_db()

    def _write(self, record: TurnRecord) -> None:
        db = self._open()
        placeholders = ", ".join("?" * len(_COLUMNS))
        with db:
            db.execute(f"INSERT INTO turns ({', '.join(_COLUMNS)}) VALUES ({placeholders})", record.row())
        self._since_prune += 1
        if self._since_prune >= self.prune_every:
            self._since_prune = 0
            self._prune(db)

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = connect(self.path, busy_timeout_s=self.busy_timeout_s)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
                _add_missing_columns(db)
                self._prune(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _prune(self, db: sqlite3.Connection) -> None:
        with db:
            db.execute("DELETE FROM turns WHERE at < ?", (time.time() - self.keep_days * 86400,))
            db.execute(
                "DELETE FROM turns WHERE id <= (SELECT id FROM turns ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_turns,),
            )

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """A query on its own read-only connection (WAL lets it run beside the writer); [] when unreadable."""
        if not self.path.is_file():
            return []
        try:
            db = connect(self.path, busy_timeout_s=self.busy_timeout_s, read_only=True)
            try:
                return db.execute(sql, args).fetchall()
            finally:
                db.close()
        except sqlite3.Error as err:
            _log.warning("turn log: cannot read %s: %s", self.path, err)
            return []

    def recent(self, limit: int) -> list[TurnRecord]:
        """The newest turns first."""
        rows = self._read(f"SELECT {', '.join(_COLUMNS)} FROM turns ORDER BY id DESC LIMIT ?", (limit,))
        return [TurnRecord.from_row(row) for row in rows]

    def count(self) -> int:
        rows = self._read("SELECT count(*) FROM turns", ())
        return int(rows[0][0]) if rows else 0

    def latency(self, window_s: float, now: float | None = None) -> dict[str, Any]:
        """Percentiles per stage over turns whose speech ended in the last window_s seconds."""
        since = (time.time() if now is None else now) - window_s
        columns = ", ".join(f"{stage}_ms" for stage in STAGES)
        rows = self._read(f"SELECT {columns} FROM turns WHERE at >= ?", (since,))
        stages = {
            stage: summarize(row[index] for row in rows if row[index] is not None) for index, stage in enumerate(STAGES)
        }
        return {"window_s": window_s, "turns": len(rows), "stages": stages}
