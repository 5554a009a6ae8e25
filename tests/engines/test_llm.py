"""The language model: replies stream, the cached prompt prefix is reused, cancellation stops it."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import numpy as np
import pytest

from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.llm import LlamaLlm, Message, heard_words
from edgevoice.engines.schedule import Claim
from edgevoice.engines.worker import Cancelled, CancelToken
from edgevoice.models.registry import Kind, resolve
from edgevoice.speech_text import sentence_ends


@pytest.fixture(autouse=True)
def _llm_to_ourselves(engines: Engines) -> None:
    """These tests use the model directly, not through its worker: wait for what earlier tests left on it
    (a reply still stopping, a read-ahead) so that two threads never drive llama.cpp at once."""
    engines.llm_worker.call(lambda: None)


def _reply(engines: Engines, messages: list[Message]) -> str:
    return "".join(engines.llm.stream_reply(messages, CancelToken()))


def test_reply_streams_text(engines: Engines) -> None:
    system = Message("system", engines.config.llm.system_prompt)
    reply = _reply(engines, [system, Message("user", "What is the capital of France?")])
    assert reply.strip()
    assert engines.llm.last_stats.reply_tokens >= 1


def test_second_turn_does_not_reread_the_first(engines: Engines) -> None:
    llm = engines.llm
    turn_one = [Message("system", engines.config.llm.system_prompt), Message("user", "Name a colour.")]
    answer = _reply(engines, turn_one)
    first = llm.last_stats
    turn_two = [*turn_one, Message("assistant", answer), Message("user", "Name another one.")]
    _reply(engines, turn_two)
    second = llm.last_stats
    assert second.prompt_tokens > first.prompt_tokens
    # Everything turn one put in the prompt came from the KV cache.
    assert second.evaluated_prompt_tokens <= second.prompt_tokens - first.prompt_tokens


def test_cancel_stops_generation(engines: Engines) -> None:
    token = CancelToken()
    stream = engines.llm.stream_reply(
        [Message("system", "You are verbose."), Message("user", "Write a long essay about rivers.")], token
    )
    next(stream)
    token.cancel()
    with pytest.raises(Cancelled):
        next(stream)
    assert engines.llm.last_stats.reply_tokens < engines.config.llm.max_reply_tokens


async def test_leaving_a_stream_frees_the_engine(engines: Engines) -> None:
    messages = [Message("system", "You are verbose."), Message("user", "Write a long essay about mountains.")]
    async with asyncio.timeout(60):
        async for _ in engines.reply(messages):
            break
        # The abandoned job ends at its next token, so the next request is served promptly.
        pieces = [piece async for piece in engines.reply([Message("user", "Say hi.")])]
    assert "".join(pieces).strip()
    assert engines.llm.last_stats.reply_tokens >= 1


def test_prepare_reads_the_next_prompt_ahead(engines: Engines) -> None:
    """After prepare(), a turn pays only for its own words, even when the history window slid."""
    llm = engines.llm
    system = Message("system", engines.config.llm.system_prompt)
    history = [system]
    for said, answered in [("Hello there.", "Hi! How can I help?"), ("Name a colour.", "Blue.")]:
        history += [Message("user", said), Message("assistant", answered)]
    _reply(engines, [*history, Message("user", "Name another one.")])
    # The oldest exchange is forgotten: the prompt now differs right after the system prompt.
    slid = [system, *history[3:]]
    evaluated = llm.prepare(slid, lambda: False)
    assert evaluated > 10
    _reply(engines, [*slid, Message("user", "And a third?")])
    stats = llm.last_stats
    assert stats.evaluated_prompt_tokens <= 12  # the new user message and the template around it
    assert llm.prepare(slid, lambda: False) <= 1  # already there, nothing more to read


def test_prepare_reads_the_words_heard_so_far(engines: Engines) -> None:
    """A partial transcript read ahead leaves the turn only its last words to read, whatever end the
    transcriber guessed for the words so far; words it got wrong are read again, not trusted."""
    llm = engines.llm
    history = [Message("system", engines.config.llm.system_prompt)]
    question = [*history, Message("user", "How do I get a red wine stain out of a carpet?")]

    def evaluated_after(heard: str) -> int:
        llm._llama.reset()  # nothing of the question in the context from the turn before
        llm.prepare(history, lambda: False, heard=heard)
        _reply(engines, question)
        return llm.last_stats.evaluated_prompt_tokens

    whole = evaluated_after("")
    assert evaluated_after("How do I get a red wine stain.") <= whole - 7
    # Heard wrong after its first words: those are kept, the rest is read as the turn says it.
    assert whole - 7 < evaluated_after("How do I get a red wind") < whole


def test_prepare_waits_for_a_transcription_and_gives_up_once_a_turn_needs_the_model(engines: Engines) -> None:
    """Reading ahead never computes beside a transcription (which holds the lock): it waits, and a turn
    that needs the model meanwhile ends the wait; once the lock is free it reads, and leaves it free."""
    llm = engines.llm
    history = [Message("system", engines.config.llm.system_prompt), Message("user", "Name a colour.")]
    history.append(Message("assistant", "Blue."))
    transcribing = threading.Lock()
    transcribing.acquire()
    turn_waits = threading.Event()
    threading.Timer(0.2, turn_waits.set).start()
    llm._llama.reset()
    assert llm.prepare(history, turn_waits.is_set, exclusive=transcribing) == 0
    assert turn_waits.is_set()
    transcribing.release()
    assert llm.prepare(history, lambda: False, exclusive=transcribing) > 10
    assert not transcribing.locked()


@pytest.mark.parametrize(
    ("heard", "words"),
    [("", ""), ("  ", ""), ("What is the.", "What is the "), ("Set a timer for…", "Set a timer for "), ("Hi, ", "Hi ")],
)
def test_heard_words_drop_the_guessed_end(heard: str, words: str) -> None:
    assert heard_words(heard) == words


def test_prepare_gives_way_when_asked(engines: Engines) -> None:
    system = Message("system", engines.config.llm.system_prompt)
    long_history = [system]
    for n in range(8):
        long_history += [Message("user", f"Tell me fact number {n}."), Message("assistant", "Water boils at 100 C.")]
    assert engines.llm.prepare(long_history, lambda: True) == 0


def test_a_held_reply_waits_between_tokens(engines: Engines) -> None:
    may_go = threading.Event()
    may_go.set()
    system = Message("system", engines.config.llm.system_prompt)
    stream = engines.llm.stream_reply(
        [system, Message("user", "Count from one to twenty.")], CancelToken(), may_go=may_go
    )
    got: list[str] = [next(stream)]
    may_go.clear()
    worker = threading.Thread(target=lambda: got.append(next(stream)))
    worker.start()
    worker.join(0.5)
    assert worker.is_alive()  # held: no next token while may_go is clear
    assert len(got) == 1
    may_go.set()
    worker.join(10)
    assert len(got) == 2
    stream.close()


def _sentences(text: str) -> int:
    return len(list(sentence_ends(text.strip() + " ")))


def test_a_reply_stops_generating_after_max_sentences(engines: Engines) -> None:
    llm = engines.llm
    messages = [
        Message("system", "You are a storyteller. Tell long stories with many sentences."),
        Message("user", "Tell me a long story about a dragon who learns to bake bread."),
    ]
    reply = _reply(engines, messages)
    stats = llm.last_stats
    assert _sentences(reply) == engines.config.llm.max_sentences == 2
    assert stats.cut == "sentences"
    # Generation stopped a token after the second sentence ended, far from the token cap.
    assert stats.reply_tokens <= len(llm._llama.tokenize(reply.encode(), add_bos=False)) + 2
    assert stats.reply_tokens < engines.config.llm.max_reply_tokens


def test_max_sentences_is_read_from_the_config(config: Config) -> None:
    one = LlamaLlm(dataclasses.replace(config.llm, max_sentences=1), resolve(config, Kind.LLM).path)
    messages = [Message("system", "You are verbose."), Message("user", "Describe the sea in detail.")]
    reply = "".join(one.stream_reply(messages, CancelToken()))
    assert _sentences(reply) == 1
    assert one.last_stats.cut == "sentences"


def _talk(llm: LlamaLlm, said: list[Message], ask: str, key: str | None) -> str:
    said.append(Message("user", ask))
    reply = "".join(llm.stream_reply(said, CancelToken(), key=key))
    said.append(Message("assistant", reply))
    return reply


def test_interleaved_conversations_each_read_only_their_new_words(engines: Engines) -> None:
    """Two rooms take turns on the one model: each turn loads its conversation's saved context, so
    the other room's turn in between costs it nothing, and what it loads is what reading it again gives."""
    llm = engines.llm
    assert isinstance(llm, LlamaLlm)
    system = Message("system", engines.config.llm.system_prompt)
    asked = {
        "kitchen": ["Name a fruit.", "Name another fruit.", "Which of them is sweeter?"],
        "bedroom": ["What colour is the sky?", "And the grass?", "Which colour do you like more?"],
    }
    rooms = {"kitchen": [system], "bedroom": [system]}
    replies: dict[str, list[str]] = {"kitchen": [], "bedroom": []}
    for turn in range(3):
        for room in ("kitchen", "bedroom"):
            before = len(llm._format([*rooms[room], Message("user", "x")])[0])
            replies[room].append(_talk(llm, rooms[room], asked[room][turn], room))
            stats = llm.last_stats
            if turn:
                # The other room's turn came in between: this one's history came back from its saved state.
                assert stats.restored_tokens > 0
                assert stats.evaluated_prompt_tokens <= stats.prompt_tokens - before + 16
                assert stats.evaluated_prompt_tokens < stats.prompt_tokens // 2
    assert len(llm.saved) >= 2
    assert llm.saved.bytes_used <= llm.saved.budget_bytes
    assert all(reply.strip() for reply in replies["kitchen"] + replies["bedroom"])
    # The context now holds the bedroom. Load the kitchen's saved state and read one more token, then
    # read the kitchen's whole prompt from nothing: the model's next-token scores agree.
    saved = llm.saved.get("kitchen")
    assert saved is not None
    probe = [*saved.tokens, *llm._llama.tokenize(b" Yes", add_bos=False)]
    assert llm._load("kitchen", probe) == (len(saved.tokens), len(saved.tokens))
    llm._llama.eval(probe[len(saved.tokens) :])
    loaded = _last_logits(llm)
    llm._llama.n_tokens = 0
    llm._llama.eval(probe)
    read = _last_logits(llm)
    # Another context (the kitchen's last token after the bedroom's prompt) scores far apart.
    bedroom = llm.saved.get("bedroom")
    assert bedroom is not None
    llm._llama.n_tokens = 0
    llm._llama.eval([*bedroom.tokens, probe[-1]])
    other = _last_logits(llm)
    assert int(np.argmax(loaded)) == int(np.argmax(read))
    noise = float(np.mean(np.abs(loaded - read)))  # batches of another size round differently
    apart = float(np.mean(np.abs(other - read)))
    assert noise < apart / 5, f"the loaded context is not the kitchen's: {noise:.3f} vs {apart:.3f}"


