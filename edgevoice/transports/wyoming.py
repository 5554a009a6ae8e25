"""Wyoming over TCP in the daemon: Home Assistant's local voice protocol, on the engines /ws uses.

describe answers with three services: asr (whisper.cpp), tts (Piper, text streaming too) and
handle (the conversation: a transcript in, the skills' or else the language model's reply out,
remembered per Wyoming conversation id like a /ws conversation).

A skill answers handle as it answers a /ws turn (one Skills for the whole daemon). A timer set
through handle belongs to its Wyoming conversation: when it ends it rings on the box's speaker
when the daemon runs with --mic (and on any /ws client of that conversation); with neither, the
ring is only logged. "Stop" silences ringing timers and is handled with an empty reply.

Events are read and written with the wyoming library's own framing; what they ask for is worked
out by WyomingRequests (no I/O) and run here on the shared engines, one job at a time per engine
as for every other client.

Wyoming has no authentication: anyone who reaches the port may use it. What protects the box is
what protects /ws from a misbehaving client: a cap on connections, a bound on each event part
(checked before it is read), on audio length and text length, and an idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from collections.abc import Callable

import numpy as np
from wyoming.asr import Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.handle import Handled, NotHandled
from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
)
from wyoming.ping import Pong
from wyoming.tts import SynthesizeStopped

from edgevoice import __version__
from edgevoice.audio.pcm import from_pcm16
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.worker import EngineBusy
from edgevoice.errors import EdgevoiceError, ModelError
from edgevoice.models.registry import Kind, resolve
from edgevoice.protocol import valid_conversation_id
from edgevoice.server.conversations import RESERVED_CONVERSATIONS, ConversationStore
from edgevoice.skills.box import BoxSkills
from edgevoice.transports.wyoming_requests import (
    DescribeRequest,
    HandleRequest,
    PingRequest,
    Refused,
    Request,
    SpeakRequest,
    StreamEnded,
    TranscribeRequest,
    WyomingRequests,
)

_log = logging.getLogger(__name__)
MAX_HEADER_BYTES = 64 * 1024
"""An event's JSON header line."""
MAX_PART_BYTES = 1 << 20
"""An event's data or payload (a second of 48 kHz stereo 32-bit audio is 384 KiB)."""
AUDIO_CHUNK_SAMPLES = 1024
_EDGEVOICE = Attribution(name="edgevoice", url="")
_WHISPER = Attribution(name="whisper.cpp", url="https://github.com/ggml-org/whisper.cpp")
_PIPER = Attribution(name="Piper", url="https://github.com/OHF-Voice/piper1-gpl")
_LLAMA = Attribution(name="llama.cpp", url="https://github.com/ggml-org/llama.cpp")


class _BoundedReader(asyncio.StreamReader):
    """The connection's reader: refuses, before reading it, an event part larger than MAX_PART_BYTES.

    The library's reader turns ValueError into "no event"; refused says why, for the error sent back.
    """

    def __init__(self) -> None:
        super().__init__(limit=MAX_HEADER_BYTES)
        self.refused = ""

    async def readline(self) -> bytes:
        try:
            return await super().readline()
        except ValueError:
            self.refused = f"an event header over {MAX_HEADER_BYTES} bytes"
            raise

    async def readexactly(self, n: int) -> bytes:
        if n > MAX_PART_BYTES:
            self.refused = f"an event part of {n} bytes (at most {MAX_PART_BYTES})"
            raise ValueError(self.refused)
        return await super().readexactly(n)


def _model_name(config: Config, kind: Kind) -> str:
    url = {Kind.STT: config.stt.url, Kind.LLM: config.llm.url, Kind.TTS: config.tts.url}[kind]
    if url:
        return (config.llm.remote_model or url) if kind is Kind.LLM else url
    try:
        return resolve(config, kind).path.stem
    except ModelError:
        return "unavailable"


