"""Run a real ComfyUI checkout (``$COMFYUI_PATH``) headless with this pack installed, and talk to it.

Environment:
* ``COMFYUI_PATH``: the ComfyUI checkout (tests skip without it).
* ``COMFYUI_PYTHON``: the interpreter of ComfyUI's environment (default: this one).
* ``COMFYUI_EXTRA_PYTHONPATH``: prepended to ComfyUI's PYTHONPATH, e.g. ``tests/comfy_placeholders``, the
  test-only torchvision/torchaudio that ComfyUI 0.3.64 needs on a CPU-only torch (``.ci/setup-comfyui``).
* ``COMFYUI_NEW_FRONTEND``: a folder holding a newer ``comfyui_frontend_package`` (``pip install --target``;
  ``.ci/setup-comfyui`` installs the version pinned in ``.ci/frontend-version``). The browser tests run once on
  the frontend ComfyUI's environment bundles and once with this folder first on ComfyUI's PYTHONPATH, which is
  where ComfyUI imports its frontend from (what a ``pip install -U comfyui-frontend-package`` gives a user).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
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


NEW_FRONTEND_ENV = "COMFYUI_NEW_FRONTEND"


@dataclass(frozen=True)
class FrontendMode:
    """One frontend (``bundled``: the one in ComfyUI's environment; ``newest``: ``$COMFYUI_NEW_FRONTEND``) in one
    render mode (``canvas``: the classic LiteGraph canvas; ``vue``: Nodes 2.0, nodes drawn as DOM elements)."""

    frontend: str
    mode: str

    @property
    def id(self) -> str:
        return f"{self.frontend}-{self.mode}"

    @property
    def vue_nodes(self) -> bool:
        return self.mode == "vue"


#: What the browser tests run on. Nodes 2.0 is tested where the frontend offers it as a setting: the newest
#: frontend. ComfyUI 0.3.64's bundled 1.27.10 has it only as a hidden experiment (a test checks that it is
#: hidden there), in which core's own Save Video shows no video either.
FRONTEND_MODES = (FrontendMode("bundled", "canvas"), FrontendMode("newest", "canvas"), FrontendMode("newest", "vue"))


def new_frontend() -> Path | None:
    value = os.environ.get(NEW_FRONTEND_ENV)
    return Path(value) if value else None


def new_frontend_skip_reason() -> str:
    """Why the newest frontend cannot be tested here ('' when it can)."""
    folder = new_frontend()
    if folder is None:
        return (f"set {NEW_FRONTEND_ENV} to a folder with the newest comfyui_frontend_package "
                "(.ci/setup-comfyui installs it)")
    if not (folder / "comfyui_frontend_package" / "static" / "index.html").is_file():
        return f"{NEW_FRONTEND_ENV}={folder} holds no comfyui_frontend_package"
    return ""


def frontend_version(frontend: str, comfy: Path) -> str:
    """The frontend version a server of ``frontend`` should serve: ``newest``, the package in
    ``$COMFYUI_NEW_FRONTEND``; ``bundled``, the one ComfyUI's requirements.txt pins."""
    if frontend == "newest":
        (info,) = new_frontend().glob("comfyui_frontend_package-*.dist-info")
        return info.name.removeprefix("comfyui_frontend_package-").removesuffix(".dist-info")
    pin = re.search(r"^comfyui-frontend-package==(\S+)", (comfy / "requirements.txt").read_text(), re.MULTILINE)
    assert pin, "ComfyUI's requirements.txt pins no comfyui-frontend-package"
    return pin.group(1)


def frontend_pythonpath(frontend: str) -> tuple[str, ...]:
    """What goes first on ComfyUI's PYTHONPATH to serve ``frontend``."""
    return (str(new_frontend()),) if frontend == "newest" else ()


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

    def clear_cache(self) -> None:
        """Make the next prompt run every node, as on a fresh server: ComfyUI empties its output cache (asked with
        /free's free_memory) right after the prompt it runs next, so a trivial prompt runs first."""
        self.post("/free", {"free_memory": True})
        prompt = {"1": {"class_type": "PrimitiveString", "inputs": {"value": uuid.uuid4().hex}},
                  "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
        assert self.wait(self.queue(prompt), timeout=60)["status"]["status_str"] == "success"

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


def start_server(comfy: Path, base: Path, model_dir: Path, extra_args: Sequence[str] = (),
                 pythonpath: Sequence[str] = ()) -> ComfyServer:
    """Install the pack (symlink in a private custom_nodes folder), register ``model_dir`` as ``hallo``, start
    (``extra_args``: more ComfyUI options, e.g. ``--preview-method latent2rgb``; ``pythonpath``: folders put first
    on ComfyUI's PYTHONPATH, e.g. ``frontend_pythonpath('newest')``)."""
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
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*pythonpath, extra, env.get("PYTHONPATH", "")) if p)
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