def _last_logits(llm: LlamaLlm) -> np.ndarray[Any, np.dtype[np.float32]]:
    vocab = llm._llama.n_vocab()
    return np.ctypeslib.as_array(llm._llama._ctx.get_logits(), shape=(vocab,)).copy()


async def test_a_long_reply_gives_way_to_another_rooms_first_words(engines: Engines) -> None:
    """A reply already being heard stops between tokens while another room's turn gets its answer,
    then goes on from where it was: its context and sampler are put back as they were."""
    system = Message("system", "You are a storyteller. Answer at length.")
    long_ask = [system, Message("user", "Tell me a long story about a river and a boat.")]
    short_ask = [Message("system", engines.config.llm.system_prompt), Message("user", "What is two plus two?")]
    alone = "".join([piece async for piece in engines.reply(long_ask, Claim(0.0, first_words_out=True), "story")])
    finished: list[str] = []

    async def tell(messages: list[Message], claim: Claim, key: str, started: asyncio.Event | None) -> str:
        text = ""
        async for piece in engines.reply(messages, claim, key):
            text += piece
            if started is not None:
                started.set()
        finished.append(key)
        return text

    started = asyncio.Event()
    async with asyncio.timeout(120):
        story = asyncio.create_task(tell(long_ask, Claim(0.0, first_words_out=True), "story", started))
        await started.wait()
        answer = await tell(short_ask, Claim(1.0), "sum", None)
        told = await story
    assert finished == ["sum", "story"], "the other room's answer came while the story was still being told"
    assert answer.strip()
    assert told == alone, "the story went on exactly as it would have without the interruption"


