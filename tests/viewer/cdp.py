"""Headless Chromium driven through the DevTools protocol (websockets, which viser installs).

Only what the viewer's browser tests need: open a page (and more tabs), evaluate JavaScript, press
a key, drag the mouse, take a screenshot. Chromium is the Debian package ``chromium`` (installed by
``.ci/run``).
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request

import numpy as np


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One tab, driven through its own DevTools websocket."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=timeout)
        self.ids = itertools.count(1)

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        end = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, end - time.monotonic())))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def size(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def front(self) -> None:
        """Make this tab the one that gets the mouse and the keys."""
        self.call("Page.bringToFront")

    def press(self, key: str, code: str, key_code: int) -> None:
        self.front()
        for kind in ("rawKeyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=key_code,
                      nativeVirtualKeyCode=key_code)

    def type_key(self, char: str) -> None:
        """A printable key (a letter or a space) as a person types it: down, char, up."""
        code = "Space" if char == " " else f"Key{char.upper()}"
        vk = 32 if char == " " else ord(char.upper())
        self.front()
        self.call("Input.dispatchKeyEvent", type="keyDown", key=char, code=code, text=char,
                  windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=char, code=code, windowsVirtualKeyCode=vk,
                  nativeVirtualKeyCode=vk)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 8) -> None:
        """Press the left mouse button at (x0, y0), move to (x1, y1), release: an orbit in viser."""
        self.front()
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x0, y=y0)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x0, y=y0, button="left", clickCount=1)
        for i in range(1, steps + 1):
            x, y = x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
            time.sleep(0.02)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x1, y=y1, button="left", clickCount=1)

    def click(self, x: float, y: float) -> None:
        self.front()
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self) -> np.ndarray:
        import imageio.v3 as iio

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return iio.imread(io.BytesIO(data))[..., :3]

    def close(self) -> None:
        """Close the tab (its page leaves the server) and the connection."""
        try:
            self.call("Page.close", timeout=5)
        except Exception:
            pass
        try:
            self.ws.close()
        except Exception:
            pass


class Chromium(Page):
    """A headless Chromium and its first tab (the methods of :class:`Page`); :meth:`new_tab` opens more."""

    def __init__(self, user_dir, width: int = 1000, height: int = 640, timeout: float = 30.0):
        self.tabs: list[Page] = []
        exe = find_chromium()
        if exe is None:
            raise RuntimeError("chromium not found")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--enable-unsafe-swiftshader", "--no-first-run",
             "--disable-extensions", "--hide-scrollbars", f"--window-size={width},{height}",
             "--remote-debugging-port=0", f"--user-data-dir={user_dir}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        found = threading.Event()
        port = []

        def drain():
            for line in self.proc.stderr:
                self.stderr.append(line)
                m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
                if m and not port:
                    port.append(int(m.group(1)))
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(timeout):
            self.close()
            raise RuntimeError("chromium did not start: " + "".join(self.stderr[-5:]))
        self.port = port[0]
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10).read())
        page = next(p for p in pages if p.get("type") == "page")
        Page.__init__(self, page["webSocketDebuggerUrl"], timeout)

    def new_tab(self) -> Page:
        """Another tab of the same browser (its own page and websocket)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        info = json.loads(urllib.request.urlopen(req, timeout=10).read())
        tab = Page(info["webSocketDebuggerUrl"])
        self.tabs.append(tab)
        return tab

    def close(self) -> None:
        for tab in self.tabs:
            tab.close()
        Page.close(self)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
