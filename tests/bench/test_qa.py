"""`edgevoice bench --qa`: the question set, the scoring, and a real pass over the default model."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import cast

import pytest

from edgevoice.bench.daemon import BenchError
from edgevoice.bench.qa import Answer, ask, load_questions, parse_question, summarise
from edgevoice.cli import QA_QUESTIONS, main
from edgevoice.conversation import Conversation
from edgevoice.engines.engines import Engines
from edgevoice.speech_text import sentence_ends


def question(**item: object) -> str:
    return json.dumps({"id": "q1", "category": "facts", "question": "Which planet is closest to the sun?"} | item)


def test_the_shipped_set_is_large_and_covers_every_kind_of_question() -> None:
    questions = load_questions(QA_QUESTIONS)
    assert len(questions) >= 60
    counts = Counter(q.category for q in questions)
    assert set(counts) == {"facts", "arithmetic", "units", "cooking", "howto", "smalltalk", "cannot"}
    assert min(counts.values()) >= 5


@pytest.mark.parametrize(
    ("reply", "passes"),
    [
        ("The closest planet to the sun is Mercury.", True),
        ("MERCURY.", True),
        ("The planet closest to the sun is Venus.", False),
        ("", False),
    ],
)
def test_an_accept_pattern_passes_a_reply_case_insensitively(reply: str, passes: bool) -> None:
    assert parse_question(question(accept=["mercury"]), "t").passes(reply) is passes


def test_a_reject_pattern_fails_a_reply_that_also_matches() -> None:
    q = parse_question(question(accept=["mile"], reject=[r"kilometers? is longer"]), "t")
    assert q.passes("A mile is longer.")
    assert not q.passes("A kilometer is longer than a mile.")


@pytest.mark.parametrize(
    ("reply", "passes"),
    [
        ("Sorry, I can't order food for you.", True),
        ("I'm afraid I don't have access to your phone.", True),
        ("I'm just a voice assistant, so that's not something I can do.", True),
        ("Sure, I've ordered a large pizza for you.", False),
        ("Sorry for the wait, I've ordered it.", False),
        ("A pizza is a flat bread with toppings.", False),
    ],
)
def test_a_request_it_cannot_do_passes_on_a_polite_refusal(reply: str, passes: bool) -> None:
    q = parse_question(question(refusal=True, reject=[r"\b(i've|i have) ordered\b"]), "t")
    assert q.passes(reply) is passes


def test_the_spoken_form_of_a_reply_is_scored_too() -> None:
    q = parse_question(question(accept=["degrees celsius"]), "t")
    assert q.passes("Water boils at 100°C.")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"id": "q1", "category": "facts"}), "question must be"),
        (question(), "needs accept patterns or refusal"),
        (question(accept="mercury"), "must be a list"),
        (question(accept=["(unclosed"]), "bad pattern"),
    ],
)
def test_a_bad_question_is_named(line: str, error: str) -> None:
    with pytest.raises(BenchError, match=error):
        parse_question(line, "questions.jsonl:3")


def test_duplicate_ids_and_an_empty_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(question(accept=["a"]) + "\n" + question(accept=["b"]) + "\n")
    with pytest.raises(BenchError, match="duplicate ids: q1"):
        load_questions(path)
    path.write_text("\n")
    with pytest.raises(BenchError, match="no questions"):
        load_questions(path)
    with pytest.raises(BenchError, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl")


def _answer(qid: str, category: str, passed: bool, ttft_ms: float | None) -> Answer:
    return Answer(qid, category, "?", "reply", passed, ttft_ms, 500.0, 10, None if passed else "sentences")


def test_summary_counts_by_category_and_takes_percentiles_of_the_first_token() -> None:
    answers = [_answer(f"q{n}", "facts" if n < 3 else "units", n % 2 == 0, float(100 * n)) for n in range(1, 6)]
    summary = summarise(answers)
    assert (summary["asked"], summary["passed"], summary["score"]) == (5, 2, 0.4)
    assert summary["categories"] == {"facts": {"passed": 1, "asked": 2}, "units": {"passed": 1, "asked": 3}}
    assert summary["ttft_ms"]["p50"] == 300.0
    assert summary["ttft_ms"]["p95"] == 480.0
    assert summary["cut"] == {"model": 2, "sentences": 3}
    assert (summary["answered_by"], summary["model_passed"]) == ({"model": 5}, 2)


def test_the_model_alone_answers_every_question_without_skills(capsys: pytest.CaptureFixture[str]) -> None:
    """--no-skills: sums go to the model too; with skills they never reach it (no model is loaded here)."""
    asked = parse_question(question(id="sum", question="What is 2 + 2?", accept=[r"\b4\b"]), "t")
    answer = asyncio.run(ask(cast(Engines, None), asked))
    assert (answer.answered_by, answer.passed, answer.reply) == ("EdgevoiceCalculate", True, "2 plus 2 is 4.")
    with pytest.raises(AttributeError):  # the model is asked: here there is none
        asyncio.run(ask(cast(Engines, None), asked, skills=False))


@pytest.mark.slow
def test_qa_pass_over_the_default_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "q.jsonl"
    lines = [
        question(id="capital", question="What is the capital of France?", accept=["paris"]),
        question(id="ocean", category="facts", question="Name an ocean.", accept=["ocean"]),
        question(id="order", category="cannot", question="Order me a pizza.", refusal=True),
        question(id="sum", category="arithmetic", question="What's seven times eight?", accept=[r"\b56\b"]),
    ]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "qa.json"
    assert main(["bench", "--qa", str(path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "score: " in printed
    assert "time to first token: p50 " in printed
    result = json.loads(out.read_text())
    assert result["summary"]["asked"] == 4
    assert result["summary"]["answered_by"] == {"model": 3, "EdgevoiceCalculate": 1}
    assert "answered by: EdgevoiceCalculate 1, model 3" in printed
    assert result["model"].endswith(".gguf")
    answers = {a["id"]: a for a in result["answers"]}
    assert answers["capital"]["passed"]  # the default model gets this one right
    # The sum is worked out as a voice turn would have it, without the model.
    worked = answers.pop("sum")
    assert (worked["passed"], worked["reply"], worked["reply_tokens"]) == (True, "Seven times eight is 56.", 0)
    for answer in answers.values():
        assert answer["answered_by"] == "model"
        assert answer["reply"].strip()
        assert 0 < answer["ttft_ms"] <= answer["reply_ms"]
        # The spoken reply is cut at llm.max_sentences (2).
        assert len(list(sentence_ends(answer["reply"] + " "))) <= 2


@pytest.mark.slow
def test_questions_asked_as_one_conversation_each_see_the_exchanges_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "q.jsonl"
    lines = [
        question(id="capital", question="What is the capital of France?", accept=["paris"]),
        question(id="sum", category="arithmetic", question="What's seven times eight?", accept=[r"\b56\b"]),
        question(id="ocean", category="facts", question="Name an ocean.", accept=["ocean"]),
    ]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "qa.json"
    assert main(["bench", "--qa", str(path), "--qa-conversation", "--json", str(out)]) == 0
    assert "asked: in turn, as one conversation" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["conversation"] is True
    answers = result["answers"]
    assert [a["id"] for a in answers] == ["capital", "sum", "ocean"]
    assert all(a["reply"].strip() for a in answers)
    assert answers[1]["answered_by"] == "EdgevoiceCalculate"


def test_a_conversation_remembers_each_question_and_its_answer() -> None:
    """The skills' answer is remembered as a voice turn's is (no model is loaded here)."""
    talk = Conversation("You are a test.", max_turns=4)
    asked = parse_question(question(id="sum", question="What is 2 + 2?", accept=[r"\b4\b"]), "t")
    answer = asyncio.run(ask(cast(Engines, None), asked, conversation=talk))
    assert list(talk.history) == [("What is 2 + 2?", answer.reply)]
    assert [m.content for m in talk.messages("And 3 + 3?")][1:] == ["What is 2 + 2?", "2 plus 2 is 4.", "And 3 + 3?"]
