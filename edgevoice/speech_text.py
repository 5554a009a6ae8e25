"""Cutting a streamed reply into pieces to speak, sans-I/O: feed(text) -> ready pieces, flush() -> the rest.

The first piece goes out at the first clause boundary (a comma, colon, semicolon or dash) once it
has a few words, so the voice starts before the first sentence is done; later pieces end at
sentence boundaries, which Piper speaks with better prosody. Markdown the model may emit is
dropped, since it would be read aloud.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:—–]\s")
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no.", "approx."})
_MARKUP = re.compile(r"[*_#`~|<>]+|\[|\]\([^)]*\)")


def clean_for_speech(text: str) -> str:
    return " ".join(_MARKUP.sub(" ", text).split())


class SpeechChunker:
    def __init__(self, first_clause_words: int = 3) -> None:
        self._first_clause_words = first_clause_words
        self._buffer = ""
        self._pieces_out = 0

    def feed(self, text: str) -> list[str]:
        self._buffer += text
        ready: list[str] = []
        while (piece := self._next_piece()) is not None:
            ready.append(piece)
        return ready

    def flush(self) -> list[str]:
        rest = clean_for_speech(self._buffer)
        self._buffer = ""
        if not rest:
            return []
        self._pieces_out += 1
        return [rest]

    def _next_piece(self) -> str | None:
        cut = self._sentence_cut()
        if cut is None and self._pieces_out == 0:
            cut = self._clause_cut()
        if cut is None:
            return None
        piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
        spoken = clean_for_speech(piece)
        if not spoken:
            return self._next_piece()
        self._pieces_out += 1
        return spoken

    def _sentence_cut(self) -> int | None:
        for match in _SENTENCE_END.finditer(self._buffer):
            words = self._buffer[: match.end()].split()
            if words and words[-1].lower().rstrip("\"')]") in _ABBREVIATIONS:
                continue
            return match.end()
        return None

    def _clause_cut(self) -> int | None:
        for match in _CLAUSE_END.finditer(self._buffer):
            if len(self._buffer[: match.start()].split()) >= self._first_clause_words:
                return match.end()
        return None
