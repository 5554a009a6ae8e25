"""Whether a transcript sounds finished: the rule that lets a short pause end a turn."""

from __future__ import annotations

import pytest

from edgevoice.turn_end import sounds_finished


@pytest.mark.parametrize(
    "text",
    [
        "Turn on the kitchen lights, please",
        "What is the capital of France?",
        "Set a timer for 10 minutes.",
        "Thank you.",
        "is the front door locked.",
    ],
)
def test_finished_sentences(text: str) -> None:
    assert sounds_finished(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Remind me to",
        "Tell me a joke about.",  # whisper puts a full stop on fragments too
        "Set a timer for ten minutes and",
        "What is the capital of",
        "Turn on the lights,",
        "I was thinking...",
        "Play something by the…",
        "Um.",
        "So, uh",
    ],
)
def test_unfinished_sentences(text: str) -> None:
    assert not sounds_finished(text)
