"""What the daemon's app holds, each under a typed key: where it serves, its models, its clients.

The app factory (edgevoice.server.app) makes one of each per start; routes read them from
request.app, and nothing else keeps a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from edgevoice import protocol
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.engines.loader import ModelFailure, ModelLoader
from edgevoice.errors import EdgevoiceError
from edgevoice.events import Event, TurnDone
from edgevoice.server.access.origins import OriginPolicy
from edgevoice.server.access.pairing import Pairing
from edgevoice.server.access.peers import peer_key
from edgevoice.server.access.pending import PendingPool
from edgevoice.server.conversations import ConversationStore
from edgevoice.server.status import EventFeed, feed_message
from edgevoice.server.turnlog import LatencyLog, TurnRecord, Written
from edgevoice.skills.box import BoxSkills
from edgevoice.transports.socket import Connection
from edgevoice.transports.wyoming import WyomingServer

_log = logging.getLogger(__name__)
CLOSE_WAIT_S = 5.0
"""How long a stop waits for clients to answer its close."""


@dataclass
class Address:
    """Where the box serves: known once its port is bound, before the app starts."""

    name: str
    host: str
    """As bound: "0.0.0.0", "::" or "" for every interface."""
    port: int
    secure: bool
    opened: float = field(default_factory=time.monotonic)
    """When the port began to accept connections: the start of uptime."""
    any_port: bool = False
    """Started on a free port (tests, the benchmark), beside a real daemon: its other ports are free ones too."""
    fingerprint: str = ""
    """The SHA-256 fingerprint of the certificate it serves with (edgevoice.fingerprint); empty over plain HTTP."""

    @property
    def url_host(self) -> str:
        """The host for a URL to the box from this machine: loopback for a wildcard."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    @property
    def http_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.url_host}:{self.port}{protocol.WS_PATH}"


class Models:
    """The engines the box answers with, or which models failed to load and why.

    Engines given to it are shared (a test's) and left open; engines it loads are its own to close.
    """

    def __init__(self, loader: ModelLoader, engines: Engines | None = None) -> None:
        self.loader = loader
        self.engines = engines
        self.owned = engines is None
        self.loaded = asyncio.Event()
        """Set once engines are there to answer: at the start, or when a retry loads them."""
        self.retrying: asyncio.Task[None] | None = None
        """Loading again whenever a failed model's file changes, while degraded."""

    def require(self) -> Engines:
        if self.engines is None:
            raise EdgevoiceError("the server has not loaded its engines")
        return self.engines

    @property
    def degraded(self) -> bool:
        """Serving without engines: a model failed to load (failures says which and why)."""
        return self.engines is None

    @property
    def failures(self) -> tuple[ModelFailure, ...]:
        return self.loader.failures

    @property
    def retry_interval_s(self) -> float:
        return self.loader.retry_interval_s


class Clients:
    """The voice connections: those waiting for an authorised hello (a pool of their own), and those
    served (how many in all and per address, and which holds each conversation)."""

    def __init__(
        self, max_clients: int, max_per_address: int, max_pending: int = 16, pending_per_address: int = 4
    ) -> None:
        self._max = max_clients
        self._max_per_address = max_per_address
        self._pending: PendingPool[Connection] = PendingPool(max_pending, pending_per_address)
        self._addresses: dict[Connection, str] = {}
        """Each connection's address, waiting or served."""
        self._open: dict[Connection, str] = {}
        """Each served connection's address."""
        self._per_address: dict[str, int] = {}
        self._by_conversation: dict[str, Connection] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._open)

    @property
    def pending(self) -> int:
        """Connections waiting for an authorised hello."""
        return len(self._pending)

    def wait_for_hello(self, connection: Connection, address: str) -> None:
        """A new connection waits in the pending pool; one it pushes out is closed (1008)."""
        self._addresses[connection] = address
        for old in self._pending.add(connection, address):
            if self._pending.pushed_out % 100 == 1:
                _log.warning(
                    "closed a WebSocket from %s waiting for hello: too many waiting (%d so far)",
                    self._addresses.get(old, "?"),
                    self._pending.pushed_out,
                )
            self._close_later(old, protocol.CLOSE_POLICY, "too many connections waiting for hello")

    def admit(self, connection: Connection) -> str | None:
        """Its hello is authorised: count it as a client, or say why it may not be served now."""
        self._pending.remove(connection)
        address = peer_key(self._addresses.get(connection, ""))
        refusal = self.refusal(address)
        if refusal is None:
            self._open[connection] = address
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return refusal

    def refusal(self, address: str) -> str | None:
        """Why one more client from address may not be served now; None when it may."""
        if len(self._open) >= self._max:
            return "too many clients; try again later"
        if self._per_address.get(address, 0) >= self._max_per_address:
            _log.warning("refused a WebSocket from %s: %d already open", address, self._per_address[address])
            return "too many clients from this address"
        return None

    def remove(self, connection: Connection) -> None:
        """The connection ended, waiting or served."""
        self._pending.remove(connection)
        self._addresses.pop(connection, None)
        address = self._open.pop(connection, None)
        if address is None:
            return
        self._per_address[address] -= 1
        if not self._per_address[address]:
            del self._per_address[address]
        conversation = connection.stats.conversation
        if self._by_conversation.get(conversation) is connection:
            del self._by_conversation[conversation]

    def claim(self, conversation: str, connection: Connection) -> None:
        """A conversation is held by one connection: the newest (a client that reconnected) wins."""
        previous = self._by_conversation.get(conversation)
        self._by_conversation[conversation] = connection
        if previous is not None and previous is not connection:
            self._close_later(previous, protocol.CLOSE_TAKEN_OVER, "conversation resumed by another connection")

    def _close_later(self, connection: Connection, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(connection.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def stats(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(connection.stats) for connection in self._open]

    async def close_all(self) -> None:
        """All at once, and bounded: a client that does not answer the close must not hold up the stop."""
        closing = [c.close(protocol.CLOSE_GOING_AWAY, "edgevoice is shutting down") for c in list(self._addresses)]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.gather(*closing, return_exceptions=True)


class Recorder:
    """Where a session's events go besides its client: finished turns to the turn log, some to the dashboard."""

    def __init__(self, turn_log: LatencyLog, feed: EventFeed, store_text: bool) -> None:
        self.turn_log = turn_log
        self.feed = feed
        self._store_text = store_text

    def __call__(self, client: str, conversation: str, event: Event) -> Written | None:
        """For a finished turn, the future of its row's write: the client hears turn_done after it."""
        written = None
        if isinstance(event, TurnDone):
            written = self.turn_log.record(TurnRecord.of(event, conversation, client, self._store_text))
        message = feed_message(event, conversation, client, self._store_text)
        if message is not None:
            self.feed.publish(message)
        return written


CONFIG = web.AppKey("config", Config)
ADDRESS = web.AppKey("address", Address)
MODELS = web.AppKey("models", Models)
CONVERSATIONS = web.AppKey("conversations", ConversationStore)
RECORDER = web.AppKey("recorder", Recorder)
CLIENTS = web.AppKey("clients", Clients)
ORIGINS = web.AppKey("origins", OriginPolicy)
PAIRING = web.AppKey("pairing", Pairing)
MIC = web.AppKey("mic", asyncio.Task[None])
"""The box's own microphone conversation, when [server] mic is on."""
WYOMING = web.AppKey("wyoming", WyomingServer)
SKILLS = web.AppKey("skills", BoxSkills)
"""What the box answers itself (the time, timers, the shopping list), shared by every conversation."""
