"""One run of `edgevoice client` against one box: connect, say hello, stream audio both ways, say bye.

Three streams run at once: audio going out (the source, through a bounded queue that outlives each
connection), events and reply audio coming in, and playback (the sink). A lost connection is tried
again with exponential backoff, and the hello after it carries the conversation id from the first
`ready`, so the box resumes the same conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp

from edgevoice.audio.buffers import FRAME_MS, DropOldestQueue
from edgevoice.audio.pcm import SAMPLE_RATE
from edgevoice.client.audio import AudioSink, AudioSource
from edgevoice.client.options import ClientOptions
from edgevoice.client.output import ClientCounts, ClientOutput
from edgevoice.client.reconnect import Backoff, Outcome, closed, connect_failed, connect_reason
from edgevoice.errors import EdgevoiceError
from edgevoice.protocol import (
    MAX_SERVER_TEXT_BYTES,
    PING_INTERVAL_S,
    Busy,
    Bye,
    Error,
    Hello,
    Interrupted,
    ProtocolError,
    Ready,
    SpeechStarted,
    Transcript,
    TurnDone,
    encode_client_audio,
    parse_server_audio,
    parse_server_text,
)

_log = logging.getLogger(__name__)
READY_TIMEOUT_S = 10.0
BYE_TIMEOUT_S = 5.0
END_GRACE_S = 0.5
"""After a file ends, time for the box's endpointer to hear the last of it before the client may leave."""


@dataclass
class _Link:
    """One WebSocket connection's state."""

    ws: aiohttp.ClientWebSocketResponse
    number: int
    ready: asyncio.Event
    got_ready: bool = False
    bye_sent: bool = False
    fatal_error: str | None = None


