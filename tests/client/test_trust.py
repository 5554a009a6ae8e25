"""The Python client and a box's own certificate: pinned on first use, checked by fingerprint or CA, changes refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgevoice.audio.buffers import PacedSource
from edgevoice.client.run import ClientOptions, run_client
from edgevoice.config import Config
from edgevoice.engines.engines import Engines
from edgevoice.server.app import Server
from edgevoice.server.tls import CERT_FILE, TLS_DIR
from tests.support.daemon import serving_with

pytestmark = pytest.mark.slow


@pytest.fixture
async def tls_box(server_config: Config, engines: Engines) -> AsyncIterator[Server]:
    async with serving_with(server_config, engines, tls="on") as server:
        yield server


async def _talk(server: Server, tmp_path: Path, **options: Any) -> tuple[int, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    source = PacedSource()
    source.finish()
    settings: dict[str, Any] = {"known_boxes": tmp_path / "known_boxes.json"} | options
    chosen = ClientOptions(url=server.ws_url, out=tmp_path / "r.wav", retries=0, **settings)
    code = await asyncio.wait_for(run_client(chosen, source=source, observer=seen.append), 60)
    return code, seen


def _errors(seen: list[dict[str, Any]]) -> str:
    return " ".join(m["message"] for m in seen if m["type"] == "client_error")


async def test_first_use_pins_the_certificate_and_later_ones_match(tls_box: Server, tmp_path: Path) -> None:
    assert tls_box.ws_url.startswith("wss://")
    code, seen = await _talk(tls_box, tmp_path)
    assert code == 0, json.dumps(seen)
    assert [m["type"] for m in seen].count("ready") == 1
    pins = json.loads((tmp_path / "known_boxes.json").read_text())
    assert pins == {f"127.0.0.1:{tls_box.port}": tls_box.address.fingerprint}
    code, seen = await _talk(tls_box, tmp_path)
    assert code == 0, json.dumps(seen)


async def test_a_changed_certificate_is_refused_clearly(tls_box: Server, tmp_path: Path) -> None:
    other = ":".join(["AB"] * 32)
    (tmp_path / "known_boxes.json").write_text(json.dumps({f"127.0.0.1:{tls_box.port}": other}))
    code, seen = await _talk(tls_box, tmp_path)
    assert code == 2
    message = _errors(seen)
    assert "changed" in message
    assert other in message
    assert tls_box.address.fingerprint in message
    assert "ready" not in [m["type"] for m in seen]


async def test_fingerprint_given_must_match(tls_box: Server, tmp_path: Path) -> None:
    code, seen = await _talk(tls_box, tmp_path, fingerprint="00" * 32)
    assert code == 2
    assert "--fingerprint" in _errors(seen)
    code, seen = await _talk(tls_box, tmp_path, fingerprint=tls_box.address.fingerprint.replace(":", "").lower())
    assert code == 0, json.dumps(seen)


async def test_a_ca_file_verifies_the_box(tls_box: Server, tmp_path: Path) -> None:
    cert = tls_box.config.data_dir / TLS_DIR / CERT_FILE
    code, seen = await _talk(tls_box, tmp_path, cafile=cert)
    assert code == 0, json.dumps(seen)
    assert not (tmp_path / "known_boxes.json").exists()  # a CA, not a pin
    code, seen = await _talk(tls_box, tmp_path, cafile=Path("/etc/ssl/certs/ca-certificates.crt"))
    assert code == 1  # the public CAs never signed the box's own certificate
    assert "TLS" in _errors(seen) or "certificate" in _errors(seen).lower()
