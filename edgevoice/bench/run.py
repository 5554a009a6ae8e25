"""`edgevoice bench`: how long after the user stops speaking the reply starts, measured from outside.

Each clip is played through the real WebSocket protocol, paced like a microphone, then silence
until the reply has been heard; every stage is timed on this process's clock from the true end of
speech found in the audio itself (measure.py). Without --url it runs its own daemon and
watches its memory and CPU (daemon.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from edgevoice import protocol
from edgevoice.audio.buffers import Pacer
from edgevoice.audio.pcm import SAMPLE_RATE, Samples, read_audio, to_pcm16
from edgevoice.bench.daemon import BenchError, Daemon, Launch, ProcessMonitor
from edgevoice.bench.measure import (
    AUDIBLE_GAP_MS,
    STAGES,
    WORK_STAGES,
    ClipRecord,
    Tracker,
    summarise,
    true_end_of_speech,
)
from edgevoice.client.options import ClientError, normalize_url
from edgevoice.conversation import COPY_RUN_WORDS

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "bench" / "clips"
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
LEAD_SILENCE_S = 0.5
CONNECT_TIMEOUT_S = 10.0
BYE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Clip:
    name: str
    samples: Samples
    reference: str | None
    """The words spoken, from NAME.txt beside NAME.wav; None when there is no such file."""
    speech_end: int
    """Sample index just after the last speech in the clip."""


@dataclass(frozen=True)
class BenchOptions:
    clips: Path = DEFAULT_CLIPS
    url: str | None = None
    """The daemon's WebSocket URL; None: start one."""
    json_out: Path | None = None
    clients: int = 1
    """Connections at once, each playing the whole set as its own conversation."""
    stagger_ms: int = 0
    """Client k starts k * stagger_ms after the first, as rooms do, and keeps that offset: its clip n is
    due n * clients * stagger_ms after its first (or once its last reply has played, if later). So the
    box hears a new speaker every stagger_ms. 0: all at once, each client's clips back to back."""
    silence_s: float = 2.5
    """Silence sent after each clip at least (and on until its reply has played out)."""
    turn_timeout_s: float = 60.0
    """After a clip, how long to wait for its reply before recording it as missing."""
    config: Path | None = None
    verbose: bool = False


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="folder of WAV clips (default: bench/clips)")
    parser.add_argument("--url", help="a running daemon's ws:// URL (default: start one on 127.0.0.1)")
    parser.add_argument("--json", type=Path, dest="json_out", metavar="FILE", help="write every turn and the summary")
    parser.add_argument("--clients", type=int, default=1, help="connections at once, each plays every clip")
    parser.add_argument(
        "--stagger",
        type=int,
        default=0,
        metavar="MS",
        help="start client k at k*MS ms, then the clients take turns: a new clip every MS ms (default 0: all at once)",
    )
    parser.add_argument("--turn-timeout", type=float, default=60.0, help="seconds to wait for a reply (default 60)")


def load_clips(folder: Path) -> list[Clip]:
    if not folder.is_dir():
        raise BenchError(f"{folder}: no such folder of clips")
    clips = []
    for wav in sorted(folder.glob("*.wav")):
        samples = read_audio(wav)
        text = wav.with_suffix(".txt")
        reference = text.read_text(encoding="utf-8").strip() if text.is_file() else None
        clips.append(Clip(wav.stem, samples, reference, speech_end(wav, samples)))
    if not clips:
        raise BenchError(f"{folder}: no .wav clips to play")
    return clips


def speech_end(wav: Path, samples: Samples) -> int:
    """Where the clip's speech ends: NAME.end (ms, written by whoever mixed noise in) or found in the audio."""
    given = wav.with_suffix(".end")
    if not given.is_file():
        return true_end_of_speech(samples)
    try:
        ms = int(given.read_text(encoding="utf-8").strip())
    except ValueError as error:
        raise BenchError(f"{given}: not a whole number of milliseconds") from error
    end = ms * SAMPLE_RATE // 1000
    if not 0 < end <= len(samples):
        raise BenchError(f"{given}: {ms} ms is not inside the clip")
    return end


def clip_due_s(n: int, clients: int, stagger_ms: int) -> float:
    """When a client's clip n is due, in seconds after its first: with a stagger the clients take turns,
    one new speaker every stagger_ms; without one (0), every clip is due at once, after the last."""
    return n * clients * stagger_ms / 1000


