"""The turn log on its own: SQLite in a temporary directory, no server, no models."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgevoice.events import TurnDone, TurnTimings
from edgevoice.server import turnlog as metrics
from edgevoice.server.turnlog import STAGES, LatencyLog, TurnRecord, percentile, summarize


def record(turn: int = 1, at: float | None = None, first_audio_ms: float = 500.0, client: str = "test") -> TurnRecord:
    stages: dict[str, float | None] = dict.fromkeys(STAGES)
    stages.update(stt_done=100.0, first_token=300.0, first_audio=first_audio_ms, last_audio=2000.0)
    return TurnRecord(time.time() if at is None else at, "c1", client, turn, "hello", "hi there", False, stages)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[LatencyLog]:
    opened = LatencyLog(tmp_path / "edgevoice.db")
    opened.start()
    yield opened
    opened.close()


def test_insert_and_newest_first(log: LatencyLog) -> None:
    for turn in range(1, 6):
        log.record(record(turn))
    assert log.flush(5.0)
    turns = log.recent(3)
    assert [t.turn for t in turns] == [5, 4, 3]
    assert turns[0] == record(5, at=turns[0].at)
    assert turns[0].to_json()["timings_ms"]["first_audio"] == 500.0
    assert log.count() == 5


def test_a_skill_turn_keeps_its_intent(log: LatencyLog) -> None:
    done = TurnDone(
        3, "what time is it", "It's noon.", TurnTimings(time.monotonic()), 0, 900, intent="HassGetCurrentTime"
    )
    log.record(TurnRecord.of(done, "c1", "kitchen", store_text=True))
    log.record(record(4))
    assert log.flush(5.0)
    model, skill = log.recent(2)
    assert (skill.intent, model.intent) == ("HassGetCurrentTime", "")
    assert skill.to_json()["intent"] == "HassGetCurrentTime"


def test_a_turn_log_of_an_earlier_version_gets_the_intent_column(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.db"
    old = sqlite3.connect(path)
    stages = ", ".join(f"{stage}_ms REAL" for stage in STAGES)
    old.executescript(
        "CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
        "conversation TEXT NOT NULL, client TEXT NOT NULL, turn INTEGER NOT NULL, transcript TEXT, reply TEXT, "
        f"interrupted INTEGER NOT NULL, {stages});"
    )
    with old:
        old.execute(
            "INSERT INTO turns (at, conversation, client, turn, transcript, reply, interrupted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), "c0", "old", 1, "hello", "hi", 0),
        )
    old.close()
    log = LatencyLog(path)
    log.start()
    try:
        log.record(record(2))
        assert log.flush(5.0)
    finally:
        log.close()
    assert [(t.turn, t.client, t.intent) for t in log.recent(5)] == [(2, "test", ""), (1, "old", "")]


def test_percentiles() -> None:
    assert percentile([1.0], 0.99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    assert summarize([]) == {"n": 0, "p50": None, "p95": None, "p99": None}
    assert summarize(float(v) for v in range(101)) == {"n": 101, "p50": 50.0, "p95": 95.0, "p99": 99.0}


def test_latency_over_a_window(log: LatencyLog) -> None:
    now = time.time()
    for index in range(100):
        log.record(record(index, at=now - 10, first_audio_ms=float(index + 1)))
    log.record(record(999, at=now - 7200, first_audio_ms=99_999.0))  # outside the window
    assert log.flush(5.0)
    latency = log.latency(3600, now=now)
    assert latency["turns"] == 100
    first_audio = latency["stages"]["first_audio"]
    assert first_audio["n"] == 100
    assert first_audio["p50"] == pytest.approx(50.5)
    assert first_audio["p99"] == pytest.approx(99.0, abs=0.1)
    assert latency["stages"]["interrupted"]["n"] == 0
    assert log.latency(86400, now=now)["turns"] == 101


def test_pruned_by_rows(tmp_path: Path) -> None:
    log = LatencyLog(tmp_path / "edgevoice.db", max_turns=10, prune_every=5)
    log.start()
    try:
        for turn in range(1, 26):
            log.record(record(turn))
        assert log.flush(5.0)
    finally:
        log.close()
    turns = log.recent(1000)
    assert len(turns) == 10
    assert turns[0].turn == 25


def test_pruned_by_age(tmp_path: Path) -> None:
    log = LatencyLog(tmp_path / "edgevoice.db", keep_days=1, prune_every=3)
    log.start()
    try:
        log.record(record(1, at=time.time() - 3 * 86400))
        log.record(record(2, at=time.time() - 2 * 86400))
        log.record(record(3))
        assert log.flush(5.0)
    finally:
        log.close()
    assert [t.turn for t in log.recent(10)] == [3]


def test_store_text_off_stores_no_text(tmp_path: Path) -> None:
    done = TurnDone(
        7, "what time is it", "it is noon", TurnTimings(time.monotonic() - 1.0, stt_done=time.monotonic()), 0, 900
    )
    log = LatencyLog(tmp_path / "edgevoice.db")
    log.start()
    try:
        log.record(TurnRecord.of(done, "c1", "kitchen", store_text=False))
        assert log.flush(5.0)
    finally:
        log.close()
    (turn,) = log.recent(10)
    assert turn.transcript is None
    assert turn.reply is None
    assert turn.stages_ms["stt_done"] == pytest.approx(1000.0, abs=50)
    assert abs(turn.at - (time.time() - 1.0)) < 1.0
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("edgevoice.db*"))
    assert b"noon" not in raw
    assert b"what time" not in raw


KILLED_WRITER = """
import os, signal, sys, time
from pathlib import Path
from edgevoice.server.turnlog import STAGES, LatencyLog, TurnRecord
log = LatencyLog(Path(sys.argv[1]))
log.start()
log.record(TurnRecord(time.time(), "c1", "doomed", 1, "before the crash", "ok", False, dict.fromkeys(STAGES)))
assert log.flush(10.0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_committed_turn_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.db"
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], timeout=60, check=False)
    assert result.returncode == -9
    (turn,) = LatencyLog(path).recent(10)
    assert (turn.client, turn.transcript) == ("doomed", "before the crash")


