"""`edgevoice client`: talk to a box over its WebSocket (docs/protocol.md) from another machine.

Three streams run at once: audio going out (the microphone, or a WAV file paced in real time),
events and reply audio coming in, and playback (the speaker, or a WAV file). A lost connection is
tried again with exponential backoff, and the hello after it carries the conversation id from the
first `ready`, so the box resumes the same conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
from yarl import URL

from edgevoice.audio.pcm import SAMPLE_RATE
from edgevoice.client_audio import (
    FRAME_MS,
    AudioSink,
    AudioSource,
    DropOldestQueue,
    MicSource,
    PacedSource,
    SpeakerSink,
    WavSink,
    check_device,
)
from edgevoice.errors import EdgevoiceError
from edgevoice.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_SLOW_CLIENT,
    CLOSE_TRY_LATER,
    PING_INTERVAL_S,
    WS_PATH,
    Bye,
    Hello,
    ProtocolError,
    dumps,
    encode_client_audio,
    parse_server_audio,
    valid_conversation_id,
)

_log = logging.getLogger(__name__)
DEFAULT_PORT = 8765
MAX_SERVER_MESSAGE_BYTES = 1 << 20
"""Reply audio frames are ~100 ms (under 10 kB even at 48 kHz); the headroom is for a long turn_done."""
READY_TIMEOUT_S = 10.0
BYE_TIMEOUT_S = 5.0
END_GRACE_S = 0.5
"""After a file ends, time for the box's endpointer to hear the last of it before the client may leave."""
RETRYABLE_CLOSES = frozenset({CLOSE_GOING_AWAY, 1006, 1012, CLOSE_TRY_LATER, 1014, CLOSE_SLOW_CLIENT})
"""Close codes after which trying again may work (1006: the connection died without a close frame)."""
_CLOSE_REASONS = {
    1000: "the box closed the connection",
    1001: "the box is shutting down",
    1002: "the box reported a protocol error",
    1003: "the box cannot serve this sample rate",
    1006: "the connection was lost",
    1008: "the box refused this client (policy)",
    1009: "a message was too large for the box",
    1011: "the box had an internal error",
    1013: "the box is serving as many clients as it can",
    4001: "another client resumed this conversation",
    4002: "the box dropped this client for reading too slowly",
}
Observer = Callable[[dict[str, Any]], None]


class ClientError(EdgevoiceError):
    """A bad URL or option, or no box to talk to: said in one line, exit code 2."""


@dataclass(frozen=True)
class ClientOptions:
    url: str | None = None
    """The box's WebSocket URL (ws:// or wss://; a bare HOST[:PORT] means ws://HOST:PORT/ws); None: find it by mDNS."""
    wav: Path | None = None
    """Take the user's speech from this file (any rate, paced in real time) instead of the microphone."""
    out: Path | None = None
    """Write the reply audio of all turns to this WAV file at the end instead of playing it."""
    json: bool = False
    """Print every server event, and the client's own facts, as JSON lines on stdout."""
    retries: int = 10
    """Connection attempts after a failure before giving up; counted afresh after each `ready`."""
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0
    client_name: str = ""
    """The name the box shows for this client; empty: this machine's host name."""
    conversation: str | None = None
    """Resume this conversation id (from an earlier `ready`) instead of starting a new one."""
    playback_buffer_s: float = 30.0
    """Reply audio held for the speaker at most; beyond it the oldest is dropped."""
    outgoing_buffer_s: float = 2.0
    """Microphone audio held while the connection is down; beyond it the oldest is dropped."""
    linger_s: float = 3.0
    """After a --wav file ends, how long to wait with no turn under way before saying bye."""
    turn_timeout_s: float = 120.0
    """After a --wav file ends, how long to wait for a turn under way to finish."""
    connect_timeout_s: float = 10.0
    discovery_timeout_s: float = 3.0
    interface: str | None = None
    """Network interface to look for boxes on (mDNS); None: all."""

    def check(self) -> None:
        if self.retries < 0:
            raise ClientError("--retries must not be negative")
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ClientError("the backoff base delay must be positive and at most the cap")
        if self.conversation is not None and not valid_conversation_id(self.conversation):
            raise ClientError("a conversation id is 1 to 64 letters, digits, '-' or '_'")
        if self.playback_buffer_s <= 0 or self.outgoing_buffer_s <= 0:
            raise ClientError("buffer lengths must be positive")


