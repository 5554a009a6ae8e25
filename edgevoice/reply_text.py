"""Where a spoken reply ends, sans-I/O: feed(delta) -> the text to pass on and whether to stop generating.

A small model asked for a recipe can go on until its token cap, or loop ("I'll tell you what I'll
put in the sauce" over and over). A spoken reply ends after max_sentences whole sentences, and
a reply that starts to repeat itself ends at its last whole sentence: a sentence said before, or
a run of repeat_words words that already came, is not passed on. Once stop is set the caller
stops the model, so no time goes on words nobody will hear.

Text of the first sentence passes on as it comes (the voice starts on its first words), except
words that repeat what came before them, held until a new word shows they are no loop. Later
sentences pass on whole: the speech chunker waits for their end anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgevoice.speech_text import sentence_ends

_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class Cut:
    text: str
    """Text to pass on now (may be empty)."""
    stop: bool
    """The reply is over: stop generating; feed() passes nothing more on."""


class ReplyCutter:
    def __init__(self, max_sentences: int = 2, repeat_words: int = 6) -> None:
        """max_sentences 0: no cap on sentences (a repetition still ends the reply)."""
        self._max_sentences = max_sentences
        self._repeat_words = repeat_words
        self._text = ""
        self._passed = 0
        """Index in _text up to which text has been passed on."""
        self._sentence_start = 0
        """Index in _text where the sentence under way begins (the end of the last whole one)."""
        self._sentences: list[tuple[str, ...]] = []
        self.stopped_by: str | None = None
        """Why the reply was cut: "sentences", "repetition", or None while it was not."""

    @property
    def text(self) -> str:
        """Everything passed on so far."""
        return self._text[: self._passed]

    def feed(self, delta: str) -> Cut:
        if self.stopped_by is not None:
            return Cut("", stop=True)
        self._text += delta
        for end in sentence_ends(self._text, self._sentence_start):
            sentence = self._text[self._sentence_start : end]
            if not any(ch.isalpha() for ch in sentence):
                continue  # "1." or "...": no sentence yet, it goes on
            words = reply_words(sentence)
            if words in self._sentences:
                return self._stop(self._sentence_start, "repetition")
            self._sentences.append(words)
            self._sentence_start = end
            if self._max_sentences and len(self._sentences) >= self._max_sentences:
                return self._stop(end, "sentences")
        repeat_start, repeat_length = self._repeating_tail()
        if repeat_length >= self._repeat_words:
            return self._stop(self._sentence_start if self._sentences else repeat_start, "repetition")
        if self._sentences:
            return self._pass_to(self._sentence_start)
        return self._pass_to(repeat_start)

    def finish(self) -> str:
        """The model ended the reply itself: what is left to pass on (nothing after a stop)."""
        if self.stopped_by is not None:
            return ""
        rest = self._text[self._sentence_start :]
        if any(ch.isalpha() for ch in rest) and reply_words(rest) in self._sentences:
            self.stopped_by = "repetition"
            end = self._sentence_start
        else:
            end = len(self._text)
        return self._pass_to(end, final=True).text

    def _stop(self, at: int, reason: str) -> Cut:
        self.stopped_by = reason
        return Cut(self._pass_to(at, final=True).text, stop=True)

    def _pass_to(self, end: int, *, final: bool = False) -> Cut:
        if final:
            end = max(self._passed, len(self._text[:end].rstrip()))
        if end <= self._passed:
            return Cut("", stop=False)
        text, self._passed = self._text[self._passed : end], end
        return Cut(text, stop=False)

    def _repeating_tail(self) -> tuple[int, int]:
        """Where the longest run of last words that already came earlier begins, and its length in
        words (up to repeat_words, not counting an unfinished last word, which matches when it begins
        an earlier word). No such run: the end of the text, and 0."""
        matches = list(_WORD.finditer(self._text))
        if len(matches) < 2:
            return len(self._text), 0
        words = [m.group().lower() for m in matches]
        unfinished = matches[-1].end() == len(self._text)
        best = 0
        for length in range(1, min(self._repeat_words + 1, len(words) - 1) + 1):
            tail = words[-length:]
            if not any(_same(words[i : i + length], tail, unfinished) for i in range(len(words) - length)):
                break
            best = length
        if best == 0:
            return len(self._text), 0
        complete = best - 1 if unfinished else best
        return matches[-best].start(), complete


def _same(earlier: list[str], tail: list[str], unfinished: bool) -> bool:
    if unfinished:
        return earlier[:-1] == tail[:-1] and earlier[-1].startswith(tail[-1])
    return earlier == tail


def reply_words(text: str) -> tuple[str, ...]:
    """text's words, lower case, with their apostrophes ("you're"), without punctuation."""
    return tuple(word.lower() for word in _WORD.findall(text))
