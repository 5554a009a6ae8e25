"""The LAN daemon: one aiohttp application on one port, made by make_app.

/ws is the voice protocol (docs/protocol.md), /talk the browser voice client, / the dashboard,
/healthz a liveness check (edgevoice.server.routes), /api/* and /metrics status for the dashboard
and Prometheus (edgevoice.server.status); every finished turn goes to the turn log
(edgevoice.server.turnlog). Each resource the app holds has one cleanup context, entered in this
order when it starts and left in the reverse when it stops:

- the pairing token, read before anything is served;
- the engines, loaded and warmed before the port opens and shared by every client (one inference
  at a time per engine, a bounded wait queue, `busy` when it is full). A model that fails to load
  does not stop the start: the box serves degraded (edgevoice.engines.loader), says which model
  and why, and loads again once the file changes;
- the turn log's writer thread;
- the skills (edgevoice.skills.box): their sentences, timers and shopping list, loaded once; timers
  ring from here on (one that ended while the daemon was down rings at once);
- the box's own microphone conversation, when configured, once there are engines;
- the mDNS advertisement, on the interfaces the box listens on, withdrawn when it stops.

The port is bound (not yet listening) before the app is made, so the app knows it; it listens once
every context is entered. On shutdown the WebSockets are closed (1001) before the contexts are left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from edgevoice import protocol
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.loader import ModelLoader
from edgevoice.errors import EdgevoiceError
from edgevoice.events import Event, TurnDone
from edgevoice.fingerprint import of_pem_file
from edgevoice.server import skills_api
from edgevoice.server.access.guard import GuardedSite, HttpGuard, bind
from edgevoice.server.access.origins import OriginPolicy, host_guard
from edgevoice.server.access.pairing import Pairing
from edgevoice.server.access.tokens import TOKEN_FILE, TokenStore, auth_required, tls_wanted
from edgevoice.server.conversations import MIC_CONVERSATION, ConversationStore
from edgevoice.server.identity import box_identity, box_name, host_aliases
from edgevoice.server.routes import add_routes
from edgevoice.server.skills_api import timers_json
from edgevoice.server.state import (
    ADDRESS,
    CLIENTS,
    CONFIG,
    CONVERSATIONS,
    MIC,
    MODELS,
    ORIGINS,
    PAIRING,
    RECORDER,
    SKILLS,
    WYOMING,
    Address,
    Clients,
    Models,
    Recorder,
)
from edgevoice.server.status import EventFeed, StatusApi
from edgevoice.server.turnlog import LatencyLog
from edgevoice.skills.box import BoxSkills
from edgevoice.transports.wyoming import WyomingServer

_log = logging.getLogger(__name__)
MIC_CLIENT = "mic"
"""The client name the box's own microphone conversation is logged under."""
SHUTDOWN_TIMEOUT_S = 5.0


def make_app(config: Config, address: Address, models: Models) -> web.Application:
    """The daemon's application for a box serving at address with these models (loaded or not yet)."""
    settings = config.server
    origins = OriginPolicy(
        own_hosts(address),
        settings.allowed_origins,
        refresh=lambda: own_hosts(address),
    )
    pairing = Pairing(
        TokenStore(config.data_dir / TOKEN_FILE), lambda origin: origins.allows(origin, address.port), address.secure
    )
    pairing.enabled = auth_required(settings.auth, address.host)
    pairing.fingerprint = address.fingerprint
    turn_log = LatencyLog(
        config.data_dir / "edgevoice.db", keep_days=settings.turns_keep_days, max_turns=settings.turns_max
    )
    app = web.Application(client_max_size=64 * 1024, middlewares=[host_guard(origins), pairing.middleware])
    app[CONFIG] = config
    app[ADDRESS] = address
    app[MODELS] = models
    app[ORIGINS] = origins
    app[PAIRING] = pairing
    app[CONVERSATIONS] = ConversationStore(
        config.data_dir / "conversations",
        config.llm.system_prompt,
        config.llm.history_turns,
        settings.max_conversations,
    )
    app[RECORDER] = Recorder(turn_log, EventFeed(), settings.store_text)
    app[CLIENTS] = Clients(
        settings.max_clients, settings.max_clients_per_address, settings.max_pending, settings.max_pending_per_address
    )
    add_routes(app)
    app.router.add_post("/api/pair", pairing.pair)
    app.router.add_get("/api/devices", pairing.list_devices)
    app.router.add_delete("/api/devices/{device}", pairing.forget_device)
    StatusApi(
        config=config,
        log=turn_log,
        feed=app[RECORDER].feed,
        engines=lambda: models.engines,
        connections=app[CLIENTS].stats,
        started=lambda: address.opened,
        model_failures=lambda: models.failures,
        timers=lambda: timers_json(app.get(SKILLS)),
    ).add_routes(app)
    skills_api.add_routes(app)
    app.cleanup_ctx.extend([_pairing_token, _engines, _turn_log, _skills, _mic_conversation, _wyoming, _advertisement])
    app.on_shutdown.extend([_close_clients, _close_feed])
    return app