def normalize_url(text: str) -> str:
    """The WebSocket URL for what the user typed: ws(s)://HOST[:PORT][/PATH], or HOST[:PORT] alone."""
    candidate = text.strip()
    if "://" not in candidate:
        candidate = f"ws://{candidate}"
    try:
        url = URL(candidate)
    except ValueError as err:
        raise ClientError(f"{text!r} is not a URL ({err})") from None
    if url.scheme not in ("ws", "wss") or not url.host:
        raise ClientError(f"{text!r} is not a box's address: give ws://HOST:{DEFAULT_PORT}{WS_PATH} or HOST")
    if url.explicit_port is None and "://" not in text:
        url = url.with_port(DEFAULT_PORT)
    if url.path in ("", "/"):
        url = url.with_path(WS_PATH)
    return str(url)


class Backoff:
    """Delays before each new connection attempt: base, 2 base, 4 base ... at most cap; None once spent."""

    def __init__(self, base_s: float = 1.0, cap_s: float = 30.0, tries: int = 10) -> None:
        if base_s <= 0 or cap_s < base_s or tries < 0:
            raise ValueError("backoff needs 0 < base_s <= cap_s and tries >= 0")
        self.base_s = base_s
        self.cap_s = cap_s
        self.tries = tries
        self.failures = 0

    def next_delay(self) -> float | None:
        if self.failures >= self.tries:
            return None
        delay = min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 64))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class _Output:
    """Server events and the client's own facts: JSON lines, or lines for a person."""

    def __init__(self, json_lines: bool, observer: Observer | None) -> None:
        self.json_lines = json_lines
        self.observer = observer
        self._reply_open = False  # an "edgevoice: ..." line is being written delta by delta

    def line(self, message: dict[str, Any]) -> None:
        if self.observer is not None:
            self.observer(message)
        if self.json_lines:
            print(dumps(message), flush=True)

    def status(self, text: str) -> None:
        if not self.json_lines:
            self._close_reply()
            print(f"edgevoice: {text}", file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        self._close_reply()
        self.line({"type": "client_error", "message": text})
        print(f"edgevoice: {text}", file=sys.stderr, flush=True)

    def _close_reply(self) -> None:
        if self._reply_open:
            print(flush=True)
            self._reply_open = False

    def event(self, message: dict[str, Any]) -> None:
        self.line(message)
        if self.json_lines:
            return
        kind = message["type"]
        if kind == "transcript" and message.get("text"):
            self._close_reply()
            print(f"you: {message['text']}", flush=True)
        elif kind == "reply_text":
            if not self._reply_open:
                print("edgevoice: ", end="")
                self._reply_open = True
            print(message.get("delta", ""), end="", flush=True)
        elif kind == "turn_done":
            self._close_reply()
        elif kind == "interrupted":
            self._close_reply()
            print("(interrupted)", flush=True)
        elif kind == "busy":
            self.status(f"the box is busy: {message.get('message', '')}")
        elif kind == "error":
            print(f"edgevoice: error from the box: {message.get('message', '')}", file=sys.stderr, flush=True)


@dataclass
class _Outcome:
    kind: Literal["done", "retry", "fatal"]
    reason: str = ""
    ready: bool = False


@dataclass
class _Link:
    """One WebSocket connection's state."""

    ws: aiohttp.ClientWebSocketResponse
    number: int
    ready: asyncio.Event
    got_ready: bool = False
    bye_sent: bool = False
    fatal_error: str | None = None


def _connect_reason(err: BaseException) -> str:
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve the host name {err.host}"
    if isinstance(err, aiohttp.ClientConnectorError):
        return os.strerror(err.errno).lower() if err.errno else (err.strerror or str(err))
    if isinstance(err, TimeoutError):
        return "the connection timed out"
    return str(err) or type(err).__name__


class _Client:
    def __init__(
        self,
        options: ClientOptions,
        url: str,
        *,
        source: AudioSource,
        sink: AudioSink,
        output: _Output,
        stop: asyncio.Event,
    ) -> None:
        self.options = options
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
        self.counts = {"frames_sent": 0, "send_failed": 0, "bad_frames": 0, "turns": 0}
        self.reply_audio_s = 0.0

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
        return {
            "type": "client_stats",
            "frames_sent": self.counts["frames_sent"],
            "frames_dropped": self.outgoing.dropped + self.source.dropped_frames + self.counts["send_failed"],
            "playback_dropped_samples": self.sink.dropped_samples,
            "late_frames_ignored": self.sink.late_frames,
            "bad_frames": self.counts["bad_frames"],
            "connections": self.readies,
            "reconnects": max(0, self.readies - 1),
            "turns": self.counts["turns"],
            "reply_audio_s": round(self.reply_audio_s, 2),
            "conversation": self.conversation,
        }

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

    async def _connect_once(self, http: aiohttp.ClientSession, attempt: int) -> _Outcome:
        try:
            ws = await http.ws_connect(
                self.url,
                heartbeat=PING_INTERVAL_S,  # aiohttp closes when a pong is late by heartbeat/2 = 10 s
                compress=0,
                max_msg_size=MAX_SERVER_MESSAGE_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_close=BYE_TIMEOUT_S),
            )
        except aiohttp.WSServerHandshakeError as err:
            reason = f"the box refused the WebSocket at {self.url} (HTTP {err.status} {err.message})".rstrip()
            return _Outcome("retry" if err.status >= 500 or err.status == 429 else "fatal", reason)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as err:
            return _Outcome("fatal", f"TLS failed with {self.url}: {err}")
        except (aiohttp.ClientError, OSError, TimeoutError) as err:
            return _Outcome("retry", _connect_reason(err))
        self.sockets += 1
        self.output.line({"type": "client_connected", "attempt": attempt})
        link = _Link(ws, self.sockets, asyncio.Event())
        async with ws:
            return await self._converse(link)

    async def _converse(self, link: _Link) -> _Outcome:
        ws = link.ws
        tasks: list[asyncio.Task[None]] = []
        try:
            await ws.send_str(dumps(Hello(SAMPLE_RATE, self.client_name, self.conversation).to_json()))
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
            return _Outcome("retry", f"the box did not answer hello within {READY_TIMEOUT_S:g} s")
        except (ConnectionError, aiohttp.ClientError) as err:
            return _Outcome("retry", _connect_reason(err), link.got_ready)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.pending.clear()  # a turn under way is lost with its connection
        if link.bye_sent:
            return _Outcome("done", ready=link.got_ready)
        code = ws.close_code
        reason = _CLOSE_REASONS.get(code or 1006, f"the connection closed (code {code})")
        if code in (None, 1006) and ws.exception() is not None:
            reason = f"{reason} ({ws.exception()})"
        if code is not None and code not in RETRYABLE_CLOSES:
            return _Outcome("fatal", link.fatal_error or reason, link.got_ready)
        return _Outcome("retry", reason, link.got_ready)

    async def _send_audio(self, link: _Link) -> None:
        await link.ready.wait()
        seq = 0
        while True:
            frame = await self.outgoing.get()
            try:
                await link.ws.send_bytes(encode_client_audio(seq, frame))
            except (ConnectionError, aiohttp.ClientError):
                self.counts["send_failed"] += 1
                return
            seq += 1
            self.counts["frames_sent"] += 1

    async def _say_bye(self, link: _Link, sender: asyncio.Task[None]) -> None:
        await self.ending.wait()
        sender.cancel()
        link.bye_sent = True
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await link.ws.send_str(dumps(Bye().to_json()))
            await asyncio.sleep(BYE_TIMEOUT_S)  # the box answers bye and closes; if it does not, close here
            await link.ws.close()

    def _on_text(self, link: _Link, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            _log.debug("ignoring a text message that is not JSON: %.80r", data)
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            _log.debug("ignoring a message without a type: %.80r", data)
            return
        kind = message["type"]
        turn = message.get("turn")
        turn = turn if isinstance(turn, int) and not isinstance(turn, bool) else None
        if kind == "ready":
            self._on_ready(link, message)
        self.output.event(message)
        if kind == "speech_started" and turn is not None:
            self.pending.add(turn)
            self.done_since_speech = False
            self.last_activity = self._now()
        elif kind in ("turn_done", "interrupted") or (kind == "transcript" and not message.get("text")):
            if turn is not None:
                self.pending.discard(turn)
            self.last_activity = self._now()
            if kind == "turn_done":
                self.done_since_speech = True
                self.counts["turns"] += 1
            elif kind == "interrupted" and turn is not None:
                self.sink.interrupt((link.number, turn))
        elif kind == "busy" or (kind == "error" and message.get("code") == "turn_failed"):
            self.pending.clear()  # the turn was dropped; no turn_done need follow
        elif kind == "error" and message.get("fatal"):
            link.fatal_error = f"the box ended the connection: {message.get('message', '')}"

    def _on_ready(self, link: _Link, message: dict[str, Any]) -> None:
        conversation = message.get("conversation")
        if isinstance(conversation, str) and valid_conversation_id(conversation):
            self.conversation = conversation
        resumed = bool(message.get("resumed"))
        if self.readies == 0:
            self.output.status(f"connected to {message.get('box', self.url)}; conversation {self.conversation}")
        else:
            lost = "" if resumed else " (the box no longer had its history)"
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
            self.counts["bad_frames"] += 1
            return
        if frame.sample_rate > 0:
            self.reply_audio_s += len(frame.pcm) / 2 / frame.sample_rate
        try:
            self.sink.audio((link.number, frame.turn), frame.sample_rate, frame.pcm)
        except EdgevoiceError as err:
            self._end(1, str(err))


async def _discover(options: ClientOptions, output: _Output) -> str:
    from edgevoice import discovery  # noqa: PLC0415  zeroconf is needed only when no URL is given

    try:
        boxes = await discovery.browse(options.interface, options.discovery_timeout_s)
    except OSError as err:
        raise ClientError(f"cannot look for boxes on the network: {err}") from None
    if not boxes:
        raise ClientError(
            f"no edgevoice box found on the network (mDNS); give its address: edgevoice client ws://HOST:{DEFAULT_PORT}/ws"
        )
    if len(boxes) > 1:
        if output.json_lines:
            output.line({"type": "client_boxes", "boxes": [{"name": box.name, "url": box.url()} for box in boxes]})
        else:
            print(discovery.format_boxes(boxes), flush=True)
        raise ClientError(f"{len(boxes)} edgevoice boxes found; pick one and give its URL")
    return boxes[0].url()


async def run_client(
    options: ClientOptions,
    *,
    source: AudioSource | None = None,
    observer: Observer | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Talk to a box until the --wav file's last turn is done, stop is set, or the box is lost.

    0: done; 1: the box cannot be reached or ended the conversation with an error; 2: bad options,
    or no box (or several) found. source replaces the microphone or --wav; observer sees every
    line --json would print; stop asks for a clean goodbye.
    """
    output = _Output(options.json, observer)
    try:
        options.check()
        url = normalize_url(options.url) if options.url else await _discover(options, output)
        if source is None:
            if options.wav is not None:
                source = await asyncio.to_thread(PacedSource.from_file, options.wav)
            else:
                check_device("input")
                source = MicSource()
        if options.out is None:
            check_device("output")
        sink: AudioSink = WavSink(options.out) if options.out else SpeakerSink(options.playback_buffer_s)
    except EdgevoiceError as err:
        output.error(str(err))
        return 2
    client = _Client(options, url, source=source, sink=sink, output=output, stop=stop or asyncio.Event())
    return await client.run()


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", nargs="?", help=f"the box: ws://HOST:{DEFAULT_PORT}/ws or HOST (default: find it by mDNS)"
    )
    parser.add_argument("--wav", type=Path, help="speak this audio file (paced in real time) instead of the microphone")
    parser.add_argument("--out", type=Path, help="write the replies to this WAV file instead of playing them")
    parser.add_argument("--json", action="store_true", help="print every event as a JSON line")
    parser.add_argument("--retries", type=int, default=10, help="connection attempts before giving up (default 10)")
    parser.add_argument("--name", default="", help="this client's name on the box (default: the host name)")
    parser.add_argument("--conversation", help="resume this conversation id")
    parser.add_argument("--interface", help="network interface to look for boxes on")


def client_main(args: argparse.Namespace) -> int:
    options = ClientOptions(
        url=args.url,
        wav=args.wav,
        out=args.out,
        json=args.json,
        retries=args.retries,
        client_name=args.name,
        conversation=args.conversation,
        interface=args.interface,
    )
    try:
        return asyncio.run(_main_until_signal(options))
    except KeyboardInterrupt:
        return 130


async def _main_until_signal(options: ClientOptions) -> int:
    """SIGINT or SIGTERM says bye and leaves cleanly; a second one leaves at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal)
    try:
        return await run_client(options, stop=stop)
    except asyncio.CancelledError:
        return 130
