from __future__ import annotations

import itertools

import pytest

from edgevoice.speech_text import SpeechChunker, clean_for_speech, phoneme_runs, sentence_ends, short_pieces


def feed_whole(text: str, first_clause_words: int = 3) -> list[str]:
    chunker = SpeechChunker(first_clause_words)
    return chunker.feed(text) + chunker.flush()


def feed_deltas(text: str, sizes: tuple[int, ...] = (1, 2, 3), first_clause_words: int = 3) -> list[str]:
    """Feed text as a model would stream it: small deltas of the given sizes, in turn."""
    chunker = SpeechChunker(first_clause_words)
    pieces: list[str] = []
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(text):
            break
        pieces += chunker.feed(text[position : position + size])
        position += size
    return pieces + chunker.flush()


def test_first_piece_goes_out_at_a_clause_with_enough_words() -> None:
    chunker = SpeechChunker(first_clause_words=3)
    assert chunker.feed("Well, it is") == []  # one word before the comma: too short
    assert chunker.feed(" sunny today,") == []  # the clause mark needs the following space
    assert chunker.feed(" and") == ["Well, it is sunny today,"]
    assert chunker.feed(" warm, with a breeze") == []  # later pieces wait for a sentence end
    assert chunker.feed(". Enjoy") == ["and warm, with a breeze."]
    assert chunker.flush() == ["Enjoy"]


@pytest.mark.parametrize("mark", [",", ";", ":", "—", "–"])
def test_every_clause_mark_can_end_the_first_piece(mark: str) -> None:
    chunker = SpeechChunker(first_clause_words=2)
    assert chunker.feed(f"Good morning{mark} here it is") == [f"Good morning{mark}"]


@pytest.mark.parametrize(("words", "expected"), [(1, ["One,"]), (2, ["One, two,"]), (3, ["One, two, three,"])])
def test_first_clause_words_sets_how_long_the_first_piece_must_be(words: int, expected: list[str]) -> None:
    chunker = SpeechChunker(first_clause_words=words)
    assert chunker.feed("One, two, three, four five") == expected


def test_later_pieces_end_only_at_sentence_ends() -> None:
    reply = "Sure. The store opens at nine, closes at five, and is busy at noon. Go early!"
    assert feed_whole(reply) == ["Sure.", "The store opens at nine, closes at five, and is busy at noon.", "Go early!"]


@pytest.mark.parametrize("end", [".", "!", "?", "…", "?!", '."', ".)"])
def test_sentence_end_marks(end: str) -> None:
    chunker = SpeechChunker()
    assert chunker.feed(f"It works{end} Next") == [f"It works{end}"]
    assert chunker.flush() == ["Next"]


def test_no_cut_without_whitespace_after_the_mark() -> None:
    chunker = SpeechChunker()
    assert chunker.feed("It is 3.5 degrees") == []
    assert chunker.feed(". ") == ["It is 3.5 degrees."]


@pytest.mark.parametrize(
    "reply",
    [
        "Ask Dr. Smith about it. Then rest.",
        "Bring fruit, e.g. apples or pears. Then rest.",
        "That is, i.e. the blue one, fine. Then rest.",
        "Mr. and Mrs. Jones live on Elm St. near us. Then rest.",
    ],
)
def test_no_cut_after_abbreviations(reply: str) -> None:
    first, rest = reply.rsplit(" Then", 1)
    pieces = feed_whole(reply, first_clause_words=50)
    assert pieces == [first, "Then" + rest]


def test_no_cut_inside_a_decimal_number() -> None:
    assert feed_whole("Pi is about 3.14159 and e is 2.718. Both are irrational.") == [
        "Pi is about 3.14159 and e is 2.718.",
        "Both are irrational.",
    ]


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("**Bold** and *italic*", "Bold and italic"),
        ("# Heading\n## Sub", "Heading Sub"),
        ("Run `ls -l` now", "Run ls -l now"),
        ("```python\nprint(1)\n```", "python print(1)"),
        ("See [the docs](https://example.com/x) today", "See the docs today"),
        ("a | b ~~c~~ <d>", "a b c d"),
        ("  spaced \n\n out\t", "spaced out"),
        ("***", ""),
    ],
)
def test_clean_for_speech_drops_markdown(text: str, spoken: str) -> None:
    assert clean_for_speech(text) == spoken


def test_markdown_is_dropped_from_pieces() -> None:
    reply = "# Plan\n**First**, we go `home`. Then *rest*.\n"
    pieces = feed_whole(reply)
    assert not any(mark in piece for piece in pieces for mark in "*#`")
    # The first piece ends at the first clause with enough words.
    assert pieces == ["Plan First,", "we go home.", "Then rest."]


