"""Where a spoken reply ends: the sentence cap and the repetition cut, fed scripted token streams."""

from __future__ import annotations

import itertools

import pytest

from edgevoice.reply_text import Cut, ReplyCutter

LOOP = "I'll tell you what I'll put in the sauce " * 6


def tokens(text: str) -> list[str]:
    """Text as a llama tokenizer streams it: each word with the space before it."""
    words = text.split(" ")
    return [words[0]] + [" " + word for word in words[1:]]


def play(cutter: ReplyCutter, stream: list[str]) -> tuple[str, int | None]:
    """Feed the stream until the cutter says stop; the text passed on and how many deltas were fed.

    The space that showed a sentence was over may have been passed on with it, so text ending at a
    sentence the reply was cut after may end with it: the checks strip it."""
    passed = ""
    for fed, delta in enumerate(stream, start=1):
        cut = cutter.feed(delta)
        passed += cut.text
        if cut.stop:
            return passed, fed
    return passed + cutter.finish(), None


def test_reply_stops_after_max_sentences() -> None:
    stream = tokens("Paris is the capital of France. It is a big city. It has many museums and parks.")
    cutter = ReplyCutter(max_sentences=2)
    passed, fed = play(cutter, stream)
    assert passed == "Paris is the capital of France. It is a big city."
    # Stopped on the delta that showed the second sentence was over: nothing more is generated.
    assert fed == stream.index(" It", stream.index(" city.")) + 1
    assert cutter.stopped_by == "sentences"
    assert cutter.feed(" more") == Cut("", stop=True)
    assert cutter.finish() == ""


@pytest.mark.parametrize(
    ("max_sentences", "expected"), [(1, "One."), (3, "One. Two. Three."), (0, "One. Two. Three. Four.")]
)
def test_max_sentences_sets_the_cap_and_zero_lifts_it(max_sentences: int, expected: str) -> None:
    cutter = ReplyCutter(max_sentences)
    assert play(cutter, tokens("One. Two. Three. Four."))[0] == expected
    assert cutter.stopped_by == (None if max_sentences == 0 else "sentences")


def test_a_reply_the_model_ends_itself_is_passed_whole() -> None:
    cutter = ReplyCutter(max_sentences=2)
    passed, fed = play(cutter, tokens("Sure, I can help with that."))
    assert (passed, fed, cutter.stopped_by) == ("Sure, I can help with that.", None, None)


def test_a_loop_in_the_first_sentence_is_cut_before_it_repeats() -> None:
    cutter = ReplyCutter(max_sentences=2, repeat_words=6)
    passed, fed = play(cutter, tokens(LOOP))
    assert passed.strip() == "I'll tell you what I'll put in the sauce"
    assert cutter.stopped_by == "repetition"
    # Stopped once six words had come again, not at the token cap.
    assert fed is not None
    assert fed <= 9 + 6 + 1


def test_a_loop_after_a_whole_sentence_is_cut_at_that_sentence() -> None:
    cutter = ReplyCutter(max_sentences=3)
    passed, _ = play(cutter, tokens("Sure thing. " + LOOP))
    assert passed.rstrip() == "Sure thing."
    assert cutter.stopped_by == "repetition"


def test_a_sentence_said_again_ends_the_reply() -> None:
    cutter = ReplyCutter(max_sentences=0)
    assert play(cutter, tokens("Sure. Sure. Sure. Sure."))[0].rstrip() == "Sure."
    assert cutter.stopped_by == "repetition"


def test_a_last_sentence_said_again_is_dropped_when_the_model_ends() -> None:
    cutter = ReplyCutter(max_sentences=3)
    assert play(cutter, tokens("Hello there. Hello there"))[0].rstrip() == "Hello there."
    assert cutter.stopped_by == "repetition"


@pytest.mark.parametrize(
    "reply",
    [
        "The capital of France is Paris. The capital of Germany is Berlin.",
        "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve.",
        "Mix a cup of flour with a cup of sugar and a cup of milk.",
        "It is very very very good.",
    ],
)
def test_phrases_that_come_back_are_no_loop(reply: str) -> None:
    cutter = ReplyCutter(max_sentences=2)
    assert play(cutter, tokens(reply))[0] == reply
    assert cutter.stopped_by is None


def test_the_first_sentence_passes_on_as_it_comes() -> None:
    cutter = ReplyCutter()
    for delta in tokens("Please turn on the kitchen lights now"):
        assert cutter.feed(delta).text == delta


def test_words_that_may_start_a_loop_wait_for_the_next_word() -> None:
    cutter = ReplyCutter()
    assert cutter.feed("Tea and toast").text == "Tea and toast"
    assert cutter.feed(" and").text == " "  # "and" came before: it may begin a loop
    assert cutter.feed(" jam").text == "and jam"  # it did not


def test_later_sentences_pass_on_whole() -> None:
    cutter = ReplyCutter(max_sentences=3)
    assert cutter.feed("Sure. ").text == "Sure. "
    assert cutter.feed("The kitchen").text == ""
    assert cutter.feed(" lights are on").text == ""
    assert cutter.feed(". Anything").text == "The kitchen lights are on. "


def test_a_list_number_is_no_sentence() -> None:
    cutter = ReplyCutter(max_sentences=2)
    passed, _ = play(cutter, tokens("Steps:\n1. Boil water.\n2. Add the pasta.\n3. Drain it."))
    assert passed == "Steps:\n1. Boil water.\n2. Add the pasta."


REPLIES = [
    "Paris is the capital of France. It is a big city. It has many museums.",
    "Sure thing. " + LOOP,
    LOOP,
    "Tea and toast and jam and tea. Then a walk and a nap.",
    "Hello! How can I help you today? Just ask.",
]


@pytest.mark.parametrize("reply", REPLIES)
@pytest.mark.parametrize("sizes", [(1,), (2,), (3, 1, 2), (7,)])
def test_how_the_stream_is_split_does_not_change_where_it_ends(reply: str, sizes: tuple[int, ...]) -> None:
    pieces, position = [], 0
    for size in itertools.cycle(sizes):
        if position >= len(reply):
            break
        pieces.append(reply[position : position + size])
        position += size
    by_chars, by_words = ReplyCutter(), ReplyCutter()
    assert play(by_chars, pieces)[0].rstrip() == play(by_words, tokens(reply))[0].rstrip()
    assert by_chars.stopped_by == by_words.stopped_by