def own_hosts(address: Address) -> set[str]:
    """Every name a page may use for the box in Host and Origin: its identity, and the address it listens on
    (127.0.0.2, a virtual IP that no interface lists by itself)."""
    hosts = box_identity(address.name).hosts
    if address.host not in ("", "0.0.0.0", "::"):
        hosts.add(address.host.lower())
    return hosts


async def _pairing_token(app: web.Application) -> AsyncIterator[None]:
    pairing = app[PAIRING]
    if pairing.enabled:
        _token, pairing.token_created = await asyncio.to_thread(pairing.tokens.load)
    yield


async def _engines(app: web.Application) -> AsyncIterator[None]:
    """Load the engines (unless given), or serve degraded and load them again when their files change."""
    models = app[MODELS]
    if models.engines is None:
        # A bad model file does not stop the start: the port opens, degraded, and says which and why.
        models.engines = await asyncio.to_thread(models.loader.load)
    if models.engines is None:
        models.retrying = asyncio.create_task(_heal(models), name="model-retry")
    else:
        models.loaded.set()
    try:
        yield
    finally:
        if models.retrying is not None:
            models.retrying.cancel()
            await asyncio.gather(models.retrying, return_exceptions=True)
        if models.owned and models.engines is not None:
            models.engines.close()
            models.engines = None


async def _heal(models: Models) -> None:
    models.engines = await models.loader.retry()
    _log.warning("all models loaded: serving normally")
    models.loaded.set()


async def _turn_log(app: web.Application) -> AsyncIterator[None]:
    turn_log = app[RECORDER].turn_log
    turn_log.start()
    try:
        yield
    finally:
        await asyncio.to_thread(turn_log.close)


async def _skills(app: web.Application) -> AsyncIterator[None]:
    models, feed = app[MODELS], app[RECORDER].feed
    skills = await BoxSkills.open(
        app[CONFIG], lambda: models.engines, lambda message: feed.publish({**message.to_json(), "client": ""})
    )
    app[SKILLS] = skills
    skills.start()
    try:
        yield
    finally:
        await skills.close()


async def _mic_conversation(app: web.Application) -> AsyncIterator[None]:
    if app[CONFIG].server.mic:
        app[MIC] = asyncio.create_task(_talk_through_mic(app), name="mic")
    try:
        yield
    finally:
        mic = app.get(MIC)
        if mic is not None:
            mic.cancel()
            await asyncio.gather(mic, return_exceptions=True)


async def _talk_through_mic(app: web.Application) -> None:
    """A conversation on the box's own microphone and speaker, beside the socket clients, once there are engines."""
    from edgevoice.transports import local  # noqa: PLC0415  PortAudio loads only for the mic

    models, store, record, skills = app[MODELS], app[CONVERSATIONS], app[RECORDER], app[SKILLS]
    await models.loaded.wait()
    opened = store.open(MIC_CONVERSATION)

    def on_event(event: Event) -> None:
        if isinstance(event, TurnDone) and event.transcript:
            _log.info("mic turn %d: %r -> %r", event.turn, event.transcript, event.reply)
            store.save(opened.id, opened.conversation)
        record(MIC_CLIENT, opened.id, event)

    try:
        await local.run_mic(
            models.require(), opened.conversation, on_event=on_event, skills=skills.for_conversation(opened.id)
        )
    except asyncio.CancelledError:
        raise
    except Exception as err:  # no device, PortAudio missing: the socket clients keep working
        _log.error("the box's microphone conversation stopped: %s", err)


async def _wyoming(app: web.Application) -> AsyncIterator[None]:
    """Home Assistant's protocol on its own TCP port, on the same engines, conversations and skills as /ws."""
    config, address, models = app[CONFIG], app[ADDRESS], app[MODELS]
    if not config.wyoming.port:
        yield
        return
    wyoming = WyomingServer(config, lambda: models.engines, app[CONVERSATIONS], app[SKILLS])
    await wyoming.start(address.host, 0 if address.any_port else config.wyoming.port)
    app[WYOMING] = wyoming
    try:
        yield
    finally:
        await wyoming.stop()


