"""End to end inside a real ComfyUI (``COMFYUI_PATH``): every shipped API workflow, and Cancel mid-sampling.

Starts ``main.py --cpu`` on 127.0.0.1 with the pack symlinked into a private custom_nodes folder and the tiny
model folder registered as ``hallo`` through ``--extra-model-paths-config``; uploads a real portrait and a
1.5 s cut of real speech, queues each workflow (1 step, 64x64, first chained segment of 16 frames) and checks
the mp4s it wrote. Also checks that the core node definitions recorded in ``fixtures/`` (which
test_workflows.py validates against without ComfyUI) are this ComfyUI's. Skipped when ``COMFYUI_PATH`` is unset.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import av
import pytest
from asset_paths import asset
from comfyui_harness import (
    ComfyServer,
    WebSocket,
    comfyui_path,
    expected_frames,
    fast_prompt,
    skip_reason,
    start_server,
    write_wav,
)
from node_helpers import comfy_audio
from workflow_tools import API_DIR, PORTRAIT, SPEECH, core_object_info

COMFY = comfyui_path()
pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(bool(skip_reason()), reason=skip_reason())]
SECONDS = 1.5
FPS = 25.0
FIRST_SEGMENT = 16
WORKFLOWS = sorted(p.stem for p in API_DIR.glob("*.json"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ComfyServer:
    base = tmp_path_factory.mktemp("comfyui")
    (base / "input").mkdir()
    shutil.copy(asset("portraits", "painting_girl.jpg"), base / "input" / PORTRAIT)
    speech = comfy_audio(SECONDS)
    write_wav(base / "input" / SPEECH, speech["waveform"][0].numpy(), speech["sample_rate"])
    srv = start_server(COMFY, base, tiny_model_dir)
    yield srv
    srv.stop()


def saved_videos(server: ComfyServer, entry: dict) -> dict[str, Path]:
    """node id -> mp4 written by that node (SaveVideo or HalloRenderToVideoFile)."""
    out = {}
    for node_id, ui in entry["outputs"].items():
        for item in ui.get("images", []):
            if item["filename"].endswith(".mp4") and item["type"] == "output":
                out[node_id] = server.output_dir / item["subfolder"] / item["filename"]
    return out


def probe(path: Path) -> tuple[int, float, float | None]:
    """(video frames, video seconds, audio seconds or None)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        v_seconds = frames / float(v.average_rate)
        a_seconds = None
        if c.streams.audio:
            a = c.streams.audio[0]
            a_seconds = float(a.duration * a.time_base) if a.duration else None
    return frames, v_seconds, a_seconds


def test_pack_nodes_are_registered(server: ComfyServer) -> None:
    info = server.get("/object_info")
    from hallo_nodes.nodes import NODE_CLASS_MAPPINGS

    for node_id in NODE_CLASS_MAPPINGS:
        assert node_id in info, f"{node_id} missing; log:\n{server.log_tail()}"
    assert info["HalloModelLoader"]["input"]["required"]["checkpoint"][0] == ["hallo/net.pth", "hallo2/net.pth"]
    hallo_lines = [line for line in server.log_tail(100000).splitlines() if "hallo" in line.lower()]
    assert not [line for line in hallo_lines if "IMPORT FAILED" in line]
    assert server.get("/models/hallo") is not None


def test_recorded_core_node_definitions_are_this_comfyuis(server: ComfyServer) -> None:
    """The core definitions test_workflows.py validates against (fixtures/) equal the live ones of 0.3.64."""
    version = server.get("/system_stats")["system"]["comfyui_version"]
    if version != "0.3.64":
        pytest.skip(f"the core node definitions were recorded from ComfyUI 0.3.64, this is {version}")
    recorded = core_object_info()
    live = {name: server.get(f"/object_info/{name}")[name] for name in recorded}
    for name, upload in (("LoadImage", "image"), ("LoadAudio", "audio")):  # recorded with an empty input folder
        live[name]["input"]["required"][upload][0] = []
    assert live == recorded


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_and_writes_video_with_audio(server: ComfyServer, name: str) -> None:
    prompt = fast_prompt(json.loads((API_DIR / f"{name}.json").read_text()), first_segment=FIRST_SEGMENT)
    entry = server.wait(server.queue(prompt))
    status = entry["status"]
    assert status["status_str"] == "success", json.dumps(status["messages"][-1])[:4000]
    videos = saved_videos(server, entry)
    assert videos, f"{name}: no mp4 in the outputs {entry['outputs']}"
    total = expected_frames(SECONDS, FPS)
    chained = any("motion" in n["inputs"] for n in prompt.values() if n["class_type"] == "HalloSampler")
    expected = sorted([FIRST_SEGMENT, total - FIRST_SEGMENT]) if chained else [total] * len(videos)
    got = []
    for node_id, path in videos.items():
        assert path.is_file(), f"{name}: {path} missing"
        frames, v_seconds, a_seconds = probe(path)
        got.append(frames)
        assert a_seconds is not None, f"{name}/{node_id}: no audio stream in {path}"
        assert a_seconds == pytest.approx(v_seconds, abs=0.1), f"{name}/{node_id}: audio {a_seconds}, video {v_seconds}"
        assert v_seconds == pytest.approx(frames / FPS, abs=1e-3)
    assert sorted(got) == expected, f"{name}: frame counts {got}, expected {expected}"
    renders = [out["hallo_render"][0] for out in entry["outputs"].values() if "hallo_render" in out]
    # the samplers ran on core's optimized_attention (registered at the model load), not on the pack's SDPA
    assert renders and all(r["attention"] != "sdpa" for r in renders), f"{name}: attention {renders}"


