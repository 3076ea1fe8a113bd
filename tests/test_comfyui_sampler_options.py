"""The sampler options in a real ComfyUI (``COMFYUI_PATH``) and its real frontend (headless Chromium).

* every preset ComfyUI lists (those of ``PRESETS`` and ``custom``) renders from the speed-preset workflow, and
  the sampler's progress bar counted exactly the preset's steps;
* NaN in one FLOAT widget is refused before the run with only that widget marked;
* workflows saved before the option widgets (``fixtures/workflows_before_presets``: the shipped hallo_basic and
  hallo_render_to_file of commit a6e75e6 with changed values) load with their values in place, and render what
  the API prompt of the same version renders, frame for frame (compared as PNGs: H.264 encoding is not
  repeatable bit for bit);
* the start_frame arrows give -1, 0, 16, 32 (the frontend's own INT widget with the pack's extension).
"""

from __future__ import annotations

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
from workflow_tools import API_DIR, PORTRAIT, SPEECH

COMFY = comfyui_path()
pytestmark = browser_test_marks()
OLD = Path(__file__).resolve().parent / "fixtures" / "workflows_before_presets"
SECONDS = 0.6  # 15 frames: one clip
OPTION_DEFAULTS = {"preset": "faithful", "solver": "ddim", "cfg_steps": 0, "low_vram": False, "dtype": "auto",
                   "compile": False}


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
    ws = WebSocket(server.port, f"/ws?clientId={server.client_id}", timeout=600)
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
    return server.wait(prompt_id), progress


