"""Reply generation with llama.cpp (llama-cpp-python): the model's own chat template, streamed tokens.

llama-cpp-python keeps the KV cache of the last prompt and evaluates only the tokens after the
longest common prefix, so a conversation whose prompt grows by one exchange per turn pays only
for the new turn; warm_up() puts the system prompt in the cache before the first turn. Several
conversations share the one context: after each turn (and each prompt read ahead) the context is
saved under the conversation's key (prompt_cache.py, llm.state_cache_mb), and loaded back when
that conversation's next turn shares more of its prompt with it than with what the context holds.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import llama_cpp

from edgevoice.config import LlmConfig
from edgevoice.engines.llama_load import weights_in_plain_buffers
from edgevoice.engines.prompt_cache import PromptCache, SavedPrompt
from edgevoice.engines.worker import CancelToken
from edgevoice.errors import ModelError
from edgevoice.models.check import check_gguf
from edgevoice.reply_text import ReplyCutter

_log = logging.getLogger(__name__)
_PREPARE_BATCH = 16
"""Tokens read per step when preparing a prompt ahead: about 50 ms here, the longest a turn waits for it."""
_LOCK_POLL_S = 0.02
"""How often reading ahead, waiting for a transcription to finish, asks whether a turn needs the model."""


GiveWay = Callable[[Callable[[], None], Callable[[], None]], int]
"""give_way(put_aside, take_back): runs more urgent work now, between the two (EngineWorker.give_way)."""


class MayGo(Protocol):
    """Whether a reply may compute its next token now (a threading.Event is one)."""

    def wait(self, timeout: float | None = None) -> bool:
        """True as soon as it may; False if it still may not after timeout seconds."""
        ...


@dataclass(frozen=True)
class Message:
    role: str
    """system, user or assistant"""
    content: str


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    """Tokens in the whole prompt."""
    evaluated_prompt_tokens: int = 0
    """Prompt tokens the model actually had to read; the rest came from the KV cache."""
    restored_tokens: int = 0
    """Prompt tokens that came from the conversation's saved state (0: none was loaded)."""
    reply_tokens: int = 0
    cut: str | None = None
    """Why the reply was cut short of the model's own end: "sentences" (llm.max_sentences) or
    "repetition"; None when the model ended it (or ran into max_reply_tokens)."""


_KV_TYPES = {"q8_0": llama_cpp.GGML_TYPE_Q8_0, "f16": llama_cpp.GGML_TYPE_F16}
"""llm.kv_cache's values as llama.cpp's types."""


def _take(lock: threading.Lock | None, should_stop: Callable[[], bool]) -> bool:
    """Hold lock (when there is one) unless should_stop() says so, before or while waiting for it."""
    if lock is None:
        return not should_stop()
    while not lock.acquire(timeout=_LOCK_POLL_S):
        if should_stop():
            return False
    if should_stop():
        lock.release()
        return False
    return True


def heard_words(heard: str) -> str:
    """The start of a user message from a partial transcript, ready for the next word: without the
    end the transcriber guessed (a full stop where the speaker only paused), and a space after."""
    words = heard.strip().rstrip(".?!,;:… ")
    return f"{words} " if words else ""


