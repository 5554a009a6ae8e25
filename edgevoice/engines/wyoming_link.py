"""One request to a Wyoming server from an engine thread: the wyoming library's own framing over a plain socket."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import BinaryIO, cast

from wyoming.error import Error
from wyoming.event import Event, read_event, write_event
from wyoming.info import Describe, Info

from edgevoice.engines.remote import CONNECT_TIMEOUT_S, RemoteError, cut_on_cancel, host_port
from edgevoice.engines.worker import CancelToken

WYOMING_PORT = 10700
READ_TIMEOUT_S = 30.0
"""Longest wait for a server's next event: a long clip on a slow server still fits."""
_MAX_EVENTS_BEFORE_ANSWER = 1000


class WyomingLink:
    """A connection for one request; a cancelled token cuts it (edgevoice.engines.remote.cut_on_cancel)."""

    def __init__(self, url: str, token: CancelToken | None = None, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.url = url
        self._token = token
        self._read_timeout_s = read_timeout_s
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._cut = cut_on_cancel(None, None)

    def __enter__(self) -> WyomingLink:
        self._sock = socket.create_connection(host_port(self.url, WYOMING_PORT), timeout=CONNECT_TIMEOUT_S)
        self._sock.settimeout(self._read_timeout_s)
        self._file = cast(BinaryIO, self._sock.makefile("rwb"))
        self._cut = cut_on_cancel(self._token, self._sock)
        self._cut.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._cut.__exit__(kind, err, traceback)
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()

    def write(self, event: Event) -> None:
        if self._file is None:
            raise RemoteError("not connected")
        write_event(event, self._file)

    def read(self) -> Event:
        """The server's next event; an error event or a closed connection raises."""
        if self._file is None:
            raise RemoteError("not connected")
        try:
            event = read_event(self._file)
        except (KeyError, TypeError, AttributeError):
            raise RemoteError("it sent something that is not a Wyoming event") from None
        if event is None:
            raise ConnectionError("the server closed the connection")
        if Error.is_type(event.type):
            raise RemoteError(f"it answered with an error: {event.data.get('text') or 'no reason given'}")
        return event


def describe(url: str, token: CancelToken | None = None) -> Info:
    """The services a Wyoming server offers."""
    with WyomingLink(url, token, read_timeout_s=CONNECT_TIMEOUT_S) as link:
        link.write(Describe().event())
        for _ in range(_MAX_EVENTS_BEFORE_ANSWER):
            event = link.read()
            if Info.is_type(event.type):
                try:
                    return Info.from_event(event)
                except (KeyError, TypeError, ValueError) as err:
                    raise RemoteError(f"its info event cannot be read: {err}") from None
    raise RemoteError(f"it sent {_MAX_EVENTS_BEFORE_ANSWER} events and no info")
