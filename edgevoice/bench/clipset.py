"""`python -m edgevoice.bench.clipset OUT`: a folder of clips for `edgevoice bench --clips OUT`, made here.

Everyday questions none of which is in bench/clips, each said by several voices (espeak-ng's
American, British, Scottish and a female American voice, and Piper's), with pink room noise mixed
in at a signal-to-noise ratio (`--snr`, none for clean speech), each clip with its own noise. Each
WAV (16 kHz mono, 16-bit) has its text beside it, as bench/README.md lays a set out, and NAME.end:
where the speech ends (ms), found on the clean clip before the noise went in, since in noise
the benchmark could not find it itself. The set is
made again from the same arguments the same way, so figures from it can be compared.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edgevoice.audio.pcm import SAMPLE_RATE, to_pcm16, write_wav
from edgevoice.bench.measure import true_end_of_speech
from edgevoice.bench.noise import mix_noise, trim
from edgevoice.bench.pauses import ESPEAK_VOICES, PIPER_VOICE, Synthesise, espeak, framed, piper
from edgevoice.config import load_config

QUESTIONS = (
    "What is the boiling point of water?",
    "How many minutes are in three hours?",
    "Can you recommend a good book for the weekend?",
    "Why is the sky blue?",
    "What should I cook for dinner tonight?",
    "How do I get a red wine stain out of a carpet?",
    "Tell me a joke about cats.",
    "What is the largest ocean on earth?",
)
"""Spoken-style questions for the daemon's model: none is a skill's sentence, so each turn runs the model."""


def voices(names: Sequence[str]) -> dict[str, Synthesise]:
    made: dict[str, Synthesise] = {}
    for name in names:
        made[name] = piper(load_config(None)) if name == PIPER_VOICE else espeak(name)
    return made


def make(out: Path, names: Sequence[str], snr_db: float | None, lead_s: float = 0.5, tail_s: float = 0.5) -> int:
    """Write the set into out; returns how many clips."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for voice, speak in voices(names).items():
        for index, text in enumerate(QUESTIONS):
            samples = framed(trim(speak(text)), lead_s, tail_s)
            end_ms = true_end_of_speech(samples) * 1000 // SAMPLE_RATE
            if snr_db is not None:
                samples = mix_noise(samples, snr_db, seed=count)
            stem = f"{voice.replace('+', '-')}-{index:02d}" + ("" if snr_db is None else f"-snr{snr_db:g}")
            write_wav(out / f"{stem}.wav", to_pcm16(samples), SAMPLE_RATE)
            (out / f"{stem}.txt").write_text(text + "\n", encoding="utf-8")
            (out / f"{stem}.end").write_text(f"{end_ms}\n", encoding="utf-8")
            count += 1
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgevoice.bench.clipset", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write (made if missing)")
    parser.add_argument("--voices", default=",".join((*ESPEAK_VOICES, PIPER_VOICE)), help="espeak-ng voices, piper")
    parser.add_argument("--snr", type=float, help="room noise this many dB under the speech (default: clean)")
    args = parser.parse_args(argv)
    count = make(args.out, args.voices.split(","), args.snr)
    print(f"{count} clips in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
