"""Cutting a streamed reply into pieces to speak, sans-I/O: feed(text) -> ready pieces, flush() -> the rest.

The first piece goes out at the first clause boundary (a comma, colon, semicolon or dash) once it
has a few words, or after first_words words wherever that falls, so the voice starts before the
first sentence is done; later pieces end at sentence boundaries, which Piper speaks with better
prosody. Markdown the model may emit is dropped, since it would be read aloud, and each piece is
put in its spoken form (spoken_form.py); the text the client is shown stays the model's.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence

from edgevoice.spoken_form import spoken_form

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:—–]\s")
_WORD = re.compile(r"\S+")
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no.", "approx."})
_LIST_NUMBER = re.compile(r"[ \t]*\d{1,3}")
_LIST_MARKER = re.compile(r"\n[ \t]*(?:\d{1,3}[.)]|[-*•+])[ \t]+")
_TIMES = re.compile(r"(?<=\d)[ \t]*\*[ \t]*(?=\d)")
_INLINE_MARKUP = re.compile(r"[*_`~]+|\[|\]\([^)]*\)")
_BLOCK_MARKUP = re.compile(r"[#|<>]+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")


def sentence_ends(text: str, start: int = 0, *, line_start: bool = False) -> Iterator[int]:
    """Indices just past each sentence end in text from start (its mark and the whitespace after it).

    A dot after an abbreviation ends nothing, nor one after a list item's number at the start of a
    line ("\n2. "); line_start says whether text[start] begins a line when no newline comes before it.
    """
    for match in _SENTENCE_END.finditer(text, start):
        words = text[start : match.end()].split()
        if words and words[-1].lower().rstrip("\"')]") in _ABBREVIATIONS:
            continue
        line_begins = text.rfind("\n", start, match.start()) + 1 or (start if line_start else -1)
        if line_begins >= 0 and _LIST_NUMBER.fullmatch(text, line_begins, match.start()):
            continue
        yield match.end()


def short_pieces(text: str, max_words: int) -> list[str]:
    """text cut into pieces of at most max_words words, for a voice whose memory and time grow with
    the length of what it speaks at once: first at sentence ends, then a longer sentence at the
    clause boundary nearest its middle, then (no clause boundary) into even runs of words. 0: no limit."""
    ends = [0, *sentence_ends(text + " "), len(text)]
    sentences = [text[a:b].strip() for a, b in itertools.pairwise(ends)]
    pieces: list[str] = []
    for sentence in sentences:
        if sentence:
            pieces += _halves(sentence, max_words) if max_words > 0 else [sentence]
    return pieces


def _halves(sentence: str, max_words: int) -> list[str]:
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    middle = len(sentence) / 2
    clauses = [m.end() for m in _CLAUSE_END.finditer(sentence) if 0 < len(sentence[m.end() :].split()) < len(words)]
    if not clauses:
        parts = -(-len(words) // max_words)
        size = -(-len(words) // parts)  # even parts: no two-word stub at the end
        return [" ".join(words[k : k + size]) for k in range(0, len(words), size)]
    cut = min(clauses, key=lambda end: abs(end - middle))
    return _halves(sentence[:cut].strip(), max_words) + _halves(sentence[cut:].strip(), max_words)


_CLAUSE_MARKS = frozenset(",;:—–")
_PUNCTUATION_MARKS = frozenset(",;:.!?…—–")


def phoneme_runs(phonemes: Sequence[str], max_phonemes: int) -> list[list[str]]:
    """A sentence's phonemes (a voice's symbols, " " between words) cut into runs of at most
    max_phonemes, for a voice whose memory grows with what it speaks at once: at the word boundary
    after a clause mark nearest the middle, else at the word boundary nearest the middle, else (one
    long word) in the middle. A run cut where no mark was ends in a comma, so the voice carries the
    sentence on rather than closing it. 0: no limit."""
    if max_phonemes <= 0 or len(phonemes) <= max(max_phonemes, 2):
        return [list(phonemes)]
    spaces = [i for i in range(1, len(phonemes) - 1) if phonemes[i] == " "]
    clauses = [i for i in spaces if phonemes[i - 1] in _CLAUSE_MARKS]
    middle = len(phonemes) / 2
    cut = min(clauses or spaces or [len(phonemes) // 2], key=lambda i: abs(i - middle))
    head = list(phonemes[:cut])
    tail = phonemes[cut + 1 :] if phonemes[cut] == " " else phonemes[cut:]
    if head[-1] not in _PUNCTUATION_MARKS:
        head.append(",")
    return phoneme_runs(head, max_phonemes) + phoneme_runs(tail, max_phonemes)


def clean_for_speech(text: str, *, line_start: bool = False) -> str:
    """Text as it should be read aloud: emphasis, code, link and list markup gone, headings and tables
    flattened, then in its spoken form. line_start says whether text begins a line of the reply
    (a list marker there is dropped too)."""
    text = _LIST_MARKER.sub("\n", ("\n" if line_start else "") + _TIMES.sub(" times ", text))
    flat = " ".join(_BLOCK_MARKUP.sub(" ", _INLINE_MARKUP.sub("", text)).split())
    return spoken_form(_SPACE_BEFORE_PUNCTUATION.sub(r"\1", flat))


def _speakable(text: str) -> bool:
    """Whether Piper would say anything: a piece of bare punctuation is not worth a synthesis."""
    return any(ch.isalnum() for ch in text)


class SpeechChunker:
    def __init__(self, first_clause_words: int = 3, first_words: int = 0) -> None:
        self._first_clause_words = first_clause_words
        self._first_words = first_words
        self._buffer = ""
        self._pieces_out = 0
        self._line_start = False
        """Whether the buffer begins a line of the reply (the last piece ended with a line break)."""

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        ready: list[str] = []
        while (piece := self._next_piece()) is not None:
            ready.append(piece)
        return ready

    def flush(self) -> list[str]:
        rest = clean_for_speech(self._buffer, line_start=self._line_start)
        self._buffer = ""
        if not _speakable(rest):
            return []
        self._pieces_out += 1
        return [rest]

    def _next_piece(self) -> str | None:
        while True:
            cuts = [self._sentence_cut()]
            if self._pieces_out == 0:
                cuts += [self._clause_cut(), self._word_cut()]
            found = [cut for cut in cuts if cut is not None]
            if not found:
                return None
            cut = min(found)
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            spoken = clean_for_speech(piece, line_start=self._line_start)
            self._line_start = piece.endswith("\n")
            if _speakable(spoken):
                self._pieces_out += 1
                return spoken

    def _sentence_cut(self) -> int | None:
        return next(sentence_ends(self._buffer, line_start=self._line_start), None)

    def _clause_cut(self) -> int | None:
        for match in _CLAUSE_END.finditer(self._buffer):
            if len(self._buffer[: match.start()].split()) >= self._first_clause_words:
                return match.end()
        return None

    def _word_cut(self) -> int | None:
        """After first_words words, once the next has begun (so the last is whole); None when off."""
        if self._first_words <= 0:
            return None
        for count, match in enumerate(_WORD.finditer(self._buffer), start=1):
            if count > self._first_words:
                return match.start()
        return None
