"""End to end inside a real ComfyUI (``COMFYUI_PATH``): every shipped API workflow, and Cancel mid-sampling.

Starts ``main.py --cpu`` on 127.0.0.1 with the pack symlinked into a private custom_nodes folder and the tiny
model folder registered as ``hallo`` through ``--extra-model-paths-config``; uploads a real portrait and a
1.5 s cut of real speech, queues each workflow (1 step, 64x64, first chained segment of 16 frames) and checks
the mp4s it wrote. Also checks that the core node definitions recorded in ``fixtures/`` (which
test_workflows.py validates against without ComfyUI) are this ComfyUI's. The two-speaker workflow runs on a
second server whose face detector sees the group photo's faces (and one centred face in a square crop), and
is checked pixel by pixel. Skipped when ``COMFYUI_PATH`` is unset.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest
from asset_paths import asset
from comfyui_harness import (
    PACK_NAME,
    ComfyServer,
    WebSocket,
    comfyui_path,
    expected_frames,
    fast_prompt,
    skip_reason,
    start_server,
    write_wav,
)
from face_helpers import SIX_FACE_BOXES
from node_helpers import comfy_audio
from workflow_tools import API_DIR, GROUP_PHOTO, PORTRAIT, SPEECH, SPEECH_B, core_object_info, shipped_workflows

COMFY = comfyui_path()
pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(bool(skip_reason()), reason=skip_reason())]
SECONDS = 1.5
FPS = 25.0
FIRST_SEGMENT = 16
#: Workflows on the group photo: run against their own server below (its face detector sees that photo's faces).
GROUP_WORKFLOWS = {"hallo_two_speakers_video_from_group_photo_and_audio"}
WORKFLOWS = sorted(p.stem for p in API_DIR.glob("*.json") if p.stem not in GROUP_WORKFLOWS)


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


def test_example_workflows_are_listed_and_served_by_comfyui(server: ComfyServer) -> None:
    """ComfyUI's workflow browser finds every shipped example (and nothing else) under the pack's name."""
    listed = server.get("/workflow_templates")
    shipped = sorted(p.stem for p in shipped_workflows())
    assert sorted(listed.get(PACK_NAME, [])) == shipped, listed
    served = server.get(f"/api/workflow_templates/{PACK_NAME}/{shipped[0]}.json")
    assert served == json.loads(shipped_workflows()[0].read_text())


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
    samplers = [n for n in prompt.values() if n["class_type"] == "HalloSampler"]
    chained = any("motion" in n["inputs"] for n in samplers)
    expected = sorted([FIRST_SEGMENT, total - FIRST_SEGMENT]) if chained else [total] * max(1, len(samplers))
    got = []
    for node_id, path in videos.items():
        assert path.is_file(), f"{name}: {path} missing"
        frames, v_seconds, a_seconds = probe(path)
        got.append(frames)
        assert a_seconds is not None, f"{name}/{node_id}: no audio stream in {path}"
        assert a_seconds == pytest.approx(v_seconds, abs=0.1), f"{name}/{node_id}: audio {a_seconds}, video {v_seconds}"
        assert v_seconds == pytest.approx(frames / FPS, abs=1e-3)
    assert sorted(got) == expected, f"{name}: frame counts {got}, expected {expected}"
    for node_id, node in prompt.items():  # HalloEvaluate shows its table on the node and feeds a preview
        if node["class_type"] == "HalloEvaluate":
            table = entry["outputs"][node_id]["text"][0]
            assert "identity (ArcFace cosine, mean)" in table and "clip-boundary jump" in table, table
    renders = [out["hallo_render"][0] for out in entry["outputs"].values() if "hallo_render" in out]
    # the samplers ran on core's optimized_attention (registered at the model load), not on the pack's SDPA
    assert renders and all(r["attention"] != "sdpa" for r in renders), f"{name}: attention {renders}"


def test_interrupt_mid_sampling_stops_within_a_step_and_next_run_succeeds(server: ComfyServer) -> None:
    basic = API_DIR / "hallo_talking_video_from_portrait_and_audio.json"
    prompt = fast_prompt(json.loads(basic.read_text()), steps=8)
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


# ------------------------------------------------------------------------------------------------
# two speakers in one photo (example_workflows/hallo_two_speakers_video_from_group_photo_and_audio.json)
# ------------------------------------------------------------------------------------------------
TURN_SECONDS = 1.0
#: The faces HalloFaceCrop picks with face_index 0 and 1 ("largest" order) in the group photo.
SPEAKER_FACES = (4, 2)


@pytest.fixture(scope="module")
def group_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model folder with a face detector that sees the six faces of the group photo (and one centred
    face in a square face crop of it)."""
    from face_helpers import make_group_model_dir
    from hallo_nodes.pipeline.paths import FACE_MODELS_SUBDIR

    root = tmp_path_factory.mktemp("group_models")
    for entry in tiny_model_dir.iterdir():
        if entry.name != Path(FACE_MODELS_SUBDIR).parts[0]:
            (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    make_group_model_dir(root)
    return root


@pytest.fixture(scope="module")
def group_server(tmp_path_factory: pytest.TempPathFactory, group_model_dir: Path) -> ComfyServer:
    base = tmp_path_factory.mktemp("comfyui_group")
    (base / "input").mkdir()
    shutil.copy(asset("portraits", "group_six_faces.jpg"), base / "input" / GROUP_PHOTO)
    for name, source in ((SPEECH, "speech_7s_44k.wav"), (SPEECH_B, "speech_12s_48k.wav")):
        speech = comfy_audio(TURN_SECONDS, name=source)  # 44.1 and 48 kHz: AudioConcat resamples the first
        write_wav(base / "input" / name, speech["waveform"][0].numpy(), speech["sample_rate"])
    srv = start_server(COMFY, base, group_model_dir)
    yield srv
    srv.stop()


def speaker_squares(model_dir: Path, photo: np.ndarray, prompt: dict) -> list[np.ndarray]:
    """Where each HalloFaceCrop of the prompt cut the photo: its crop square (clipped to the photo) as a mask."""
    from hallo_nodes.pipeline.face.crop import face_crop
    from hallo_nodes.pipeline.face.detection import load_face_models, select_face

    faces = load_face_models(model_dir).detector.detect(photo)
    crops = sorted((v["inputs"] for v in prompt.values() if v["class_type"] == "HalloFaceCrop"),
                   key=lambda c: c["face_index"])
    masks = []
    for c in crops:
        i = select_face(faces, face_index=c["face_index"], face_order=c["face_order"], image_size=photo.shape[:2])
        _, box = face_crop(photo, faces[i].bbox, face_fraction=c["face_fraction"], size=c["size"])
        m = np.zeros(photo.shape[:2], bool)
        m[max(0, box.y0): box.y0 + box.side, max(0, box.x0): box.x0 + box.side] = True
        masks.append(m)
    return masks


def saved_pngs(server: ComfyServer, entry: dict, node_id: str) -> list[np.ndarray]:
    from PIL import Image

    items = entry["outputs"][node_id]["images"]
    return [np.asarray(Image.open(server.output_dir / i["subfolder"] / i["filename"]).convert("RGB")) for i in items]


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def two_speaker_prompt(paste_id: str | None = None) -> dict:
    """The shipped workflow (fast settings) that also saves, as lossless PNGs, the frames the video is made of
    and the photo as ComfyUI decoded it; ``paste_id``: make the video of that paste-back's frames instead."""
    prompt = fast_prompt(json.loads((API_DIR / "hallo_two_speakers_video_from_group_photo_and_audio.json").read_text()))
    create = next(v for v in prompt.values() if v["class_type"] == "CreateVideo")
    if paste_id is not None:
        create["inputs"]["images"] = [paste_id, 0]
    load = next(k for k, v in prompt.items() if v["class_type"] == "LoadImage")
    prompt["900"] = {"class_type": "SaveImage", "inputs": {"images": create["inputs"]["images"],
                                                           "filename_prefix": "check/frames"}}
    prompt["901"] = {"class_type": "SaveImage", "inputs": {"images": [load, 0], "filename_prefix": "check/photo"}}
    return prompt


def run_two_speakers(server: ComfyServer, prompt: dict) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"]["messages"][-1])[:4000]
    (photo,) = saved_pngs(server, entry, "901")
    return entry, photo, saved_pngs(server, entry, "900")


def check_both_faces_replaced(frames: list[np.ndarray], photo: np.ndarray, squares: list[np.ndarray]) -> None:
    """Outside the two face squares every frame is the photo, bit for bit; inside each, it is not."""
    outside = ~(squares[0] | squares[1])
    for i, frame in enumerate(frames):
        assert frame.shape == photo.shape
        assert np.array_equal(frame[outside], photo[outside]), f"frame {i}: pixels outside the face squares changed"
        for who, sq in zip("AB", squares, strict=True):
            changed = np.abs(frame[sq].astype(np.int16) - photo[sq]).mean()
            assert changed > 20, f"frame {i}: speaker {who}'s face was not replaced (mean change {changed:.1f})"


def test_two_speakers_replace_both_faces_and_nothing_else(group_server: ComfyServer, group_model_dir: Path) -> None:
    """Both face squares change in every frame; everywhere else the frames are the photo: bit for bit on the
    IMAGE the video is made of (saved as PNG beside it), within H.264's error in the mp4. Without the second
    paste-back the same check fails."""
    prompt = two_speaker_prompt()
    entry, photo, frames = run_two_speakers(group_server, prompt)
    total = expected_frames(2 * TURN_SECONDS, FPS)  # A's turn, then B's
    assert len(frames) == total
    squares = speaker_squares(group_model_dir, photo, prompt)
    assert len(squares) == 2 and not (squares[0] & squares[1]).any()
    for sq, face in zip(squares, SPEAKER_FACES, strict=True):  # the two largest faces of the photo
        x1, y1, x2, y2 = SIX_FACE_BOXES[face]
        assert sq[(y1 + y2) // 2, (x1 + x2) // 2]
    check_both_faces_replaced(frames, photo, squares)
    (video,) = saved_videos(group_server, entry).values()
    n, v_seconds, a_seconds = probe(video)
    assert n == total and a_seconds == pytest.approx(2 * TURN_SECONDS, abs=0.1)
    outside = ~(squares[0] | squares[1])
    for i, (decoded, frame) in enumerate(zip(decoded_frames(video), frames, strict=True)):
        err = np.abs(decoded.astype(np.int16) - photo)
        assert err[outside].mean() < 2.0, f"mp4 frame {i}: {err[outside].mean():.2f} outside the face squares"
        for sq in squares:  # the squares show the rendered faces (H.264 blurs their noise), not the photo
            assert np.abs(decoded[sq].astype(np.int16) - frame[sq]).mean() < 0.5 * err[sq].mean()
    renders = [out["hallo_render"][0] for out in entry["outputs"].values() if "hallo_render" in out]
    assert len(renders) == 2 and all(r["attention"] != "sdpa" for r in renders)
    # the negative control: the video made of the first paste-back's frames only (cached renders: fast)
    paste_a = next(k for k, v in prompt.items() if v["class_type"] == "HalloPasteBack"
                   and prompt[v["inputs"]["original"][0]]["class_type"] == "LoadImage")
    _, _, only_a = run_two_speakers(group_server, two_speaker_prompt(paste_a))
    with pytest.raises(AssertionError, match="speaker B's face was not replaced"):
        check_both_faces_replaced(only_a, photo, squares)
    # speaker A moves, and each final frame shows A as in the same frame of the first paste-back
    assert any(not np.array_equal(f[squares[0]], only_a[0][squares[0]]) for f in only_a[1:])
    for i, (frame, first) in enumerate(zip(frames, only_a, strict=True)):
        assert np.array_equal(frame[squares[0]], first[squares[0]]), f"frame {i}: speaker A is not A's frame {i}"


def per_frame_prompt(values: str, repeat_last: int) -> tuple[dict, str]:
    """The per-frame example without its schedule sampler; the still sampler's pose_weight fed by a FLOAT list."""
    prompt = fast_prompt(json.loads((API_DIR / "hallo_video_with_per_frame_pose_and_lip_control.json").read_text()))
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
