"""The frontend extension in headless Chromium against a real ComfyUI (``COMFYUI_PATH``); skipped without them.

Checks: the extension loads without page errors; every shipped UI workflow loads in the real frontend and
converts (``app.graphToPrompt``) into exactly its API twin; the sampler shows frames/clips/duration once the
audio encoder reports, chained samplers say they continue, the face node shows its summary; and a real run
queued from the page delivers the encoder's and sampler's ui messages to the nodes (with the mask preview).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asset_paths import asset
from comfyui_harness import (
    CHROMIUM,
    Chromium,
    ComfyServer,
    browser_test_marks,
    comfyui_path,
    open_comfy_page,
    start_server,
    write_wav,
)
from node_helpers import comfy_audio
from workflow_tools import API_DIR, PORTRAIT, SPEECH, WORKFLOWS, shipped_workflows

COMFY = comfyui_path()
pytestmark = browser_test_marks()
NAMES = [p.stem for p in shipped_workflows()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ComfyServer:
    base = tmp_path_factory.mktemp("comfyui_web")
    (base / "input").mkdir()
    shutil.copy(asset("portraits", "painting_girl.jpg"), base / "input" / PORTRAIT)
    speech = comfy_audio(1.0)
    write_wav(base / "input" / SPEECH, speech["waveform"][0].numpy(), speech["sample_rate"])
    srv = start_server(COMFY, base, tiny_model_dir, ("--preview-method", "latent2rgb"))  # live previews on
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(server: ComfyServer, tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    yield from open_comfy_page(CHROMIUM, server, tmp_path_factory.mktemp("chromium"))


def load_workflow(page: Chromium, name: str) -> None:
    wf = (WORKFLOWS / f"{name}.json").read_text()
    page.evaluate(f"app.loadGraphData({wf}).then(() => true)")


def test_extension_and_help_pages_are_served(server: ComfyServer, page: Chromium) -> None:
    assert page.evaluate("app.extensions.some((e) => e.name === 'hallo.nodes')")
    exts = server.get("/extensions")
    assert any(e.endswith("/hallo.js") for e in exts), exts
    base = next(e for e in exts if e.endswith("/hallo.js")).rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{server.url}{base}/docs/HalloSampler.md", timeout=10) as r:
        assert r.read().decode().startswith("# Hallo Sampler")
    assert not [e for e in page.page_errors() if "hallo" in e.lower()]


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_loads_and_converts_to_its_api_twin(server: ComfyServer, page: Chromium, name: str) -> None:
    load_workflow(page, name)
    types = page.evaluate("app.graph._nodes.map((n) => n.type)")
    assert all(t in page.evaluate("Object.keys(LiteGraph.registered_node_types)") for t in types)
    prompt = page.evaluate("app.graphToPrompt().then((p) => p.output)")
    assert {"HalloSampler", "HalloRenderToVideoFile"} & {v["class_type"] for v in prompt.values()}
    expected = json.loads((API_DIR / f"{name}.json").read_text())
    info = server.get("/object_info")

    def strip(p: dict) -> dict:
        """class and inputs, without frontend-only widgets (LoadAudio's audioUI player) the server ignores."""
        out = {}
        for k, v in p.items():
            spec = info[v["class_type"]]["input"]
            known = {**spec.get("required", {}), **spec.get("optional", {})}
            out[k] = {"class_type": v["class_type"], "inputs": {n: x for n, x in v["inputs"].items() if n in known}}
        return out

    assert strip(prompt) == strip(expected)
    assert set(prompt) == set(expected)
    # laid out for the frontend's own node sizes (title bar included): no node hides another
    overlaps = page.evaluate("""(() => { const ns = app.graph._nodes, t = LiteGraph.NODE_TITLE_HEIGHT, out = [];
        for (const a of ns) for (const b of ns) { if (a.id >= b.id) continue;
            const [ax, ay] = a.pos, [aw, ah] = a.size, [bx, by] = b.pos, [bw, bh] = b.size;
            if (ax < bx + bw && bx < ax + aw && ay - t < by + bh && by - t < ay + ah) out.push([a.title, b.title]); }
        return out; })()""")
    assert overlaps == [], f"{name}: overlapping nodes {overlaps}"


AUDIO_INFO = {"frames": 188, "clips": 12, "clip_length": 16, "fps": 25, "duration": 7.52, "audio_seconds": 7.5}


def test_sampler_shows_frames_clips_and_duration(page: Chromium) -> None:
    load_workflow(page, "hallo_long_audio_chained")
    find = "app.graph._nodes.filter((n) => n.type === '{}')"
    before = page.evaluate(f"{find.format('HalloSampler')}.map((n) => n.hallo_info)")
    assert all("run the graph once" in t for t in before), before
    infos = page.evaluate(
        f"(() => {{ const enc = {find.format('HalloAudioEncode')}[0];"
        f" enc.onExecuted({{hallo_audio: [{json.dumps(AUDIO_INFO)}]}});"
        f" app.canvas.draw(true, true);"
        f" return {find.format('HalloSampler')}.sort((a, b) => a.pos[1] - b.pos[1]).map((n) => n.hallo_info); }})()")
    assert infos[0] == "96 frames · 6 clips · 3.84 s @ 25 fps (frames 0-95 of 188)"
    assert infos[1] == "continues the previous segment: the rest of the audio of 188 @ 25 fps"
    # changing the segment node's frames updates the text; without a segment: the whole audio
    text = page.evaluate(
        f"(() => {{ const s = {find.format('HalloSampler')}.sort((a, b) => a.pos[1] - b.pos[1])[0];"
        f" {find.format('HalloSegment')}[0].widgets.find((w) => w.name === 'frames').value = 32;"
        " app.canvas.draw(true, true); return s.hallo_info; })()")
    assert text == "32 frames · 2 clips · 1.28 s @ 25 fps (frames 0-31 of 188)"
    text = page.evaluate(
        f"(() => {{ const s = {find.format('HalloSampler')}.sort((a, b) => a.pos[1] - b.pos[1])[0];"
        " s.disconnectInput(s.findInputSlot('segment')); app.canvas.draw(true, true); return s.hallo_info; })()")
    assert text == "188 frames · 12 clips · 7.52 s @ 25 fps"
    face = page.evaluate(
        f"(() => {{ const f = {find.format('HalloFaceAnalysis')}[0];"
        " f.onExecuted({hallo_face: [{faces: 6, face_index: 2, bbox: [0, 0, 10, 10], width: 512, height: 512}]});"
        " app.canvas.draw(true, true); return f.hallo_info; })()")
    assert face.startswith("6 faces found, using #2 · 512x512")
    assert not [e for e in page.page_errors() if "hallo" in e.lower()]


def test_a_real_run_from_the_page_reports_to_the_nodes(page: Chromium) -> None:
    load_workflow(page, "hallo_basic")
    page.evaluate("""(() => {
        const set = (type, name, value) => app.graph._nodes.filter((n) => n.type === type)
            .forEach((n) => { n.widgets.find((w) => w.name === name).value = value; });
        set('HalloSampler', 'steps', 1);
        set('HalloFaceAnalysis', 'width', 64);
        set('HalloFaceAnalysis', 'height', 64);
        return app.queuePrompt(0, 1).then(() => true);
    })()""")
    deadline = time.monotonic() + 600
    state = "(() => { const s = app.graph._nodes.find((n) => n.type === 'HalloSampler'); return s.hallo_info; })()"
    while "rendered in" not in (page.evaluate(state) or ""):
        assert time.monotonic() < deadline, f"no render report; page errors: {page.page_errors()}"
        time.sleep(2)
    info = page.evaluate(state)
    assert info.startswith("25 frames · 2 clips · 1.00 s @ 25 fps · rendered in"), info
    face = page.evaluate("""(() => { const f = app.graph._nodes.find((n) => n.type === 'HalloFaceAnalysis');
        const out = app.nodeOutputs?.[String(f.id)];
        return {info: f.hallo_info, images: out?.images ?? null}; })()""")
    assert face["info"].startswith("1 face found, using #0 · 64x64")
    assert face["images"] and face["images"][0]["filename"].startswith("hallo_masks_")


RENDER_NODE = "(app.graph._nodes.find((n) => n.type === 'HalloRenderToVideoFile'))"
VIDEO_EL = f"{RENDER_NODE}?.videoContainer?.querySelector('video')"
GRAPH_SHAPE = """(() => { const g = app.graph.serialize();
    return {nodes: g.nodes.map((n) => [n.id, n.type, n.widgets_values ?? null, (n.outputs ?? []).length])
                          .sort((a, b) => a[0] - b[0]),
            links: g.links.map((l) => l.slice(0, 6)).sort((a, b) => a[0] - b[0])}; })()"""


def wait_for(page: Chromium, expression: str, what: str, timeout: float = 600,
             debug: Callable[[], Any] = lambda: None) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(expression)):
        assert time.monotonic() < deadline, f"{what}: {debug()}; page errors: {page.page_errors()}"
        time.sleep(1)
    return value


