"""Who gets in: the pairing token, the browser's session cookie, and wrong tokens counted per address.

With auth on, /api/* (but /api/pair) and /metrics need the session cookie that POST /api/pair
sets, or `Authorization: Bearer TOKEN`; a WebSocket needs the cookie or the token in its hello.
Pages, /healthz and /pair stay open. Never a token in a URL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from edgevoice import protocol
from edgevoice.auth import COOKIE_NAME, FailureLimiter, TokenStore, session_value

Authorizer = Callable[[str | None], protocol.ProtocolError | None]


class Pairing:
    def __init__(self, tokens: TokenStore, origin_allowed: Callable[[str | None], bool], secure: bool) -> None:
        self.tokens = tokens
        self.enabled = False
        """Whether the daemon asks for the pairing token: server.auth resolved against the host at start."""
        self._origin_allowed = origin_allowed
        self._secure = secure
        self._failures = FailureLimiter()

    def _address(self, request: web.Request) -> str:
        return request.remote or "unknown"

    def _paired(self, request: web.Request) -> bool:
        """A browser with the session cookie, or a script with Authorization: Bearer TOKEN."""
        if self.tokens.check_cookie(request.cookies.get(COOKIE_NAME)):
            return True
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.tokens.check_token(credentials.strip())

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        guarded = (request.path.startswith("/api/") and request.path != "/api/pair") or request.path == "/metrics"
        if not self.enabled or not guarded:
            return await handler(request)
        address = self._address(request)
        if self._failures.blocked(address):
            return web.json_response({"error": "rate_limited", "message": "too many wrong tokens"}, status=429)
        if self._paired(request):
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
        response = web.json_response({"paired": True, "auth": True})
        response.set_cookie(
            COOKIE_NAME,
            session_value(token),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure,
            max_age=400 * 24 * 3600,
        )
        return response

    def authorizer(self, request: web.Request) -> Authorizer | None:
        """What checks a hello's token: None when no token is needed (auth off, or a paired browser)."""
        if not self.enabled or self.tokens.check_cookie(request.cookies.get(COOKIE_NAME)):
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
