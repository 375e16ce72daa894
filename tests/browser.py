"""Headless Chromium for the tests, run as the probe runs it (headless, no sandbox, a fresh
profile, nothing from the network), with every console message (log, error, uncaught
exception, refused by the Content-Security-Policy) on stderr as a `CONSOLE` line:

    dump_dom(tmp, url)           the page's DOM after its scripts ran, and its console lines
    with DevTools(tmp) as tab:   a page driven over the DevTools protocol, on 127.0.0.1 only:
        tab.open(url)            load it (the load event has fired)
        tab.evaluate(js)         run JavaScript in it (as a person's click or choice would act)
        tab.html()               its DOM now
    tab.console                  after the block: the console lines of the whole visit
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)

CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\] (.*)$", re.MULTILINE)
LISTENING = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")
TIMEOUT = 120.0

#: The DevTools protocol on a port of the loopback interface only.
REMOTE = ("--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


def _profile(tmp: Path) -> str:
    """A fresh profile directory under `tmp`, as a flag."""
    number = len(list(tmp.glob("profile-*")))
    return f"--user-data-dir={tmp / f'profile-{number}'}"


def run_chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium once, to its end (--dump-dom, --screenshot)."""
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, _profile(tmp), *args],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def dump_dom(tmp: Path, url: str) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and the console messages it produced."""
    result = run_chromium(tmp, "--dump-dom", url)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, CONSOLE.findall(result.stderr)


class DevTools:
    """One Chromium tab driven over the DevTools protocol (a websocket on 127.0.0.1)."""

    def __init__(self, tmp: Path) -> None:
        assert CHROMIUM is not None
        self.console: list[str] = []
        self._stderr: list[str] = []
        self._listening = threading.Event()
        self._address: tuple[str, str] | None = None
        self._process = subprocess.Popen(
            [CHROMIUM, *FLAGS, _profile(tmp), *REMOTE, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._loop = asyncio.new_event_loop()
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        try:
            self._connection = self._run(self._connect())
            self.call("Page.enable")
        except BaseException:
            self.close()
            raise

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line)
            found = LISTENING.search(line)
            if found and self._address is None:
                self._address = (found.group(1), found.group(2))
                self._listening.set()

    def _run(self, awaitable: Any) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(awaitable, TIMEOUT))

    async def _connect(self) -> Any:
        from tornado.websocket import websocket_connect

        await asyncio.get_running_loop().run_in_executor(None, self._listening.wait, TIMEOUT)
        assert self._address is not None, "".join(self._stderr)[-3000:]
        port = self._address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            targets = json.load(answer)
        page = next(t for t in targets if t["type"] == "page")
        return await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=1 << 28)

    async def _receive(self, until: Any) -> dict[str, Any]:
        while True:
            text = await self._connection.read_message()
            assert text is not None, "Chromium closed the DevTools connection"
            message = json.loads(text)
            if until(message):
                return message
            self._events.append(message)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (an error fails the test)."""
        self._next_id += 1
        ident = self._next_id
        message = {"id": ident, "method": method, "params": params}
        self._connection.write_message(json.dumps(message))
        answer = self._run(self._receive(lambda m: m.get("id") == ident))
        assert "error" not in answer, answer
        return answer["result"]

    def wait_event(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(index)
        return self._run(self._receive(lambda m: m.get("method") == method))

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event (the page's script has run)."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The value of `expression` in the page (awaited when it is a promise)."""
        result = self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def html(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def close(self) -> None:
        """Stop Chromium; its console lines are then in `console`."""
        connection = getattr(self, "_connection", None)
        if connection is not None:
            connection.close()
        self._loop.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=30)
        self._reader.join(timeout=30)
        self.console = CONSOLE.findall("".join(self._stderr))

    def __enter__(self) -> DevTools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
