"""Run a real ComfyUI checkout (``$COMFYUI_PATH``) headless with this pack installed, and talk to it.

Environment:
* ``COMFYUI_PATH``: the ComfyUI checkout (tests skip without it).
* ``COMFYUI_PYTHON``: the interpreter of ComfyUI's environment (default: this one).
* ``COMFYUI_EXTRA_PYTHONPATH``: prepended to ComfyUI's PYTHONPATH, e.g. ``tests/comfy_placeholders``, the
  test-only torchvision/torchaudio that ComfyUI 0.3.64 needs on a CPU-only torch (``.ci/setup-comfyui``).
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "hallo-nodes"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Test-only node packs (stand-ins for third-party nodes), linked next to the pack: see comfy_test_nodes/README.md
TEST_NODES = Path(__file__).resolve().parent / "comfy_test_nodes"
START_TIMEOUT = 180.0


def comfyui_path() -> Path | None:
    value = os.environ.get("COMFYUI_PATH")
    return Path(value) if value else None


def skip_reason() -> str:
    """Why the ComfyUI tests cannot run here ('' when they can)."""
    path = comfyui_path()
    if path is None:
        return "set COMFYUI_PATH to a ComfyUI checkout to run these (.ci/setup-comfyui builds one)"
    if not (path / "main.py").is_file():
        return f"COMFYUI_PATH={path} has no main.py"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_wav(path: Path, wave_ct: np.ndarray, rate: int) -> None:
    """float [C, T] -> 16-bit PCM wav."""
    pcm = (np.clip(wave_ct, -1, 1).T * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


@dataclass
class ComfyServer:
    base: Path
    port: int
    process: subprocess.Popen
    log: Path
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                data = r.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc
        return json.loads(data) if data else None

    def queue(self, prompt: dict, extra_data: dict | None = None) -> str:
        body = {"prompt": prompt, "client_id": self.client_id}
        if extra_data is not None:
            body["extra_data"] = extra_data
        return self.post("/prompt", body)["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            entry = hist.get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            if self.process.poll() is not None:
                raise AssertionError(f"ComfyUI exited: {self.log_tail()}")
            time.sleep(1.0)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s; log: {self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.is_file() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_server(comfy: Path, base: Path, model_dir: Path, extra_args: Sequence[str] = ()) -> ComfyServer:
    """Install the pack (symlink in a private custom_nodes folder), register ``model_dir`` as ``hallo``, start
    (``extra_args``: more ComfyUI options, e.g. ``--preview-method latent2rgb``)."""
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / PACK_NAME
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    for pack in sorted(p for p in TEST_NODES.iterdir() if (p / "__init__.py").is_file()):
        if not (base / "custom_nodes" / pack.name).exists():
            (base / "custom_nodes" / pack.name).symlink_to(pack, target_is_directory=True)
    config = base / "extra_model_paths.yaml"
    config.write_text(f"hallo_test:\n  custom_nodes: {base / 'custom_nodes'}\n  hallo: {model_dir}\n")
    port = free_port()
    python = os.environ.get("COMFYUI_PYTHON") or shutil.which("python3") or "python3"
    env = dict(os.environ)
    extra = os.environ.get("COMFYUI_EXTRA_PYTHONPATH")
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH", "")) if p)
    env.pop("HALLO_MODEL_PATH", None)
    # One torch thread, as in the test process: on two busy cores two spinning OpenMP threads made a run 3x slower.
    env.setdefault("OMP_NUM_THREADS", os.environ.get("HALLO_TEST_THREADS", "1"))
    log = base / "comfyui.log"
    cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--disable-api-nodes", "--extra-model-paths-config", str(config), "--output-directory",
           str(base / "output"), "--input-directory", str(base / "input"), "--temp-directory", str(base / "temp"),
           "--user-directory", str(base / "user"), "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}",
           *extra_args]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=comfy, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = ComfyServer(base, port, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited during start-up:\n{server.log_tail()}")
        try:
            server.get("/system_stats")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"ComfyUI did not start in {START_TIMEOUT} s:\n{server.log_tail()}")


class WebSocket:
    """A minimal RFC 6455 client for ComfyUI's /ws (receive only)."""

    def __init__(self, port: int, path: str, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake failed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head!r}")

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("websocket closed")
            data += chunk
        return data

    def events(self) -> Iterator[dict | bytes]:
        """JSON text messages as dicts, binary messages (ComfyUI's previews) as bytes."""
        while True:
            b1, b2 = self._read(2)
            opcode, length = b1 & 0x0F, b2 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)
            if opcode == 0x8:
                return
            if opcode == 0x1:
                yield json.loads(payload)
            elif opcode == 0x2:
                yield payload

    def messages(self) -> Iterator[dict]:
        """JSON text messages (binary preview frames are skipped)."""
        for event in self.events():
            if isinstance(event, dict):
                yield event

    def send(self, text: str) -> None:
        """One masked text frame (clients must mask)."""
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + body)

    def close(self) -> None:
        self.sock.close()