def refused(server: ComfyServer, prompt: dict) -> dict:
    """POST a prompt that must fail validation; returns ComfyUI's answer (its node_errors)."""
    req = urllib.request.Request(server.url + "/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400
    return json.loads(err.value.read())


def frames_of(server: ComfyServer, entry: dict, node_id: str) -> np.ndarray:
    item = entry["outputs"][node_id]["images"][0]
    with av.open(str(server.output_dir / item["subfolder"] / item["filename"])) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def with_png_output(prompt: dict, sampler: str) -> str:
    """Add a core SaveImage of the sampler's frames (lossless, unlike the H.264 video); returns its id."""
    node_id = str(max(int(k) for k in prompt) + 1)
    prompt[node_id] = {"class_type": "SaveImage", "inputs": {"images": [sampler, 0], "filename_prefix": "frames"}}
    return node_id


def pngs_of(server: ComfyServer, entry: dict, node_id: str) -> np.ndarray:
    items = entry["outputs"][node_id]["images"]
    return np.stack([np.asarray(Image.open(server.output_dir / i["subfolder"] / i["filename"])) for i in items])


def one_sampler_prompt() -> tuple[dict, str, str]:
    """The speed-preset workflow with its fast branch only, at 64x64: (prompt, sampler id, SaveVideo id)."""
    prompt = json.loads((API_DIR / "hallo_speed_presets.json").read_text())
    samplers = {k for k, v in prompt.items() if v["class_type"] == "HalloSampler"}
    fast = next(k for k in samplers if prompt[k]["inputs"]["preset"] == "fast")
    creates = {k for k, v in prompt.items() if v["class_type"] == "CreateVideo"
               and v["inputs"]["images"][0] != fast}
    drop = (samplers - {fast}) | creates | {k for k, v in prompt.items() if v["class_type"] == "SaveVideo"
                                            and v["inputs"]["video"][0] in creates}
    prompt = {k: v for k, v in prompt.items() if k not in drop}
    for node in prompt.values():
        if node["class_type"] == "HalloFaceAnalysis":
            node["inputs"]["width"] = node["inputs"]["height"] = 64
    save = next(k for k, v in prompt.items() if v["class_type"] == "SaveVideo")
    return prompt, fast, save


def test_every_preset_renders_and_reaches_the_sampler(server: ComfyServer) -> None:
    listed = server.get("/object_info/HalloSampler")["HalloSampler"]["input"]["optional"]["preset"][0]
    assert listed == [*PRESETS, "custom"]
    prompt, sampler, save = one_sampler_prompt()
    for preset in listed:
        inputs = prompt[sampler]["inputs"]
        inputs.update(preset=preset, steps=0, solver="ddim", cfg_steps=0)
        expected = (PRESETS[preset].solver, PRESETS[preset].steps, PRESETS[preset].cfg_steps) if preset in PRESETS \
            else ("dpmpp", 3, 1)
        if preset == "custom":
            inputs.update(solver="dpmpp", steps=3, cfg_steps=1)
        entry, progress = run(server, prompt)
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"][-1])[:3000]
        report = entry["outputs"][sampler]["hallo_render"][0]
        solver, steps, cfg_steps = expected
        assert (report["preset"], report["solver"], report["steps"]) == (preset, solver, steps)
        assert report["cfg_steps"] == (steps if cfg_steps is None else cfg_steps)
        assert progress[sampler] == (steps, steps), preset  # one clip: the bar counted the preset's steps
        assert frames_of(server, entry, save).shape[0] == 15


def test_nan_in_one_float_widget_marks_only_that_widget(server: ComfyServer) -> None:
    prompt, sampler, _ = one_sampler_prompt()
    for name in ("cfg", "lip_weight", "motion_frame_drop"):
        bad = json.loads(json.dumps(prompt))
        bad[sampler]["inputs"][name] = float("nan")  # json.dumps writes NaN; ComfyUI's parser accepts it
        errors = refused(server, bad)["node_errors"][sampler]["errors"]
        assert [e["extra_info"]["input_name"] for e in errors] == [name], errors
    bad = json.loads(json.dumps(prompt))
    bad[sampler]["inputs"].update(preset="fast", solver="dpmpp")
    errors = refused(server, bad)["node_errors"][sampler]["errors"]
    assert "widget 'solver' is 'dpmpp', but only preset 'custom' uses it" in errors[0]["details"]
    assert not {e["extra_info"]["input_name"] for e in errors} & {"cfg", "seed", "pose_weight", "faithful"}


def load_in_page(page: Chromium, workflow: str) -> dict:
    page.evaluate(f"app.loadGraphData({workflow}).then(() => true)")
    return page.evaluate("app.graphToPrompt().then((p) => p.output)")


def test_workflows_saved_before_the_options_keep_their_values_and_result(server: ComfyServer,
                                                                         page: Chromium) -> None:
    old = {"steps": 3, "cfg": 2.5, "seed": 7, "pose_weight": 0.9, "face_weight": 1.1, "lip_weight": 1.2,
           "faithful": False, "motion_frame_drop": 0.1}
    rtf = load_in_page(page, (OLD / "hallo_render_to_file.json").read_text())
    inputs = next(v["inputs"] for v in rtf.values() if v["class_type"] == "HalloRenderToVideoFile")
    assert {k: inputs[k] for k in [*old, *OPTION_DEFAULTS, "filename_prefix", "feather"]} == {
        **old, **OPTION_DEFAULTS, "filename_prefix": "hallo/old", "feather": 8}
    ui_prompt = load_in_page(page, (OLD / "hallo_basic.json").read_text())
    sampler = next(k for k, v in ui_prompt.items() if v["class_type"] == "HalloSampler")
    inputs = ui_prompt[sampler]["inputs"]
    assert {k: inputs[k] for k in [*old, "start_frame", "num_frames", *OPTION_DEFAULTS]} == {
        **old, "start_frame": -1, "num_frames": 16, **OPTION_DEFAULTS}
    ui_frames = with_png_output(ui_prompt, sampler)
    entry, _ = run(server, ui_prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"][-1])[:3000]
    report = entry["outputs"][sampler]["hallo_render"][0]
    assert (report["preset"], report["solver"], report["steps"], report["cfg_steps"]) == ("faithful", "ddim", 3, 3)
    assert "text" not in entry["outputs"][sampler]  # no notice: steps keeps its meaning under faithful
    # the API prompt of the same version (no option inputs at all) renders the same frames
    api = json.loads((OLD / "hallo_basic_api.json").read_text())
    assert not set(OPTION_DEFAULTS) & set(api[sampler]["inputs"])
    api_frames = with_png_output(api, sampler)
    api_entry, _ = run(server, api)
    assert api_entry["status"]["status_str"] == "success", json.dumps(api_entry["status"]["messages"][-1])[:3000]
    frames = pngs_of(server, entry, ui_frames)
    assert frames.shape == (15, 64, 64, 3)
    assert np.array_equal(frames, pngs_of(server, api_entry, api_frames))


def test_start_frame_arrows_give_valid_values(page: Chromium) -> None:
    values = page.evaluate("""(() => {
        const n = LiteGraph.createNode('HalloSampler');
        app.graph.add(n);
        const opts = {e: {canvasX: 0, canvasY: 0}, node: n, canvas: app.canvas};
        const walk = (name, ups, downs) => {
            const w = n.widgets.find((x) => x.name === name);
            const seen = [w.value];
            for (let i = 0; i < ups; i++) { w.incrementValue(opts); seen.push(w.value); }
            for (let i = 0; i < downs; i++) { w.decrementValue(opts); seen.push(w.value); }
            return seen;
        };
        const out = {start: walk('start_frame', 3, 4), frames: walk('num_frames', 2, 3)};
        app.graph.remove(n);
        return out;
    })()""")
    assert values["start"] == [-1, 0, 16, 32, 16, 0, -1, -1]
    assert values["frames"] == [0, 16, 32, 16, 0, 0]