def test_rendered_mp4_plays_on_the_node_and_dropped_back_loads_its_workflow(page: Chromium) -> None:
    """The render node shows its mp4 in a <video> that plays (Debian's Chromium decodes H.264); the mp4 dropped
    onto the page (the frontend's drop handler -> app.handleFile) loads the very graph that rendered it."""
    load_workflow(page, "hallo_render_to_file")
    page.evaluate("""(() => {
        const set = (type, name, value) => app.graph._nodes.filter((n) => n.type === type)
            .forEach((n) => { n.widgets.find((w) => w.name === name).value = value; });
        set('HalloRenderToVideoFile', 'steps', 1);
        set('HalloFaceAnalysis', 'width', 64);
        set('HalloFaceAnalysis', 'height', 64);
        return true; })()""")
    queued = page.evaluate(GRAPH_SHAPE)
    page.evaluate("app.queuePrompt(0, 1).then(() => true)")
    state = (f"(() => {{ app.canvas.draw(true, true); const v = {VIDEO_EL};"
             " return v && v.readyState >= 3 ? {error: v.error && v.error.code, src: v.currentSrc,"
             " size: [v.videoWidth, v.videoHeight], duration: v.duration} : null; })()")
    debug = (f"(() => {{ const n = {RENDER_NODE}; const v = {VIDEO_EL};"
             " return {output: app.nodeOutputs?.[String(n.id)]"
             " ?? null, container: !!n.videoContainer, imgs: (n.imgs ?? []).length, media: n.previewMediaType ?? null,"
             " video: v ? {rs: v.readyState, error: v.error && v.error.code, src: v.currentSrc} : null}; })()")
    video = wait_for(page, state, "the render node shows no playable video", timeout=300,
                     debug=lambda: page.evaluate(debug))
    assert video["error"] is None and video["size"] == [64, 64], video
    assert video["src"].endswith(".mp4") or ".mp4&" in video["src"], video
    assert video["duration"] == pytest.approx(1.0, abs=0.1)
    leftovers = (f"(() => {{ const n = {RENDER_NODE}; return [(n.imgs ?? []).map((i) => i.src),"
                 " n.widgets.map((w) => w.name).filter((w) => w.startsWith('$$'))]; })()")
    for _ in range(4):  # a preview image that finishes loading after the run must not come back either
        page.evaluate("(() => { app.canvas.draw(true, true); return true; })()")
        time.sleep(0.5)
    assert page.evaluate(leftovers) == [[], []]  # the last live preview is not drawn beside the video
    played = page.evaluate(f"""(async () => {{ const v = {VIDEO_EL}; v.muted = true; await v.play();
        await new Promise((r) => setTimeout(r, 800));
        return {{error: v.error && v.error.code, played: v.played.length ? v.played.end(0) : 0}}; }})()""")
    assert played["error"] is None and played["played"] > 0.2, played
    page.evaluate(f"""(async () => {{
        const blob = await (await fetch({VIDEO_EL}.currentSrc)).blob();
        const file = new File([blob], 'hallo_dropped.mp4', {{type: 'video/mp4'}});
        app.graph.clear();
        const dt = new DataTransfer(); dt.items.add(file);
        document.dispatchEvent(new DragEvent('drop', {{dataTransfer: dt, bubbles: true, cancelable: true}}));
        return true; }})()""")
    wait_for(page, "app.graph._nodes.length > 0", "dropping the mp4 loaded no workflow", timeout=60)
    assert page.evaluate(GRAPH_SHAPE) == queued
