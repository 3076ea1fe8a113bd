"""The frontend extension in headless Chromium against a real ComfyUI (``COMFYUI_PATH``); skipped without them.

Every test runs on each frontend and render mode of ``FRONTEND_MODES``: the frontend ComfyUI bundles, in the
classic canvas, and the newest one (``COMFYUI_NEW_FRONTEND``, pinned in ``.ci/frontend-version``) in the canvas and
in Nodes 2.0 (Vue nodes); one ComfyUI server per frontend serves all of its tests.

Checks: the frontend and render mode are the ones asked for; the extension loads and every node's help opens
with no failed request; every shipped UI workflow loads in the real frontend, converts (``app.graphToPrompt``)
into exactly its API twin and no node hides another; every shipped workflow runs from the page, and then every
Save Video and Render to Video File node plays its mp4, every Hallo node draws what its run reported, and the face
nodes show their mask previews; the sampler shows frames/clips/duration once the audio encoder reports, chained
samplers say they continue, the face node shows its summary; the render node's mp4 dropped back on the page
loads its workflow; and, last, nothing the page reported names the pack, and every other error is one known to
be core's (``KNOWN_CORE_PROBLEMS``). Screenshots of example workflows for the README are taken on the newest
frontend (``HALLO_UPDATE_SCREENSHOTS=1`` rewrites them in docs/images).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asset_paths import asset
from comfyui_harness import (
    CHROMIUM,
    FRONTEND_MODES,
    PACK_NAME,
    Chromium,
    ComfyServer,
    FrontendMode,
    browser_test_marks,
    comfyui_path,
    frontend_pythonpath,
    frontend_version,
    new_frontend_skip_reason,
    open_comfy_page,
    sort_page_problems,
    start_server,
    write_wav,
)
from node_helpers import comfy_audio
from workflow_tools import API_DIR, GROUP_PHOTO, PORTRAIT, SPEECH, SPEECH_B, WORKFLOWS, shipped_workflows

COMFY = comfyui_path()
REPO = Path(__file__).resolve().parents[1]
pytestmark = browser_test_marks()
NAMES = [p.stem for p in shipped_workflows()]
SECONDS = 1.0  # of each voice: 25 frames, two clips


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model folder with a face detector that sees the group photo's six faces and one centred face on a
    square image (the portrait, a face crop), so that every example workflow runs, the two-speaker one too."""
    from face_helpers import make_group_model_dir
    from hallo_nodes.pipeline.paths import FACE_MODELS_SUBDIR

    root = tmp_path_factory.mktemp("web_models")
    for entry in tiny_model_dir.iterdir():
        if entry.name != Path(FACE_MODELS_SUBDIR).parts[0]:
            (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return make_group_model_dir(root)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Callable[[str], ComfyServer]]:
    """One ComfyUI per frontend, started when a test first needs it, stopped with the module."""
    started: dict[str, ComfyServer] = {}

    def server_for(frontend: str) -> ComfyServer:
        if frontend not in started:
            base = tmp_path_factory.mktemp(f"comfyui_web_{frontend}")
            (base / "input").mkdir()
            shutil.copy(asset("portraits", "painting_girl.jpg"), base / "input" / PORTRAIT)
            shutil.copy(asset("portraits", "group_six_faces.jpg"), base / "input" / GROUP_PHOTO)
            for name, source in ((SPEECH, "speech_7s_44k.wav"), (SPEECH_B, "speech_12s_48k.wav")):
                speech = comfy_audio(SECONDS, name=source)
                write_wav(base / "input" / name, speech["waveform"][0].numpy(), speech["sample_rate"])
            started[frontend] = start_server(COMFY, base, model_dir, ("--preview-method", "latent2rgb"),  # previews on
                                             pythonpath=frontend_pythonpath(frontend))
        return started[frontend]

    yield server_for
    for srv in started.values():
        srv.stop()


def needs(frontend: str) -> None:
    if frontend == "newest" and (reason := new_frontend_skip_reason()):
        pytest.skip(reason)


@pytest.fixture(scope="module", params=FRONTEND_MODES, ids=lambda c: c.id)
def combo(request: pytest.FixtureRequest) -> FrontendMode:
    needs(request.param.frontend)
    return request.param


@pytest.fixture(scope="module")
def server(servers: Callable[[str], ComfyServer], combo: FrontendMode) -> ComfyServer:
    return servers(combo.frontend)


