"""Headless Chromium driven through the DevTools protocol (websockets, which viser installs).

Only what the viewer's browser test needs: open a page, evaluate JavaScript, press a key, take a
screenshot. Chromium is the Debian package ``chromium`` (installed by ``.ci/run``).
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


class Chromium:
    def __init__(self, user_dir, width: int = 1000, height: int = 640, timeout: float = 30.0):
        from websockets.sync.client import connect

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
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port[0]}/json/list", timeout=10).read())
        page = next(p for p in pages if p.get("type") == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
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

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def press(self, key: str, code: str, key_code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=key_code,
                      nativeVirtualKeyCode=key_code)

    def screenshot(self) -> np.ndarray:
        import imageio.v3 as iio

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return iio.imread(io.BytesIO(data))[..., :3]

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
