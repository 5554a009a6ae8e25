"""`edgevoice ask` as a person runs it: the skills answer at once, anything else reaches the real model."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import zoneinfo
from pathlib import Path

import pytest

HOURS = ["twelve", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]


def edgevoice_ask(data_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEVOICE_DATA_DIR": str(data_dir)}
    env.pop("EDGEVOICE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "edgevoice", "ask", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def spoken_hours(at: datetime.datetime) -> set[str]:
    """How a reply may say the hour of at: its word on a twelve-hour clock, or noon or midnight."""
    said = {HOURS[at.hour % 12]}
    if at.minute == 0 and at.hour in (0, 12):
        said.add("midnight" if at.hour == 0 else "noon")
    return said


def test_ask_the_time_in_tokyo(tmp_path: Path) -> None:
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    before = datetime.datetime.now(tokyo)
    result = edgevoice_ask(tmp_path, "What time is it in Tokyo?")
    after = datetime.datetime.now(tokyo)
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("In Tokyo it's "), last
    said = re.match(r"In Tokyo it's (?:\w+day, )?([a-z]+)", last)
    assert said is not None, last
    # Taken before and after the run, in case the hour turned while it ran.
    assert said.group(1) in spoken_hours(before) | spoken_hours(after), (last, before, after)


def test_ask_json_gives_the_reply_and_its_timings(tmp_path: Path) -> None:
    result = edgevoice_ask(tmp_path, "--json", "set a pasta timer for 8 minutes")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["reply"] == "Pasta timer set for eight minutes."
    assert (answer["source"], answer["intent"], answer["stop"]) == ("skill", "HassStartTimer", False)
    [event] = answer["timer_events"]
    assert (event["type"], event["event"], event["name"], event["duration_s"]) == ("timer", "started", "pasta", 480)
    timings = answer["timings_ms"]
    assert 0 < timings["match"] < timings["total"]
    assert timings["skills_load"] < timings["total"]
    # The timer outlives the command: it is in the data directory, for the daemon to ring.
    saved = json.loads((tmp_path / "timers.json").read_text())
    assert [t["name"] for t in saved["timers"]] == ["pasta"]
    status = edgevoice_ask(tmp_path, "how much time is left on the pasta timer")
    assert status.stdout.splitlines()[-1].startswith("The pasta timer has seven minutes and ")


@pytest.mark.slow
def test_ask_what_only_the_model_knows(tmp_path: Path) -> None:
    result = edgevoice_ask(tmp_path, "--json", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["source"] == "llm"
    assert answer["intent"] is None
    assert answer["reply"].strip()
    timings = answer["timings_ms"]
    assert timings["llm_load"] > 0
    assert 0 < timings["first_token"] <= timings["reply"] < timings["total"]

    plain = edgevoice_ask(tmp_path, "what", "is", "the", "capital", "of", "France")  # words need no quotes
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[-1].strip()