def describe(config: Config) -> Info:
    """What this box offers over Wyoming, named after the engines configured."""
    language = config.stt.language
    program = {"attribution": _EDGEVOICE, "installed": True, "version": __version__}
    return Info(
        asr=[
            AsrProgram(
                name="edgevoice-whisper",
                description="edgevoice speech to text (whisper.cpp)",
                models=[
                    AsrModel(
                        name=_model_name(config, Kind.STT),
                        description="Whisper",
                        languages=[language],
                        attribution=_WHISPER,
                        installed=True,
                        version=None,
                    )
                ],
                supports_transcript_streaming=True,
                **program,  # type: ignore[arg-type]
            )
        ],
        tts=[
            TtsProgram(
                name="edgevoice-piper",
                description="edgevoice speech synthesis (Piper)",
                voices=[
                    TtsVoice(
                        name=_model_name(config, Kind.TTS),
                        description="Piper voice",
                        languages=[language],
                        attribution=_PIPER,
                        installed=True,
                        version=None,
                    )
                ],
                supports_synthesize_streaming=True,
                **program,  # type: ignore[arg-type]
            )
        ],
        handle=[
            HandleProgram(
                name="edgevoice",
                description="edgevoice conversation: a sentence in, the skills' or the language model's reply out",
                models=[
                    HandleModel(
                        name=_model_name(config, Kind.LLM),
                        description="the language model",
                        languages=[language],
                        attribution=_LLAMA,
                        installed=True,
                        version=None,
                    )
                ],
                **program,  # type: ignore[arg-type]
            )
        ],
    )


def conversation_key(conversation_id: str | None) -> str | None:
    """The store's id for a Wyoming conversation id: itself when /ws could use it too, else a hash of it."""
    if conversation_id is None:
        return None
    if valid_conversation_id(conversation_id) and conversation_id not in RESERVED_CONVERSATIONS:
        return conversation_id
    return "wyoming-" + hashlib.sha256(conversation_id.encode("utf-8", "replace")).hexdigest()[:32]