def test_flush_returns_the_rest_once() -> None:
    chunker = SpeechChunker()
    assert chunker.feed("Nothing ends here") == []
    assert chunker.flush() == ["Nothing ends here"]
    assert chunker.flush() == []


def test_flush_of_nothing_or_whitespace_is_empty() -> None:
    assert SpeechChunker().flush() == []
    chunker = SpeechChunker()
    assert chunker.feed("Hello there. ") == ["Hello there."]
    assert chunker.feed("  \n") == []
    assert chunker.flush() == []


REPLIES = [
    "Sure thing, here is the plan. First we visit Dr. Smith, e.g. at noon, about 3.5 miles away. Then we eat!",
    "Hello! How can I help you today?",
    "It's 72 degrees. Sunny, with a light breeze — enjoy your day…",
    "The answer is forty-two.",
    "Well, I think so. Yes; no: maybe.",
    "",
]


@pytest.mark.parametrize("reply", REPLIES)
@pytest.mark.parametrize("sizes", [(1,), (2,), (3,), (1, 2, 3), (3, 1, 2, 2)])
def test_token_by_token_feeding_gives_the_same_pieces(reply: str, sizes: tuple[int, ...]) -> None:
    assert feed_deltas(reply, sizes) == feed_whole(reply)


@pytest.mark.parametrize("reply", REPLIES)
def test_pieces_together_are_the_whole_reply(reply: str) -> None:
    assert " ".join(feed_deltas(reply)) == clean_for_speech(reply)


@pytest.mark.parametrize(
    ("reply", "first"),
    [
        ("The weather today is sunny, and warm. Tomorrow it rains.", "The weather today is sunny,"),
        ("It's **72** degrees — sunny, with a light breeze. Enjoy your day…", "It's 72 degrees —"),
    ],
)
def test_first_clause_is_cut_even_when_the_sentence_end_arrives_in_the_same_delta(reply: str, first: str) -> None:
    assert feed_deltas(reply)[0] == first  # streamed in small deltas, the clause goes first
    assert feed_whole(reply) == feed_deltas(reply)


def test_first_words_starts_the_voice_mid_clause() -> None:
    chunker = SpeechChunker(first_clause_words=3, first_words=4)
    pieces: list[str] = []
    for delta in ["Please", " turn", " on", " the", " kitchen", " lights", ".", " Sure", ", I", " will", "."]:
        pieces += chunker.feed(delta)
    assert pieces == ["Please turn on the", "kitchen lights."]
    assert chunker.flush() == ["Sure, I will."]


def test_first_words_waits_until_the_last_word_is_whole() -> None:
    chunker = SpeechChunker(first_clause_words=3, first_words=2)
    assert chunker.feed("Hello the") == []  # "the" may yet become "there"
    assert chunker.feed("re friend") == ["Hello there"]


def test_first_words_off_waits_for_a_clause_or_sentence() -> None:
    chunker = SpeechChunker(first_clause_words=3, first_words=0)
    assert chunker.feed("Please turn on the kitchen lights ") == []
    assert chunker.feed("now. ") == ["Please turn on the kitchen lights now."]


def test_list_markers_are_not_spoken_and_their_numbers_end_no_piece() -> None:
    reply = "Here is how:\n1. Boil the water.\n2. Add the pasta.\n- Salt it\n* Drain it\n• Serve"
    pieces = feed_deltas(reply, first_clause_words=50)
    assert pieces == ["Here is how: Boil the water.", "Add the pasta.", "Salt it Drain it Serve"]


def test_a_number_that_starts_a_reply_is_kept() -> None:
    assert feed_whole("2. That is the answer.", first_clause_words=50) == ["2.", "That is the answer."]
    assert clean_for_speech("2. That is it") == "2. That is it"


def test_pieces_are_in_their_spoken_form() -> None:
    reply = "It is 20°C and 5 km away 😀. Bring $5, it is 50% off!"
    assert feed_whole(reply, first_clause_words=50) == [
        "It is 20 degrees Celsius and 5 kilometers away.",
        "Bring 5 dollars, it is 50 percent off!",
    ]


def test_a_piece_of_only_emoji_is_not_spoken() -> None:
    chunker = SpeechChunker()
    assert chunker.feed("Done. 🎉👍 ") == ["Done."]
    assert chunker.flush() == []


def test_times_between_numbers_is_said() -> None:
    assert clean_for_speech("3 * 4 = 12, **really**") == "3 times 4 equals 12, really"


