"""The sampler, its option nodes and saved workflows in a real ComfyUI (``COMFYUI_PATH``) and its real frontend
(headless Chromium; whichever frontend package that ComfyUI serves).

* every preset ComfyUI lists renders from the speed-preset workflow, and the progress bar counted its steps;
* a bad value is refused when the prompt is queued, on its own widget only, with a message that starts with the
  node's name (NaN, a size that is not a multiple of 64, a segment that is not a multiple of 16, bad keyframes);
* the samplers show at most 8 (Render to Video File: 10) widgets, none with a 0 / -1 "default" value; Hallo
  Sampler Options greys out the custom recipe under a named preset and hands a chosen preset's steps to its
  samplers; the Hallo Segment arrows step by 16;
* workflows saved with the samplers' old widgets (``fixtures/workflows_before_option_nodes``: every example as
  shipped before, and ``fixtures/workflows_before_presets``) load with the option nodes the rules of
  ``workflow_migration.py`` give, every other node unchanged, and render the same frames as their API prompts,
  which reach the nodes with the old names (compared as PNGs: H.264 is not repeatable bit for bit);
* a notice never grows its node over the node below.
"""

from __future__ import annotations

import copy
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from asset_paths import asset
from comfyui_harness import (
    CHROMIUM,
    Chromium,
    ComfyServer,
    WebSocket,
    browser_test_marks,
    comfyui_path,
    open_comfy_page,
    start_server,
    write_wav,
)
from hallo_nodes.pipeline.sampling.presets import PRESETS
from node_helpers import comfy_audio
from PIL import Image
from workflow_migration import OLD_LAYOUTS, migrate, old_layout
from workflow_tools import API_DIR, PORTRAIT, SPEECH, WORKFLOWS

COMFY = comfyui_path()
pytestmark = browser_test_marks()
FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD = FIXTURES / "workflows_before_option_nodes"
BEFORE_PRESETS = FIXTURES / "workflows_before_presets"
SECONDS = 4.2  # 105 frames: seven clips, so the chained example's second segment (from frame 96) has one
SAMPLERS = set(OLD_LAYOUTS)
OLD_UI = {**{f"{p.stem}": p for p in sorted((OLD / "ui").glob("*.json"))},
          **{f"before_presets_{p.stem}": p for p in (BEFORE_PRESETS / "hallo_basic.json",
                                                     BEFORE_PRESETS / "hallo_render_to_file.json")}}