class WyomingServer:
    """A TCP listener that serves Wyoming clients on the engines engines() returns (None: degraded)."""

    def __init__(
        self,
        config: Config,
        engines: Callable[[], Engines | None],
        store: ConversationStore,
        skills: BoxSkills | None = None,
    ) -> None:
        """skills: the daemon's, answered before the model in handle (None: the model answers all)."""
        self.config = config
        self.settings = config.wyoming
        self.engines = engines
        """The engines to use now; None while the daemon is degraded."""
        self.store = store
        self.skills = skills
        self.info = describe(config).event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conversation_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.port = 0
        self.served = 0

    @property
    def clients(self) -> int:
        return len(self._tasks)

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._protocol, host or None, port)
        except OSError as err:
            raise EdgevoiceError(f"cannot listen for Wyoming on {host or '*'}:{port}: {err.strerror or err}") from None
        self.port = int(self._server.sockets[0].getsockname()[1])

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(_BoundedReader(), self._connected)

    async def stop(self) -> None:
        """Stop listening, end every connection, and wait for them."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._server.wait_closed()
            self._server = None

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        connection = _Connection(self, reader, writer, peer)
        if task is None or len(self._tasks) >= self.settings.max_clients:
            _log.warning("refused a Wyoming client from %s: %d already connected", peer, len(self._tasks))
            await connection.refuse(Refused("too many Wyoming clients; try again later", "busy"))
            return
        self._tasks.add(task)
        self.served += 1
        try:
            await connection.run()
        finally:
            self._tasks.discard(task)

    def conversation_lock(self, key: str) -> asyncio.Lock:
        lock = self._conversation_locks.get(key)
        if lock is None:
            lock = self._conversation_locks[key] = asyncio.Lock()
        return lock


class _Connection:
    """One Wyoming client: events read one at a time, each request answered before the next is read."""

    def __init__(self, server: WyomingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object):
        self._server = server
        self._settings = server.settings
        self._reader = reader
        self._writer = writer
        self._peer = peer
        self._requests = WyomingRequests(server.config)

    async def run(self) -> None:
        try:
            while (event := await self._next()) is not None:
                try:
                    requests = self._requests.feed(event)
                except Refused as refusal:
                    _log.warning("Wyoming client %s: %s", self._peer, refusal.text)
                    await self._send(Error(text=refusal.text, code=refusal.code).event())
                    return
                for request in requests:
                    await self._answer(request)
        except (ConnectionError, TimeoutError) as err:
            _log.info("Wyoming client %s went away: %s", self._peer, err or type(err).__name__)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("Wyoming client %s failed", self._peer)
            with contextlib.suppress(Exception):
                await self._send(Error(text="internal error", code="internal").event())
        finally:
            await self._close()

    async def refuse(self, refusal: Refused) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            await self._send(Error(text=refusal.text, code=refusal.code).event())
        await self._close()

    async def _close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()

    async def _next(self) -> Event | None:
        """The client's next event; None once it has gone, gone quiet or sent something unreadable (said why)."""
        try:
            async with asyncio.timeout(self._settings.idle_timeout_s):
                event = await async_read_event(self._reader)
        except TimeoutError:
            _log.info("Wyoming client %s idle for %g s: closed", self._peer, self._settings.idle_timeout_s)
            return None
        except (KeyError, TypeError, AttributeError):
            event, malformed = None, "an event without a type, or with fields of the wrong types"
        else:
            malformed = ""
        if event is not None:
            return event
        refused = getattr(self._reader, "refused", "")
        if refused:
            await self._send(Error(text=f"refused {refused}", code="too_large").event())
        elif malformed or not self._reader.at_eof():
            await self._send(Error(text=malformed or "not a Wyoming event (bad JSON)", code="bad_event").event())
        return None

    async def _send(self, event: Event) -> None:
        async with asyncio.timeout(self._settings.idle_timeout_s):
            await async_write_event(event, self._writer)

    async def _answer(self, request: Request) -> None:
        if isinstance(request, DescribeRequest):
            await self._send(self._server.info)
            return
        if isinstance(request, PingRequest):
            await self._send(Pong(text=request.text).event())
            return
        if isinstance(request, StreamEnded):
            await self._send(SynthesizeStopped().event())
            return
        engines = self._server.engines()
        if engines is None:
            refusal = Error(text="this box's models failed to load; /healthz says why", code="unavailable")
            await self._send(refusal.event())
            return
        try:
            if isinstance(request, TranscribeRequest):
                await self._transcribe(engines, request)
            elif isinstance(request, SpeakRequest):
                await self._speak(engines, request)
            else:
                await self._handle(engines, request)
        except EngineBusy as err:
            await self._send(Error(text=str(err), code="busy").event())
        except EdgevoiceError as err:
            _log.error("Wyoming client %s: %s failed: %s", self._peer, type(request).__name__, err)
            await self._send(Error(text=str(err), code="failed").event())

    async def _transcribe(self, engines: Engines, request: TranscribeRequest) -> None:
        text = await engines.transcribe(from_pcm16(request.pcm))
        language = request.language or self._server.config.stt.language
        # Streaming clients read the chunks; older ones wait for the transcript event, which comes too.
        await self._send(TranscriptStart(language=language).event())
        if text:
            await self._send(TranscriptChunk(text=text).event())
        await self._send(Transcript(text=text, language=language).event())
        await self._send(TranscriptStop().event())

    async def _speak(self, engines: Engines, request: SpeakRequest) -> None:
        rate = engines.tts.sample_rate
        await self._send(AudioStart(rate=rate, width=2, channels=1).event())
        if request.text.strip():
            async for pcm in engines.speech(request.text):
                data = np.asarray(pcm, dtype="<i2").tobytes()
                step = AUDIO_CHUNK_SAMPLES * 2
                for start in range(0, len(data), step):
                    chunk = AudioChunk(rate=rate, width=2, channels=1, audio=data[start : start + step])
                    await self._send(chunk.event())
        await self._send(AudioStop().event())

    async def _handle(self, engines: Engines, request: HandleRequest) -> None:
        if not request.text.strip():
            await self._send(NotHandled(text="nothing was said").event())
            return
        key = conversation_key(request.conversation_id)
        # Two requests of one conversation at once would each miss the other's exchange.
        async with self._server.conversation_lock(key) if key is not None else contextlib.nullcontext():
            opened = self._server.store.open(key)
            conversation = opened.conversation
            skills = self._server.skills
            answer = None if skills is None else skills.for_conversation(opened.id).answer(request.text)
            if answer is not None:
                _log.info("Wyoming client %s: skill %s", self._peer, answer.intent)
                reply = answer.text
            else:
                reply = ""
                async for delta in engines.reply(conversation.messages(request.text)):
                    reply += delta
                reply = reply.strip()
            if answer is None or not answer.stop:  # "stop" is not an exchange to remember, as over /ws
                conversation.remember(request.text, reply)
                self._server.store.save(opened.id, conversation)
                engines.prepare(conversation.history_messages())
        context = {"conversation_id": request.conversation_id or opened.id}
        await self._send(Handled(text=reply, context=context).event())