@dataclass(frozen=True)
class PageProblem:
    """A console error or warning, an uncaught exception, or a failed request seen by the page."""

    kind: str  # "console.error", "console.warning", "log.error", "exception", "http 404", "failed request", ...
    text: str
    url: str = ""
    stack: tuple[str, ...] = ()  # the script URLs of the stack, innermost first

    def names(self, word: str) -> bool:
        """Whether ``word`` (case-insensitive) is in the text, the URL or the URL of a script on the stack."""
        word = word.lower()
        return any(word in part.lower() for part in (self.text, self.url, *self.stack))

    def __str__(self) -> str:
        where = f" [{self.url}]" if self.url else ""
        return f"{self.kind}: {self.text[:300]}{where}"


def _stack_urls(trace: dict | None) -> tuple[str, ...]:
    return tuple(f.get("url", "") for f in (trace or {}).get("callFrames", []))


class Chromium:
    """Headless Chromium driven over the DevTools protocol (Runtime.evaluate), no extra Python packages. It records
    what the page reports (``problems()``): console errors and warnings, uncaught exceptions, failed requests."""

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
        self._requests: dict[str, str] = {}  # request id -> URL (a failed request's event names only the id)
        for domain in ("Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    KEPT_EVENTS = {"Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded", "Network.responseReceived",
                   "Network.loadingFailed"}

    def _record(self, msg: dict) -> None:
        method = msg.get("method")
        if method == "Network.requestWillBeSent":
            self._requests[msg["params"]["requestId"]] = msg["params"]["request"]["url"]
        elif method == "Network.responseReceived":
            if msg["params"]["response"]["status"] >= 400:
                self.events.append(msg)
        elif method == "Runtime.consoleAPICalled":
            if msg["params"]["type"] in ("error", "warning", "assert"):
                self.events.append(msg)
        elif method in self.KEPT_EVENTS:
            self.events.append(msg)

    def call(self, method: str, **params: Any) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        for msg in self.ws.messages():
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._record(msg)
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

    def problems(self) -> list[PageProblem]:
        """Everything the page reported so far that could be a problem (see ``PageProblem``)."""
        out = []
        for e in self.events:
            method, p = e["method"], e["params"]
            if method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                text = (d.get("exception") or {}).get("description") or d.get("text", "")
                out.append(PageProblem("exception", text, d.get("url", ""), _stack_urls(d.get("stackTrace"))))
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
                out.append(PageProblem(f"console.{p['type']}", text, "", _stack_urls(p.get("stackTrace"))))
            elif method == "Log.entryAdded":
                entry = p["entry"]
                if entry["level"] in ("error", "warning"):
                    out.append(PageProblem(f"log.{entry['level']}", entry["text"], entry.get("url", ""),
                                           _stack_urls(entry.get("stackTrace"))))
            elif method == "Network.responseReceived":
                r = p["response"]
                out.append(PageProblem(f"http {r['status']}", r.get("statusText", ""), r["url"]))
            elif method == "Network.loadingFailed" and not p.get("canceled"):
                out.append(PageProblem("failed request", p["errorText"], self._requests.get(p["requestId"], "")))
        return out

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


@dataclass(frozen=True)
class KnownProblem:
    """A page problem that is core's, not the pack's (matched on kind, text and URL; each a regular expression)."""

    why: str
    kind: str = ".*"
    text: str = ".*"
    url: str = ".*"

    def matches(self, p: PageProblem) -> bool:
        return bool(re.fullmatch(self.kind, p.kind) and re.search(self.text, p.text, re.DOTALL)
                    and re.search(self.url, p.url))