OLD_API = {**{p.stem: json.loads(p.read_text()) for p in sorted((OLD / "api").glob("*.json"))},
           "before_presets_hallo_basic": json.loads((BEFORE_PRESETS / "hallo_basic_api.json").read_text())}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ComfyServer:
    base = tmp_path_factory.mktemp("comfyui_options")
    (base / "input").mkdir()
    shutil.copy(asset("portraits", "painting_girl.jpg"), base / "input" / PORTRAIT)
    speech = comfy_audio(SECONDS)
    write_wav(base / "input" / SPEECH, speech["waveform"][0].numpy(), speech["sample_rate"])
    # PyTorch's attention: on the CPU ComfyUI's default (sub-quadratic) picks its chunks from the free memory, so
    # two runs of the same prompt could differ by rounding, which the random tiny network amplifies
    srv = start_server(COMFY, base, tiny_model_dir, ("--use-pytorch-cross-attention",))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(server: ComfyServer, tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    yield from open_comfy_page(CHROMIUM, server, tmp_path_factory.mktemp("chromium_options"))


def run(server: ComfyServer, prompt: dict) -> tuple[dict, dict[str, tuple[int, int]]]:
    """Queue ``prompt``; the history entry and, per node, the last progress (value, max) it reported."""
    ws = WebSocket(server.port, f"/ws?clientId={server.client_id}", timeout=900)
    progress: dict[str, tuple[int, int]] = {}
    try:
        prompt_id = server.queue(prompt)
        for msg in ws.messages():
            data = msg.get("data", {})
            if data.get("prompt_id") != prompt_id:
                continue
            if msg["type"] == "progress":
                progress[data["node"]] = (data["value"], data["max"])
            if msg["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                break
    finally:
        ws.close()
    entry = server.wait(prompt_id, timeout=900)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"][-1])[:3000]
    return entry, progress


def refused(server: ComfyServer, prompt: dict) -> dict[str, list[dict]]:
    """POST a prompt (with one output) that must fail validation; returns ComfyUI's node_errors (node id ->
    errors)."""
    req = urllib.request.Request(server.url + "/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400
    return {k: v["errors"] for k, v in json.loads(err.value.read())["node_errors"].items()}


def frames_of(server: ComfyServer, entry: dict, node_id: str) -> np.ndarray:
    item = entry["outputs"][node_id]["images"][0]
    with av.open(str(server.output_dir / item["subfolder"] / item["filename"])) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def with_png_outputs(prompt: dict) -> dict[str, str]:
    """A core SaveImage of each sampler's frames (lossless, unlike the H.264 video): sampler id -> SaveImage id."""
    out = {}
    for sampler in sorted(k for k, v in prompt.items() if v["class_type"] == "HalloSampler"):
        node_id = str(max(int(k.split(":")[0]) for k in prompt) + 1)
        prompt[node_id] = {"class_type": "SaveImage",
                           "inputs": {"images": [sampler, 0], "filename_prefix": f"frames_{sampler}"}}
        out[sampler] = node_id
    return out


def pngs_of(server: ComfyServer, entry: dict, node_id: str) -> np.ndarray:
    items = entry["outputs"][node_id]["images"]
    return np.stack([np.asarray(Image.open(server.output_dir / i["subfolder"] / i["filename"])) for i in items])


def load_in_page(page: Chromium, workflow: str) -> dict:
    page.evaluate(f"app.loadGraphData({workflow}).then(() => true)")
    return page.evaluate("app.graphToPrompt().then((p) => p.output)")


def linked(prompt: dict, value: object, class_type: str) -> dict:
    assert isinstance(value, list), value
    node = prompt[value[0]]
    assert node["class_type"] == class_type
    return node["inputs"]


# ------------------------------------------------------------------------------------------------
# presets and queue-time checks
# ------------------------------------------------------------------------------------------------
def one_sampler_prompt() -> tuple[dict, str, str, str]:
    """The speed-preset workflow with its fast branch only, at 64x64 and one clip: (prompt, sampler id, options id,
    SaveVideo id)."""
    prompt = json.loads((API_DIR / "hallo_fast_video_draft_speed_presets.json").read_text())
    samplers = {k for k, v in prompt.items() if v["class_type"] == "HalloSampler"}
    fast = next(k for k in samplers if "options" in prompt[k]["inputs"])
    creates = {k for k, v in prompt.items() if v["class_type"] == "CreateVideo" and v["inputs"]["images"][0] != fast}
    drop = (samplers - {fast}) | creates | {k for k, v in prompt.items() if v["class_type"] == "SaveVideo"
                                            and v["inputs"]["video"][0] in creates}
    prompt = {k: v for k, v in prompt.items() if k not in drop}
    for node in prompt.values():
        if node["class_type"] == "HalloFaceAnalysis":
            node["inputs"]["width"] = node["inputs"]["height"] = 64
    prompt["90"] = {"class_type": "HalloSegment", "inputs": {"frames": 16}}
    prompt[fast]["inputs"]["segment"] = ["90", 0]
    save = next(k for k, v in prompt.items() if v["class_type"] == "SaveVideo")
    return prompt, fast, prompt[fast]["inputs"]["options"][0], save


def test_every_preset_renders_and_reaches_the_sampler(server: ComfyServer) -> None:
    listed = server.get("/object_info/HalloSamplerOptions")["HalloSamplerOptions"]["input"]["required"]["preset"]
    assert listed[0] == [*PRESETS, "custom"]
    prompt, sampler, options, save = one_sampler_prompt()
    for preset in listed[0]:
        steps = listed[1]["recipes"][preset]["steps"] if preset != "custom" else 3
        prompt[options]["inputs"].update(preset=preset, solver="dpmpp", cfg_steps=1)
        prompt[sampler]["inputs"]["steps"] = steps
        entry, progress = run(server, prompt)
        report = entry["outputs"][sampler]["hallo_render"][0]
        solver, cfg_steps = (PRESETS[preset].solver, PRESETS[preset].cfg_steps) if preset in PRESETS \
            else ("dpmpp", 1)
        assert (report["preset"], report["solver"], report["steps"]) == (preset, solver, steps)
        assert report["cfg_steps"] == (steps if cfg_steps is None else cfg_steps)
        assert progress[sampler] == (steps, steps), preset  # one clip: the bar counted the preset's steps
        assert frames_of(server, entry, save).shape[0] == 16
        assert "text" not in entry["outputs"][sampler]  # steps = the preset's: no notice


@pytest.mark.parametrize(("node", "name", "value", "message"), [
    ("HalloSampler", "cfg", float("nan"), "Value nan smaller than min"),
    ("HalloSampler", "lip_weight", float("nan"), "Value nan smaller than min"),
    ("HalloSampler", "steps", -1, "Value -1 smaller than min of 1"),
    ("HalloFaceAnalysis", "width", 500, "HalloFaceAnalysis: widget 'width' is 500, not a multiple of 64: use 448 or "
                                        "512"),
    ("HalloSegment", "frames", 40, "HalloSegment: widget 'frames' is 40, not a multiple of 16 (clips are 16 "
                                   "frames): use 32 or 48"),
    ("HalloSamplerOptions", "dtype", "fp64", "not in"),
    ("HalloSamplerOptions", "cache_interval", 0, "Value 0 smaller than min"),
])
def test_a_bad_value_is_refused_on_its_own_widget(server: ComfyServer, node: str, name: str, value: object,
                                                  message: str) -> None:
    prompt, *_ = one_sampler_prompt()
    node_id = next(k for k, v in prompt.items() if v["class_type"] == node)
    prompt[node_id]["inputs"][name] = value  # json.dumps writes NaN; ComfyUI's parser accepts it
    errors = refused(server, prompt)
    assert list(errors) == [node_id], errors
    assert [e["extra_info"]["input_name"] for e in errors[node_id]] == [name], errors
    assert message in f"{errors[node_id][0]['message']}: {errors[node_id][0]['details']}"


def test_bad_keyframes_are_refused_on_the_schedule_widget(server: ComfyServer) -> None:
    prompt, sampler, _, _ = one_sampler_prompt()
    node_id = "91"
    prompt[node_id] = {"class_type": "HalloWeightSchedule", "inputs": {"keyframes": "0:1.0, 2s:loud"}}
    prompt[sampler]["inputs"]["lip_weight"] = [node_id, 0]
    errors = refused(server, prompt)
    assert list(errors) == [node_id] and [e["extra_info"]["input_name"] for e in errors[node_id]] == ["keyframes"]
    assert "HalloWeightSchedule: widget 'keyframes': the value 'loud' in '2s:loud'" in errors[node_id][0]["details"]


# ------------------------------------------------------------------------------------------------
# what the frontend shows
# ------------------------------------------------------------------------------------------------
def test_samplers_show_few_widgets_with_real_numbers(page: Chromium) -> None:
    shown = page.evaluate("""(() => { const out = {};
        for (const t of ['HalloSampler', 'HalloRenderToVideoFile']) {
            const n = LiteGraph.createNode(t); app.graph.add(n);
            out[t] = n.widgets.filter((w) => w.name !== 'hallo_info').map((w) => [w.name, w.value]);
            app.graph.remove(n); }
        return out; })()""")
    assert [n for n, _ in shown["HalloSampler"]] == ["steps", "cfg", "seed", "control_after_generate", "pose_weight",
                                                     "face_weight", "lip_weight", "still"]
    assert [n for n, _ in shown["HalloRenderToVideoFile"]][-3:] == ["still", "filename_prefix", "feather"]
    assert len(shown["HalloRenderToVideoFile"]) == 10
    for widgets in shown.values():
        values = dict(widgets)
        assert values["steps"] == 40 and values["cfg"] == 3.5 and values["seed"] == 42
        assert not [n for n, v in widgets if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0]


def test_options_node_greys_the_custom_recipe_and_hands_the_preset_steps_to_its_samplers(page: Chromium) -> None:
    state = page.evaluate("""(() => {
        const o = LiteGraph.createNode('HalloSamplerOptions'), s = LiteGraph.createNode('HalloSampler');
        app.graph.add(o); app.graph.add(s);
        o.connect(0, s, s.findInputSlot('options'));
        const grey = () => ['solver', 'cfg_steps', 'cache_interval', 'dtype']
            .map((n) => !!o.widgets.find((w) => w.name === n).disabled);
        const choose = (preset) => { const w = o.widgets.find((x) => x.name === 'preset');
            w.value = preset; w.callback(preset); return [grey(), s.widgets.find((x) => x.name === 'steps').value]; };
        const out = {start: [grey(), s.widgets.find((x) => x.name === 'steps').value],
                     fast: choose('fast'), custom: choose('custom'), faithful: choose('faithful')};
        app.graph.remove(o); app.graph.remove(s);
        return out; })()""")
    assert state["start"] == [[True, True, True, False], 40]
    assert state["fast"] == [[True, True, True, False], 20]
    assert state["custom"] == [[False, False, False, False], 20]  # custom keeps the steps: the recipe to tune
    assert state["faithful"] == [[True, True, True, False], 40]


def test_segment_arrows_step_by_a_clip(page: Chromium) -> None:
    values = page.evaluate("""(() => {
        const n = LiteGraph.createNode('HalloSegment'); app.graph.add(n);
        const w = n.widgets.find((x) => x.name === 'frames');
        const opts = {e: {canvasX: 0, canvasY: 0}, node: n, canvas: app.canvas};
        const seen = [w.value];
        for (let i = 0; i < 2; i++) { w.incrementValue(opts); seen.push(w.value); }
        w.value = 32; seen.push(w.value);
        for (let i = 0; i < 3; i++) { w.decrementValue(opts); seen.push(w.value); }
        app.graph.remove(n); return seen; })()""")
    assert values == [400, 416, 432, 32, 16, 16, 16]


def test_a_notice_grows_its_node_only_into_free_space(page: Chromium) -> None:
    """The Audio Encode node of the basic example has Face Analysis right below it: a long notice is cut short
    there, never drawn over it; moved into free space, the node grows to show all of it."""
    load_in_page(page, (WORKFLOWS / "hallo_talking_video_from_portrait_and_audio.json").read_text())
    result = page.evaluate("""(() => {
        const enc = app.graph._nodes.find((n) => n.type === 'HalloAudioEncode');
        const face = app.graph._nodes.find((n) => n.type === 'HalloFaceAnalysis');
        const t = LiteGraph.NODE_TITLE_HEIGHT;
        const notice = 'HalloAudioEncode: ' + 'a notice much longer than one or two lines, '.repeat(8);
        const bottom = (n) => n.pos[1] + n.size[1];
        const rowsOf = (n) => n.widgets.find((w) => w.name === 'hallo_info').rows;
        enc.onExecuted({hallo_audio: [{frames: 25, clips: 2, clip_length: 16, fps: 25, duration: 1, audio_seconds: 1}],
                        text: [notice]});
        app.canvas.draw(true, true);
        const crowded = {gap: face.pos[1] - t - bottom(enc), rows: rowsOf(enc)};
        enc.pos = [enc.pos[0], 2000];
        enc.onExecuted({text: [notice, notice]});
        app.canvas.draw(true, true);
        return {crowded, free: {rows: rowsOf(enc), height: enc.size[1]}}; })()""")
    assert result["crowded"]["gap"] >= 0, result  # still above the node below
    assert result["crowded"]["rows"] < result["free"]["rows"], result  # cut short there, all of it in free space


# ------------------------------------------------------------------------------------------------
# workflows saved with the old widgets
# ------------------------------------------------------------------------------------------------
def strip(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": {n: x for n, x in v["inputs"].items() if n != "audioUI"}}
            for k, v in prompt.items()}


@pytest.mark.parametrize("name", sorted(OLD_UI))
def test_an_old_workflow_loads_with_the_option_nodes(page: Chromium, name: str) -> None:
    old_ui = json.loads(OLD_UI[name].read_text())
    prompt = strip(load_in_page(page, json.dumps(old_ui)))
    assert not [e for e in page.page_errors() if "hallo" in e.lower()]
    old_nodes = {str(n["id"]): n for n in old_ui["nodes"]}
    api = strip(OLD_API[name]) if name in OLD_API else None
    for node_id, node in old_nodes.items():
        if node["type"] not in SAMPLERS:
            if api is not None:
                assert prompt[node_id] == api[node_id], node_id  # every other node as before
            continue
        layout = old_layout(node["type"], node["widgets_values"])
        new = migrate(node["type"], dict(zip(layout, node["widgets_values"], strict=True)))
        inputs = prompt[node_id]["inputs"]
        for widget, value in new.widgets.items():
            if widget == "control_after_generate" or f"{widget[:-len('_weight')]}" in new.schedules:
                continue
            assert inputs[widget] == value, (node_id, widget)
        if new.options is None:
            assert "options" not in inputs
        else:
            assert linked(prompt, inputs["options"], "HalloSamplerOptions") == new.options
        if new.segment is None:
            assert "segment" not in inputs
        else:
            assert linked(prompt, inputs["segment"], "HalloSegment") == {"frames": new.segment}
        for branch, keyframes in new.schedules.items():
            assert linked(prompt, inputs[f"{branch}_weight"], "HalloWeightSchedule") == {"keyframes": keyframes}
        for old_input in ("model", "reference", "audio_features", "audio", "motion", "original", "crop"):
            if api is not None and old_input in api[node_id]["inputs"]:
                assert inputs[old_input] == api[node_id]["inputs"][old_input]
    new_nodes = set(prompt) - set(old_nodes)
    assert {prompt[k]["class_type"] for k in new_nodes} <= {"HalloSamplerOptions", "HalloSegment",
                                                            "HalloWeightSchedule"}
    overlaps = page.evaluate("""(() => { const ns = app.graph._nodes, t = LiteGraph.NODE_TITLE_HEIGHT, out = [];
        for (const a of ns) for (const b of ns) { if (a.id >= b.id) continue;
            const [ax, ay] = a.pos, [aw, ah] = a.size, [bx, by] = b.pos, [bw, bh] = b.size;
            if (ax < bx + bw && bx < ax + aw && ay - t < by + bh && by - t < ay + ah) out.push([a.title, b.title]); }
        return out; })()""")
    assert overlaps == [], f"{name}: the new nodes cover {overlaps}"


def fast_old(ui: dict, api: dict) -> tuple[dict, dict]:
    """The same CPU-friendly changes to an old UI workflow and its API prompt: one step (given, so it means the same
    under every old preset), a 64 x 64 video."""
    ui, api = copy.deepcopy(ui), copy.deepcopy(api)
    for node in ui["nodes"]:
        if node["type"] in SAMPLERS:
            node["widgets_values"][0] = 1
        if node["type"] == "HalloFaceAnalysis":
            node["widgets_values"][0:2] = [64, 64]
    for node in api.values():
        if node["class_type"] in SAMPLERS:
            node["inputs"]["steps"] = 1
        if node["class_type"] == "HalloFaceAnalysis":
            node["inputs"]["width"] = node["inputs"]["height"] = 64
    return ui, api


@pytest.mark.parametrize("name", ["before_presets_hallo_basic", "hallo_speed_presets", "hallo_per_frame_control",
                                  "hallo_long_audio_chained"])
def test_an_old_workflow_renders_the_same_frames_as_its_api_prompt(server: ComfyServer, page: Chromium,
                                                                   name: str) -> None:
    """The UI workflow goes through the frontend (and its rewrite to the option nodes), the API prompt reaches the
    nodes with the old widget names: every sampler renders the same frames."""
    ui, api = fast_old(json.loads(OLD_UI[name].read_text()), OLD_API[name])
    ui_prompt = load_in_page(page, json.dumps(ui))
    assert {v["class_type"] for v in ui_prompt.values()} & {"HalloSamplerOptions", "HalloWeightSchedule",
                                                             "HalloSegment"} or name.startswith("before_presets")
    ui_pngs, api_pngs = with_png_outputs(ui_prompt), with_png_outputs(api)
    assert ui_pngs.keys() == api_pngs.keys()
    ui_entry, _ = run(server, ui_prompt)
    api_entry, _ = run(server, api)
    for sampler in ui_pngs:
        frames = pngs_of(server, ui_entry, ui_pngs[sampler])
        assert frames.shape[0] > 0 and frames.shape[1:] == (64, 64, 3)
        assert np.array_equal(frames, pngs_of(server, api_entry, api_pngs[sampler])), sampler
        ui_report = ui_entry["outputs"][sampler]["hallo_render"][0]
        api_report = api_entry["outputs"][sampler]["hallo_render"][0]
        for key in ("solver", "steps", "cfg_steps", "cache_interval", "start_frame", "end_frame"):
            assert ui_report[key] == api_report[key], (sampler, key)
