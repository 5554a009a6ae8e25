"""Sockets that have not said an authorised hello yet: a small pool of their own, sans-I/O.

A WebSocket counts against max_clients only once its hello is authorised (the token, or a paired
browser's session). Until then it waits here: at most per_address from one peer
(edgevoice.server.access.peers) and total in all. One more pushes out the oldest waiting one,
from its own peer when that peer is over its share, else the oldest of all: a socket that never
says hello cannot keep a paired client out, and a real client says hello within milliseconds.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from edgevoice.server.access.peers import peer_key

T = TypeVar("T")


class PendingPool(Generic[T]):
    """Waiting connections, oldest first."""

    def __init__(self, total: int, per_address: int) -> None:
        if total < 1 or per_address < 1:
            raise ValueError("a pending pool holds at least one connection")
        self.total = total
        self.per_address = per_address
        self._waiting: dict[T, str] = {}
        """Each waiting connection's peer key, in the order they came."""
        self.pushed_out = 0
        """Connections pushed out so far to make room."""

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, item: object) -> bool:
        return item in self._waiting

    def add(self, item: T, address: str) -> list[T]:
        """item waits for its hello; returns the connections it pushes out (to be closed), oldest first."""
        key = peer_key(address)
        self._waiting[item] = key
        out: list[T] = []
        same = [other for other, peer in self._waiting.items() if peer == key]
        if len(same) > self.per_address:
            out.append(same[0])
        elif len(self._waiting) > self.total:
            out.append(next(iter(self._waiting)))
        for old in out:
            del self._waiting[old]
        self.pushed_out += len(out)
        return out

    def remove(self, item: T) -> bool:
        """item said hello, or closed: whether it was still waiting."""
        return self._waiting.pop(item, None) is not None
