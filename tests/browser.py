"""A real headless Chromium (Debian's ``chromium``) driven over the Chrome DevTools protocol.

    with Chromium(tmp_path / "chromium") as browser:
        page = browser.page(width=360, height=740, mobile=True)
        page.goto(server.url + "/dashboard/")
        page.wait_for("document.body.dataset.state === 'ready'")
        page.evaluate("document.title"); page.screenshot(tmp_path / "shot.png")
        assert not page.errors()        # console errors, uncaught exceptions, CSP violations

A fresh profile in a temp dir, DevTools on a free loopback port (chosen by Chromium, read
from ``DevToolsActivePort``), stopped by PID. No driver binary: the protocol goes over the
``websockets`` client the tests already use. A missing ``chromium`` raises ServerUnavailable
(skip locally, fail under CI=true: ``make_real_server``).
"""
from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from websockets.sync.client import ClientConnection, connect

from servers import ServerStartError, ServerUnavailable, _die_with_parent

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
        if found:
            return found
    raise ServerUnavailable("chromium is not installed (run .ci/install-servers.sh)")


class Page:
    """One tab: commands by id over its websocket; events kept for :meth:`errors`."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: List[Dict[str, Any]] = []

    def send(self, method: str, timeout: float = 20.0, **params: Any) -> Dict[str, Any]:
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def drain(self) -> None:
        """Collect the events sent since the last command."""
        while True:
            try:
                message = json.loads(self.ws.recv(timeout=0.05))
            except TimeoutError:
                return
            if "method" in message:
                self.events.append(message)

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=mobile)

    def goto(self, url: str, timeout: float = 20.0) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path: Path, until: Optional[str] = None) -> Path:
        """The whole page (or down to the bottom of the element ``until`` selects) as a PNG."""
        size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        if until:
            size[1] = self.evaluate(f"Math.ceil(document.querySelector({json.dumps(until)}).getBoundingClientRect().bottom)")
        params: Dict[str, Any] = {"format": "png", "captureBeyondViewport": True,
                                  "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}}
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))
        return path

    def errors(self) -> List[str]:
        """Console errors, uncaught exceptions and browser log errors (failed loads, CSP)."""
        self.drain()
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        return found

    def close(self) -> None:
        self.ws.close()


class Chromium:
    def __init__(self, folder: Path) -> None:
        self.binary = chromium_binary()
        self.folder = Path(folder)
        self.profile = self.folder / "profile"
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.pages: List[Page] = []

    def start(self, timeout: float = 30.0) -> "Chromium":
        self.profile.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "chromium.log", "ab")
        self.proc = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)  # none outlives a killed test run
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (active.exists() and active.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise ServerStartError(f"chromium did not start: {(self.folder / 'chromium.log').read_text()[-2000:]}")
            time.sleep(0.05)
        self.port = int(active.read_text().split()[0])
        return self

    def page(self, width: int = 1280, height: int = 900, mobile: bool = False) -> Page:
        """A new tab with its console and log reported, at this viewport size."""
        with connect(self._browser_ws(), max_size=None) as browser:
            browser.send(json.dumps({"id": 1, "method": "Target.createTarget", "params": {"url": "about:blank"}}))
            while True:
                message = json.loads(browser.recv(timeout=20))
                if message.get("id") == 1:
                    target = message["result"]["targetId"]
                    break
        # entered as a context manager (websockets 17 warns otherwise); closed by Page.close
        page = Page(connect(f"ws://127.0.0.1:{self.port}/devtools/page/{target}", max_size=None).__enter__())
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.viewport(width, height, mobile)
        self.pages.append(page)
        return page

    def _browser_ws(self) -> str:
        path = (self.profile / "DevToolsActivePort").read_text().split()[1]
        return f"ws://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        for page in self.pages:
            try:
                page.close()
            except Exception:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
