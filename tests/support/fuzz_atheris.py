"""Coverage-guided fuzzing (atheris, libFuzzer) of the wire protocol and a connection's state machine.

Run: python tests/fuzz_atheris.py -runs=20000 -seed=1 [corpus dir] (tests/test_fuzz_atheris.py does).
Each input is read two ways: as one client text message and one binary frame for the protocol's
parsers, and as a whole client script (hello, text, audio, pauses, transport errors) for a
Connection on tests/test_fuzz.py's fake socket, turns run on its stand-in engines. Every
input must end in a defined outcome: a parsed message or a ProtocolError with a documented close
code, and for the connection only documented events and close codes (test_fuzz._check_outcome).
Anything else raises, and libFuzzer stops with the input that did it. With $FUZZ_SUMMARY set, the
outcomes seen are counted there as JSON (rewritten every 500 inputs and at exit).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

import atheris
from aiohttp import WSMsgType

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["edgevoice"]):
    from edgevoice import protocol
    from edgevoice.config import load_config
    from edgevoice.transports import socket  # noqa: F401  (instrumented for coverage)

from tests.test_fuzz import (
    _VOICE,
    DOCUMENTED_CLOSE_CODES,
    _Message,
    _run_connection,
    _Yield,
)

# webrtcvad at its most lenient: mutated bytes then pass for speech often enough to reach turns.
CONFIG = load_config(None, environ={"EDGEVOICE_VAD_DETECTOR": "webrtc", "EDGEVOICE_VAD_AGGRESSIVENESS": "0"})
STORE = Path(tempfile.mkdtemp(prefix="edgevoice-fuzz-"))
RATES = [16_000, 8_000, 48_000, 44_100, 7_999, 48_001]
TEMPLATES = ['{"type":"hello","protocol":1,"sample_rate":16000}', '{"type":"interrupt"}', '{"type":"bye"}']
outcomes: collections.Counter[str] = collections.Counter()


def _spliced(fdp: atheris.FuzzedDataProvider) -> str:
    """A valid message with a few of the fuzzer's characters spliced in, over a few of its own."""
    template = TEMPLATES[fdp.ConsumeIntInRange(0, len(TEMPLATES) - 1)]
    at = fdp.ConsumeIntInRange(0, len(template))
    cut = fdp.ConsumeIntInRange(0, 3)
    return template[:at] + fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 8)) + template[at + cut :]


def _parsers(fdp: atheris.FuzzedDataProvider) -> None:
    """parse_client_text, parse_server_text, parse_client_audio and parse_server_audio: a value or a ProtocolError."""
    text = _spliced(fdp) if fdp.ConsumeBool() else fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 600))
    message: protocol.ClientMessage | protocol.ProtocolError
    try:
        message = protocol.parse_client_text(text)
    except protocol.ProtocolError as err:
        message = err
    _check_text(message)
    try:
        protocol.parse_server_text(text)
    except protocol.ProtocolError as err:
        outcomes[f"server text error {err.code}"] += 1
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2_000))
    rate = RATES[fdp.ConsumeIntInRange(0, len(RATES) - 1)]
    frame: tuple[int, bytes] | protocol.ProtocolError
    try:
        frame = protocol.parse_client_audio(data, max(protocol.MIN_SAMPLE_RATE, min(rate, 48_000)))
    except protocol.ProtocolError as err:
        frame = err
    _check_frame(frame)
    try:
        protocol.parse_server_audio(data)
    except protocol.ProtocolError:
        outcomes["server audio error"] += 1


def _check_text(message: protocol.ClientMessage | protocol.ProtocolError) -> None:
    if isinstance(message, protocol.ProtocolError):
        assert isinstance(message.code, str), message
        assert message.code, message
        assert message.close_code is None or message.close_code in DOCUMENTED_CLOSE_CODES, message.close_code
        outcomes[f"text error {message.code}"] += 1
    else:
        assert isinstance(message, protocol.Hello | protocol.Interrupt | protocol.Bye), message
        outcomes[f"text {type(message).__name__}"] += 1


def _check_frame(frame: tuple[int, bytes] | protocol.ProtocolError) -> None:
    """A bad client audio frame is never fatal: it is dropped and the connection goes on."""
    if isinstance(frame, protocol.ProtocolError):
        assert not frame.fatal, frame
        outcomes[f"audio error {frame.code}"] += 1
        return
    seq, pcm = frame
    assert 0 <= seq < 2**32, seq
    assert pcm, seq
    assert len(pcm) % 2 == 0, len(pcm)
    outcomes["audio frame"] += 1


def _script(fdp: atheris.FuzzedDataProvider) -> list[_Message | _Yield]:
    script: list[_Message | _Yield] = []
    seq = 0
    for _ in range(fdp.ConsumeIntInRange(0, 40)):
        op = fdp.ConsumeIntInRange(0, 8)
        if op == 0:
            rate = RATES[fdp.ConsumeIntInRange(0, len(RATES) - 1)]
            script.append(_Message(WSMsgType.TEXT, protocol.Hello(rate, "fuzz").to_text()))
        elif op == 1:
            script.append(_Message(WSMsgType.TEXT, fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 300))))
        elif op == 2:
            script.append(_Message(WSMsgType.TEXT, _spliced(fdp)))
        elif op == 3:
            script.append(_Message(WSMsgType.BINARY, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 1_200))))
        elif op in (4, 5):  # voice or silence frames in sequence (sometimes with a gap): turns start and end
            for _ in range(fdp.ConsumeIntInRange(1, 40)):
                start = seq % 25 * 640
                pcm = _VOICE[start : start + 640] if op == 4 else bytes(640)
                script.append(_Message(WSMsgType.BINARY, protocol.encode_client_audio(seq, pcm)))
                seq += 1 + (fdp.ConsumeIntInRange(0, 15) == 0) * fdp.ConsumeIntInRange(1, 1000)
        elif op == 6:
            script.append(_Yield(fdp.ConsumeIntInRange(1, 60)))
        elif op == 7:
            script.append(_Message(WSMsgType.ERROR))
        else:
            script.append(_Message(WSMsgType.TEXT, TEMPLATES[fdp.ConsumeIntInRange(1, 2)]))
    return script


def _connection(script: list[_Message | _Yield]) -> None:
    """A Connection through the whole script; _check_outcome (inside) raises on anything undefined."""
    ws = asyncio.run(_run_connection(CONFIG, STORE, script))
    outcomes[f"closed {ws.server_closed_with}"] += 1
    for text in ws.texts:
        message = protocol.parse_server_text(text)
        outcomes[f"sent {message.kind}" + (f" {message.code}" if isinstance(message, protocol.Error) else "")] += 1


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    _parsers(fdp)
    _connection(_script(fdp))
    outcomes["inputs"] += 1
    if outcomes["inputs"] % 500 == 0:
        _write_summary()


def _write_summary() -> None:
    path = os.environ.get("FUZZ_SUMMARY")
    if path:
        Path(path).write_text(json.dumps(dict(sorted(outcomes.items())), indent=1))


def main() -> None:
    atexit.register(_write_summary)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
