"""The daemon's own routes: /ws (the voice protocol), /healthz, and the pages of the dashboard and voice client.

Each reads what it needs from request.app (edgevoice.server.state); the status routes are in
edgevoice.server.status, pairing in edgevoice.server.access.pairing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from edgevoice import __version__, protocol
from edgevoice.engines.loader import report as model_report
from edgevoice.engines.remote import engine_states
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
)
from edgevoice.transports.socket import Connection, Limits

_log = logging.getLogger(__name__)
DASHBOARD_DIR = Path(os.environ.get("EDGEVOICE_DASHBOARD_DIR") or Path(__file__).resolve().parents[2] / "dashboard")


async def healthz(request: web.Request) -> web.Response:
    """200 while serving; 503, naming each model that failed or server on the LAN that is down, and why.

    Where the box asks for its token, strangers get the status and version only: client names and
    conversation ids are for the paired.
    """
    app = request.app
    models, clients, mic, wyoming = app[MODELS], app[CLIENTS], app.get(MIC), app.get(WYOMING)
    engines = [] if models.engines is None else engine_states(models.engines)
    degraded = models.degraded or not all(engine["ok"] for engine in engines)
    status = 503 if degraded else 200
    if not app[PAIRING].paired(request):
        return web.json_response({"status": "degraded" if degraded else "ok", "version": __version__}, status=status)
    return web.json_response(
        {
            "status": "degraded" if degraded else "ok",
            "engines": engines,
            "wyoming": None if wyoming is None else {"port": wyoming.port, "clients": wyoming.clients},
            **model_report(not models.degraded, models.failures),
            "version": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "box": app[ADDRESS].name,
            "uptime_s": round(time.monotonic() - app[ADDRESS].opened, 1),
            "clients": len(clients),
            "connections": clients.stats(),
            "conversations": len(app[CONVERSATIONS]),
            # while degraded the mic conversation waits for the models: not running yet
            "mic": mic is not None and not mic.done() and not models.degraded,
        },
        status=status,
    )


async def voice(request: web.Request) -> web.StreamResponse:
    """/ws: one client's voice session, once its origin, the box's models and its room for clients allow."""
    app = request.app
    origin = request.headers.get("Origin")
    if not app[ORIGINS].allows(origin, app[ADDRESS].port):
        _log.warning("refused a WebSocket from origin %s", origin)
        raise web.HTTPForbidden(text="this origin may not open a voice session on this box\n")
    ws = web.WebSocketResponse(
        heartbeat=protocol.PING_INTERVAL_S,
        compress=False,
        # aiohttp refuses a message whose size is >= max_msg_size: one more, so the largest legal frame passes
        max_msg_size=protocol.MAX_FRAME_BYTES + 1,
    )
    await ws.prepare(request)
    engines = app[MODELS].engines
    if engines is None:
        await _refuse_degraded(request, ws)
        return ws
    clients = app[CLIENTS]
    settings = app[CONFIG].server
    connection = Connection(
        ws,
        engines,
        app[CONVERSATIONS],
        app[ADDRESS].name,
        clients.claim,
        observe=app[RECORDER],
        authorize=app[PAIRING].authorizer(request),
        admit=clients.admit,
        owner=device.id if (device := app[PAIRING].device(request)) is not None else "",
        limits=Limits(
            frames_per_second=settings.max_frames_per_second,
            hello_timeout_s=settings.hello_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
        ),
        skills=app.get(SKILLS),
    )
    # counted against max_clients only once its hello is authorised; until then it waits in a pool of its own
    clients.wait_for_hello(connection, request.remote or "")
    try:
        await connection.run()
    except Exception:
        _log.exception("connection from %s failed", request.remote)
        await ws.close(code=protocol.CLOSE_INTERNAL, message=b"internal error")
    finally:
        clients.remove(connection)
    return ws


async def _refuse_degraded(request: web.Request, ws: web.WebSocketResponse) -> None:
    """A fatal models_unavailable error, then 1013: clients retry later, as they do when the box is full."""
    kinds = ", ".join(failure.kind.value for failure in request.app[MODELS].failures) or "models"
    refusal = protocol.ProtocolError(
        "models_unavailable",
        f"this box cannot answer: its models failed to load ({kinds}); /healthz says why",
        close_code=protocol.CLOSE_TRY_LATER,
    )
    with contextlib.suppress(ConnectionError):
        await ws.send_str(protocol.Error.of(refusal).to_text())
    await ws.close(code=protocol.CLOSE_TRY_LATER, message=b"models unavailable; try again later")


def page(name: str) -> Handler:
    """A page of the dashboard or the voice client, checked by the browser on every load."""

    async def serve_page(_request: web.Request) -> web.StreamResponse:
        path = DASHBOARD_DIR / name
        if not path.is_file():
            raise web.HTTPNotFound(text=f"{name} is not installed in {DASHBOARD_DIR}\n")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return serve_page


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Server": "edgevoice",
}
"""On every response: no page of the box inside another's frame (clickjacking the pairing), no
sniffing a JSON answer into a script, no URL of the box in a Referer, no version banner."""


async def harden_response(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on everything; browsers check the client's files on each load, so an upgraded
    page never runs an old talk.js."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")


def add_routes(app: web.Application) -> None:
    app.router.add_get(protocol.WS_PATH, voice)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/talk", page("talk.html"))
    app.router.add_get("/pair", page("pair.html"))
    app.router.add_get("/", page("index.html"))
    if DASHBOARD_DIR.is_dir():
        app.router.add_static("/static", DASHBOARD_DIR, follow_symlinks=False)
    app.on_response_prepare.append(harden_response)