class ClientRun:
    """The client's whole run: connections one after another, the audio queue and the counts across them.

    Not the box's voice session: this is the client's side of one or more connections to it.
    """

    def __init__(
        self,
        options: ClientOptions,
        url: str,
        *,
        source: AudioSource,
        sink: AudioSink,
        output: ClientOutput,
        stop: asyncio.Event,
        tls: ssl.SSLContext | aiohttp.Fingerprint | bool = True,
    ) -> None:
        self.options = options
        self.tls = tls
        """How the box's certificate is checked (edgevoice.client.trust): a CA, a pinned fingerprint."""
        self.url = url
        self.source = source
        self.sink = sink
        self.output = output
        self.stop = stop
        self.client_name = (options.client_name or socket.gethostname())[:64]
        self.conversation = options.conversation
        self.outgoing: DropOldestQueue[bytes] = DropOldestQueue(
            max(1, round(options.outgoing_buffer_s * 1000 / FRAME_MS))
        )
        self.sockets = 0
        self.readies = 0
        self.pending: set[int] = set()  # turns of the current connection heard but not done
        self.done_since_speech = False
        self.last_activity = 0.0
        self.audio_started = asyncio.Event()
        self.ending = asyncio.Event()
        self.end_code = 0
        self.counts = ClientCounts()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _end(self, code: int, reason: str | None = None) -> None:
        if not self.ending.is_set():
            self.end_code = code
            if reason:
                self.output.error(reason)
            self.ending.set()

    async def run(self) -> int:
        helpers = [asyncio.create_task(self._pump()), asyncio.create_task(self._decide_end())]
        try:
            code = await self._connect_loop()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        if self.readies:  # never connected: no reply, and no empty file to write
            try:
                note = await self.sink.finish(drain=code == 0 and not self.stop.is_set())
            except EdgevoiceError as err:
                self.output.error(str(err))
                code = code or 1
            else:
                if note:
                    self.output.status(note)
        self.output.line(self.stats())
        return code

    def stats(self) -> dict[str, Any]:
        return self.counts.stats_line(
            queue_dropped=self.outgoing.dropped + self.source.dropped_frames,
            playback_dropped_samples=self.sink.dropped_samples,
            late_frames_ignored=self.sink.late_frames,
            connections=self.readies,
            conversation=self.conversation,
        )

    async def _pump(self) -> None:
        """Source to the outgoing queue, across connections; starts at the first `ready`."""
        await self.audio_started.wait()
        try:
            async for frame in self.source.frames():
                self.outgoing.put(frame)
        except Exception as err:  # PortAudioError and the like from the microphone
            self._end(1, f"the microphone failed: {err}")

    async def _decide_end(self) -> None:
        """When to say bye: on stop(), or once a finite source has ended and its last turn is done."""
        stop = asyncio.create_task(self.stop.wait())
        ended = asyncio.create_task(self.source.ended.wait())
        try:
            await asyncio.wait({stop, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            ended.cancel()
        ended_at = self._now()
        while not self.stop.is_set():
            now = self._now()
            if not self.pending:
                quiet_s = now - max(ended_at, self.last_activity)
                if (self.done_since_speech and now - ended_at >= END_GRACE_S) or quiet_s >= self.options.linger_s:
                    break
            elif now - ended_at >= self.options.turn_timeout_s:
                self._end(1, f"no answer from the box within {self.options.turn_timeout_s:g} s; giving up")
                return
            await asyncio.sleep(0.05)
        self._end(0)

    async def _connect_loop(self) -> int:
        o = self.options
        backoff = Backoff(o.backoff_base_s, o.backoff_cap_s, o.retries)
        timeout = aiohttp.ClientTimeout(total=None, connect=o.connect_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            attempt = 0
            while True:
                attempt += 1
                outcome = await self._connect_once(http, attempt)
                if outcome.kind == "done" or self.ending.is_set():
                    return self.end_code
                if outcome.kind == "fatal":
                    self.output.error(outcome.reason)
                    return 1
                if outcome.ready:
                    backoff.reset()
                delay = backoff.next_delay()
                if delay is None:
                    self.output.error(
                        f"cannot reach the box at {self.url}: {outcome.reason}; "
                        f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}"
                    )
                    return 1
                self.output.line(
                    {"type": "client_reconnecting", "delay_s": delay, "attempt": attempt + 1, "reason": outcome.reason}
                )
                self.output.status(f"{outcome.reason}; trying again in {delay:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ending.wait(), delay)
                    return self.end_code

    async def _connect_once(self, http: aiohttp.ClientSession, attempt: int) -> Outcome:
        try:
            ws = await http.ws_connect(
                self.url,
                heartbeat=PING_INTERVAL_S,  # aiohttp closes when a pong is late by heartbeat/2 = 10 s
                compress=0,
                max_msg_size=MAX_SERVER_TEXT_BYTES,  # reply audio frames are far smaller
                timeout=aiohttp.ClientWSTimeout(ws_close=BYE_TIMEOUT_S),
                ssl=self.tls,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            return connect_failed(self.url, err)
        self.sockets += 1
        self.output.line({"type": "client_connected", "attempt": attempt})
        link = _Link(ws, self.sockets, asyncio.Event())
        async with ws:
            return await self._converse(link)

    async def _converse(self, link: _Link) -> Outcome:
        ws = link.ws
        tasks: list[asyncio.Task[None]] = []
        try:
            hello = Hello(SAMPLE_RATE, self.client_name, self.conversation, token=self.options.token)
            await ws.send_str(hello.to_text())
            sender = asyncio.create_task(self._send_audio(link))
            tasks = [sender, asyncio.create_task(self._say_bye(link, sender))]
            async with asyncio.timeout(READY_TIMEOUT_S) as ready_timeout:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        self._on_text(link, message.data)
                        if link.got_ready:
                            ready_timeout.reschedule(None)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        self._on_audio(link, message.data)
                    elif message.type == aiohttp.WSMsgType.ERROR:
                        break
        except TimeoutError:
            return Outcome("retry", f"the box did not answer hello within {READY_TIMEOUT_S:g} s")
        except (ConnectionError, aiohttp.ClientError) as err:
            return Outcome("retry", connect_reason(err), link.got_ready)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.pending.clear()  # a turn under way is lost with its connection
        if link.bye_sent:
            return Outcome("done", ready=link.got_ready)
        return closed(ws.close_code, ws.exception(), link.fatal_error, link.got_ready)

    async def _send_audio(self, link: _Link) -> None:
        await link.ready.wait()
        seq = 0
        while True:
            frame = await self.outgoing.get()
            try:
                await link.ws.send_bytes(encode_client_audio(seq, frame))
            except (ConnectionError, aiohttp.ClientError):
                self.counts.send_failed += 1
                return
            seq += 1
            self.counts.frames_sent += 1

    async def _say_bye(self, link: _Link, sender: asyncio.Task[None]) -> None:
        await self.ending.wait()
        sender.cancel()
        link.bye_sent = True
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await link.ws.send_str(Bye().to_text())
            await asyncio.sleep(BYE_TIMEOUT_S)  # the box answers bye and closes; if it does not, close here
            await link.ws.close()

    def _on_text(self, link: _Link, data: str) -> None:
        try:
            message = parse_server_text(data)
        except ProtocolError as err:
            if err.fatal:  # a ready this client cannot follow: another protocol version
                self._end(1, f"cannot talk to the box: {err.message}")
            else:  # a newer box may add event types; this client goes on without them
                _log.debug("ignoring a server message: %s: %.80r", err.message, data)
            return
        if isinstance(message, Ready):
            self._on_ready(link, message)
        self.output.event(message)
        if isinstance(message, SpeechStarted):
            self.pending.add(message.turn)
            self.done_since_speech = False
            self.last_activity = self._now()
        elif isinstance(message, TurnDone | Interrupted) or (isinstance(message, Transcript) and not message.text):
            self.pending.discard(message.turn)
            self.last_activity = self._now()
            if isinstance(message, TurnDone):
                self.done_since_speech = True
                self.counts.turns += 1
            elif isinstance(message, Interrupted):
                self.sink.interrupt((link.number, message.turn))
        elif isinstance(message, Busy) or (isinstance(message, Error) and message.code == "turn_failed"):
            self.pending.clear()  # the turn was dropped; no turn_done need follow
        elif isinstance(message, Error) and message.fatal:
            link.fatal_error = f"the box ended the connection: {message.message}"

    def _on_ready(self, link: _Link, ready: Ready) -> None:
        self.conversation = ready.conversation
        if self.readies == 0:
            self.output.status(f"connected to {ready.box}; conversation {self.conversation}")
        else:
            lost = "" if ready.resumed else " (the box no longer had its history)"
            self.output.status(f"reconnected; conversation {self.conversation}{lost}")
        self.readies += 1
        self.last_activity = self._now()
        link.got_ready = True
        link.ready.set()
        self.audio_started.set()

    def _on_audio(self, link: _Link, data: bytes) -> None:
        try:
            frame = parse_server_audio(data)
        except ProtocolError:
            self.counts.bad_frames += 1
            return
        if frame.sample_rate > 0:
            self.counts.reply_audio_s += len(frame.pcm) / 2 / frame.sample_rate
        try:
            self.sink.audio((link.number, frame.turn), frame.sample_rate, frame.pcm)
        except EdgevoiceError as err:
            self._end(1, str(err))
