"""Just enough of the Chrome DevTools Protocol to drive a headless Chromium page from a test.

`launch()` starts Chromium on a free DevTools port and kills its process group on exit; `Browser.new_page()`
opens a tab attached over one flattened CDP session. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 15.0


class CdpError(Exception):
    """A CDP call failed, or the page threw."""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass
class Connection:
    """One CDP WebSocket: calls matched to replies by id; events kept per session for inspection."""

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
            waiter = self.pending.pop(data["id"], None) if "id" in data else None
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(data)
            elif "method" in data:
                self.events.append(data)
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(CdpError("the DevTools connection closed"))

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        call_id = next(self.ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = waiter
        await self.ws.send_str(json.dumps(message))
        try:
            reply = await asyncio.wait_for(waiter, CALL_TIMEOUT_S)
        finally:
            self.pending.pop(call_id, None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result


@dataclass
class Page:
    connection: Connection
    session: str

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.connection.call(method, params, session=self.session)

    async def navigate(self, url: str, timeout_s: float = 15.0) -> None:
        await self.call("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'", timeout_s)

    async def evaluate(self, expression: str, *, user_gesture: bool = False, await_promise: bool = False) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        reply = await self.call(
            "Runtime.evaluate",
            {
                "expression": expression,
                "returnByValue": True,
                "userGesture": user_gesture,
                "awaitPromise": await_promise,
            },
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise CdpError(f"{expression[:80]!r} threw: {details.get('exception', {}).get('description', details)}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float, interval_s: float = 0.1) -> Any:
        """Poll an expression until it is truthy; its value, or TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(CdpError):
                    value = await self.evaluate(expression)
                    if value:
                        return value
                await asyncio.sleep(interval_s)

    def events(self, method: str) -> list[dict[str, Any]]:
        return [
            e["params"] for e in self.connection.events if e.get("sessionId") == self.session and e["method"] == method
        ]

    def websocket_sent(self) -> list[str | bytes]:
        """What the page sent over its WebSockets, in order: text as str, binary as bytes."""
        sent: list[str | bytes] = []
        for event in self.events("Network.webSocketFrameSent"):
            frame = event["response"]
            binary = frame["opcode"] == 2
            sent.append(base64.b64decode(frame["payloadData"]) if binary else frame["payloadData"])
        return sent

    def problems(self) -> list[str]:
        """Uncaught exceptions and console errors the page has logged so far."""
        found = [
            str(e["exceptionDetails"].get("exception", {}).get("description") or e["exceptionDetails"].get("text"))
            for e in self.events("Runtime.exceptionThrown")
        ]
        found += [
            " ".join(str(arg.get("value", arg.get("description", ""))) for arg in e["args"])
            for e in self.events("Runtime.consoleAPICalled")
            if e["type"] in ("error", "assert")
        ]
        found += [
            f"{e['entry']['text']} ({e['entry'].get('url', '')})"
            for e in self.events("Log.entryAdded")
            if e["entry"]["level"] == "error"
        ]
        return found


@dataclass
class Browser:
    connection: Connection

    async def new_page(self) -> Page:
        target = await self.connection.call("Target.createTarget", {"url": "about:blank"})
        attached = await self.connection.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self.connection, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.call(f"{domain}.enable")
        return page


async def _devtools_url(user_data_dir: Path, process: asyncio.subprocess.Process) -> str:
    """Chromium writes its port and browser target path to DevToolsActivePort once it listens."""
    port_file = user_data_dir / "DevToolsActivePort"
    async with asyncio.timeout(START_TIMEOUT_S):
        while True:
            if process.returncode is not None:
                raise CdpError(f"chromium exited with status {process.returncode} before DevTools was up")
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def launch(user_data_dir: Path, args: Sequence[str] = (), *, log: Path | None = None) -> AsyncIterator[Browser]:
    """Headless Chromium with DevTools on a free port; killed, with everything it started, on exit."""
    executable = chromium_path()
    if executable is None:
        raise CdpError("chromium is not installed")
    command = [
        executable,
        "--headless=new",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={user_data_dir}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        *(["--no-sandbox"] if os.geteuid() == 0 else []),  # the sandbox refuses to run as root
        *args,
    ]
    with contextlib.ExitStack() as files:
        output = files.enter_context(log.open("wb")) if log is not None else asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,  # its own process group, so its renderers die with it
        )
        try:
            url = await _devtools_url(user_data_dir, process)
            async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
                connection = Connection(ws)
                connection.start()
                try:
                    yield Browser(connection)
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