def test_a_prompt_all_in_a_loaded_context_is_answered(engines: Engines) -> None:
    """A loaded context has no scores for its last token: a prompt it holds whole reads that token
    again, instead of sampling from the scores another conversation's turn left behind (or from
    none: llama.cpp aborts the process on that)."""
    llm = engines.llm
    assert isinstance(llm, LlamaLlm)
    system = Message("system", engines.config.llm.system_prompt)
    "".join(llm.stream_reply([system, Message("user", "Name a fruit.")], CancelToken(), key="whole"))
    saved = llm.saved.get("whole")
    assert saved is not None
    probe = [*saved.tokens, *llm._llama.tokenize(b"\nMy favourite fruit is the", add_bos=False)]
    llm._llama.eval(probe[len(saved.tokens) :])  # the context still holds the saved part
    llm.saved.put("whole", llm._snapshot())
    "".join(llm.stream_reply([system, Message("user", "Name a bird.")], CancelToken(), key=None))
    assert llm._load("whole", probe) == (len(probe), len(probe))
    from_loaded = llm._llama.create_completion(probe, max_tokens=4, temperature=0.0)
    llm._llama.n_tokens = 0
    from_nothing = llm._llama.create_completion(probe, max_tokens=4, temperature=0.0)
    assert from_loaded["choices"][0]["text"] == from_nothing["choices"][0]["text"]  # type: ignore[index]


def test_the_8_bit_cache_keeps_a_conversation_in_half_the_memory(engines: Engines) -> None:
    """llm.kv_cache: both types answer; a saved prompt with q8_0 takes about half the bytes of f16."""
    config = engines.config.llm
    path = resolve(engines.config, Kind.LLM).path
    per_token: dict[str, float] = {}
    for kind in ("q8_0", "f16"):
        llm = LlamaLlm(dataclasses.replace(config, kv_cache=kind, context_tokens=512), path)
        said = [Message("system", config.system_prompt)]
        assert _talk(llm, said, "Name a fruit.", "kitchen").strip()
        saved = llm.saved.get("kitchen")
        assert saved is not None
        per_token[kind] = len(saved.state) / len(saved.tokens)
        del llm
    assert 0.4 < per_token["q8_0"] / per_token["f16"] < 0.65, per_token
