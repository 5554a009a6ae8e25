"""`edgevoice bench --qa FILE`: how often the language model answers everyday questions well, and how soon.

Each question (one JSON object a line: id, category, question, accept and reject patterns, or
refusal: true for a request the box cannot do) is asked as a voice turn asks it: a sum or a
question about units is worked out by the skills (no state: nothing is set or kept), anything
else goes to the model as a fresh one-turn conversation with the configured system prompt,
through the same engine and reply stream a voice turn uses: the reply scored is the spoken one,
cut at llm.max_sentences. With skills=False (--no-skills) the model answers every question, which
is how two models are compared. With conversation=True (--qa-conversation) the questions are
asked in turn in one conversation instead, each exchange remembered as a voice turn's is (the
last llm.history_turns, copies left out), which is what a long talk with the box gets. Only the
language model is loaded.
A reply passes when an accept pattern (or, for refusal, a polite refusal) matches it or its
spoken form, case-insensitively, and no reject pattern does.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from edgevoice.atomic import write_atomic
from edgevoice.bench.daemon import BenchError
from edgevoice.bench.measure import stage_summary
from edgevoice.config import Config
from edgevoice.conversation import Conversation
from edgevoice.engines.engines import Engines
from edgevoice.engines.llm import Message
from edgevoice.models.registry import Kind, resolve
from edgevoice.skills.router import worked_out
from edgevoice.speech_text import clean_for_speech

REFUSAL_PATTERNS = (
    r"\b(can't|cannot|can not|couldn't|unable|not able|no way to)\b",
    r"\b(don't|do not) have (access|the ability|a way)\b",
    r"\b(i'm|i am) (just|only) a\b",
    r"\b(sorry|unfortunately|i'm afraid)\b",
    r"\bnot (connected|possible|something i can)\b",
)


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    question: str
    accept: tuple[re.Pattern[str], ...]
    reject: tuple[re.Pattern[str], ...]

    def passes(self, reply: str) -> bool:
        heard = f"{reply}\n{clean_for_speech(reply)}"
        if any(pattern.search(heard) for pattern in self.reject):
            return False
        return any(pattern.search(heard) for pattern in self.accept)


@dataclass(frozen=True)
class Answer:
    id: str
    category: str
    question: str
    reply: str
    passed: bool
    ttft_ms: float | None
    """From asking to the first reply text; None when there was none."""
    reply_ms: float
    """From asking to the end of the spoken reply (generation stopped)."""
    reply_tokens: int
    cut: str | None
    """Why the reply was cut: "sentences", "repetition" or None (the model ended it)."""
    answered_by: str = "model"
    """"model", or the skill's intent ("EdgevoiceCalculate", "EdgevoiceConvertUnits")."""


