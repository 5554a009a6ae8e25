"""The LAN daemon: one aiohttp application on one port.

/ws is the voice protocol (docs/protocol.md), /talk the browser voice client, / the dashboard,
/healthz a liveness check, /api/* and /metrics status for the dashboard and Prometheus
(edgevoice.status_api); every finished turn goes to the turn log (edgevoice.metrics). Engines
are loaded and warmed before the port opens, shared by every client (one inference at a time
per engine, a bounded wait queue, `busy` when it is full), and closed after the last connection
has gone. mDNS advertises the box on the interfaces it listens
on and withdraws it on shutdown. A model that fails to load does not stop the start: the box
serves degraded (edgevoice.model_loader), says which model and why, and loads again once the
file changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from edgevoice import __version__, protocol
from edgevoice.auth import TOKEN_FILE, TokenStore, auth_required
from edgevoice.config import Config
from edgevoice.connection import Connection, Limits
from edgevoice.conversations import MIC_CONVERSATION, ConversationStore
from edgevoice.discovery import interface_addresses
from edgevoice.engines.loaded import Engines
from edgevoice.errors import ConfigError, EdgevoiceError
from edgevoice.events import Event, TurnDone
from edgevoice.http_guard import GuardedSite, HttpGuard
from edgevoice.metrics import LatencyLog, TurnRecord, Written
from edgevoice.model_loader import ModelLoader
from edgevoice.model_loader import report as model_report
from edgevoice.pairing import Pairing
from edgevoice.status_api import EventFeed, StatusApi, feed_message
from edgevoice.systemd_notify import Notifier

_log = logging.getLogger(__name__)
MIC_CLIENT = "mic"
"""The client name the box's own microphone conversation is logged under."""
DASHBOARD_DIR = Path(os.environ.get("EDGEVOICE_DASHBOARD_DIR") or Path(__file__).resolve().parents[1] / "dashboard")


def box_name(config: Config) -> str:
    return config.server.name or socket.gethostname().split(".")[0] or "edgevoice"


def _own_hosts(name: str) -> set[str]:
    """Every name and address this box can be reached by: what a page served by the box has as its Origin."""
    hostname = socket.gethostname().lower()
    hosts = {
        "localhost",
        name.lower(),
        f"{name.lower()}.local",
        hostname,
        f"{hostname}.local",
        socket.getfqdn().lower(),
    }
    with contextlib.suppress(OSError):
        hosts |= {str(address) for address, _ in interface_addresses()}
    return hosts | {"127.0.0.1", "::1"}


class OriginPolicy:
    """Which browser pages may open /ws: the box's own, plus any configured. No Origin: not a browser.

    refresh, when given, is asked again (at most every few seconds) for an origin not yet known:
    a box that started before its network came up learns its LAN address without a restart.
    """

    REFRESH_S = 5.0

    def __init__(self, hosts: set[str], extra: str, refresh: Callable[[], set[str]] | None = None) -> None:
        self._hosts = {h.lower() for h in hosts}
        self._extra = {o.strip().rstrip("/").lower() for o in extra.split(",") if o.strip()}
        self._refresh = refresh
        self._refreshed = time.monotonic()

    def allows(self, origin: str | None, port: int) -> bool:
        if origin is None:
            return True
        origin = origin.strip().rstrip("/").lower()
        if origin in self._extra:
            return True
        try:
            parts = urlsplit(origin)
            origin_port = parts.port
        except ValueError:  # a bad port or a bracketed host that is not an IPv6 address
            return False
        if parts.scheme not in ("http", "https") or parts.hostname is None:
            return False
        if origin_port is None:
            origin_port = 443 if parts.scheme == "https" else 80
        if origin_port != port:
            return False
        return self._known(parts.hostname)

    def allows_host(self, host: str | None) -> bool:
        """Whether a Host header names this box (or a configured origin's host): DNS rebinding's guard."""
        if not host:
            return False
        try:
            hostname = urlsplit(f"//{host.strip()}").hostname
        except ValueError:
            return False
        if hostname is None:
            return False
        hostname = hostname.rstrip(".")
        return hostname in self._extra_hosts() or self._known(hostname)

    def _extra_hosts(self) -> set[str]:
        hosts = set()
        for origin in self._extra:
            with contextlib.suppress(ValueError):
                hostname = urlsplit(origin).hostname
                if hostname:
                    hosts.add(hostname)
        return hosts

    def _known(self, hostname: str) -> bool:
        stale = time.monotonic() - self._refreshed > self.REFRESH_S
        if hostname not in self._hosts and self._refresh is not None and stale:
            self._refreshed = time.monotonic()
            self._hosts = {h.lower() for h in self._refresh()}
        return hostname in self._hosts


def _changes_state(request: web.Request) -> bool:
    return request.method not in ("GET", "HEAD", "OPTIONS") or request.path == protocol.WS_PATH


