from __future__ import annotations

import pytest

from edgevoice.bench.wer import normalise, word_error_rate


def test_identical_text_has_no_errors() -> None:
    assert word_error_rate("turn on the lights", "turn on the lights") == 0.0


@pytest.mark.parametrize(
    "hypothesis",
    ["Turn on the lights.", "TURN ON, THE LIGHTS!", "  turn   on the lights?  ", "Turn on... the lights"],
)
def test_case_and_punctuation_are_ignored(hypothesis: str) -> None:
    assert word_error_rate("turn on the lights", hypothesis) == 0.0


def test_hyphens_split_words_and_apostrophes_stay() -> None:
    assert normalise("Forty-two isn't It") == ["forty", "two", "isn't", "it"]
    assert word_error_rate("forty two", "Forty-two") == 0.0
    assert word_error_rate("it is", "it's") == 1.0


def test_one_substitution_in_four_words() -> None:
    assert word_error_rate("turn on the lights", "turn off the lights") == pytest.approx(0.25)


def test_insertion_is_counted() -> None:
    assert word_error_rate("turn on the lights", "please turn on the lights") == pytest.approx(0.25)


def test_deletion_is_counted() -> None:
    assert word_error_rate("turn on the lights", "turn the lights") == pytest.approx(0.25)


def test_mixed_errors_use_the_minimum_edit_distance() -> None:
    # "what" -> "the" substituted, "is" deleted, "please" inserted: 3 edits over 5 words.
    assert word_error_rate("what time is it now", "the time it now please") == pytest.approx(0.6)


def test_rate_can_exceed_one() -> None:
    assert word_error_rate("yes", "no no no") == pytest.approx(3.0)


def test_empty_hypothesis_deletes_everything() -> None:
    assert word_error_rate("turn on the lights", "") == 1.0


@pytest.mark.parametrize(
    ("hypothesis", "expected"), [("", 0.0), ("  ...  ", 0.0), ("hello", 1.0), ("hello world", 1.0)]
)
def test_empty_reference(hypothesis: str, expected: float) -> None:
    assert word_error_rate("", hypothesis) == expected
    assert word_error_rate("?!", hypothesis) == expected
