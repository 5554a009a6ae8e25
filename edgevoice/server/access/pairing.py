"""Who gets in: the pairing token, the browser's session cookie, and wrong tokens counted per address.

With auth on, /api/* (but /api/pair) and /metrics need the session cookie that POST /api/pair
sets, or `Authorization: Bearer TOKEN`; a WebSocket needs the cookie or the token in its hello.
Pages, /healthz (status and version only, the rest to the paired) and /pair stay open. Never a token in a URL.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from edgevoice import protocol
from edgevoice.server.access.devices import DEVICES_FILE, Device, DeviceStore
from edgevoice.server.access.tokens import COOKIE_NAME, FailureLimiter, TokenStore


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


Authorizer = Callable[[str | None], protocol.ProtocolError | None]


class Pairing:
    def __init__(
        self,
        tokens: TokenStore,
        origin_allowed: Callable[[str | None], bool],
        secure: bool,
        devices: DeviceStore | None = None,
    ) -> None:
        self.tokens = tokens
        self.devices = devices or DeviceStore(tokens.path.parent / DEVICES_FILE)
        self.enabled = False
        """Whether the daemon asks for the pairing token: server.auth resolved against the host at start."""
        self.fingerprint = ""
        """The served certificate's SHA-256 fingerprint, shown on the dashboard; empty over plain HTTP."""
        self.token_created = False
        """Whether this start made the token (the one time it is printed)."""
        self._origin_allowed = origin_allowed
        self._secure = secure
        self._failures = FailureLimiter()

    def _address(self, request: web.Request) -> str:
        return request.remote or "unknown"

    def device(self, request: web.Request) -> Device | None:
        """The paired device whose session cookie the request carries; None without one (or auth off)."""
        if not self.enabled:
            return None
        return self.devices.check(request.cookies.get(COOKIE_NAME), self.tokens.current())

    def _cookie(self, request: web.Request) -> bool:
        return self.device(request) is not None

    def _bearer(self, request: web.Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.tokens.check_token(credentials.strip())

    def paired(self, request: web.Request) -> bool:
        """Whether the request may see everything: auth is off, or a paired browser, or the token as Bearer.

        A token from a rate-limited address is not taken (it may be a guess); a paired cookie is.
        """
        if not self.enabled or self._cookie(request):
            return True
        return not self._failures.blocked(self._address(request)) and self._bearer(request)

    def insecure_for(self, address: str) -> bool:
        """Whether pairing from address would send the token and the cookie across the LAN in clear."""
        return not self._secure and not _loopback(address)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        guarded = (request.path.startswith("/api/") and request.path != "/api/pair") or request.path == "/metrics"
        if not self.enabled or not guarded:
            return await handler(request)
        if self._cookie(request):  # a paired browser passes even from a limited address, as on /ws
            return await handler(request)
        address = self._address(request)
        if self._failures.blocked(address):
            return web.json_response({"error": "rate_limited", "message": "too many wrong tokens"}, status=429)
        if self._bearer(request):
            return await handler(request)
        if "Authorization" in request.headers:
            self._failures.fail(address)
        return web.json_response(
            {"error": "unauthorized", "message": "pair this browser at /pair, or send Authorization: Bearer TOKEN"},
            status=401,
        )

    async def pair(self, request: web.Request) -> web.Response:
        """POST {"token": ...}: the right token gets the session cookie; never a token in a URL."""
        origin = request.headers.get("Origin")
        if not self._origin_allowed(origin):
            return web.json_response({"error": "forbidden", "message": "foreign origin"}, status=403)
        if not self.enabled:
            return web.json_response({"paired": True, "auth": False})
        address = self._address(request)
        if self.insecure_for(address):
            # the token and the cookie would cross the LAN in clear
            return web.json_response(
                {"error": "insecure", "message": "pair over HTTPS: this box serves plain HTTP (server.tls)"}, status=403
            )
        if self._failures.blocked(address):
            return web.json_response({"error": "rate_limited", "message": "too many wrong tokens"}, status=429)
        try:
            body = await request.json()
        except ValueError:
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not self.tokens.check_token(token):
            self._failures.fail(address)
            return web.json_response({"error": "unauthorized", "message": "wrong token"}, status=401)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            name = request.headers.get("User-Agent", "")
        device, secret = await asyncio.to_thread(self.devices.pair, name, token)
        response = web.json_response({"paired": True, "auth": True, "device": device.id})
        response.set_cookie(
            COOKIE_NAME,
            secret,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure,
            max_age=int(device.expires - device.paired),
        )
        return response

    async def list_devices(self, request: web.Request) -> web.Response:
        """GET /api/devices: who is paired, which one is asking, and the certificate to check."""
        current = self.device(request)
        devices = await asyncio.to_thread(self.devices.devices, self.tokens.current())
        listed = [{**d.public(), "current": current is not None and d.id == current.id} for d in devices]
        return web.json_response({"fingerprint": self.fingerprint or None, "devices": listed})

    async def forget_device(self, request: web.Request) -> web.Response:
        """DELETE /api/devices/ID: that browser's session ends now; it pairs again with the token."""
        device_id = request.match_info["device"]
        if not await asyncio.to_thread(self.devices.forget, device_id):
            return web.json_response({"error": "not_found", "message": f"no paired device {device_id!r}"}, status=404)
        return web.json_response({"forgotten": device_id})

    def authorizer(self, request: web.Request) -> Authorizer | None:
        """What checks a hello's token: None when no token is needed (auth off, or a paired browser)."""
        if not self.enabled or self._cookie(request):
            return None
        address = self._address(request)

        def authorize(token: str | None) -> protocol.ProtocolError | None:
            if self._failures.blocked(address):
                return protocol.ProtocolError(
                    "rate_limited", "too many wrong tokens; try again later", close_code=protocol.CLOSE_RATE_LIMITED
                )
            if self.tokens.check_token(token):
                return None
            self._failures.fail(address)
            return protocol.ProtocolError(
                "unauthorized", "this box asks for its pairing token", close_code=protocol.CLOSE_UNAUTHORIZED
            )

        return authorize
