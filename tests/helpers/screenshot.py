"""Screenshots of the running demo with headless Chromium, driven over the DevTools protocol: the
README's ``docs/img/demo.png`` and manual browser checks. Not part of the installed package.

Only the standard library: a minimal WebSocket client talks to Chromium's DevTools endpoint, so
the page can be waited on in *real* time (Gradio streams results over a long-lived request, which
``chromium --screenshot --virtual-time-budget`` does not wait for).

    diga demo &   # then:
    python tests/helpers/screenshot.py "http://127.0.0.1:7860/?example=1&compare=1" docs/img/demo.png \\
        --wait-for "Segmented"

Chromium runs with ``--headless --no-sandbox --disable-gpu`` and no network features; its profile
lives in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio")


def find_chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) if not os.path.isabs(name) else (name if os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


class _WebSocket:
    """Just enough RFC 6455 for a local DevTools connection (client frames masked, no extensions)."""

    def __init__(self, url: str, timeout: float = 30.0):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError(f"unsupported DevTools URL {url!r}")
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"DevTools handshake failed: {status!r}")
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text: str, opcode: int = 1) -> None:
        data = text.encode() if isinstance(text, str) else text
        head = bytes([0x80 | opcode])
        n = len(data)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 9:  # ping
                self.send(payload, opcode=10)
                continue
            if opcode == 8:
                raise ConnectionError("DevTools closed the connection")
            if opcode in (0, 1, 2):
                parts.append(payload)
                if b0 & 0x80:
                    return b"".join(parts).decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Browser:
    """A headless Chromium and one page of it, driven over DevTools."""

    def __init__(self, width: int = 1400, height: int = 1000, chromium: str | None = None, timeout: float = 30.0):
        exe = chromium or find_chromium()
        if not exe:
            raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="diga-chromium-")
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._devtools_port(timeout)
        deadline = time.time() + timeout
        target = None
        while target is None and time.time() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            target = pages[0]["webSocketDebuggerUrl"] if pages else None
            if target is None:
                time.sleep(0.2)
        if target is None:
            self.close()
            raise TimeoutError("chromium opened no page")
        self.ws = _WebSocket(target, timeout=timeout)
        self._id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _devtools_port(self, timeout: float) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode}")
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line or "")
            if m:
                # keep draining chromium's log so that a full pipe never blocks it
                threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
                return int(m.group(1))
        self.close()
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, **params):
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    def wait_for_text(self, text: str, timeout: float = 30.0, poll: float = 0.25) -> bool:
        deadline = time.time() + timeout
        expr = f"!!(document.body && document.body.innerText.includes({json.dumps(text)}))"
        while time.time() < deadline:
            if self.evaluate(expr):
                return True
            time.sleep(poll)
        return False

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        params = {"format": "png"}
        if full_page:
            h = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or 0)
            w = int(self.evaluate("Math.ceil(document.documentElement.scrollWidth)") or 0)
            if h and w:
                params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for _ in range(20):  # chromium's helper processes may still be writing for a moment
            shutil.rmtree(self.profile, ignore_errors=True)
            if not os.path.exists(self.profile):
                break
            time.sleep(0.1)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def capture(url: str, out: str | Path, wait_for: str | None = None, settle: float = 1.5, width: int = 1400,
            height: int = 1000, timeout: float = 60.0, full_page: bool = True) -> Path:
    """Open ``url``, wait until the page shows ``wait_for`` (and ``settle`` seconds more), save a PNG."""
    with Browser(width, height, timeout=timeout) as b:
        b.goto(url)
        if wait_for and not b.wait_for_text(wait_for, timeout=timeout):
            raise TimeoutError(f"the page never showed {wait_for!r}")
        time.sleep(settle)
        return b.screenshot(out, full_page=full_page)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("out", type=Path)
    ap.add_argument("--wait-for", default=None, help="Text the page must show before the screenshot.")
    ap.add_argument("--settle", type=float, default=1.5)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    path = capture(args.url, args.out, args.wait_for, args.settle, args.width, args.height, args.timeout)
    print(f"screenshot: {path}")


if __name__ == "__main__":
    main()
