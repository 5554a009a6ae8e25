"""`python -m edgevoice.bench.pauses`: when is a turn judged over, on sentences with a pause inside and in noise.

The pause set is made here, not stored: each sentence is synthesised whole (espeak-ng voices and
Piper), so the voice before the pause keeps the pitch of a sentence going on, and silence of
200-700 ms is put in at the quietest point near a word boundary. The bench clips (bench/clips)
are the held-out set: never used to choose a setting. Each clip is heard clean and with pink
noise mixed in at a few signal-to-noise ratios, then fed frame by frame to the daemon's own
turn-taking (edgevoice.turn_taking) in three settings (JUDGES): webrtcvad with the word list (a turn
whose early transcript sounds finished ends after quick_end_ms, any other after hangover_ms),
Silero with the word list, and Silero with smart-turn (after turn_check_ms the model hears the turn
so far, and it ends there when the model says complete and the words sound finished, else after
turn_wait_ms). Transcripts and the model's answers are taken to be ready in time, as the daemon
waits for them (turn_taking holds the input); the model's CPU time is added to the time a turn it
ended was judged over.

Reported per judge: premature cut-offs (a turn judged over inside the sentence's pause) and the
time from the true end of speech to the turn being judged over (p50, p90; a turn never judged
over counts as judged at the end of the clip, 2 s after the speech), over all clips and over
the noisy ones. Times are stream times, not wall-clock: the machine's load does not change them,
but the model's CPU time is measured on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from edgevoice.audio.pcm import SAMPLE_RATE, Samples, from_pcm16, read_audio, resample, to_pcm16
from edgevoice.audio.smart_turn import SmartTurn
from edgevoice.bench.measure import true_end_of_speech
from edgevoice.bench.noise import mix_noise, trim
from edgevoice.config import Config, VadConfig, load_config
from edgevoice.server.turnlog import percentile
from edgevoice.turn_taking import Confirm, Discard, JudgeEnd, StartEarly, StartTurn, TurnTaking, UserStopped

DEFAULT_CLIPS = Path(__file__).resolve().parents[2] / "bench" / "clips"
FRAME_MS = 20
LEAD_S = 0.5
TAIL_S = 2.0
PAUSE_MS = (200, 700)
SNRS_DB = (None, 20.0, 10.0, 5.0)
"""None: clean."""
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-us+f3")
PIPER_VOICE = "piper"
SENTENCES: tuple[tuple[str, int], ...] = (
    ("Set a timer for ten minutes.", 3),
    ("Turn on the kitchen lights, please.", 3),
    ("I would like to set a timer for twenty minutes.", 7),
    ("Can you tell me the weather for tomorrow?", 5),
    ("Remind me to buy milk and eggs tomorrow.", 6),
    ("Play some music by the Beatles in the kitchen.", 4),
    ("How long does it take to get to the airport?", 6),
    ("Add bananas and bread to my shopping list.", 3),
    ("Call my sister and tell her I am running late.", 3),
    ("What time is my first meeting tomorrow morning?", 5),
)
"""A sentence and the number of words after which its speaker pauses."""


@dataclass(frozen=True)
class Clip:
    name: str
    samples: Samples
    speech_end_ms: int
    """The true end of speech in the clip, from its clean audio."""
    pause_ms: tuple[int, int] | None = None
    """The silence put inside the sentence (start, end); None for a clip without one."""


@dataclass
class Judgement:
    judged_ms: list[int] = dataclasses.field(default_factory=list)
    """Stream times at which a turn was judged over."""
    model_calls: int = 0
    model_cpu_s: float = 0.0


Synthesise = Callable[[str], Samples]


def espeak(voice: str) -> Synthesise:
    def speak(text: str) -> Samples:
        wav = subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "155", "--stdout", text], capture_output=True, check=True, timeout=60
        ).stdout
        audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
        return resample(np.asarray(audio, dtype=np.float32), int(rate), SAMPLE_RATE)

    return speak


def piper(config: Config) -> Synthesise:
    from edgevoice.engines.tts import PiperTts  # noqa: PLC0415 (loads onnxruntime's voice only when asked)
    from edgevoice.models.registry import Kind, resolve  # noqa: PLC0415

    tts = PiperTts(config.tts, resolve(config, Kind.TTS).path)

    def speak(text: str) -> Samples:
        return resample(from_pcm16(tts.speak(text)), tts.sample_rate, SAMPLE_RATE)

    return speak


def quietest_point(sentence: Samples, near: int) -> int:
    """The quietest 20 ms of the sentence around sample `near` (from 30% before it to 5% after): a word boundary."""
    hop = SAMPLE_RATE // 100
    low, high = max(1, int(near * 0.7) // hop), max(2, min(len(sentence), int(near * 1.05)) // hop)
    energy = [float(np.mean(sentence[i * hop : (i + 2) * hop] ** 2)) for i in range(low, high)]
    return (low + int(np.argmin(energy)) + 1) * hop


def with_pause(speak: Synthesise, text: str, words: int, pause_ms: int) -> tuple[Samples, int]:
    """The whole sentence with pause_ms of silence after its first `words` words; and where the pause starts."""
    sentence = trim(speak(text))
    # The words alone are said as a sentence of their own, a little slower at the end: their
    # length places the boundary to within a syllable, and the quietest point near it finds it.
    prefix = trim(speak(" ".join(text.split()[:words])))
    cut = quietest_point(sentence, len(prefix))
    silence = np.zeros(SAMPLE_RATE * pause_ms // 1000, dtype=np.float32)
    return np.concatenate([sentence[:cut], silence, sentence[cut:]]), cut


def framed(samples: Samples, lead_s: float = LEAD_S, tail_s: float = TAIL_S) -> Samples:
    lead = np.zeros(int(lead_s * SAMPLE_RATE), dtype=np.float32)
    tail = np.zeros(int(tail_s * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([lead, samples, tail])


def pause_set(voices: dict[str, Synthesise], seed: int = 0) -> Iterator[Clip]:
    rng = np.random.default_rng(seed)
    lead = int(LEAD_S * SAMPLE_RATE)
    for voice, speak in voices.items():
        for index, (text, words) in enumerate(SENTENCES):
            pause_ms = int(rng.integers(PAUSE_MS[0], PAUSE_MS[1] + 1))
            speech, cut = with_pause(speak, text, words, pause_ms)
            samples = framed(speech)
            pause_start = (lead + cut) * 1000 // SAMPLE_RATE
            yield Clip(
                f"{voice}-{index:02d}-pause{pause_ms}",
                samples,
                true_end_of_speech(samples) * 1000 // SAMPLE_RATE,
                (pause_start, pause_start + pause_ms),
            )


def bench_clips(folder: Path = DEFAULT_CLIPS) -> Iterator[Clip]:
    for wav in sorted(folder.glob("*.wav")):
        samples = framed(trim(read_audio(wav)))
        yield Clip(wav.stem, samples, true_end_of_speech(samples) * 1000 // SAMPLE_RATE)


def noisy(clips: Sequence[Clip], snrs: Sequence[float | None] = SNRS_DB) -> Iterator[Clip]:
    for seed, clip in enumerate(clips):
        for snr in snrs:
            if snr is None:
                yield clip
            else:
                mixed = mix_noise(clip.samples, snr, seed)
                yield dataclasses.replace(clip, name=f"{clip.name}-snr{snr:g}", samples=mixed)


def frames(samples: Samples) -> Iterator[bytes]:
    pcm = to_pcm16(samples)
    step = SAMPLE_RATE * FRAME_MS // 1000
    for offset in range(0, len(pcm) - step + 1, step):
        yield pcm[offset : offset + step].tobytes()


JUDGES: dict[str, tuple[str, str]] = {
    "words": ("webrtc", "words"),
    "silero_words": ("silero", "words"),
    "smart_turn": ("silero", "smart-turn"),
}
"""The endpointing compared, as (vad.detector, vad.turn_end): webrtcvad with the word list (before
this generation), Silero with the word list, Silero with smart-turn and the word list."""


def judge(clip: Clip, vad: VadConfig, transcribe: Callable[[Samples], str], model: SmartTurn) -> Judgement:
    """The daemon's own turn-taking (edgevoice.turn_taking) over the clip, frame by frame: each early
    start's audio is transcribed and each JudgeEnd answered by smart-turn at once, as a box with time
    to spare would; the model's CPU time is added to when a turn it ended was judged over."""
    turns = TurnTaking(vad)
    judgement = Judgement()
    for frame in frames(clip.samples):
        queue = turns.feed(frame)
        cost_ms = 0
        while queue:
            decision = queue.pop(0)
            if isinstance(decision, StartEarly):
                queue += turns.heard(decision.work, transcribe(from_pcm16(decision.pcm)))
            elif isinstance(decision, JudgeEnd):
                started = time.thread_time()
                probability = model.probability(from_pcm16(decision.pcm))
                cost = time.thread_time() - started
                judgement.model_calls += 1
                judgement.model_cpu_s += cost
                cost_ms = round(cost * 1000)
                queue += turns.judged(decision.work, probability)
            elif isinstance(decision, UserStopped):
                judgement.judged_ms.append(turns.now_ms + cost_ms)
            elif isinstance(decision, Confirm | StartTurn | Discard):
                turns.finished(decision.work)  # nothing is answered here: no barge-in to judge
    return judgement


