"""`edgevoice client`: talk to a box over its WebSocket (docs/protocol.md) from another machine.

This module is the entry point: it finds the box, opens the audio ends and runs one ClientRun
(session.py) until the conversation is over. The rest lives by domain: options and the URL in
options.py, what is printed in output.py, why a connection ended and when to try again in
reconnect.py, the microphone, speaker and WAV ends in audio.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from yarl import URL

from edgevoice.audio.buffers import PacedSource
from edgevoice.client.audio import AudioSink, AudioSource, MicSource, SpeakerSink, WavSink, check_device
from edgevoice.client.options import (
    DEFAULT_PORT,
    ClientError,
    ClientOptions,
    add_client_arguments,
    normalize_url,
    options_from_args,
)
from edgevoice.client.output import ClientOutput, Observer
from edgevoice.client.reconnect import Backoff
from edgevoice.client.session import ClientRun
from edgevoice.client.trust import trust_for
from edgevoice.errors import EdgevoiceError

__all__ = [
    "DEFAULT_PORT",
    "Backoff",
    "ClientError",
    "ClientOptions",
    "Observer",
    "add_client_arguments",
    "client_main",
    "normalize_url",
    "run_client",
]


async def _discover(options: ClientOptions, output: ClientOutput) -> tuple[str, str, str | None]:
    """The one box on the network: its URL, its name, and the certificate fingerprint it advertises."""
    from edgevoice import discovery  # noqa: PLC0415  zeroconf is needed only when no URL is given

    try:
        boxes = await discovery.browse(options.interface, options.discovery_timeout_s)
    except (OSError, EdgevoiceError) as err:
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
    box = boxes[0]
    return box.url(), box.name, box.fingerprint


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
    output = ClientOutput(options.json, observer)
    try:
        options.check()
        if options.url:
            url = normalize_url(options.url)
            name, advertised = URL(url).host_port_subcomponent or url, None
        else:
            url, name, advertised = await _discover(options, output)
        tls, note = await trust_for(options, url, name, advertised)
        if note:
            output.status(note)
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
    run = ClientRun(options, url, source=source, sink=sink, output=output, stop=stop or asyncio.Event(), tls=tls)
    return await run.run()


def client_main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main_until_signal(options_from_args(args)))
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
        # No signal handlers on Windows loops (NotImplementedError) or off the main thread
        # (RuntimeError): Ctrl-C then ends the client through KeyboardInterrupt as usual.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal)
    try:
        return await run_client(options, stop=stop)
    except asyncio.CancelledError:
        return 130
