"""tests/fuzz_atheris.py for a bounded number of inputs: every one ends in a defined outcome.

Skipped where atheris is not installed (it is in the test extras, Linux wheels only). The harness
runs in its own process: libFuzzer ends the process when it is done, and stops at the first input
that raises, printing it. $EDGEVOICE_FUZZ_RUNS raises the count for a longer session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HARNESS = Path(__file__).resolve().parent / "support" / "fuzz_atheris.py"
SEEDS = Path(__file__).resolve().parent / "support" / "fuzz_seeds"
"""Inputs libFuzzer starts from: scripts with whole turns (one transcribed and replied to, ones the
stand-in engines fail or find busy). Without them, whether 10,000 runs find a whole turn depends on
the coverage of every instrumented module: one new check in config.py left a run without any."""
RUNS = int(os.environ.get("EDGEVOICE_FUZZ_RUNS", "10000"))


@pytest.mark.slow
def test_atheris_finds_no_undefined_outcome(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={RUNS}",
            "-seed=1",
            "-max_len=4096",
            "-len_control=0",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
            str(SEEDS),
        ],
        # A fixed hash seed, with the client's own clock in the harness: the same inputs take the same paths.
        env={**os.environ, "FUZZ_SUMMARY": str(summary), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Done {RUNS} runs" in result.stderr, result.stderr[-2000:]
    outcomes = json.loads(summary.read_text())
    print(f"\natheris: {RUNS} runs, corpus of {len(list(corpus.iterdir()))} inputs; outcomes {outcomes}")
    # Not vacuous: the fuzzer reached parsed messages, protocol errors, turns and the close codes.
    assert outcomes["inputs"] == RUNS
    for seen in ("text Hello", "text error bad_json", "audio frame", "sent ready", "sent turn_done", "closed 1002"):
        assert outcomes.get(seen, 0) > 0, (seen, outcomes)