def _patterns(where: str, value: Any) -> tuple[re.Pattern[str], ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise BenchError(f"{where} must be a list of regular expressions")
    try:
        return tuple(re.compile(p, re.IGNORECASE) for p in value)
    except re.error as err:
        raise BenchError(f"{where}: bad pattern: {err}") from None


def parse_question(line: str, where: str) -> Question:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise BenchError(f"{where}: not JSON: {err}") from None
    if not isinstance(item, dict):
        raise BenchError(f"{where}: not a JSON object")
    for key in ("id", "category", "question"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise BenchError(f"{where}: {key} must be a non-empty string")
    accept = _patterns(f"{where}: accept", item.get("accept", []))
    if item.get("refusal") is True:
        accept += _patterns(f"{where}: refusal", list(REFUSAL_PATTERNS))
    if not accept:
        raise BenchError(f"{where}: needs accept patterns or refusal: true")
    reject = _patterns(f"{where}: reject", item.get("reject", []))
    return Question(item["id"], item["category"], item["question"], accept, reject)


def load_questions(path: Path) -> list[Question]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise BenchError(f"cannot read {path}: {err.strerror or err}") from None
    questions = [parse_question(line, f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not questions:
        raise BenchError(f"{path}: no questions")
    duplicated = [qid for qid, count in Counter(q.id for q in questions).items() if count > 1]
    if duplicated:
        raise BenchError(f"{path}: duplicate ids: {', '.join(duplicated)}")
    return questions


async def ask(
    engines: Engines, question: Question, *, skills: bool = True, conversation: Conversation | None = None
) -> Answer:
    """The answer to one question: a fresh conversation's, or (conversation) the next turn of that
    one, which then remembers the exchange."""
    answer = await _answer(engines, question, skills=skills, conversation=conversation)
    if conversation is not None:
        conversation.remember(question.question, answer.reply)
    return answer


async def _answer(engines: Engines, question: Question, *, skills: bool, conversation: Conversation | None) -> Answer:
    worked = worked_out(question.question) if skills else None
    if worked is not None:
        return Answer(
            id=question.id,
            category=question.category,
            question=question.question,
            reply=worked.text,
            passed=question.passes(worked.text),
            ttft_ms=round(worked.match_ms, 1),
            reply_ms=round(worked.match_ms, 1),
            reply_tokens=0,
            cut=None,
            answered_by=worked.intent,
        )
    if conversation is None:
        messages = [Message("system", engines.config.llm.system_prompt), Message("user", question.question)]
    else:
        messages = conversation.messages(question.question)
    started = time.perf_counter()
    first: float | None = None
    reply = ""
    async for piece in engines.reply(messages, key=None if conversation is None else conversation.key):
        if first is None:
            first = time.perf_counter()
        reply += piece
    ended = time.perf_counter()
    stats = engines.llm.last_stats
    return Answer(
        id=question.id,
        category=question.category,
        question=question.question,
        reply=reply,
        passed=question.passes(reply),
        ttft_ms=None if first is None else round((first - started) * 1000, 1),
        reply_ms=round((ended - started) * 1000, 1),
        reply_tokens=stats.reply_tokens,
        cut=stats.cut,
    )


def summarise(answers: list[Answer]) -> dict[str, Any]:
    categories: dict[str, dict[str, int]] = {}
    for answer in answers:
        tally = categories.setdefault(answer.category, {"passed": 0, "asked": 0})
        tally["asked"] += 1
        tally["passed"] += answer.passed
    passed = sum(answer.passed for answer in answers)
    by_model = [answer for answer in answers if answer.answered_by == "model"]
    return {
        "asked": len(answers),
        "passed": passed,
        "score": round(passed / len(answers), 3) if answers else 0.0,
        "categories": categories,
        "answered_by": dict(Counter(answer.answered_by for answer in answers)),
        "model_passed": sum(answer.passed for answer in by_model),
        "ttft_ms": stage_summary(answer.ttft_ms for answer in by_model),
        "reply_ms": stage_summary(answer.reply_ms for answer in by_model),
        "cut": dict(Counter(answer.cut or "model" for answer in by_model)),
    }


def format_report(model: str, summary: dict[str, Any], answers: list[Answer], *, conversation: bool = False) -> str:
    ttft, reply = summary["ttft_ms"], summary["reply_ms"]
    lines = [
        f"model: {model}",
        "asked: " + ("in turn, as one conversation" if conversation else "each question a fresh conversation"),
        f"score: {summary['passed']}/{summary['asked']} ({summary['score'] * 100:.0f}%)",
        "answered by: "
        + ", ".join(f"{who} {count}" for who, count in sorted(summary["answered_by"].items()))
        + f" (the model passed {summary['model_passed']} of its {summary['answered_by'].get('model', 0)})",
        f"time to first token: p50 {ttft['p50']} ms, p95 {ttft['p95']} ms; "
        f"whole reply: p50 {reply['p50']} ms, p95 {reply['p95']} ms",
        "by category: "
        + ", ".join(f"{name} {tally['passed']}/{tally['asked']}" for name, tally in summary["categories"].items()),
        "reply ended by: " + ", ".join(f"{why} {count}" for why, count in sorted(summary["cut"].items())),
    ]
    failed = [answer for answer in answers if not answer.passed]
    if failed:
        lines.append("failed:")
        lines += [f"  {answer.id}: {answer.question} -> {answer.reply.strip()!r}" for answer in failed]
    return "\n".join(lines)


async def run_qa(
    config: Config,
    questions: list[Question],
    progress: TextIO | None = None,
    *,
    skills: bool = True,
    conversation: bool = False,
) -> tuple[str, list[Answer]]:
    """Ask every question in turn (each in a fresh conversation, or all in one); with progress, one
    line there per answer as it comes."""
    engines = await asyncio.to_thread(Engines.load, config, {Kind.LLM})
    talk = Conversation(config.llm.system_prompt, config.llm.history_turns) if conversation else None
    answers: list[Answer] = []
    try:
        for number, question in enumerate(questions, start=1):
            answers.append(answer := await ask(engines, question, skills=skills, conversation=talk))
            if progress is not None:
                verdict = "pass" if answer.passed else "FAIL"
                print(f"[{number}/{len(questions)}] {verdict} {answer.id} ttft {answer.ttft_ms} ms", file=progress)
                progress.flush()
        return engines.llm.source, answers
    finally:
        engines.close()


def qa_main(
    config: Config, path: Path, json_out: Path | None, *, skills: bool = True, conversation: bool = False
) -> int:
    questions = load_questions(path)
    if not config.llm.url:
        resolve(config, Kind.LLM)  # a missing model package is named before anything loads
    model, answers = asyncio.run(
        run_qa(config, questions, progress=sys.stderr, skills=skills, conversation=conversation)
    )
    summary = summarise(answers)
    print(format_report(model, summary, answers, conversation=conversation), flush=True)
    if json_out is not None:
        result = {
            "model": str(model),
            "questions": str(path),
            "skills": skills,
            "conversation": conversation,
            "llm": asdict(config.llm) | {"model": str(model)},
            "summary": summary,
            "answers": [asdict(answer) for answer in answers],
        }
        try:
            write_atomic(json_out, (json.dumps(result, indent=2) + "\n").encode("utf-8"), mode=0o644)
        except OSError as err:
            raise BenchError(f"cannot write {json_out}: {err.strerror or err}") from None
    return 0