def test_interrupt_mid_sampling_stops_within_a_step_and_next_run_succeeds(server: ComfyServer) -> None:
    prompt = fast_prompt(json.loads((API_DIR / "hallo_basic.json").read_text()), steps=8)
    sampler_id = next(k for k, v in prompt.items() if v["class_type"] == "HalloSampler")
    prompt[sampler_id]["inputs"]["seed"] = 7  # a new seed: nothing cached
    before = set(server.output_dir.rglob("*.mp4"))
    ws = WebSocket(server.port, f"/ws?clientId={server.client_id}", timeout=600)
    try:
        prompt_id = server.queue(prompt)
        at_interrupt = None
        last_step = 0
        outcome = None
        started = time.monotonic()
        for msg in ws.messages():
            data = msg.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if msg["type"] == "progress" and data.get("node") == sampler_id:
                last_step = data["value"]
                if at_interrupt is None and last_step >= 2:
                    at_interrupt = last_step
                    interrupted_at = time.monotonic()
                    server.post("/interrupt", {})
            if msg["type"] in ("execution_interrupted", "execution_error", "execution_success"):
                outcome = msg["type"]
                break
            assert time.monotonic() - started < 600
    finally:
        ws.close()
    assert at_interrupt is not None, "never saw the sampler's progress"
    assert outcome == "execution_interrupted", outcome
    assert last_step <= at_interrupt + 1, f"interrupted at step {at_interrupt} but ran to {last_step}"
    assert time.monotonic() - interrupted_at < 60
    assert set(server.output_dir.rglob("*.mp4")) == before, "a cancelled run must not write a video"
    assert not list(server.output_dir.rglob("*.partial.mp4"))
    # the next run succeeds
    prompt[sampler_id]["inputs"]["steps"] = 1
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "success"
    assert len(saved_videos(server, entry)) == 1


def per_frame_prompt(values: str, repeat_last: int) -> tuple[dict, str]:
    """hallo_per_frame_control without its schedule sampler; the still sampler's pose_weight fed by a FLOAT list."""
    prompt = fast_prompt(json.loads((API_DIR / "hallo_per_frame_control.json").read_text()))
    samplers = {k: v for k, v in prompt.items() if v["class_type"] == "HalloSampler"}
    still_id = next(k for k, v in samplers.items() if v["inputs"]["still"])
    scheduled = next(k for k in samplers if k != still_id)
    create = next(k for k, v in prompt.items() if v["inputs"].get("images", [None])[0] == scheduled)
    save = next(k for k, v in prompt.items() if v["inputs"].get("video", [None])[0] == create)
    for k in (scheduled, create, save):
        del prompt[k]
    prompt["900"] = {"class_type": "FloatListSource", "inputs": {"values": values, "repeat_last": repeat_last}}
    prompt[still_id]["inputs"]["pose_weight"] = ["900", 0]
    return prompt, still_id


def test_a_float_list_from_another_node_drives_the_pose_weight(server: ComfyServer) -> None:
    """ComfyUI hands a FLOAT output holding a list to the FLOAT socket unchanged; the sampler reads it per frame."""
    total = expected_frames(SECONDS, FPS)
    prompt, _ = per_frame_prompt("1.0, 0.8, 0.6", total - 3)
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"][-1])[:4000]
    (path,) = saved_videos(server, entry).values()
    assert probe(path)[0] == total
    # the list arrives whole: its fourth value is checked like a widget value
    prompt, still_id = per_frame_prompt("1.0, 1.0, 1.0, 9.0", 0)
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "error"
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert error["node_id"] == still_id
    assert "HalloSampler: input 'pose_weight': value 3 (frame 3) is 9, outside 0..3" in error["exception_message"]
