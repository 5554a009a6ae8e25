"""Which pages may talk to the box: the Origin of a WebSocket, and the Host of every request.

A page served by the box names it in Origin; a page elsewhere that rebinds its own DNS name to the
box's address (DNS rebinding) still names its own host in Host, so every request, reads included,
must carry one of the box's names there (edgevoice.server.identity says which, and the address the
box listens on is one of them).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

_log = logging.getLogger(__name__)


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


def host_guard(policy: OriginPolicy) -> Middleware:
    """Every request must name the box in Host, GETs and /healthz included: a page on a rebound name gets
    403, never a transcript (with auth off nothing else stands between it and /api/turns)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not policy.allows_host(host):
            _log.warning("refused %s %s for host %r", request.method, request.path, host)
            raise web.HTTPForbidden(text="this host name does not belong to this box\n")
        return await handler(request)

    return guard