def _pacer() -> Pacer:
    """Frames leave as a microphone would give them; after a stall they catch up at once, never skipped."""
    return Pacer(FRAME_MS / 1000, time.monotonic(), max_lag_s=math.inf)


class _Connection:
    """One conversation: every clip in turn on one WebSocket, then bye."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, client: int, options: BenchOptions) -> None:
        self.ws = ws
        self.client = client
        self.options = options
        self.tracker = Tracker()
        self.records: list[ClipRecord] = []
        self._pacer = _pacer()
        self._seq = 0
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)

    async def _receive(self) -> None:
        async for message in self.ws:
            now = time.monotonic()
            if message.type == aiohttp.WSMsgType.BINARY:
                try:
                    audio = protocol.parse_server_audio(message.data)
                except protocol.ProtocolError:
                    continue
                self.tracker.on_audio(audio.turn, len(audio.pcm) // 2, audio.sample_rate, now)
            elif message.type == aiohttp.WSMsgType.TEXT:
                try:
                    event = protocol.parse_server_text(message.data)
                except protocol.ProtocolError:
                    continue  # what this version cannot read cannot be timed either
                self.tracker.on_event(event, now)
                if isinstance(event, protocol.Bye):
                    return

    async def _send(self, frame: np.ndarray[Any, np.dtype[np.int16]], receiver: asyncio.Task[None]) -> float:
        """Send one 20 ms frame when it is due; the time it left."""
        if receiver.done():
            raise BenchError(f"the daemon closed connection {self.client} (close code {self.ws.close_code})")
        await asyncio.sleep(self._pacer.wait_s(time.monotonic()))
        sent_at = time.monotonic()
        await self.ws.send_bytes(protocol.encode_client_audio(self._seq, frame.tobytes()))
        self._pacer.sent()
        self._seq += 1
        return sent_at

    async def _play(self, clip: Clip, receiver: asyncio.Task[None]) -> None:
        record = ClipRecord(self.client, clip.name, clip.reference)
        self.records.append(record)
        self.tracker.start_clip(record)
        pcm = to_pcm16(clip.samples)
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME_SAMPLES, dtype=np.int16)])
        last_speech_frame = (clip.speech_end - 1) // FRAME_SAMPLES if clip.speech_end else None
        for k in range(len(pcm) // FRAME_SAMPLES):
            sent_at = await self._send(pcm[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES], receiver)
            if k == last_speech_frame:
                record.speech_end_at = sent_at
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now - quiet_since >= self.options.silence_s and (record.finished(now) or not record.server_turns):
                return
            if now - quiet_since >= self.options.turn_timeout_s:
                record.timed_out = True
                return
            await self._send(self._silence, receiver)

    async def run(self, clips: list[Clip]) -> list[ClipRecord]:
        receiver = asyncio.create_task(self._receive())
        try:
            self._pacer = _pacer()
            for _ in range(int(LEAD_SILENCE_S * 1000) // FRAME_MS):
                await self._send(self._silence, receiver)
            first = time.monotonic()
            for n, clip in enumerate(clips):
                due = first + clip_due_s(n, self.options.clients, self.options.stagger_ms)
                while time.monotonic() < due:
                    await self._send(self._silence, receiver)
                await self._play(clip, receiver)
            self.tracker.start_clip(None)
            await self.ws.send_str(protocol.Bye().to_text())
            await asyncio.wait({receiver}, timeout=BYE_TIMEOUT_S)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
        return self.records


def _refusal(answer: aiohttp.WSMessage) -> str | None:
    """Why the daemon's answer to hello is not `ready` (its error's words, where it sent one); None if it is."""
    if answer.type != aiohttp.WSMsgType.TEXT:
        return f"the connection ended ({answer.type.name.lower()})"
    try:
        message = protocol.parse_server_text(answer.data)
    except protocol.ProtocolError as err:
        return err.message
    if isinstance(message, protocol.Ready):
        return None
    return message.message if isinstance(message, protocol.Error | protocol.Busy) else message.kind


async def _open(session: aiohttp.ClientSession, url: str, client: int) -> aiohttp.ClientWebSocketResponse:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            ws = await session.ws_connect(url, compress=0, heartbeat=protocol.PING_INTERVAL_S, ssl=False)
            await ws.send_str(protocol.Hello(SAMPLE_RATE, f"bench-{client}").to_text())
            answer = await ws.receive()
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        raise BenchError(f"cannot talk to {url}: {str(err) or type(err).__name__}") from None
    refusal = _refusal(answer)
    if refusal is not None:
        await ws.close()
        raise BenchError(f"{url} did not accept the connection: {refusal}")
    return ws


async def _one_client(
    session: aiohttp.ClientSession, url: str, client: int, clips: list[Clip], options: BenchOptions
) -> list[ClipRecord]:
    await asyncio.sleep(client * options.stagger_ms / 1000)
    ws = await _open(session, url, client)
    try:
        return await _Connection(ws, client, options).run(clips)
    finally:
        await ws.close()


async def _play_all(url: str, clips: list[Clip], options: BenchOptions) -> list[ClipRecord]:
    async with aiohttp.ClientSession() as session:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_one_client(session, url, c, clips, options)) for c in range(options.clients)
                ]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
    return [record for task in tasks for record in task.result()]


async def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Play the clips, return every turn and the summary (what --json writes)."""
    clips = load_clips(options.clips)
    daemon: Daemon | None = None
    monitor: ProcessMonitor | None = None
    watching: asyncio.Task[None] | None = None
    scratch = tempfile.TemporaryDirectory(prefix="edgevoice-bench-")
    try:
        if options.url is None:
            # A clip a skill answers ("set a timer") changes what it keeps: not the user's own timers and list.
            env = {
                **os.environ,
                "EDGEVOICE_SKILLS_TIMERS_FILE": os.path.join(scratch.name, "timers.json"),
                "EDGEVOICE_SKILLS_SHOPPING_LIST_FILE": os.path.join(scratch.name, "shopping_list.json"),
            }
            daemon = Daemon(options.config, options.verbose, Launch(env=env))
            await daemon.start()
            url = daemon.url
            monitor = ProcessMonitor(daemon.pid)
            monitor.sample()
            watching = asyncio.create_task(monitor.run())
        else:
            url = options.url
        records = await _play_all(url, clips, options)
        if monitor is not None:
            monitor.sample()
        engines = await engines_where(url)
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        if daemon is not None:
            await daemon.stop()
        scratch.cleanup()
    summary = summarise(records, options.clients)
    summary["daemon"] = (
        monitor.usage.to_json()
        if monitor is not None
        else {"known": False, "reason": "the daemon was given by --url: its memory and CPU are not known"}
    )
    return {
        "url": url,
        "started_daemon": daemon is not None,
        "clients": options.clients,
        "stagger_ms": options.stagger_ms,
        "clips": [clip.name for clip in clips],
        "engines": engines,
        "turns": [record.to_json() for record in records],
        "summary": summary,
    }


