"""Just enough WebDriver BiDi to drive a headless Firefox page from a test.

`launch()` starts Firefox with a fresh profile and BiDi on a free port, opens a session, and kills
its process group on exit; `Browser.new_page()` opens a tab. Values come back from the page as JSON,
like CDP's `returnByValue`. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 15.0

# A quiet headless run: no first-run pages, updates, telemetry or remote settings; nothing fetched
# from outside. The remote agent applies its own recommended preferences on top of these.
QUIET_PREFS: dict[str, bool | int | str] = {
    "app.normandy.enabled": False,
    "app.update.disabledForTesting": True,
    "browser.newtabpage.enabled": False,
    "browser.region.network.url": "",
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.update.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}


class BidiError(Exception):
    """A BiDi command failed, or the page threw."""


def firefox_path() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


@dataclass
class Connection:
    """One BiDi WebSocket: commands matched to replies by id; events kept for inspection."""

    ws: aiohttp.ClientWebSocketResponse
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if data.get("type") == "event":
                self.events.append(data)
                continue
            waiter = self.pending.pop(data["id"], None) if isinstance(data.get("id"), int) else None
            if waiter is not None and not waiter.done():
                waiter.set_result(data)
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(BidiError("the BiDi connection closed"))

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        call_id = next(self.ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = waiter
        await self.ws.send_str(json.dumps({"id": call_id, "method": method, "params": dict(params or {})}))
        try:
            reply = await asyncio.wait_for(waiter, CALL_TIMEOUT_S)
        finally:
            self.pending.pop(call_id, None)
        if reply.get("type") == "error":
            raise BidiError(f"{method}: {reply.get('error')}: {reply.get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result


@dataclass
class Page:
    """One top-level browsing context (a tab)."""

    connection: Connection
    context: str

    async def navigate(self, url: str) -> None:
        await self.connection.call(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    async def evaluate(self, expression: str, *, user_activation: bool = False) -> Any:
        """The JSON value of a JavaScript expression in the page, a promise's once it settles."""
        # JSON.stringify in the page, as CDP's returnByValue does, rather than decoding BiDi's remote values.
        wrapped = f"Promise.resolve(({expression})).then((value) => JSON.stringify(value ?? null))"
        reply = await self.connection.call(
            "script.evaluate",
            {
                "expression": wrapped,
                "target": {"context": self.context},
                "awaitPromise": True,
                "resultOwnership": "none",
                "userActivation": user_activation,
            },
        )
        if reply.get("type") == "exception":
            details = reply["exceptionDetails"]
            raise BidiError(f"{expression[:80]!r} threw: {details.get('text', details)}")
        return json.loads(reply["result"]["value"])

    async def wait_for(self, expression: str, timeout_s: float, interval_s: float = 0.1) -> Any:
        """Poll an expression until it is truthy; its value, or TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(BidiError):
                    value = await self.evaluate(expression)
                    if value:
                        return value
                await asyncio.sleep(interval_s)

    async def add_preload_script(self, function_declaration: str) -> None:
        """Run a function in this tab's every new document before the document's own scripts."""
        await self.connection.call(
            "script.addPreloadScript", {"functionDeclaration": function_declaration, "contexts": [self.context]}
        )

    def log_entries(self) -> list[dict[str, Any]]:
        return [
            e["params"]
            for e in self.connection.events
            if e["method"] == "log.entryAdded" and e["params"].get("source", {}).get("context") == self.context
        ]

    def problems(self) -> list[str]:
        """Uncaught exceptions and console errors the page has logged so far."""
        return [
            f"{entry['type']}: {entry.get('text')} {entry.get('stackTrace', {}).get('callFrames', [])[:1]}"
            for entry in self.log_entries()
            if entry.get("level") == "error"
        ]


@dataclass
class Browser:
    connection: Connection
    version: str

    async def new_page(self) -> Page:
        created = await self.connection.call("browsingContext.create", {"type": "tab"})
        return Page(self.connection, created["context"])


def write_profile(profile: Path, prefs: Mapping[str, bool | int | str]) -> None:
    """A fresh profile whose user.js sets QUIET_PREFS and then `prefs`."""
    profile.mkdir(parents=True, exist_ok=False)
    lines = [f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in {**QUIET_PREFS, **prefs}.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")


async def _bidi_url(profile: Path, process: asyncio.subprocess.Process) -> str:
    """Firefox writes the host and port it listens on to WebDriverBiDiServer.json in the profile."""
    server_file = profile / "WebDriverBiDiServer.json"
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                raise BidiError(f"firefox exited with status {process.returncode} before BiDi was up")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                listening = json.loads(server_file.read_text())
                return f"ws://{listening['ws_host']}:{listening['ws_port']}/session"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def launch(
    profile: Path,
    prefs: Mapping[str, bool | int | str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> AsyncIterator[Browser]:
    """Headless Firefox on a fresh profile with BiDi on a free port; killed, with everything it started, on exit.

    Subscribed to `log.entryAdded` for every page it opens.
    """
    executable = firefox_path()
    if executable is None:
        raise BidiError("firefox is not installed")
    write_profile(profile, prefs or {})
    command = [executable, "--headless", "--no-remote", "--remote-debugging-port=0", "--profile", str(profile)]
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("wb")) if log is not None else asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1", **(env or {})},
            start_new_session=True,  # its own process group, so its content processes die with it
        )
        try:
            url = await _bidi_url(profile, process)
            async with (
                aiohttp.ClientSession() as http,
                await asyncio.wait_for(http.ws_connect(url, max_msg_size=0), START_TIMEOUT_S) as ws,
            ):
                connection = Connection(ws)
                connection.start()
                try:
                    session = await connection.call("session.new", {"capabilities": {}})
                    await connection.call("session.subscribe", {"events": ["log.entryAdded"]})
                    yield Browser(connection, str(session["capabilities"].get("browserVersion", "")))
                finally:
                    if connection.reader is not None:
                        connection.reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await connection.reader
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