class Chromium:
    """Headless Chromium driven over the DevTools protocol (Runtime.evaluate), no extra Python packages."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--mute-audio",
             "--disable-extensions", "--window-size=1400,900"]

    def __init__(self, binary: str, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([binary, *self.FLAGS, f"--user-data-dir={profile}",
                                         "--remote-debugging-port=0", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.loads(r.read()) if t["type"] == "page")
        ws_path = target["webSocketDebuggerUrl"].split(str(port), 1)[1]
        self.ws = WebSocket(port, ws_path, timeout=120)
        self._id = 0
        self.events: list[dict] = []
        self.call("Runtime.enable")

    def call(self, method: str, **params: Any) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        for msg in self.ws.messages():
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)
        raise ConnectionError("devtools connection closed")

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """Evaluate (awaiting promises) and return the JSON value; page exceptions are raised."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                           timeout=int(timeout * 1000))
        if "exceptionDetails" in result:
            raise RuntimeError(f"page exception: {json.dumps(result['exceptionDetails'])[:2000]}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def page_errors(self) -> list[str]:
        return [json.dumps(e["params"])[:500] for e in self.events if e.get("method") == "Runtime.exceptionThrown"]

    def close(self) -> None:
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()


def fast_prompt(prompt: dict, steps: int = 1, size: int = 64, first_segment: int = 16) -> dict:
    """The shipped API prompt with CPU-friendly settings: fewer steps, a small video, a short first segment."""
    out = json.loads(json.dumps(prompt))
    for node in out.values():
        inputs = node["inputs"]
        if "steps" in inputs:
            inputs["steps"] = steps
        if node["class_type"] == "HalloFaceAnalysis":
            inputs["width"] = inputs["height"] = size
        if node["class_type"] == "HalloFaceCrop":
            inputs["size"] = size
        if node["class_type"] == "HalloSegment":
            inputs["frames"] = first_segment
    return out


def expected_frames(seconds: float, fps: float = 25.0) -> int:
    return math.ceil(seconds * fps)


def open_comfy_page(binary: str, server: ComfyServer, profile: Path) -> Iterator[Chromium]:
    """Headless Chromium on the server's page once the frontend has registered the pack's nodes (a generator
    for a pytest fixture: the browser closes when the fixture ends)."""
    browser = Chromium(binary, profile)
    try:
        browser.call("Page.enable")
        browser.navigate(server.url)
        deadline = time.monotonic() + 120
        ready = "!!(window.app && window.app.graph && window.LiteGraph && LiteGraph.registered_node_types.HalloSampler)"
        while not browser.evaluate(ready):
            assert time.monotonic() < deadline, f"the ComfyUI page did not load: {browser.page_errors()}"
            time.sleep(0.5)
        yield browser
    finally:
        browser.close()


def browser_test_marks() -> list[pytest.MarkDecorator]:
    """``pytestmark`` of a module that drives a real ComfyUI in headless Chromium: skipped (with the reason)
    without either."""
    return [pytest.mark.comfyui, pytest.mark.skipif(bool(skip_reason()), reason=skip_reason()),
            pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package 'chromium')")]
