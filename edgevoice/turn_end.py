"""Whether a transcript sounds like a finished turn, sans-I/O.

A turn whose words already sound finished can end on a shorter pause than one that stops on
"and" or "the": the speaker is drawing breath, not done. Judging wrongly one way costs only the
usual wait; the other way, it answers someone mid-sentence, so the words that mark an unfinished
turn are many.
"""

from __future__ import annotations

_UNFINISHED_ENDINGS = (",", ";", ":", "-", "—", "–", "...", "…")
# fmt: off
_CONTINUING_WORDS = frozenset({
    # conjunctions and linking words
    "and", "or", "but", "so", "because", "cause", "if", "then", "than", "that", "which", "who", "whom",
    "whose", "where", "when", "while", "whether", "as", "also", "plus", "like", "although", "though",
    "unless", "until", "since",
    # articles, determiners and possessives
    "a", "an", "the", "this", "these", "those", "my", "your", "our", "their", "his", "her", "its", "some",
    "any", "every", "each", "no",
    # prepositions
    "to", "of", "for", "with", "without", "from", "in", "on", "at", "by", "about", "into", "onto", "over",
    "under", "after", "before", "between", "through",
    # hesitations
    "um", "uh", "er", "erm", "hmm", "mm", "ah", "eh", "well",
})
# fmt: on


def sounds_finished(text: str) -> bool:
    """True unless the transcript is empty or ends the way an unfinished sentence does."""
    words = text.strip()
    if not words:
        return False
    if words.endswith(_UNFINISHED_ENDINGS):
        return False
    last = words.split()[-1].strip(".!?\"'()[]").lower()
    return bool(last) and last not in _CONTINUING_WORDS


def turn_complete(probability: float, transcript: str | None, threshold: float) -> bool:
    """Whether a pause ends the turn: the model says complete, and the words heard so far sound finished.

    Both are asked because on the pause set (edgevoice.bench.pauses) the model alone took most
    pauses inside a sentence for the end: synthetic voices stop on "for" with a falling pitch,
    and it hears the voice, not the words. The words alone end "Set a timer" before "for ten
    minutes"; the model is what keeps such a pause open when the voice says more is coming.
    Without a transcript yet, the turn is not judged complete: it waits for one.
    """
    return probability >= threshold and transcript is not None and sounds_finished(transcript)