async def _advertisement(app: web.Application) -> AsyncIterator[None]:
    if not app[CONFIG].server.discovery:
        yield
        return
    from edgevoice.discovery import Advertiser  # noqa: PLC0415  zeroconf starts only when advertising

    address = app[ADDRESS]
    advertiser = Advertiser(
        name=address.name,
        host=address.host,
        port=address.port,
        protocol=protocol.PROTOCOL_VERSION,
        secure=address.secure,
        fingerprint=address.fingerprint,
        wyoming_port=wyoming.port if (wyoming := app.get(WYOMING)) is not None else 0,
    )
    try:
        await advertiser.start()
    except (EdgevoiceError, OSError) as err:
        _log.warning("not advertised over mDNS: %s", err)
        yield
        return
    try:
        yield
    finally:
        await advertiser.stop()


async def _close_clients(app: web.Application) -> None:
    await app[CLIENTS].close_all()


async def _close_feed(app: web.Application) -> None:
    app[RECORDER].feed.close()


class Server:
    """A handle on the daemon's app for serve() and tests: start it on a port, stop it, read where it serves.

    Pass loaded engines to share them (tests); otherwise each start loads its own.
    """

    def __init__(self, config: Config, engines: Engines | None = None, *, loader: ModelLoader | None = None) -> None:
        self.config = config
        self._engines = engines
        self._loader = loader or ModelLoader(config)
        self._runner: web.AppRunner | None = None

    @property
    def name(self) -> str:
        return box_name(self.config)

    @property
    def secure(self) -> bool:
        """Whether it serves (or would serve, on its configured host) HTTPS and WSS: with a certificate it was
        given, or one of its own (tls "on", or "auto" with auth on off loopback)."""
        if self._runner is not None:
            return self.address.secure
        return self._secure_on(self.config.server.host)

    def _secure_on(self, host: str) -> bool:
        settings = self.config.server
        return tls_wanted(settings.tls, settings.tls_cert is not None, settings.auth, host)

    @property
    def app(self) -> web.Application:
        if self._runner is None:
            raise EdgevoiceError("the server is not running")
        return self._runner.app

    @property
    def address(self) -> Address:
        return self.app[ADDRESS]

    @property
    def port(self) -> int:
        return self.app[ADDRESS].port

    @property
    def http_url(self) -> str:
        return self.app[ADDRESS].http_url

    @property
    def ws_url(self) -> str:
        return self.app[ADDRESS].ws_url

    @property
    def models(self) -> Models:
        return self.app[MODELS]

    @property
    def engines(self) -> Engines:
        return self.models.require()

    @property
    def degraded(self) -> bool:
        """Serving without engines: a model failed to load (models.failures says which and why)."""
        return self.models.degraded

    @property
    def pairing(self) -> Pairing:
        return self.app[PAIRING]

    @property
    def tokens(self) -> TokenStore:
        return self.pairing.tokens

    @property
    def turn_log(self) -> LatencyLog:
        return self.app[RECORDER].turn_log

    @property
    def conversations(self) -> ConversationStore:
        return self.app[CONVERSATIONS]

    @property
    def wyoming(self) -> WyomingServer | None:
        """The Wyoming server, while the daemon runs with one."""
        return self.app.get(WYOMING)

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Take the port, enter every context (models, turn log, mic, mDNS), then listen."""
        settings = self.config.server
        host = settings.host if host is None else host
        port = settings.port if port is None else port
        await asyncio.to_thread(host_aliases)  # a DNS lookup: never on the event loop
        tls = None
        secure = self._secure_on(host)
        fingerprint = ""
        if secure:
            from edgevoice.server.tls import certificate_path, server_context  # noqa: PLC0415  cryptography: TLS only

            tls = server_context(self.config, self.name)
            fingerprint = await asyncio.to_thread(of_pem_file, certificate_path(self.config))
        guard = HttpGuard(settings.header_timeout_s, settings.max_connections_per_address, settings.max_connections)
        try:
            bound = await bind(host or None, port, guard, tls)
        except OSError as err:
            raise _cannot_listen(host, port, err) from None
        address = Address(
            self.name, host, int(bound.sockets[0].getsockname()[1]), secure, any_port=port == 0, fingerprint=fingerprint
        )
        runner = web.AppRunner(
            make_app(self.config, address, Models(self._loader, self._engines)),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        try:
            await runner.setup()
            await GuardedSite(runner, bound, guard, tls).start()
        except OSError as err:
            await _abandon(runner, bound)
            raise _cannot_listen(host, port, err) from None
        except BaseException:
            await _abandon(runner, bound)
            raise
        address.opened = time.monotonic()
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening, close every connection (1001), leave every context: mDNS, mic, turn log, engines."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _cannot_listen(host: str, port: int, err: OSError) -> EdgevoiceError:
    return EdgevoiceError(f"cannot listen on {host or '*'}:{port}: {err.strerror or err}")


async def _abandon(runner: web.AppRunner, bound: asyncio.Server) -> None:
    """Undo a start that failed half way: close the port, leave the contexts entered so far."""
    bound.close()
    await runner.cleanup()