@pytest.fixture(scope="module")
def page(server: ComfyServer, combo: FrontendMode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    yield from open_comfy_page(CHROMIUM, server, tmp_path_factory.mktemp(f"chromium_{combo.id}"),
                               vue_nodes=combo.vue_nodes)


def load_workflow(page: Chromium, name: str) -> None:
    wf = (WORKFLOWS / f"{name}.json").read_text()
    page.evaluate(f"app.loadGraphData({wf}).then(() => true)")


def test_frontend_version_and_render_mode(page: Chromium, combo: FrontendMode) -> None:
    """The page runs the frontend asked for, in the render mode asked for; Nodes 2.0 is a user setting exactly
    where FRONTEND_MODES tests it (if the bundled frontend ever offers it, add its vue mode there)."""
    version = page.evaluate("window.__COMFYUI_FRONTEND_VERSION__")
    assert version == frontend_version(combo.frontend, COMFY)
    if combo.frontend == "newest":
        assert version != frontend_version("bundled", COMFY)
    setting = page.evaluate("app.ui.settings.settingsLookup?.['Comfy.VueNodes.Enabled']?.type ?? null")
    offered = {c.frontend for c in FRONTEND_MODES if c.vue_nodes}
    assert (setting not in (None, "hidden")) == (combo.frontend in offered), (combo.frontend, version, setting)
    load_workflow(page, "hallo_talking_video_from_portrait_and_audio")
    state = page.evaluate("({vue: !!LiteGraph.vueNodesMode, nodes: app.graph._nodes.length,"
                          " dom: document.querySelectorAll('[data-node-id]').length})")
    assert state["vue"] == combo.vue_nodes
    assert state["dom"] == (state["nodes"] if combo.vue_nodes else 0), state


def test_extension_and_help_pages_are_served(server: ComfyServer, page: Chromium) -> None:
    assert page.evaluate("app.extensions.some((e) => e.name === 'hallo.nodes')")
    exts = server.get("/extensions")
    assert any(e.endswith("/hallo.js") for e in exts), exts
    base = next(e for e in exts if e.endswith("/hallo.js")).rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{server.url}{base}/docs/HalloSampler/en.md", timeout=10) as r:
        assert r.read().decode().startswith("# Hallo Sampler")
    assert not [e for e in page.page_errors() if "hallo" in e.lower()]


OPEN_HELP = """async (type) => {
    app.graph.clear();
    const node = LiteGraph.createNode(type); app.graph.add(node);
    app.canvas.deselectAll?.(); app.canvas.selectNode(node); app.canvas.centerOnNode?.(node);
    app.canvas.draw(true, true);
    for (let i = 0; i < 100; i++) {
        const button = document.querySelector('[data-testid="info-button"]');
        if (button) { button.click(); return true; }
        await new Promise((r) => setTimeout(r, 100)); }
    return false; }"""


def test_every_node_help_opens_from_its_info_button_without_a_failed_request(server: ComfyServer,
                                                                           page: Chromium) -> None:
    """The frontend's own help (the selection toolbox's info button) shows each pack node's page; the frontend
    finds it at the first URL it tries (docs/<node>/<locale>.md), so no request fails."""
    info = server.get("/object_info")
    nodes = sorted(k for k, v in info.items() if v.get("python_module", "").endswith(f".{PACK_NAME}"))
    assert "HalloSampler" in nodes and "HalloRenderToVideoFile" in nodes
    for node in nodes:
        title = (REPO / "js" / "docs" / node / "en.md").read_text().splitlines()[0].removeprefix("# ")
        assert page.evaluate(call(OPEN_HELP, node)), f"{node}: no info button in the selection toolbox"
        shown = f"[...document.querySelectorAll('h1')].some((h) => h.innerText.trim() === {json.dumps(title)})"
        wait_for(page, shown, f"{node}: its help page does not show", timeout=30)
    assert [str(p) for p in page.problems() if "/docs/" in p.url] == []


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
    # Nodes 2.0 draws nodes as DOM elements of its own size: none hides another there either
    dom_overlaps = page.evaluate("""(async () => {
        for (let i = 0; i < 3; i++) await new Promise((r) => requestAnimationFrame(r));
        const els = [...document.querySelectorAll('[data-node-id]')], out = [];
        for (const a of els) for (const b of els) { if (a.dataset.nodeId >= b.dataset.nodeId) continue;
            const p = a.getBoundingClientRect(), q = b.getBoundingClientRect();
            if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom)
                out.push([a.dataset.nodeId, b.dataset.nodeId]); }
        return out; })()""")
    assert dom_overlaps == [], f"{name}: overlapping nodes (ids) in Nodes 2.0: {dom_overlaps}"
    # the pack's widgets are on their nodes (and, in Nodes 2.0, on the page)
    missing = page.evaluate(call(MISSING_WIDGETS, pack_widgets(info)))
    assert missing == [], f"{name}: widgets not shown: {missing}"


WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
#: (node type -> widget names) -> "type.widget" of those not on their node, or (Nodes 2.0) not on the page
MISSING_WIDGETS = """(specs) => app.graph._nodes.filter((n) => specs[n.type]).flatMap((n) => {
    const el = document.querySelector(`[data-node-id="${n.id}"]`), names = (n.widgets ?? []).map((w) => w.name);
    return specs[n.type].filter((w) => !names.includes(w) || (el && !el.innerText.includes(w)))
        .map((w) => `${n.type}.${w}`); })"""


def call(function: str, *args: Any) -> str:
    """A JavaScript expression calling ``function`` (an arrow function's source) with ``args`` as JSON."""
    return f"({function})({', '.join(json.dumps(a) for a in args)})"


def pack_widgets(info: dict) -> dict[str, list[str]]:
    """node type -> the widgets the frontend makes for its inputs (the pack's nodes only; not forceInput, not
    advanced, which Nodes 2.0 folds away)."""
    out = {}
    for name, node in info.items():
        if not node.get("python_module", "").endswith(f".{PACK_NAME}"):
            continue
        inputs = {**node["input"].get("required", {}), **node["input"].get("optional", {})}
        out[name] = [k for k, (kind, *opts) in inputs.items()
                     if (isinstance(kind, list) or kind in WIDGET_TYPES) and not (opts and opts[0].get("forceInput"))
                     and not (opts and opts[0].get("advanced"))]
    return out


AUDIO_INFO = {"frames": 188, "clips": 12, "clip_length": 16, "fps": 25, "duration": 7.52, "audio_seconds": 7.5}


def test_sampler_shows_frames_clips_and_duration(page: Chromium) -> None:
    load_workflow(page, "hallo_long_audio_video_in_chained_segments")
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
        f" const g = {find.format('HalloSegment')}[0], w = g.widgets.find((w) => w.name === 'frames'), old = w.value;"
        " w.value = 32; w.callback?.(32); g.onWidgetChanged?.(w.name, 32, old, w);"  # as the frontend's widgets do
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


def test_a_real_run_from_the_page_reports_to_the_nodes(server: ComfyServer, page: Chromium) -> None:
    server.clear_cache()  # every node runs (and reports), whatever ran before on this server
    load_workflow(page, "hallo_talking_video_from_portrait_and_audio")
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
        return {info: f.hallo_info, images: out?.images ? JSON.parse(JSON.stringify(out.images)) : null}; })()""")
    assert face["info"].startswith("1 face found, using #0 · 64x64")
    assert face["images"] and face["images"][0]["filename"].startswith("hallo_masks_")


RENDER_NODE = "(app.graph._nodes.find((n) => n.type === 'HalloRenderToVideoFile'))"
#: node -> the <video> the frontend shows on it: in the canvas, in the node's DOM widget; in Nodes 2.0, in the node's
#: element. The canvas makes a node's DOM widgets when it draws the node, so the node is brought into view first.
VIDEO_OF = """(n) => { app.canvas.centerOnNode?.(n); app.canvas.draw(true, true);
    return n.videoContainer?.querySelector('video') ?? document.querySelector(`[data-node-id="${n.id}"] video`); }"""
VIDEO_EL = f"({VIDEO_OF})({RENDER_NODE})"
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


def test_rendered_mp4_plays_on_the_node_and_dropped_back_loads_its_workflow(server: ComfyServer,
                                                                            page: Chromium) -> None:
    """The render node shows its mp4 in a <video> that plays (Debian's Chromium decodes H.264); the mp4 dropped
    onto the page (the frontend's drop handler -> app.handleFile) loads the very graph that rendered it."""
    server.clear_cache()  # the render node runs, live previews and all, whatever ran before on this server
    load_workflow(page, "hallo_render_audio_to_video_file")
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


#: The example workflow on the page made quick, as tests/comfyui_harness.py's fast_prompt makes its API twin: one
#: step, 64x64 portraits and face crops, 16-frame first segments; and a new seed, so that every node runs (a cached
#: node sends its old result but no live previews). Widgets are found by name, wherever they live: on the graph's
#: nodes and on those inside its subgraphs.
QUICK_RUN = """() => {
    const graphs = [app.graph, ...(app.graph.subgraphs?.values?.() ?? [])];
    for (const g of graphs) for (const n of g._nodes ?? g.nodes ?? []) for (const w of n.widgets ?? []) {
        if (w.name === 'steps') w.value = 1;
        if (w.name === 'seed') w.value = Math.floor(Math.random() * 1e9);
        if (n.type === 'HalloFaceAnalysis' && (w.name === 'width' || w.name === 'height')) w.value = 64;
        if (n.type === 'HalloFaceCrop' && w.name === 'size') w.value = 64;
        if (n.type.startsWith('Hallo') && ['num_frames', 'frames'].includes(w.name) && w.value > 0) w.value = 16; }
    return app.queuePrompt(0, 1).then(() => true); }"""
#: Records what each Hallo node's info widget draws (its text lines, and the room the canvas it draws into has),
#: for the widgets there are and those the nodes add later (a node adds it when it first reports).
RECORD_INFO_DRAWING = """() => {
    const record = (w) => {
        if (w?.name !== 'hallo_info' || w.hallo_recorded) return w;
        const draw = w.draw; w.hallo_recorded = true;
        w.draw = function (ctx, node, width, y, ...rest) {
            const fill = ctx.fillText, lines = [];
            ctx.fillText = function (text, ...args) {
                lines.push(String(text)); return fill.call(this, text, ...args); };
            try { return draw.call(this, ctx, node, width, y, ...rest); } finally {
                ctx.fillText = fill;
                const own = ctx.canvas !== app.canvas.canvas;  // Nodes 2.0 draws it into a canvas of its own
                this.hallo_drawn = {lines, room: own ? ctx.canvas.height / ctx.getTransform().d - y : null}; } };
        return w; };
    for (const n of app.graph._nodes) {
        (n.widgets ?? []).forEach(record);
        const add = n.addCustomWidget;
        if (add) n.addCustomWidget = function (...args) { return record(add.apply(this, args)); }; }
    return true; }"""
#: node id -> what its info widget drew last, after bringing the node into view
INFO_DRAWN = """(id) => { const n = app.graph.getNodeById(id);
    app.canvas.centerOnNode?.(n); app.canvas.draw(true, true);
    const w = (n.widgets ?? []).find((x) => x.name === 'hallo_info');
    return {info: n.hallo_info ?? '', notes: n.hallo_notes ?? [], drawn: w?.hallo_drawn ?? null}; }"""
#: node id -> its mask preview: the loaded <img> the canvas draws (node.imgs) or Nodes 2.0 shows
PREVIEW_SHOWN = """(id) => { const n = app.graph.getNodeById(id);
    app.canvas.centerOnNode?.(n); app.canvas.draw(true, true);
    const imgs = [...(n.imgs ?? []), ...document.querySelectorAll(`[data-node-id="${n.id}"] img`)];
    return imgs.filter((i) => i.complete && i.naturalWidth > 0).map((i) => i.src); }"""
VIDEO_STATE = f"""(id) => {{ const v = ({VIDEO_OF})(app.graph.getNodeById(id));
    return v && v.readyState >= 3 ? {{error: v.error && v.error.code, src: v.currentSrc, width: v.videoWidth,
                                      duration: v.duration}} : null; }}"""


def plain(text: str) -> str:
    """Text as words: the info widget wraps lines at spaces and marks notices with a sign."""
    return " ".join(text.replace("⚠", " ").split())


def run_from_page(server: ComfyServer, page: Chromium, expression: str, timeout: float = 240) -> dict:
    """Evaluate ``expression`` (which queues the page's graph) and wait for the run; its history entry."""
    before = set(server.get("/history"))
    assert page.evaluate(expression)
    deadline = time.monotonic() + timeout
    while True:
        queue = server.get("/queue")
        new = set(server.get("/history")) - before
        if new and not queue["queue_running"] and not queue["queue_pending"]:
            break
        assert time.monotonic() < deadline, f"the run did not finish; page errors: {page.page_errors()}"
        time.sleep(0.5)
    (entry,) = (server.get(f"/history/{k}")[k] for k in new)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"][-1])[:3000]
    return entry


@pytest.mark.parametrize("name", NAMES)
def test_example_workflow_runs_from_the_page_and_its_nodes_show_the_results(server: ComfyServer, page: Chromium,
                                                                          name: str) -> None:
    """Queued from the page (quick settings): every Save Video and Render to Video File node plays the mp4 it
    wrote, every Hallo node draws what its run reported (the info line and notices, in full), and every face node
    shows its mask preview."""
    load_workflow(page, name)
    page.evaluate(call(RECORD_INFO_DRAWING))
    entry = run_from_page(server, page, call(QUICK_RUN))
    nodes = page.evaluate("app.graph._nodes.map((n) => [String(n.id), n.type])")
    videos = [(i, t) for i, t in nodes if t in ("SaveVideo", "HalloRenderToVideoFile")]
    assert videos, f"{name}: no video node on the top level of the graph"
    for node_id, kind in videos:
        (mp4,) = (f["filename"] for f in entry["outputs"][node_id]["images"])
        video = wait_for(page, call(VIDEO_STATE, node_id), f"{name}: {kind} #{node_id} plays no video", timeout=60)
        assert video["error"] is None and video["width"] > 0 and mp4 in video["src"], video
        assert video["duration"] > 0.2, video  # the shortest: the rest of a second after a 16-frame segment
    cached = {n for kind, data in entry["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]}
    for node_id, kind in nodes:  # a node that ComfyUI took from its cache reports nothing to the page
        if not kind.startswith("Hallo") or node_id not in entry["outputs"] or node_id in cached:
            continue
        shown = wait_for(page, f"(({INFO_DRAWN})({json.dumps(node_id)}).drawn)", f"{name}: {kind} drew no info",
                         timeout=10)
        state = page.evaluate(call(INFO_DRAWN, node_id))
        assert state["info"] or state["notes"], f"{name}: {kind} #{node_id} reports nothing after its run"
        drawn, reported = (plain(" ".join(shown["lines"])), plain(" ".join([state["info"], *state["notes"]])))
        if drawn.endswith("…"):  # cut short where the node cannot grow: what is drawn is how the report begins
            assert reported.startswith(drawn[:-1].rstrip()) and len(drawn) > 20, (kind, drawn, reported)
        else:
            assert drawn == reported, f"{name}: {kind} #{node_id} shows {drawn!r}, not {reported!r}"
        if shown["room"] is not None:  # Nodes 2.0: the widget's canvas is tall enough for every line
            assert shown["room"] >= 14 * len(shown["lines"]), (kind, shown)
        if kind == "HalloFaceAnalysis":
            (masks,) = (f["filename"] for f in entry["outputs"][node_id]["images"])
            wait_for(page, f"({PREVIEW_SHOWN})({json.dumps(node_id)}).some((s) => s.includes({json.dumps(masks)}))",
                     f"{name}: face node #{node_id} shows no mask preview", timeout=30)


SCREENSHOTS = REPO / "docs" / "images"
#: The README's screenshots: (file name, workflow, inside its first subgraph)
BASIC = "hallo_talking_video_from_portrait_and_audio"
TWO_SPEAKERS = "hallo_two_speakers_video_from_group_photo_and_audio"
README_SHOTS = [("hallo_basic", BASIC, False), ("hallo_two_speakers", TWO_SPEAKERS, False),
                ("hallo_two_speakers_subgraph", TWO_SPEAKERS, True)]
#: Opens the first subgraph node's subgraph on the canvas, as double-clicking its title's icon does
OPEN_SUBGRAPH = """() => { const n = app.graph._nodes.find((n) => n.isSubgraphNode?.());
    if (!n) return false; app.canvas.openSubgraph(n.subgraph, n); return true; }"""
#: The bounds [x, y, width, height] of the graph on the canvas: its nodes, title bars included, groups, and (in a
#: subgraph) its input and output nodes
FRAME_GRAPH = """async () => {
    const g = app.canvas.graph ?? app.graph, t = LiteGraph.NODE_TITLE_HEIGHT;
    const boxes = g._nodes.map((n) => [n.pos[0], n.pos[1] - t, n.size[0], n.size[1] + t])
        .concat((g._groups ?? []).map((x) => [...x.pos, ...x.size]))
        .concat([g.inputNode, g.outputNode].filter(Boolean).map((io) => [...io.boundingRect]));
    const x0 = Math.min(...boxes.map((b) => b[0])), y0 = Math.min(...boxes.map((b) => b[1]));
    const x1 = Math.max(...boxes.map((b) => b[0] + b[2])), y1 = Math.max(...boxes.map((b) => b[1] + b[3]));
    return [x0, y0, x1 - x0, y1 - y0]; }"""
#: Shows the graph's bounds at ``scale`` with its top left corner ``margin`` px into the canvas; their page rect
SHOW_AT = """async (scale, margin, bounds) => {
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [margin / scale - bounds[0], margin / scale - bounds[1]];
    app.canvas.draw(true, true);
    for (let i = 0; i < 5; i++) await new Promise((r) => requestAnimationFrame(r));
    app.canvas.draw(true, true);
    const r = app.canvas.canvas.getBoundingClientRect();
    return [r.left + margin, r.top + margin, bounds[2] * scale, bounds[3] * scale]; }"""


@pytest.fixture(scope="module")
def newest_canvas_page(servers: Callable[[str], ComfyServer],
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    needs("newest")
    yield from open_comfy_page(CHROMIUM, servers("newest"), tmp_path_factory.mktemp("chromium_shots"),
                               vue_nodes=False)


def test_readme_screenshots_are_taken_on_the_newest_frontend(newest_canvas_page: Chromium) -> None:
    """PNGs of the example workflows the README shows, as the newest frontend draws them on load (classic canvas,
    scale 0.8), and of the two-speaker workflow's subgraph opened. The committed ones are of today's layout (same
    size); HALLO_UPDATE_SCREENSHOTS=1 rewrites them."""
    from PIL import Image

    page, update = newest_canvas_page, os.environ.get("HALLO_UPDATE_SCREENSHOTS") == "1"
    readme = (REPO / "README.md").read_text()
    for name, workflow, inside in README_SHOTS:
        load_workflow(page, workflow)
        if inside:
            assert page.evaluate(call(OPEN_SUBGRAPH)), f"{workflow} has no subgraph"
        bounds = page.evaluate(call(FRAME_GRAPH))
        scale, margin = 0.8, 280  # the margin keeps the frontend's side bar, tabs, minimap and zoom buttons clear
        width, height = (int(bounds[2] * scale + 2 * margin + 100), int(bounds[3] * scale + 2 * margin + 100))
        page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        time.sleep(1)
        x, y, w, h = page.evaluate(call(SHOW_AT, scale, margin, bounds))
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=False,
                         clip={"x": x - 16, "y": y - 16, "width": w + 32, "height": h + 32, "scale": 1})
        data = base64.b64decode(shot["data"])
        image = Image.open(io.BytesIO(data)).convert("L")
        assert image.size == (round(w + 32), round(h + 32)), image.size
        assert max(image.histogram()) < 0.9 * image.size[0] * image.size[1], f"{name}: the screenshot is blank"
        path = SCREENSHOTS / f"{name}.png"
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        assert path.is_file(), f"{path} missing: run with HALLO_UPDATE_SCREENSHOTS=1"
        with Image.open(path) as committed:
            assert committed.size == image.size, f"{path} is of another layout: run with HALLO_UPDATE_SCREENSHOTS=1"
        assert f"docs/images/{name}.png" in readme, f"the README does not show {name}.png"
    page.call("Emulation.clearDeviceMetricsOverride")


def test_the_page_reported_no_error_naming_the_pack(page: Chromium, combo: FrontendMode) -> None:
    """Last of each frontend and mode: of all the page reported while the tests above ran on it (loading, every
    workflow, every run, every help page, the dropped mp4), nothing names the pack, and every other error is one
    that is known to be core's against ComfyUI 0.3.64 (KNOWN_CORE_PROBLEMS: endpoints 0.3.64 lacks, ...)."""
    pack, unknown = sort_page_problems(page.problems())
    assert [str(p) for p in pack] == [], f"{combo.id}: the page reports problems naming the pack: " + \
        "\n\n".join(p.text[:2000] for p in pack)
    assert [str(p) for p in unknown] == [], f"{combo.id}: errors not known to be core's (add them if they are): " + \
        "\n\n".join(p.text[:2000] for p in unknown)
