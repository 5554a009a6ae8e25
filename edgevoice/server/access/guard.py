"""Slow and hoarding HTTP clients: a deadline for request headers, a cap on connections per address.

aiohttp bounds the reading of request headers only through its keep-alive timer (75 s by default
in 3.14), so a client that opens sockets and trickles header bytes (slowloris) holds them that
long. Every accepted connection is wrapped here instead:

- it must deliver a complete request head within header_timeout_s of opening, and again within
  header_timeout_s of its previous response ending (keep-alive), or it is closed. No deadline runs
  while a request is handled, so a long event stream or an upgraded WebSocket is never cut.
- a request with a body (POST /api/pair) must deliver the whole body within header_timeout_s of
  its headers, or it is answered 408 and closed: a body trickled a byte at a time holds nothing.
- at most max_connections_per_address are open at once from one address, and max_connections in
  all (under the unit's LimitNOFILE); one more is answered a bare 503 and closed before anything
  it sent is read.

"Headers complete" is when aiohttp calls the server's request handler (`web.Server.request_handler`,
wrapped here, is read by each new connection); "response ended" is when the task aiohttp runs that
handler in, and writes the response from, is done. With TLS the handshake is bounded by asyncio's
ssl_handshake_timeout (the same header_timeout_s), and the header deadline starts after it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

_log = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
BACKLOG = 128
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

    def __init__(self, header_timeout_s: float, max_connections_per_address: int, max_connections: int = 1024) -> None:
        self.header_timeout_s = header_timeout_s
        self.slots = AddressSlots(max_connections_per_address)
        self.max_connections = max_connections
        self.open = 0
        """Connections open now, from every address."""
        self.refused = 0
        """Connections refused because their address had too many open."""
        self.timed_out = 0
        """Connections closed for not sending complete headers in time."""
        self._by_handler: dict[object, GuardedConnection] = {}
        self._server: web.Server | None = None

    def install(self, server: web.Server) -> None:
        """Serve connections with aiohttp's server, its request handler wrapped (once)."""
        if server is not self._server:
            self._server = server
            server.request_handler = self._wrap(server.request_handler)

    def connection(self) -> asyncio.Protocol:
        """The protocol of a newly accepted connection: aiohttp's, inside the guard."""
        server = self._server
        if server is None:
            raise RuntimeError("install() aiohttp's server before accepting connections")
        return GuardedConnection(self, server)

    def admit(self, address: str) -> bool:
        """Take a slot for a new connection from address; False (counted, logged) when it has none left."""
        if self.open >= self.max_connections:
            self.refused += 1
            if self.refused % 100 == 1:
                _log.warning(
                    "refused a connection from %s: %d open in all (%d refused so far)", address, self.open, self.refused
                )
            return False
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
        self.open += 1
        return True

    def track(self, inner: asyncio.Protocol, connection: GuardedConnection) -> None:
        """Let requests on aiohttp's protocol inner find their connection."""
        self._by_handler[inner] = connection

    def release(self, inner: asyncio.Protocol, address: str) -> None:
        self.open -= 1
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
            if request.body_exists:
                refusal = await self._read_body(request)
                if refusal is not None:
                    refusal.force_close()  # the rest of the body is never read
                    return refusal
            return await handler(request)

        return guarded

    async def _read_body(self, request: web.BaseRequest) -> web.Response | None:
        """Read the body now (kept for the handler) within header_timeout_s; the answer when it cannot be."""
        try:
            async with asyncio.timeout(self.header_timeout_s):
                await request.read()
        except TimeoutError:
            self.expired(request.remote or "")
            return web.Response(status=408, text="the request body came too slowly\n")
        except web.HTTPException as err:  # over the app's client_max_size
            return web.Response(status=err.status, text=err.text)
        return None


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


async def bind(
    host: str | None, port: int, guard: HttpGuard, ssl_context: ssl.SSLContext | None = None
) -> asyncio.Server:
    """The listening address taken but not yet listening: its port is known before the app starts.

    Until GuardedSite starts it, a client is refused (not kept waiting in the backlog) as if nothing
    were there: the models may take a while to load.
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        guard.connection,
        host,
        port,
        ssl=ssl_context,
        backlog=BACKLOG,
        ssl_handshake_timeout=guard.header_timeout_s if ssl_context else None,
        start_serving=False,
    )


class GuardedSite(web.BaseSite):
    """Like web.TCPSite, on an address bind() took, every connection going through guard."""

    __slots__ = ("_bound", "_guard")

    def __init__(
        self, runner: web.BaseRunner, bound: asyncio.Server, guard: HttpGuard, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._bound = bound
        self._guard = guard

    @property
    def name(self) -> str:
        host, port = self._bound.sockets[0].getsockname()[:2] if self._bound.sockets else ("0.0.0.0", 0)
        return f"{'https' if self._ssl_context else 'http'}://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        self._guard.install(server)
        self._server = self._bound  # the runner's addresses and stop() read it
        await self._bound.start_serving()
