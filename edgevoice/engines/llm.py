"""Reply generation with llama.cpp (llama-cpp-python): the model's own chat template, streamed tokens.

llama-cpp-python keeps the KV cache of the last prompt and evaluates only the tokens after the
longest common prefix, so a conversation whose prompt grows by one exchange per turn pays only
for the new turn; warm_up() puts the system prompt in the cache before the first turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from edgevoice.config import LlmConfig
from edgevoice.engines.worker import CancelToken
from edgevoice.errors import ModelError
from edgevoice.models.check import check_gguf

_log = logging.getLogger(__name__)
_PREPARE_BATCH = 16
"""Tokens read per step when preparing a prompt ahead: about 50 ms here, the longest a turn waits for it."""


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
    reply_tokens: int = 0


class LlamaLlm:
    """One llama.cpp context. Not thread-safe: call it from one engine thread."""

    def __init__(self, config: LlmConfig, model_path: Path) -> None:
        check_gguf(model_path)
        self._config = config
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=config.context_tokens,
                n_threads=config.threads,
                n_threads_batch=config.threads,
                n_batch=256,
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
        self, messages: Sequence[Message], token: CancelToken, may_go: threading.Event | None = None
    ) -> Iterator[str]:
        """Yield reply text pieces as the model produces them; stop at once when token is cancelled.

        While may_go is clear the model waits before its next token, leaving the cores to
        whatever needs them more (the first words of the reply being spoken).
        """
        token.check()
        prompt, stop = self._format(messages)
        cached = self._llama.longest_token_prefix(self._llama._input_ids.tolist(), prompt)
        stats = GenerationStats(prompt_tokens=len(prompt), evaluated_prompt_tokens=len(prompt) - cached)
        if len(prompt) + self._config.max_reply_tokens > self._config.context_tokens:
            raise ModelError(
                f"the prompt ({len(prompt)} tokens) leaves no room to reply in llm.context_tokens="
                f"{self._config.context_tokens}; lower llm.history_turns or raise llm.context_tokens"
            )
        stream = self._llama.create_completion(
            prompt,
            max_tokens=self._config.max_reply_tokens,
            temperature=self._config.temperature,
            top_p=self._config.top_p,
            seed=self._config.seed,
            stop=stop,
            stream=True,
        )
        try:
            for chunk in stream:
                token.check()
                text = chunk["choices"][0]["text"]  # type: ignore[index]
                stats.reply_tokens += 1
                if text:
                    yield text
                while may_go is not None and not may_go.wait(0.05):
                    token.check()
        finally:
            stream.close()  # type: ignore[union-attr]
            self.last_stats = stats

    def prepare(self, messages: Sequence[Message], should_stop: Callable[[], bool]) -> int:
        """Read the prompt that the next turn after messages will start with into the KV cache.

        messages end with the user's turn still to come: what every continuation of them shares
        (the system prompt, the history, the start of the user's message) is evaluated now, while
        the box is idle, so that turn pays only for its own words. Stops between batches once
        should_stop() says so (a turn is waiting for the model). Returns the tokens evaluated.
        """
        first, _ = self._format([*messages, Message("user", "a")])
        second, _ = self._format([*messages, Message("user", "b")])
        shared = first[: self._llama.longest_token_prefix(first, second)]
        cached = self._llama.longest_token_prefix(self._llama._input_ids.tolist(), shared)
        if len(shared) + self._config.max_reply_tokens > self._config.context_tokens:
            return 0  # the turn itself will say why it cannot run
        evaluated = 0
        for start in range(cached, len(shared), _PREPARE_BATCH):
            if should_stop():
                break
            batch = shared[start : start + _PREPARE_BATCH]
            self._llama.n_tokens = start  # keep the cached prefix, drop what followed it
            self._llama.eval(batch)
            evaluated += len(batch)
        return evaluated

    def warm_up(self, system_prompt: str) -> None:
        """Evaluate the system prompt once so every conversation starts from a cached prefix."""
        messages = [Message("system", system_prompt), Message("user", "Hello.")]
        for _ in self.stream_reply(messages, CancelToken()):
            break
