"""Replies from an OpenAI-compatible chat-completions server on the LAN (Ollama, llama.cpp's server, vLLM, LM Studio).

[llm] url = "http://HOST:PORT/v1" sends each turn's messages (the same system prompt and history a
local model gets) to POST {url}/chat/completions with stream=true, and yields the text of each
server-sent event as it comes. The HTTP is the standard library's: the request runs on the LLM's
engine thread like a local model's tokens, and a barge-in cuts its socket (engines.remote).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from edgevoice.config import LlmConfig
from edgevoice.engines.llm import GenerationStats, GiveWay, MayGo, Message
from edgevoice.engines.remote import CONNECT_TIMEOUT_S, RemoteError, RemoteHealth, cut_on_cancel, failure
from edgevoice.engines.worker import CancelToken

_log = logging.getLogger(__name__)
MAX_LINE_BYTES = 1 << 20
"""One server-sent event line; a longer one is not a chat completion chunk."""
MAX_ERROR_BYTES = 4096
WARM_UP_TIMEOUT_S = 120.0
"""The first request may wait for the server to load the model from disk (Ollama loads it on demand)."""
_DONE = object()


def parse_event_line(line: bytes) -> str | object | None:
    """One line of the event stream: the reply text it carries, _DONE at the end, None for anything else.

    Raises RemoteError for a data line that is not a chat completion chunk (or an error the server streams).
    """
    text = line.decode("utf-8", "replace").strip()
    if not text.startswith("data:"):
        return None  # blank separators, comments, event: and id: lines
    data = text[5:].strip()
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
    except ValueError:
        raise RemoteError(f"it streamed something that is not JSON: {data[:80]!r}") from None
    if not isinstance(chunk, dict):
        raise RemoteError(f"it streamed {type(chunk).__name__}, not a chat completion chunk")
    if "error" in chunk:
        raise RemoteError(f"it streamed an error: {_error_text(chunk['error'])}")
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None  # usage-only chunks carry no choices
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) and content else None


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


class OpenAiLlm:
    """A chat-completions server; one HTTP connection per reply. Safe from any one thread at a time."""

    def __init__(self, config: LlmConfig) -> None:
        self._config = config
        self.url = config.url.rstrip("/")
        parts = urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path.rstrip("/")
        self.health = RemoteHealth("llm", self.url, self.check)
        try:
            self.model = self._choose_model()
        except (OSError, RemoteError) as err:
            raise RemoteError(f"the language model server at {self.url}: {err}") from None
        self.last_stats = GenerationStats()

    @property
    def source(self) -> str:
        """What answers: the server's model and URL."""
        return f"{self.model} at {self.url}"

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout_s, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._config.api_key:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        return headers

    def _models(self) -> list[str]:
        connection = self._connection(CONNECT_TIMEOUT_S)
        try:
            connection.request("GET", f"{self._path}/models", headers=self._headers())
            response = connection.getresponse()
            body = response.read(MAX_LINE_BYTES)
            if response.status != 200:
                raise RemoteError(f"GET {self._path}/models answered {response.status}: {_brief(body)}")
        finally:
            connection.close()
        try:
            listed = json.loads(body)["data"]
            return [str(model["id"]) for model in listed]
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"GET {self._path}/models is not an OpenAI model list: {_brief(body)}") from None

    def _choose_model(self) -> str:
        models = self._models()
        wanted = self._config.remote_model
        if wanted:
            if wanted not in models:
                # Ollama answers for a tag it has under another spelling (a missing :latest): let it say.
                _log.warning("llm.remote_model %r is not among the server's models %s", wanted, models[:10])
            return wanted
        if not models:
            raise RemoteError("it lists no models; set llm.remote_model")
        return models[0]

    def check(self) -> None:
        """Raise unless the server answers its model list."""
        self._models()

    def stream_reply(
        self,
        messages: Sequence[Message],
        token: CancelToken,
        may_go: MayGo | None = None,
        key: Hashable | None = None,
        give_way: GiveWay | None = None,
    ) -> Iterator[str]:
        """Yield reply text pieces as the server streams them; stop at once when token is cancelled.

        may_go is the local model's: the cores it would leave to the voice are not the server's, so
        the stream is read as fast as it comes. key and give_way too: the server keeps its own prompt
        cache and serves others on its own.
        """
        return self._stream(messages, token, self._config.remote_timeout_s)

    def _stream(self, messages: Sequence[Message], token: CancelToken, timeout_s: float) -> Iterator[str]:
        token.check()
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                "stream": True,
                "max_tokens": self._config.max_reply_tokens,
                "temperature": self._config.temperature,
                "top_p": self._config.top_p,
                "seed": self._config.seed,
            }
        ).encode("utf-8")
        stats = GenerationStats()
        connection = self._connection(timeout_s)
        try:
            try:
                connection.connect()
                with cut_on_cancel(token, connection.sock):
                    connection.request("POST", f"{self._path}/chat/completions", body, self._headers())
                    response = connection.getresponse()
                    if response.status != 200:
                        raise RemoteError(f"it answered {response.status}: {_brief(response.read(MAX_ERROR_BYTES))}")
                    for piece in self._pieces(response, token):
                        stats.reply_tokens += 1
                        yield piece
            except (OSError, RemoteError, http.client.HTTPException) as err:
                raise failure(self.health, token, "the reply failed", err) from None
        finally:
            connection.close()
            self.last_stats = stats
        self.health.succeeded()

    def _pieces(self, response: http.client.HTTPResponse, token: CancelToken) -> Iterator[str]:
        while line := response.readline(MAX_LINE_BYTES + 1):
            token.check()
            if len(line) > MAX_LINE_BYTES:
                raise RemoteError(f"it sent an event line over {MAX_LINE_BYTES} bytes")
            found = parse_event_line(line)
            if found is _DONE:
                return
            if isinstance(found, str):
                yield found
        token.check()

    def prepare(
        self,
        messages: Sequence[Message],
        should_stop: Callable[[], bool],
        key: Hashable | None = None,
        heard: str = "",
        exclusive: threading.Lock | None = None,
    ) -> int:
        """Nothing is read ahead here: the server keeps its own prompt cache. 0 tokens evaluated."""
        return 0

    def warm_up(self, system_prompt: str) -> None:
        """One short reply with the system prompt, so the server has the model loaded and the prompt cached."""
        messages = [Message("system", system_prompt), Message("user", "Hello.")]
        for _ in self._stream(messages, CancelToken(), max(self._config.remote_timeout_s, WARM_UP_TIMEOUT_S)):
            break


def _brief(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:200] or "no message"
    if isinstance(parsed, dict) and "error" in parsed:
        return _error_text(parsed["error"])[:200]
    return text[:200]