class LlamaLlm:
    """One llama.cpp context. Not thread-safe: call it from one engine thread."""

    def __init__(self, config: LlmConfig, model_path: Path) -> None:
        check_gguf(model_path)
        self._config = config
        try:
            with weights_in_plain_buffers():
                self._llama = llama_cpp.Llama(
                    model_path=str(model_path),
                    n_ctx=config.context_tokens,
                    n_threads=config.threads,
                    n_threads_batch=config.threads,
                    n_batch=256,
                    # The 8-bit cache of values needs flash attention; with f16 it stays off, as llama.cpp has it.
                    flash_attn=config.kv_cache == "q8_0",
                    type_k=_KV_TYPES[config.kv_cache],
                    type_v=_KV_TYPES[config.kv_cache],
                    seed=config.seed,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"llama.cpp could not load {model_path}: {err}") from None
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{model_path} has no chat template; edgevoice needs a chat (instruct) model")
        self._formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=self._piece(self._llama.token_eos()),
            bos_token=self._piece(self._llama.token_bos()),
        )
        self.model_path = model_path
        self.last_stats = GenerationStats()
        self.saved = PromptCache(config.state_cache_mb * 1024 * 1024)
        """Each conversation's context after its last turn, to load back for its next."""

    @property
    def source(self) -> str:
        """What answers: the model file."""
        return str(self.model_path)

    def _piece(self, token_id: int) -> str:
        return self._llama.detokenize([token_id], special=True).decode("utf-8", "replace")

    def _format(self, messages: Sequence[Message]) -> tuple[list[int], list[str]]:
        """Prompt tokens through the model's own chat template, and its stop strings."""
        chat: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        result = self._formatter(messages=chat)
        tokens = self._llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, stop

    def stream_reply(
        self,
        messages: Sequence[Message],
        token: CancelToken,
        may_go: MayGo | None = None,
        key: Hashable | None = None,
        give_way: GiveWay | None = None,
    ) -> Iterator[str]:
        """Yield reply text pieces as the model produces them; stop at once when token is cancelled.

        The reply ends after llm.max_sentences sentences, or at its last whole sentence once it starts
        to repeat itself (reply_text.ReplyCutter): generation stops there, not at the token cap.
        While may_go is clear the model waits before its next token, leaving the cores to
        whatever needs them more (the first words of the reply being spoken).
        key: the conversation, whose saved context is loaded first and saved again after (None: neither).
        give_way: called between tokens with two callbacks, to run other conversations' more urgent
        work first (EngineWorker.give_way); this reply's context is put aside meanwhile.
        """
        token.check()
        prompt, stop = self._format(messages)
        if len(prompt) + self._config.max_reply_tokens > self._config.context_tokens:
            raise ModelError(
                f"the prompt ({len(prompt)} tokens) leaves no room to reply in llm.context_tokens="
                f"{self._config.context_tokens}; lower llm.history_turns or raise llm.context_tokens"
            )
        cached, restored = self._load(key, prompt)
        stats = GenerationStats(
            prompt_tokens=len(prompt), evaluated_prompt_tokens=len(prompt) - cached, restored_tokens=restored
        )
        stream = self._llama.create_completion(
            prompt,
            max_tokens=self._config.max_reply_tokens,
            temperature=self._config.temperature,
            top_p=self._config.top_p,
            seed=self._config.seed,
            repeat_penalty=self._config.repeat_penalty,
            stop=stop,
            stream=True,
        )
        cutter = ReplyCutter(self._config.max_sentences)
        try:
            for chunk in stream:
                token.check()
                stats.reply_tokens += 1
                cut = cutter.feed(chunk["choices"][0]["text"])  # type: ignore[index]
                if cut.text:
                    yield cut.text
                if cut.stop:
                    break
                while may_go is not None and not may_go.wait(0.05):
                    token.check()
                if give_way is not None:
                    self._give_way(give_way)
            else:
                if rest := cutter.finish():
                    yield rest
        finally:
            stats.cut = cutter.stopped_by
            stream.close()  # type: ignore[union-attr]
            self.last_stats = stats
            self._save(key)

    def _give_way(self, give_way: GiveWay) -> None:
        """Let other work use the model, then put this reply's context and sampler back as they were."""
        aside: list[tuple[SavedPrompt, Any]] = []

        def put_aside() -> None:
            aside.append((self._snapshot(), self._llama._sampler))

        def take_back() -> None:
            saved, sampler = aside[0]
            if not self._restore(saved):
                raise ModelError("the reply's context could not be put back after another turn")
            # Read the last token again: the context then holds its scores, as when it was put aside.
            self._llama.n_tokens -= 1
            self._llama.eval([saved.tokens[-1]])
            self._llama._sampler = sampler

        give_way(put_aside, take_back)

    def _snapshot(self) -> SavedPrompt:
        """What the context holds now: its tokens and llama.cpp's state for them."""
        ctx = self._llama._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0)
        tokens = tuple(int(t) for t in self._llama.input_ids[: self._llama.n_tokens])
        return SavedPrompt(tokens, ctypes.string_at(buffer, written))

    def _restore(self, saved: SavedPrompt) -> bool:
        """Put saved in the context; False (and an empty context) if llama.cpp refuses it."""
        self._llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        data = (ctypes.c_uint8 * len(saved.state)).from_buffer_copy(saved.state)
        if llama_cpp.llama_state_seq_set_data(self._llama._ctx.ctx, data, len(saved.state), 0) != len(saved.state):
            self._llama.n_tokens = 0
            return False
        self._llama.input_ids[: len(saved.tokens)] = saved.tokens
        self._llama.n_tokens = len(saved.tokens)
        # The state holds no logits: a prompt that is all cached must read its last token again.
        self._llama._requires_eval = True
        return True

    def _load(self, key: Hashable | None, prompt: list[int]) -> tuple[int, int]:
        """Put the context that shares most of prompt in place: what the context holds now, or what
        key saved. The tokens of prompt it already holds, and of those the tokens loaded (0: none)."""
        live = self._llama.longest_token_prefix(self._llama._input_ids.tolist(), prompt)
        saved = None if key is None else self.saved.get(key)
        if saved is None:
            return live, 0
        theirs = self._llama.longest_token_prefix(list(saved.tokens), prompt)
        if theirs <= live:
            return live, 0
        if not self._restore(saved):
            _log.warning("the saved context of a conversation would not load; its prompt is read again")
            self.saved.pop(key)
            return 0, 0
        return theirs, theirs

    def _save(self, key: Hashable | None) -> None:
        """Keep what the context holds now under key, for that conversation's next turn."""
        if key is None or self.saved.budget_bytes == 0 or self._llama.n_tokens == 0:
            return
        self.saved.put(key, self._snapshot())

    def prepare(
        self,
        messages: Sequence[Message],
        should_stop: Callable[[], bool],
        key: Hashable | None = None,
        heard: str = "",
        exclusive: threading.Lock | None = None,
    ) -> int:
        """Read the prompt that the next turn after messages will start with into the KV cache.

        messages end with the user's turn still to come: what every continuation of them shares
        (the system prompt, the history, the start of the user's message) is evaluated now, while
        the box is idle, so that turn pays only for its own words. heard: the user's words so far
        (a partial transcript), read too: the turn reuses as many of them as its transcript begins
        with. Stops between batches once should_stop() says so (a turn is waiting for the model).
        exclusive: held while each batch is read, so that work which must not share the cores with
        it can wait for the batch instead; while another holds it, the batch waits, and gives up once
        should_stop() says so. Returns the tokens evaluated.
        """
        words = heard_words(heard)
        first, _ = self._format([*messages, Message("user", words + "a")])
        second, _ = self._format([*messages, Message("user", words + "b")])
        shared = first[: self._llama.longest_token_prefix(first, second)]
        if len(shared) + self._config.max_reply_tokens > self._config.context_tokens:
            return 0  # the turn itself will say why it cannot run
        if should_stop():
            return 0
        cached, _ = self._load(key, shared)
        evaluated = 0
        for start in range(cached, len(shared), _PREPARE_BATCH):
            if not _take(exclusive, should_stop):
                break
            try:
                batch = shared[start : start + _PREPARE_BATCH]
                self._llama.n_tokens = start  # keep the cached prefix, drop what followed it
                self._llama.eval(batch)
                evaluated += len(batch)
            finally:
                if exclusive is not None:
                    exclusive.release()
        if evaluated:
            self._save(key)
        return evaluated

    def warm_up(self, system_prompt: str) -> None:
        """Evaluate the system prompt once so every conversation starts from a cached prefix."""
        messages = [Message("system", system_prompt), Message("user", "Hello.")]
        for _ in self.stream_reply(messages, CancelToken()):
            break