@dataclass(frozen=True)
class Outcome:
    clip: str
    cut_off: int
    """Turns judged over before the speaker had finished."""
    latency_ms: int | None
    """From the true end of speech to the turn being judged over; None if it never was."""


def outcome(clip: Clip, judgement: Judgement) -> Outcome:
    # A judgement within 40 ms before the measured end is the end's own (the energy and the VAD
    # disagree on the last faint frame by a frame or two); earlier ones cut the speaker off.
    early = [t for t in judgement.judged_ms if t < clip.speech_end_ms - 40]
    late = [t for t in judgement.judged_ms if t >= clip.speech_end_ms - 40]
    return Outcome(clip.name, len(early), (late[0] - clip.speech_end_ms) if late else None)


def summary(outcomes: Sequence[Outcome]) -> dict[str, float | int | None]:
    # A turn never judged over (the noise heard as speech to the end of the clip) counts as judged at
    # the end of the clip's trailing silence: a lower bound, so the percentiles are not flattered.
    never = TAIL_S * 1000
    latencies = sorted(float(o.latency_ms) if o.latency_ms is not None else never for o in outcomes)
    return {
        "clips": len(outcomes),
        "cut_off_clips": sum(1 for o in outcomes if o.cut_off),
        "never_judged": sum(1 for o in outcomes if o.latency_ms is None),
        "p50_ms": percentile(latencies, 0.50) if latencies else None,
        "p90_ms": percentile(latencies, 0.90) if latencies else None,
    }