def test_sentence_ends_from_a_start_and_at_line_starts() -> None:
    text = "One. Two!\n3. Four? "
    assert list(sentence_ends(text)) == [5, 10, 19]
    assert list(sentence_ends(text, 5)) == [10, 19]
    assert list(sentence_ends("3. Four? ", line_start=True)) == [9]
    assert list(sentence_ends("3. Four? ")) == [3, 9]


def test_short_sentences_are_pieces_of_their_own() -> None:
    assert short_pieces("Hi there. How are you? Fine!", 12) == ["Hi there.", "How are you?", "Fine!"]


def test_a_long_sentence_is_cut_at_the_comma_nearest_its_middle() -> None:
    sentence = (
        "The boiling point of water is one hundred degrees at sea level, "
        "but it is lower on a mountain, where the air is thin."
    )
    assert short_pieces(sentence, 12) == [
        "The boiling point of water is one hundred degrees at sea level,",
        "but it is lower on a mountain, where the air is thin.",
    ]


def test_a_long_sentence_without_commas_is_cut_into_even_runs() -> None:
    words = " ".join(f"w{k}" for k in range(14))
    pieces = short_pieces(words + ".", 6)
    assert [len(piece.split()) for piece in pieces] == [5, 5, 4]
    assert " ".join(pieces) == words + "."


@pytest.mark.parametrize("max_words", [1, 3, 7, 12])
def test_every_piece_is_within_the_bound_and_no_word_is_lost(max_words: int) -> None:
    text = (
        "First, we heat the oven; then, while it warms, we mix flour, sugar and two eggs in a big bowl "
        "until the batter is smooth and pale. Bake it. Serve it warm with cream, fruit or nothing at all!"
    )
    pieces = short_pieces(text, max_words)
    assert all(1 <= len(piece.split()) <= max_words for piece in pieces)
    assert " ".join(pieces).split() == text.split()


def test_no_limit_keeps_whole_sentences_and_nothing_gives_no_pieces() -> None:
    long = " ".join(["word"] * 40) + "."
    assert short_pieces(long + " Next.", 0) == [long, "Next."]
    assert short_pieces("", 12) == []
    assert short_pieces("   ", 12) == []


def _phonemes(text: str) -> list[str]:
    """Letters standing for a voice's symbols: one symbol a character, " " between words."""
    return list(text)


def test_a_short_run_of_phonemes_is_spoken_whole() -> None:
    assert phoneme_runs(_phonemes("hello there."), 12) == [_phonemes("hello there.")]
    assert phoneme_runs(_phonemes("hello there."), 0) == [_phonemes("hello there.")]
    assert phoneme_runs([], 12) == [[]]


def test_a_long_run_is_cut_after_the_clause_mark_nearest_the_middle() -> None:
    text = "aa, bbbbbbbbb cccc; dddddddd ee."
    assert ["".join(run) for run in phoneme_runs(_phonemes(text), 24)] == ["aa, bbbbbbbbb cccc;", "dddddddd ee."]


def test_a_run_cut_between_words_without_a_mark_ends_in_a_comma() -> None:
    text = "aaaa bbbb cccc dddd eeee ffff."
    assert ["".join(run) for run in phoneme_runs(_phonemes(text), 16)] == ["aaaa bbbb cccc,", "dddd eeee ffff."]


def test_one_long_word_is_cut_in_the_middle() -> None:
    runs = phoneme_runs(_phonemes("abcdefghijkl"), 8)
    assert ["".join(run) for run in runs] == ["abcdef,", "ghijkl"]


@pytest.mark.parametrize("max_phonemes", [3, 5, 8, 13, 48])
def test_every_run_is_within_the_bound_and_no_sound_is_lost(max_phonemes: int) -> None:
    text = (
        "wˈʌn θˈaʊzənd dᵻɡɹˈiːz sˈɛlsɪʲəs, tˈuː θˈaʊzənd wˈʌn hˈʌndɹɪd twˈɛnti sˈɛvən pɔɪnt sˈɪks "
        "dᵻɡɹˈiːz fˈæɹənhˌaɪt; ɪɾ ɪz hˈɑːt: jˈɛs ənd ə vˈɛɹi lˈɔŋwˈɜːd ænd mˈɔːɹ wˈɜːdz tə kˈʌm."
    )
    runs = phoneme_runs(_phonemes(text), max_phonemes)
    assert all(1 <= len(run) <= max_phonemes for run in runs)
    spoken = [symbol for run in runs for symbol in run if symbol not in ", "]
    assert spoken == [symbol for symbol in text if symbol not in ", "]
