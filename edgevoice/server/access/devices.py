"""Paired browsers: one random session per device, kept server-side, with an expiry, each revocable.

POST /api/pair with the right token makes a device: a random id the owner sees, and a random
session secret that only the browser's HttpOnly cookie holds (the file keeps its SHA-256, never
the secret). A session is good until it expires, until the owner forgets the device (dashboard,
DELETE /api/devices/ID), or until the token rotates: each device remembers a digest of the token
it paired with. Kept in data_dir/devices.json (0600), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgevoice.atomic import write_atomic

_log = logging.getLogger(__name__)
DEVICES_FILE = "devices.json"
SESSION_DAYS = 180
"""How long a pairing lasts; then the browser pairs again."""
MAX_DEVICES = 64
"""Paired devices kept; pairing one more forgets the one paired longest ago."""
MAX_NAME_CHARS = 64


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Device:
    """One paired browser."""

    id: str
    """Public: shown on the dashboard, named to forget it; not a credential."""
    name: str
    """What the browser called itself when it paired (its user agent, or a name typed at /pair)."""
    paired: float
    """When it paired (seconds since the epoch)."""
    expires: float
    session: str
    """SHA-256 of the session secret its cookie holds."""
    token: str
    """SHA-256 of the token it paired with: a rotated token unpairs it."""

    def public(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "paired": self.paired, "expires": self.expires}


class DeviceStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._devices: dict[str, Device] = {}
        """By session digest."""
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            records = json.loads(self.path.read_text(encoding="utf-8"))
            devices = [Device(**record) for record in records]
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError) as err:
            _log.error("cannot read paired devices from %s (%s): every browser pairs again", self.path, err)
            return
        self._devices = {device.session: device for device in devices}

    def _save(self) -> None:
        records = [asdict(device) for device in self._devices.values()]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(records).encode(), 0o600)
        except OSError as err:
            _log.warning("paired devices kept in memory only: cannot write %s (%s)", self.path, err)

    def pair(self, name: str, token: str) -> tuple[Device, str]:
        """A new device and its session secret (for the cookie, never stored)."""
        self._load()
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        name = "".join(char for char in name if char.isprintable())[:MAX_NAME_CHARS] or "a browser"
        device = Device(secrets.token_hex(6), name, now, now + SESSION_DAYS * 86400, _digest(secret), _digest(token))
        self._devices[device.session] = device
        while len(self._devices) > MAX_DEVICES:
            oldest = min(self._devices.values(), key=lambda d: d.paired)
            del self._devices[oldest.session]
        self._save()
        return device, secret

    def check(self, secret: str | None, token: str) -> Device | None:
        """The device whose cookie this is, if it is still paired under this token."""
        if not secret or not token:
            return None
        self._load()
        device = self._devices.get(_digest(secret))
        if device is None or device.expires <= self._clock() or device.token != _digest(token):
            return None
        return device

    def devices(self, token: str) -> list[Device]:
        """The devices paired under this token and not expired, oldest first."""
        self._load()
        now, current = self._clock(), _digest(token)
        live = [d for d in self._devices.values() if d.expires > now and d.token == current]
        return sorted(live, key=lambda d: d.paired)

    def forget(self, device_id: str) -> bool:
        self._load()
        for session, device in list(self._devices.items()):
            if device.id == device_id:
                del self._devices[session]
                self._save()
                return True
        return False