def test_an_unwritable_location_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    log = LatencyLog(blocker / "edgevoice.db")
    log.start()
    try:
        with caplog.at_level(logging.WARNING, logger="edgevoice.server.turnlog"):
            log.record(record(1))
            log.record(record(2))
            assert log.flush(5.0)
    finally:
        log.close()
    assert log.failed == 2
    assert "not written" in caplog.text
    assert log.recent(10) == []
    assert log.latency(60)["turns"] == 0


def test_a_locked_database_is_logged_and_the_next_turn_written(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.db"
    log = LatencyLog(path, busy_timeout_s=0.2)
    log.start()
    try:
        log.record(record(1))
        assert log.flush(5.0)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        log.record(record(2))
        assert log.flush(5.0)
        assert log.failed == 1
        holder.execute("ROLLBACK")
        holder.close()
        log.record(record(3))
        assert log.flush(5.0)
    finally:
        log.close()
    assert [t.turn for t in log.recent(10)] == [3, 1]


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    log = LatencyLog(tmp_path / "edgevoice.db", max_queued=2)  # not started: nothing drains the queue
    for turn in range(5):
        log.record(record(turn))
    assert (log.recorded, log.dropped) == (5, 3)


def test_write_latency(log: LatencyLog) -> None:
    """One turn, queued to committed (WAL, synchronous=NORMAL): well under what a turn takes."""
    log.record(record(0))
    assert log.flush(5.0)  # the first opens the database
    took = []
    for turn in range(1, 21):
        started = time.perf_counter()
        log.record(record(turn))
        assert log.flush(5.0)
        took.append(time.perf_counter() - started)
    took.sort()
    print(f"turn log write: median {took[10] * 1000:.2f} ms, max {took[-1] * 1000:.2f} ms")
    assert took[10] < 0.5
    mode = sqlite3.connect(log.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_every_connection_is_synchronous_normal_with_a_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's connection and each reader's report synchronous=1 (NORMAL) and the busy timeout."""
    seen: list[tuple[bool, int, int]] = []
    real_connect = metrics.connect

    def spying_connect(path: Path, *, busy_timeout_s: float, read_only: bool = False) -> sqlite3.Connection:
        db = real_connect(path, busy_timeout_s=busy_timeout_s, read_only=read_only)
        synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
        busy_ms = db.execute("PRAGMA busy_timeout").fetchone()[0]
        seen.append((read_only, synchronous, busy_ms))
        return db

    monkeypatch.setattr(metrics, "connect", spying_connect)
    log = LatencyLog(tmp_path / "edgevoice.db", busy_timeout_s=1.5)
    log.start()
    try:
        log.record(record(1))
        assert log.flush(5.0)
    finally:
        log.close()
    assert [t.turn for t in log.recent(10)] == [1]
    assert log.count() == 1
    assert seen == [(False, 1, 1500), (True, 1, 1500), (True, 1, 1500)]


def test_a_log_written_before_the_felt_stages_gains_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.db"
    old_stages = ("stt_done", "first_token", "first_audio", "last_audio", "interrupted")
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, conversation TEXT NOT NULL,"
        " client TEXT NOT NULL, turn INTEGER NOT NULL, transcript TEXT, reply TEXT, interrupted INTEGER NOT NULL, "
        + ", ".join(f"{stage}_ms REAL" for stage in old_stages)
        + ");"
    )
    db.execute(
        "INSERT INTO turns (at, conversation, client, turn, interrupted, first_audio_ms)"
        " VALUES (?, 'c0', 'old', 1, 0, 400)",
        (time.time(),),
    )
    db.commit()
    db.close()
    opened = LatencyLog(path)
    opened.start()
    try:
        stages = dict.fromkeys(STAGES, 200.0) | {"decided": 150.0, "felt_first_audio": 350.0}
        opened.record(TurnRecord(time.time(), "c1", "new", 2, "hi", "hello", False, stages))
        assert opened.flush(5.0)
        newest, oldest = opened.recent(2)
        assert newest.stages_ms["felt_first_audio"] == 350.0
        assert oldest.stages_ms["first_audio"] == 400.0
        assert oldest.stages_ms["felt_first_audio"] is None
        assert opened.latency(3600)["stages"]["decided"]["n"] == 1
    finally:
        opened.close()


def test_felt_stages_count_from_the_last_voiced_audio() -> None:
    timings = TurnTimings(speech_end=10.0, first_audio=10.25, voice_end=9.8)
    stages = timings.as_ms()
    assert stages["first_audio"] == 250.0  # after the decision
    assert stages["decided"] == pytest.approx(200.0)
    assert stages["felt_first_audio"] == pytest.approx(450.0)  # what the speaker waited
    assert "felt_first_audio" not in TurnTimings(speech_end=10.0).as_ms()