def run(config: Config, voices: Sequence[str], snrs: Sequence[float | None], clips_dir: Path) -> dict[str, object]:
    from edgevoice.engines.stt import WhisperStt  # noqa: PLC0415 (whisper.cpp only for the words judge)
    from edgevoice.models.registry import Kind, resolve  # noqa: PLC0415

    stt = WhisperStt(config.stt, resolve(config, Kind.STT).path)
    model = SmartTurn()
    synthesisers = {v: (piper(config) if v == PIPER_VOICE else espeak(v)) for v in voices}
    sets = {
        "pauses": list(noisy(list(pause_set(synthesisers)), snrs)),
        "bench": list(noisy(list(bench_clips(clips_dir)), snrs)),
    }
    report: dict[str, object] = {"vad": dataclasses.asdict(config.vad), "snrs_db": list(snrs), "voices": list(voices)}
    for name, clips in sets.items():
        in_noise = [i for i, clip in enumerate(clips) if "-snr" in clip.name]
        part: dict[str, object] = {}
        outcomes: dict[str, list[Outcome]] = {}
        for label, (detector, turn_end) in JUDGES.items():
            vad = dataclasses.replace(config.vad, detector=detector, turn_end=turn_end)
            judgements = [judge(c, vad, stt.transcribe, model) for c in clips]
            outcomes[label] = [outcome(c, j) for c, j in zip(clips, judgements, strict=True)]
            part[label] = summary(outcomes[label])
            part[f"noisy_{label}"] = summary([outcomes[label][i] for i in in_noise])
            calls = sum(j.model_calls for j in judgements)
            if calls:
                part["model_calls"] = calls
                part["model_cpu_ms_mean"] = 1000 * sum(j.model_cpu_s for j in judgements) / calls
        part["clips"] = [
            {"clip": clip.name, **{label: dataclasses.asdict(outcomes[label][i]) for label in JUDGES}}
            for i, clip in enumerate(clips)
        ]
        report[name] = part
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgevoice.bench.pauses", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="edgevoice.toml whose [vad] settings are judged")
    parser.add_argument("--voices", default=",".join((*ESPEAK_VOICES, PIPER_VOICE)), help="espeak-ng voices, piper")
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS, help="the held-out clips (NAME.wav)")
    parser.add_argument("--json", type=Path, help="write every clip's outcome here")
    args = parser.parse_args(argv)
    report = run(load_config(args.config), args.voices.split(","), SNRS_DB, args.clips)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    for name in ("pauses", "bench"):
        part = report[name]
        assert isinstance(part, dict)
        for label in JUDGES:
            for key in (label, f"noisy_{label}"):
                print(f"{name:7s} {key:20s} {json.dumps(part[key])}")
        if "model_calls" in part:
            print(f"{name:7s} smart-turn calls {part['model_calls']}, CPU {part['model_cpu_ms_mean']:.1f} ms each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
