"""Slow and hoarding HTTP clients: a deadline for request headers, a cap on connections per address.

aiohttp bounds the reading of request headers only through its keep-alive timer (75 s by default
in 3.14), so a client that opens sockets and trickles header bytes (slowloris) holds them that
long. Every accepted connection is wrapped here instead:

- it must deliver a complete request head within header_timeout_s of opening, and again within
  header_timeout_s of its previous response ending (keep-alive), or it is closed. No deadline runs
  while a request is handled, so a long event stream or an upgraded WebSocket is never cut.
- at most max_connections_per_address are open at once from one address; one more is answered a
  bare 503 and closed before anything it sent is read.

"Headers complete" is when aiohttp calls the server's request handler (`web.Server.request_handler`,
wrapped here, is read by each new connection); "response ended" is when the task aiohttp runs that
handler in, and writes the response from, is done. With TLS the handshake is bounded by asyncio's
ssl_handshake_timeout (the same header_timeout_s), and the header deadline starts after it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

_log = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
_TOO_MANY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class AddressSlots:
    """Connections open per address, at most per_address each; sans-I/O."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._open: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        count = self._open.get(address, 0)
        if count >= self.per_address:
            return False
        self._open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def open(self, address: str) -> int:
        return self._open.get(address, 0)


class HttpGuard:
    """Wraps an aiohttp server's protocol factory and request handler; counts what it closed."""

    def __init__(self, header_timeout_s: float, max_connections_per_address: int) -> None:
        self.header_timeout_s = header_timeout_s
        self.slots = AddressSlots(max_connections_per_address)
        self.refused = 0
        """Connections refused because their address had too many open."""
        self.timed_out = 0
        """Connections closed for not sending complete headers in time."""
        self._by_handler: dict[object, GuardedConnection] = {}
        self._wrapped: weakref.WeakSet[web.Server] = weakref.WeakSet()

    def install(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """Wrap server's request handler (once) and return the protocol factory to listen with."""
        if server not in self._wrapped:
            self._wrapped.add(server)
            server.request_handler = self._wrap(server.request_handler)
        return lambda: GuardedConnection(self, server)

    def admit(self, address: str) -> bool:
        """Take a slot for a new connection from address; False (counted, logged) when it has none left."""
        if not self.slots.acquire(address):
            self.refused += 1
            if self.refused % 100 == 1:
                _log.warning(
                    "refused a connection from %s: %d already open (%d refused so far)",
                    address,
                    self.slots.open(address),
                    self.refused,
                )
            return False
        return True

    def track(self, inner: asyncio.Protocol, connection: GuardedConnection) -> None:
        """Let requests on aiohttp's protocol inner find their connection."""
        self._by_handler[inner] = connection

    def release(self, inner: asyncio.Protocol, address: str) -> None:
        self.slots.release(address)
        self._by_handler.pop(inner, None)

    def expired(self, address: str) -> None:
        self.timed_out += 1
        if self.timed_out % 100 == 1:
            _log.info(
                "closed a connection from %s: no complete request headers in %.1f s (%d so far)",
                address,
                self.header_timeout_s,
                self.timed_out,
            )

    def _wrap(self, handler: Handler) -> Handler:
        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            connection = self._by_handler.get(request.protocol)
            task = asyncio.current_task()
            if connection is not None and task is not None:
                connection.request_started()
                ended = connection.request_ended
                # aiohttp runs the handler, then writes its response, in this task
                task.add_done_callback(lambda _: ended())
            return await handler(request)

        return guarded


class GuardedConnection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, a header deadline and an address slot around."""

    def __init__(self, guard: HttpGuard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        """aiohttp's protocol; made only for an admitted connection."""
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._busy = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # a stream server's transport
        peer = stream.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._guard.admit(self._address):
            stream.write(_TOO_MANY)
            stream.close()
            return
        inner = self._inner = self._make_inner()
        self._guard.track(inner, self)
        self._transport = stream
        inner.connection_made(stream)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        inner = self._inner
        if inner is None:
            return
        self._inner = None
        self._transport = None
        self._disarm()
        self._guard.release(inner, self._address)
        inner.connection_lost(exc)

    def request_started(self) -> None:
        self._busy += 1
        self._disarm()

    def request_ended(self) -> None:
        self._busy -= 1
        if self._busy == 0 and self._transport is not None:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._guard.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        transport = self._transport
        if transport is None or self._busy:
            return
        self._guard.expired(self._address)
        if transport.get_write_buffer_size():
            transport.abort()  # it does not read its last response either
        else:
            transport.close()


class GuardedSite(web.BaseSite):
    """Like web.TCPSite, but every connection goes through guard."""

    __slots__ = ("_bound_port", "_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        guard: HttpGuard,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._bound_port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._bound_port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.install(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self._guard.header_timeout_s if self._ssl_context else None,
        )
        if self._server.sockets:
            self._bound_port = int(self._server.sockets[0].getsockname()[1])