async def _revalidate_static(request: web.Request, response: web.StreamResponse) -> None:
    """Browsers check the client's files on each load, so an upgraded page never runs an old talk.js."""
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")


class Server:
    """The daemon's application. Pass loaded engines to share them (tests); otherwise start() loads them."""

    def __init__(self, config: Config, engines: Engines | None = None) -> None:
        self.config = config
        self.name = box_name(config)
        self._engines = engines
        self._owns_engines = engines is None
        self._store = ConversationStore(
            config.data_dir / "conversations",
            config.llm.system_prompt,
            config.llm.history_turns,
            config.server.max_conversations,
        )
        self._origins = OriginPolicy(
            _own_hosts(self.name), config.server.allowed_origins, refresh=lambda: _own_hosts(self.name)
        )
        self.turn_log = LatencyLog(
            config.data_dir / "edgevoice.db",
            keep_days=config.server.turns_keep_days,
            max_turns=config.server.turns_max,
        )
        self._feed = EventFeed()
        self._connections: set[Connection] = set()
        self._per_address: dict[str, int] = {}
        self._by_conversation: dict[str, Connection] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._advertiser: Any = None
        self._mic: asyncio.Task[None] | None = None
        self.models = ModelLoader(config)
        self._retry: asyncio.Task[None] | None = None
        self.on_models_loaded: Callable[[], None] | None = None
        """Called once engines that failed to load at start have loaded after all."""
        self._started = time.monotonic()
        self.port = 0
        self.host = ""
        self.secure = config.server.tls_cert is not None or config.server.tls
        self.on_event: Callable[[Event], None] | None = None
        self.pairing = Pairing(
            TokenStore(config.data_dir / TOKEN_FILE),
            lambda origin: self._origins.allows(origin, self.port),
            self.secure,
        )

    @property
    def tokens(self) -> TokenStore:
        return self.pairing.tokens

    @property
    def engines(self) -> Engines:
        if self._engines is None:
            raise EdgevoiceError("the server has not loaded its engines")
        return self._engines

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{protocol.WS_PATH}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024, middlewares=[self._host_guard, self.pairing.middleware])
        app.router.add_get(protocol.WS_PATH, self._websocket)
        app.router.add_get("/healthz", self._healthz)
        StatusApi(
            config=self.config,
            log=self.turn_log,
            feed=self._feed,
            engines=lambda: self._engines,
            connections=self._connection_stats,
            started=lambda: self._started,
            model_failures=lambda: self.models.failures,
        ).add_routes(app)
        app.router.add_get("/talk", self._page("talk.html"))
        app.router.add_get("/pair", self._page("pair.html"))
        app.router.add_post("/api/pair", self.pairing.pair)
        app.router.add_get("/", self._page("index.html"))
        if DASHBOARD_DIR.is_dir():
            app.router.add_static("/static", DASHBOARD_DIR, follow_symlinks=False)
        app.on_response_prepare.append(_revalidate_static)
        app.on_shutdown.append(self._close_connections)
        app.on_shutdown.append(self._close_feed)
        return app

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Load engines (unless given), open the port, advertise, start the mic conversation if configured."""
        settings = self.config.server
        host = settings.host if host is None else host
        port = settings.port if port is None else port
        tls = self._tls_context()
        self.pairing.enabled = auth_required(settings.auth, host)
        if self.pairing.enabled:
            await asyncio.to_thread(self.tokens.load)
        if self._engines is None:
            # A bad model file does not stop the start: the port opens, degraded, and says which and why.
            self._engines = await asyncio.to_thread(self.models.load)
        self._feed = EventFeed()  # a new one per start: stop() closes it
        self.turn_log.start()
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await self._runner.setup()
        guard = HttpGuard(settings.header_timeout_s, settings.max_connections_per_address)
        site = GuardedSite(self._runner, host or None, port, guard, ssl_context=tls)
        try:
            await site.start()
        except OSError as err:
            await self._runner.cleanup()
            raise EdgevoiceError(f"cannot listen on {host or '*'}:{port}: {err.strerror or err}") from None
        addresses = self._runner.addresses
        self.port = int(addresses[0][1]) if addresses else port
        self.host = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        self._started = time.monotonic()
        if settings.discovery:
            await self._advertise(host)
        if self._engines is None:
            self._retry = asyncio.create_task(self._retry_models(), name="model-retry")
        elif settings.mic:
            self._mic = asyncio.create_task(self._run_mic(), name="mic")

    @property
    def degraded(self) -> bool:
        """Serving without engines: a model failed to load (self.models.failures says which and why)."""
        return self._engines is None

    async def _retry_models(self) -> None:
        self._engines = await self.models.retry()
        _log.warning("all models loaded: serving normally")
        if self.config.server.mic:
            self._mic = asyncio.create_task(self._run_mic(), name="mic")
        if self.on_models_loaded is not None:
            self.on_models_loaded()

    async def stop(self) -> None:
        """Withdraw from mDNS, close every connection (1001), stop the mic, release the engines."""
        if self._advertiser is not None:
            with contextlib.suppress(Exception):
                await self._advertiser.stop()
            self._advertiser = None
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
            self._retry = None
        if self._mic is not None:
            self._mic.cancel()
            await asyncio.gather(self._mic, return_exceptions=True)
            self._mic = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.to_thread(self.turn_log.close)
        if self._owns_engines and self._engines is not None:
            self._engines.close()
            self._engines = None

    def _tls_context(self) -> ssl.SSLContext | None:
        settings = self.config.server
        cert, key = settings.tls_cert, settings.tls_key
        if (cert is None or key is None) and settings.tls:
            from edgevoice.tls import TLS_DIR, box_identity, ensure_certificate  # noqa: PLC0415

            try:
                cert, key = ensure_certificate(self.config.data_dir / TLS_DIR, box_identity(self.name))
            except OSError as err:
                raise ConfigError(f"cannot make a TLS certificate in {self.config.data_dir / TLS_DIR}: {err}") from None
        if cert is None or key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"cannot use TLS certificate {cert} / {key}: {err}") from None
        return context

    async def _advertise(self, host: str) -> None:
        from edgevoice.discovery import Advertiser  # noqa: PLC0415  zeroconf starts only when advertising

        advertiser = Advertiser(
            name=self.name, host=host, port=self.port, protocol=protocol.PROTOCOL_VERSION, secure=self.secure
        )
        try:
            await advertiser.start()
        except (EdgevoiceError, OSError) as err:
            _log.warning("not advertised over mDNS: %s", err)
            return
        self._advertiser = advertiser

    async def _run_mic(self) -> None:
        from edgevoice.audio import devices  # noqa: PLC0415

        opened = self._store.open(MIC_CONVERSATION)

        def on_event(event: Event) -> None:
            if isinstance(event, TurnDone) and event.transcript:
                _log.info("mic turn %d: %r -> %r", event.turn, event.transcript, event.reply)
                self._store.save(opened.id, opened.conversation)
            self._observe(MIC_CLIENT, opened.id, event)
            if self.on_event is not None:
                self.on_event(event)

        try:
            await devices.run_mic(self.engines, opened.conversation, on_event=on_event)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # no device, PortAudio missing: the socket clients keep working
            _log.error("the box's microphone conversation stopped: %s", err)

    def _page(self, name: str) -> Callable[[web.Request], Any]:
        async def page(_request: web.Request) -> web.StreamResponse:
            path = DASHBOARD_DIR / name
            if not path.is_file():
                raise web.HTTPNotFound(text=f"{name} is not installed in {DASHBOARD_DIR}\n")
            return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

        return page

    @web.middleware
    async def _host_guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """/ws and every POST must name the box in Host: a page on a rebound name gets 403, not the box."""
        if _changes_state(request) and not self._origins.allows_host(request.headers.get("Host")):
            _log.warning("refused %s %s for host %r", request.method, request.path, request.headers.get("Host"))
            raise web.HTTPForbidden(text="this host name does not belong to this box\n")
        return await handler(request)

    async def _healthz(self, _request: web.Request) -> web.Response:
        """200 while serving; 503, naming each model that failed and why, while degraded."""
        return web.json_response(
            {
                "status": "degraded" if self.degraded else "ok",
                **model_report(not self.degraded, self.models.failures),
                "version": __version__,
                "protocol": protocol.PROTOCOL_VERSION,
                "box": self.name,
                "uptime_s": round(time.monotonic() - self._started, 1),
                "clients": len(self._connections),
                "connections": self._connection_stats(),
                "conversations": len(self._store),
                "mic": self._mic is not None and not self._mic.done(),
            },
            status=503 if self.degraded else 200,
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not self._origins.allows(origin, self.port):
            _log.warning("refused a WebSocket from origin %s", origin)
            raise web.HTTPForbidden(text="this origin may not open a voice session on this box\n")
        ws = web.WebSocketResponse(
            heartbeat=protocol.PING_INTERVAL_S,
            compress=False,
            max_msg_size=protocol.MAX_FRAME_BYTES,
        )
        await ws.prepare(request)
        if self.degraded:
            await self._refuse_degraded(ws)
            return ws
        settings = self.config.server
        address = request.remote or ""
        if len(self._connections) >= settings.max_clients:
            await ws.close(code=protocol.CLOSE_TRY_LATER, message=b"too many clients; try again later")
            return ws
        if self._per_address.get(address, 0) >= settings.max_clients_per_address:
            _log.warning("refused a WebSocket from %s: %d already open", address, self._per_address[address])
            await ws.close(code=protocol.CLOSE_TRY_LATER, message=b"too many clients from this address")
            return ws
        connection = Connection(
            ws,
            self.engines,
            self._store,
            self.name,
            self._claim,
            observe=self._observe,
            authorize=self.pairing.authorizer(request),
            limits=Limits(
                frames_per_second=settings.max_frames_per_second,
                hello_timeout_s=settings.hello_timeout_s,
                idle_timeout_s=settings.idle_timeout_s,
            ),
        )
        self._connections.add(connection)
        self._per_address[address] = self._per_address.get(address, 0) + 1
        try:
            await connection.run()
        except Exception:
            _log.exception("connection from %s failed", request.remote)
            await ws.close(code=protocol.CLOSE_INTERNAL, message=b"internal error")
        finally:
            self._connections.discard(connection)
            self._per_address[address] -= 1
            if not self._per_address[address]:
                del self._per_address[address]
            conversation = connection.stats.conversation
            if self._by_conversation.get(conversation) is connection:
                del self._by_conversation[conversation]
        return ws

    async def _refuse_degraded(self, ws: web.WebSocketResponse) -> None:
        """A fatal models_unavailable error, then 1013: clients retry later, as they do when the box is full."""
        kinds = ", ".join(failure.kind.value for failure in self.models.failures) or "models"
        refusal = protocol.ProtocolError(
            "models_unavailable",
            f"this box cannot answer: its models failed to load ({kinds}); /healthz says why",
            close_code=protocol.CLOSE_TRY_LATER,
        )
        with contextlib.suppress(ConnectionError):
            await ws.send_str(protocol.dumps(protocol.error_message(refusal)))
        await ws.close(code=protocol.CLOSE_TRY_LATER, message=b"models unavailable; try again later")

    def _connection_stats(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(c.stats) for c in self._connections]

    def _observe(self, client: str, conversation: str, event: Event) -> Written | None:
        """A session event from a socket client or the mic: finished turns to the turn log, some to the feed.

        For a finished turn, the future of its row's write: the client hears turn_done after it.
        """
        store_text = self.config.server.store_text
        written = None
        if isinstance(event, TurnDone):
            written = self.turn_log.record(TurnRecord.of(event, conversation, client, store_text))
        message = feed_message(event, conversation, client, store_text)
        if message is not None:
            self._feed.publish(message)
        return written

    async def _close_feed(self, _app: web.Application) -> None:
        self._feed.close()

    def _claim(self, conversation: str, connection: Connection) -> None:
        """A conversation is held by one connection: the newest (a client that reconnected) wins."""
        previous = self._by_conversation.get(conversation)
        self._by_conversation[conversation] = connection
        if previous is not None and previous is not connection:
            task = asyncio.get_running_loop().create_task(
                previous.close(protocol.CLOSE_TAKEN_OVER, "conversation resumed by another connection")
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _close_connections(self, _app: web.Application) -> None:
        """All at once, and bounded: a client that does not answer the close must not hold up the stop."""
        closing = [c.close(protocol.CLOSE_GOING_AWAY, "edgevoice is shutting down") for c in list(self._connections)]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await asyncio.gather(*closing, return_exceptions=True)


async def serve(config: Config, host: str | None = None, port: int | None = None) -> int:
    """`edgevoice serve`: run until SIGTERM or SIGINT, telling systemd (when it started us) how it goes."""
    server = Server(config)
    notifier = Notifier()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watchdog: asyncio.Task[None] | None = None
    try:
        notifier.status("loading and warming the models")
        await server.start(host, port)
        print(f"edgevoice: serving {server.name} on {server.http_url} (voice client at /talk)", flush=True)
        if server.pairing.enabled:
            print(f"edgevoice: pairing token: {server.tokens.current()} (pair a browser at /pair)", file=sys.stderr)
        serving = f"serving {server.name} on {server.http_url}"
        if server.degraded:
            # Still READY=1: the port is open and says what is wrong; exiting would only loop restarts.
            failed = ", ".join(failure.kind.value for failure in server.models.failures)
            serving = (
                f"degraded: models failed to load ({failed}), see {server.http_url}/healthz; "
                f"checking their files every {server.models.retry_interval_s:g} s"
            )
            print(f"edgevoice: {serving}", file=sys.stderr, flush=True)
            server.on_models_loaded = lambda: notifier.status(f"serving {server.name} on {server.http_url}")
        # READY=1 only now: the models answer (or said why not) and the port is open. WatchdogSec= starts here.
        notifier.ready(serving)
        watchdog = notifier.start_watchdog()
        await stop.wait()
        notifier.stopping("closing connections")
    finally:
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        await server.stop()
        notifier.close()
    print("edgevoice: stopped", flush=True)
    return 0
