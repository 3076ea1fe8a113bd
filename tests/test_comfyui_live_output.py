"""Live previews and the video output of HalloRenderToVideoFile inside a real ComfyUI (``COMFYUI_PATH``).

Two servers: one with ``--preview-method latent2rgb`` (a latent preview per denoising step, the workflow in the
mp4), one with ``--preview-method none --disable-metadata`` (no latent previews, no workflow in the mp4). The
render node's ``video`` output feeds core Save Video, which must accept it as a ``VIDEO``. Skipped without
``COMFYUI_PATH``.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import time
from pathlib import Path

import av
import pytest
from asset_paths import asset
from comfyui_harness import ComfyServer, WebSocket, comfyui_path, fast_prompt, skip_reason, start_server, write_wav
from node_helpers import comfy_audio
from PIL import Image
from workflow_tools import API_DIR, PORTRAIT, SPEECH, WORKFLOWS

COMFY = comfyui_path()
pytestmark = [pytest.mark.comfyui, pytest.mark.skipif(bool(skip_reason()), reason=skip_reason())]
SECONDS = 1.0  # 25 frames: 2 clips
CLIPS = 2
STEPS = 2
PREVIEW_IMAGE = 1  # ComfyUI's binary event type of a JPEG/PNG preview
SAVE_VIDEO = "100"


def serve(factory: pytest.TempPathFactory, model_dir: Path, *args: str) -> ComfyServer:
    base = factory.mktemp("comfyui_live")
    (base / "input").mkdir()
    shutil.copy(asset("portraits", "painting_girl.jpg"), base / "input" / PORTRAIT)
    speech = comfy_audio(SECONDS)
    write_wav(base / "input" / SPEECH, speech["waveform"][0].numpy(), speech["sample_rate"])
    return start_server(COMFY, base, model_dir, args)


@pytest.fixture(scope="module")
def previews_on(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ComfyServer:
    srv = serve(tmp_path_factory, tiny_model_dir, "--preview-method", "latent2rgb")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def previews_off(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> ComfyServer:
    srv = serve(tmp_path_factory, tiny_model_dir, "--preview-method", "none", "--disable-metadata")
    yield srv
    srv.stop()


def render_prompt() -> tuple[dict, str]:
    """The shipped render-to-file workflow (fast settings) with core Save Video on the render's VIDEO output."""
    prompt = fast_prompt(json.loads((API_DIR / "hallo_render_audio_to_video_file.json").read_text()), steps=STEPS)
    render = next(k for k, v in prompt.items() if v["class_type"] == "HalloRenderToVideoFile")
    prompt[SAVE_VIDEO] = {"class_type": "SaveVideo", "inputs": {"video": [render, 1], "filename_prefix": "resaved/v",
                                                                 "format": "auto", "codec": "auto"}}
    return prompt, render


def run_listening(server: ComfyServer, prompt: dict, extra_data: dict) -> tuple[dict, dict[str, list[bytes]]]:
    """Queue ``prompt``; return its history entry and the binary previews received while each node ran."""
    previews: dict[str, list[bytes]] = {}
    ws = WebSocket(server.port, f"/ws?clientId={server.client_id}", timeout=600)
    try:
        prompt_id = server.queue(prompt, extra_data)
        node, started = None, time.monotonic()
        for event in ws.events():
            assert time.monotonic() - started < 600, "the render did not finish in 600 s"
            if isinstance(event, bytes):
                if struct.unpack(">I", event[:4])[0] == PREVIEW_IMAGE:
                    previews.setdefault(node, []).append(event[8:])
                continue
            data = event.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if event["type"] == "executing":
                node = data.get("node")
            if event["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                break
    finally:
        ws.close()
    entry = server.wait(prompt_id)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"][-1])[:4000]
    return entry, previews


def output_file(server: ComfyServer, ui: dict) -> Path:
    item = ui["images"][0]
    return server.output_dir / item["subfolder"] / item["filename"]


def tags_and_frames(path: Path) -> tuple[dict[str, str], int]:
    with av.open(str(path)) as c:
        return dict(c.metadata), sum(1 for _ in c.decode(video=0))


def test_a_latent_preview_every_step_and_the_workflow_in_the_mp4(previews_on: ComfyServer) -> None:
    prompt, render = render_prompt()
    workflow = json.loads((WORKFLOWS / "hallo_render_audio_to_video_file.json").read_text())
    entry, previews = run_listening(previews_on, prompt, {"extra_pnginfo": {"workflow": workflow}})
    # one latent preview per denoising step, plus the last decoded frame of every clip
    jpegs = previews.get(render, [])
    assert len(jpegs) == CLIPS * STEPS + CLIPS, f"{len(jpegs)} previews: {previews_on.log_tail()}"
    for jpeg in jpegs:
        Image.open(io.BytesIO(jpeg)).verify()
    # the node's ui is core Save Video's: the frontend shows it in a <video> on the node
    ours, core = entry["outputs"][render], entry["outputs"][SAVE_VIDEO]
    assert ours["animated"] == core["animated"] == [True]
    assert set(ours["images"][0]) == set(core["images"][0]) == {"filename", "subfolder", "type"}
    # the prompt and the workflow in the mp4, tagged exactly as core Save Video tags them
    tags, frames = tags_and_frames(output_file(previews_on, ours))
    assert json.loads(tags["workflow"]) == workflow
    stored = json.loads(tags["prompt"])  # the executed prompt (ComfyUI adds its cache keys)
    assert {k: (v["class_type"], v["inputs"]) for k, v in stored.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in prompt.items()}
    core_tags, core_frames = tags_and_frames(output_file(previews_on, core))
    assert (tags["prompt"], tags["workflow"]) == (core_tags["prompt"], core_tags["workflow"])
    assert frames == core_frames == 25  # Save Video took the render's VIDEO output


def test_no_latent_previews_and_no_metadata_when_comfyui_says_so(previews_off: ComfyServer) -> None:
    prompt, render = render_prompt()
    workflow = json.loads((WORKFLOWS / "hallo_render_audio_to_video_file.json").read_text())
    entry, previews = run_listening(previews_off, prompt, {"extra_pnginfo": {"workflow": workflow}})
    assert len(previews.get(render, [])) == CLIPS  # only the decoded clip frames
    tags, frames = tags_and_frames(output_file(previews_off, entry["outputs"][render]))
    assert "prompt" not in tags and "workflow" not in tags and frames == 25
    core_tags, _ = tags_and_frames(output_file(previews_off, entry["outputs"][SAVE_VIDEO]))
    assert "prompt" not in core_tags and "workflow" not in core_tags