async def engines_where(ws_url: str) -> list[dict[str, Any]] | None:
    """Where the daemon ran each engine (this box, or a server on the LAN), from its /healthz; None if unknown."""
    base = ws_url.replace("ws", "http", 1).removesuffix(protocol.WS_PATH)
    try:
        timeout = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{base}/healthz", ssl=False) as response,
        ):
            engines = (await response.json(content_type=None)).get("engines")
    except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
        return None
    return engines if isinstance(engines, list) else None


def _where(engine: dict[str, Any]) -> str:
    place = "this box" if engine.get("location") == "local" else str(engine.get("url"))
    return f"{engine.get('kind')} on {place}" + ("" if engine.get("ok", True) else " (down)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_report(result: dict[str, Any]) -> str:
    summary = result["summary"]
    lines = [
        f"edgevoice bench: {len(result['clips'])} clips x {result['clients']} client(s)"
        + (f" staggered by {result['stagger_ms']} ms" if result.get("stagger_ms") else "")
        + f" = {summary['turns']} turns ({summary['missing']} missing) against {result['url']}"
        + (" (started by bench)" if result["started_daemon"] else ""),
        "",
        f"{'client':>6}  {'clip':<28} " + " ".join(f"{stage[:8]:>8}" for stage in STAGES) + f"  {'wer':>5}  transcript",
    ]
    for turn in result["turns"]:
        ms = turn["ms_after_end_of_speech"]
        wer = "-" if turn["wer"] is None else f"{turn['wer']:.2f}"
        status = " (missing)" if turn["missing"] else ""
        status += f" [skill {turn['intent']}]" if turn.get("intent") else ""
        lines.append(
            f"{turn['client']:>6}  {turn['clip'][:28]:<28} "
            + " ".join(f"{_ms(ms[stage]):>8}" for stage in STAGES)
            + f"  {wer:>5}  {turn['transcript'] or ''}{status}"
        )
    lines += ["", f"{'stage (ms after true end of speech)':<38} {'n':>3} {'p50':>7} {'p95':>7} {'max':>7}"]
    for stage in STAGES:
        row = summary["stages_ms"][stage]
        lines.append(f"{stage:<38} {row['n']:>3} {_ms(row['p50']):>7} {_ms(row['p95']):>7} {_ms(row['max']):>7}")
    lines += ["", f"{'daemon work':<38} {'n':>3} {'p50':>7} {'p95':>7} {'max':>7}"]
    for stage in WORK_STAGES:
        row = summary["work_ms"][stage]
        label = "started (ms after true end of speech)" if stage == "started" else f"{stage} (ms after it started)"
        lines.append(f"{label:<38} {row['n']:>3} {_ms(row['p50']):>7} {_ms(row['p95']):>7} {_ms(row['max']):>7}")
    lines += ["", f"{'language model (tokens per turn)':<38} {'n':>3} {'p50':>7} {'p95':>7} {'max':>7}"]
    for name, row in summary["prompt_tokens"].items():
        lines.append(f"{name:<38} {row['n']:>3} {_ms(row['p50']):>7} {_ms(row['p95']):>7} {_ms(row['max']):>7}")
    gaps = summary["reply_gap_ms"]
    lines.append(
        f"{'reply audio ran out (ms, all gaps)':<38} {gaps['n']:>3} {_ms(gaps['p50']):>7} {_ms(gaps['p95']):>7}"
        f" {_ms(gaps['max']):>7}  ({summary['replies_with_audible_gaps']} replies with a gap of"
        f" {AUDIBLE_GAP_MS:.0f} ms or more)"
    )
    lines.append(
        f"replies copying an earlier reply: {summary['copied_replies']} of {summary['turns'] - summary['missing']}"
        f" ({COPY_RUN_WORDS} words in a row, or a short reply whole, from a reply to other words in the same"
        " conversation)"
    )
    wer = summary["wer"]
    engines = result.get("engines")
    lines.append("")
    lines.append("engines: " + ("not known" if not engines else ", ".join(_where(engine) for engine in engines)))
    lines.append("WER: -" if wer is None else f"WER: {wer:.3f} (all words of all turns with a reference)")
    daemon = summary["daemon"]
    if daemon["known"]:
        cpu = "-" if daemon["cpu_s"] is None else f"{daemon['cpu_s']:.1f} s"
        lines.append(
            f"daemon: peak RSS {daemon['peak_rss_mb']:.1f} MB, CPU {cpu} over {daemon['wall_s']:.1f} s "
            f"({'-' if daemon['cpu_percent'] is None else daemon['cpu_percent']} % of one core)"
        )
    else:
        lines.append(f"daemon: peak RSS and CPU not known: {daemon['reason']}")
    if result["clients"] > 1:
        lines.append(
            "per client: "
            + ", ".join(f"{c['client']}: {c['turns']} turns, {c['missing']} missing" for c in summary["per_client"])
        )
    return "\n".join(lines)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    if args.clients < 1:
        raise BenchError("--clients must be at least 1")
    if args.stagger < 0:
        raise BenchError("--stagger must not be negative")
    if args.turn_timeout <= 0:
        raise BenchError("--turn-timeout must be positive")
    try:
        url = None if args.url is None else normalize_url(args.url)
    except ClientError as err:
        raise BenchError(str(err)) from None
    return BenchOptions(
        clips=args.clips,
        url=url,
        json_out=args.json_out,
        clients=args.clients,
        stagger_ms=args.stagger,
        turn_timeout_s=args.turn_timeout,
        config=args.config,
        verbose=args.verbose,
    )


def bench_main(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    result = asyncio.run(run_bench(options))
    print(format_report(result), flush=True)
    if options.json_out is not None:
        try:
            options.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            raise BenchError(f"cannot write {options.json_out}: {err.strerror or err}") from None
    return 1 if result["summary"]["missing"] else 0