_NOT_FOUND = r"http 404|log\.error"
#: Errors the frontends report against ComfyUI 0.3.64 that have nothing to do with the pack: endpoints this
#: backend lacks, optional files a fresh user folder has not got, and core's own slips. Anything else fails the
#: browser tests (and anything naming the pack always does).
KNOWN_CORE_PROBLEMS = (
    KnownProblem("1.58 asks for the job API, which ComfyUI 0.3.64 lacks", _NOT_FOUND, url=r"/api/jobs\?"),
    KnownProblem("1.58 reports the missing job API", "console.error", r"JobsApiError: Failed to fetch jobs: 404"),
    KnownProblem("1.58 asks for global subgraph blueprints, which ComfyUI 0.3.64 lacks", _NOT_FOUND,
                 url=r"/api/global_subgraphs$"),
    KnownProblem("listing a user folder that a fresh user directory has not got", _NOT_FOUND,
                 url=r"/api/userdata\?dir=(workflows|subgraphs)"),
    KnownProblem("optional user files", _NOT_FOUND, url=r"/(api/userdata/)?(user\.css|comfy\.templates\.json)$"),
    KnownProblem("1.58 asks for template logos that ComfyUI 0.3.64's template package has not got", _NOT_FOUND,
                 url=r"/templates/index_logo\.json$"),
    KnownProblem("1.27 asks for a favicon that it does not ship", _NOT_FOUND, url=r"/favicon\.ico$"),
    KnownProblem("the frontend reaching the internet (1.58 checks model download links), which CI has not got",
                 r"failed request|log\.error", url=r"^https?://(?!127\.0\.0\.1[:/])"),
    KnownProblem("Chromium, when the test reloads a page with unsaved changes", "log.error",
                 r"^Blocked attempt to show a 'beforeunload' confirmation panel"),
    KnownProblem("1.27.10: its model-to-node map names core nodes this ComfyUI does not load (UpscaleModelLoader "
                 "needs spandrel, which .ci/setup-comfyui leaves out with torchvision)", "console.error",
                 r"Cannot read properties of undefined \(reading 'name'\).*getRegisteredNodeTypes"),
    KnownProblem("1.27.10: a setting's change handler reads an undefined setting while the settings register",
                 "exception", r"Cannot read properties of undefined \(reading 'id'\)\s+at onChange .*addSetting"),
)


def sort_page_problems(problems: Sequence[PageProblem]) -> tuple[list[PageProblem], list[PageProblem]]:
    """(those naming the pack, other errors that are not known to be core's); warnings that do not name the pack
    are left out (core's own deprecation notices)."""
    pack, unknown = [], []
    for p in problems:
        if p.names(PACK_NAME) or p.names("hallo"):
            pack.append(p)
        elif not p.kind.endswith("warning") and not any(k.matches(p) for k in KNOWN_CORE_PROBLEMS):
            unknown.append(p)
    return pack, unknown


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


#: Run in the page once it is ready: litegraph reports each deprecated call only once per message, so a call from
#: the pack after one from core would go unseen; report every one that the pack's script makes, as an error.
WATCH_DEPRECATIONS = """(() => {
    if (!Array.isArray(LiteGraph.onDeprecationWarning)) return false;
    LiteGraph.alwaysRepeatWarnings = true;
    LiteGraph.onDeprecationWarning.splice(0, LiteGraph.onDeprecationWarning.length, (message) => {
        const stack = new Error().stack ?? "";
        if (stack.includes(PACK_URL)) console.error(`deprecated use in the pack: ${message}\\n${stack}`);
    });
    return true; })()""".replace("PACK_URL", json.dumps(f"/extensions/{PACK_NAME}/"))


def open_comfy_page(binary: str, server: ComfyServer, profile: Path,
                    vue_nodes: bool | None = None) -> Iterator[Chromium]:
    """Headless Chromium on the server's page once the frontend has registered the pack's nodes (a generator
    for a pytest fixture: the browser closes when the fixture ends). ``vue_nodes``: set the frontend's Nodes 2.0
    setting (``Comfy.VueNodes.Enabled``) first, through the settings API, as the settings dialog does."""
    if vue_nodes is not None:
        server.post("/settings/Comfy.VueNodes.Enabled", vue_nodes)
    # a fresh user folder would open the template browser over the graph on the first visit
    server.post("/settings/Comfy.TutorialCompleted", True)
    browser = Chromium(binary, profile)
    try:
        browser.call("Page.enable")
        browser.navigate(server.url)
        deadline = time.monotonic() + 120
        ready = "!!(window.app && window.app.graph && window.LiteGraph && LiteGraph.registered_node_types.HalloSampler)"
        while not browser.evaluate(ready):
            assert time.monotonic() < deadline, f"the ComfyUI page did not load: {browser.page_errors()}"
            time.sleep(0.5)
        browser.evaluate(WATCH_DEPRECATIONS)
        yield browser
    finally:
        browser.close()


def browser_test_marks() -> list[pytest.MarkDecorator]:
    """``pytestmark`` of a module that drives a real ComfyUI in headless Chromium: skipped (with the reason)
    without either."""
    return [pytest.mark.comfyui, pytest.mark.skipif(bool(skip_reason()), reason=skip_reason()),
            pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package 'chromium')")]
