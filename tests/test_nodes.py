"""The ComfyUI nodes without ComfyUI: schemas, and the execute paths on the tiny model with real assets."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from asset_paths import LANDMARKER_TASK, asset
from hallo_nodes.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from hallo_nodes.nodes import comfy_adapter as adapter
from hallo_nodes.nodes.common import HalloInputError, HalloModel
from hallo_nodes.pipeline.face.detection import NoFaceError
from hallo_nodes.pipeline.face.landmarks import TASK_FILE
from hallo_nodes.pipeline.models.attention_dispatch import attention_backend, set_attention_backend
from hallo_nodes.pipeline.paths import ModelFolder
from hallo_nodes.pipeline.sampling.residency import TorchResidency
from hallo_nodes.pipeline.sampling.sampler import MotionState, RenderCancelled
from node_helpers import (
    FakeProgressBar,
    InterruptProcessingException,
    comfy_audio,
    comfy_image,
    fake_comfy_modules,
    load_tiny_model,
)

pytest.importorskip("mediapipe")

REPO = Path(__file__).resolve().parents[1]
CORE_TYPES = {"IMAGE", "MASK", "AUDIO", "INT", "FLOAT", "STRING", "BOOLEAN", "VIDEO"}
CUSTOM_TYPES = {"HALLO_MODEL", "HALLO_AUDIO", "HALLO_FACE", "HALLO_REFERENCE", "HALLO_MOTION", "HALLO_CROP",
                "HALLO_SAMPLER_OPTIONS", "HALLO_SEGMENT"}
SIZE = 64
FAST = {"steps": 1, "cfg": 3.5, "seed": 42}


def all_inputs(cls: type) -> dict[str, tuple]:
    spec = cls.INPUT_TYPES()
    return {**spec.get("required", {}), **spec.get("optional", {})}


# ------------------------------------------------------------------------------------------------
# schemas
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_node_schema(node_id: str) -> None:
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert node_id.startswith("Hallo") and node_id in NODE_DISPLAY_NAME_MAPPINGS
    assert cls.CATEGORY.startswith("Hallo/")
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 40
    assert isinstance(cls.RETURN_TYPES, tuple)
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
    for t in cls.RETURN_TYPES:
        assert t in CORE_TYPES | CUSTOM_TYPES, f"{node_id} returns {t}"
    inputs = all_inputs(cls)
    for name, spec in inputs.items():
        t, opts = spec[0], spec[1]
        assert isinstance(t, list) or t in CORE_TYPES | CUSTOM_TYPES, f"{node_id}.{name}: {t}"
        assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
        if "default" in opts and t in ("INT", "FLOAT"):
            assert opts.get("min", -np.inf) <= opts["default"] <= opts.get("max", np.inf)
        if isinstance(t, list) and "default" in opts:
            assert opts["default"] in t
    fn = getattr(cls, cls.FUNCTION)
    params = inspect.signature(fn).parameters
    assert set(inputs) <= set(params), f"{node_id}: inputs without parameters {set(inputs) - set(params)}"
    for name in cls.INPUT_TYPES().get("optional", {}):
        assert params[name].default is not inspect.Parameter.empty, f"{node_id}.{name} needs a default"
    # where the frontend looks first (docs/<node>/<locale>.md), so the help panel makes no 404
    doc = REPO / "js" / "docs" / node_id / "en.md"
    assert doc.is_file() and doc.read_text().startswith("# "), f"missing help page {doc}"


def test_help_pages_are_one_folder_per_node() -> None:
    """js/docs holds docs/<node>/en.md for the pack's nodes and nothing else (a flat docs/<node>.md would be
    fetched only after a 404 on the first URL the frontend tries)."""
    docs = REPO / "js" / "docs"
    assert sorted(p.name for p in docs.iterdir()) == sorted(NODE_CLASS_MAPPINGS)
    assert sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*") if p.is_file()) == sorted(
        f"{n}/en.md" for n in NODE_CLASS_MAPPINGS)


def test_no_path_sockets_and_custom_types_are_produced_somewhere() -> None:
    produced = {t for c in NODE_CLASS_MAPPINGS.values() for t in c.RETURN_TYPES}
    consumed = {spec[0] for c in NODE_CLASS_MAPPINGS.values() for spec in all_inputs(c).values()
                if isinstance(spec[0], str)}
    assert not {t for t in produced | consumed if "PATH" in t}
    # VIDEO only as the render node's added last output (its INT output keeps slot 0 for old links)
    assert [(c, t.index("VIDEO")) for c, t in ((c, c.RETURN_TYPES) for c in NODE_CLASS_MAPPINGS.values())
            if "VIDEO" in t] == [(NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"], 1)] and "VIDEO" not in consumed
    assert consumed & CUSTOM_TYPES <= produced


def test_importing_the_pack_is_light() -> None:
    code = ("import sys, hallo_nodes; heavy = [m for m in ('diffusers', 'transformers', 'mediapipe', 'onnxruntime') "
            "if m in sys.modules]; assert not heavy, heavy; assert 'folder_paths' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


# ------------------------------------------------------------------------------------------------
# model folder and loader
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def landmarker_task(tiny_model_dir: Path) -> None:
    """The real MediaPipe landmarker model in the tiny folder (MediaPipe 1.x bundles no face mesh)."""
    import shutil

    dst = tiny_model_dir / "face_analysis" / "models" / TASK_FILE
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(LANDMARKER_TASK, dst)


@pytest.fixture()
def model_path(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Path:
    monkeypatch.setenv(adapter.ENV_MODEL_PATH, str(tiny_model_dir))
    return tiny_model_dir


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> HalloModel:
    return load_tiny_model(tiny_model_dir)


def test_loader_lists_checkpoints(model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = NODE_CLASS_MAPPINGS["HalloModelLoader"].INPUT_TYPES()["required"]["checkpoint"][0]
    assert options == ["hallo/net.pth", "hallo2/net.pth"]
    # a download kept one folder deeper, and a converted safetensors beside it
    nested = tmp_path / "hallo-models" / "hallo2"
    nested.mkdir(parents=True)
    (nested / "net.safetensors").write_bytes(b"x")
    monkeypatch.setenv(adapter.ENV_MODEL_PATH, os.pathsep.join([str(model_path), str(tmp_path)]))
    names = [e.name for e in adapter.find_checkpoints()]
    assert names == ["hallo-models/hallo2/net.safetensors", "hallo/net.pth", "hallo2/net.pth"]
    entry = adapter.find_checkpoints()[0]
    cls = NODE_CLASS_MAPPINGS["HalloModelLoader"]
    stamp = cls.IS_CHANGED(checkpoint=entry.name, dtype="auto")
    (nested / "net.safetensors").write_bytes(b"xy")
    assert cls.IS_CHANGED(checkpoint=entry.name, dtype="auto") != stamp
    assert entry.root == tmp_path / "hallo-models" and entry.variant == "hallo2"


def test_loader_without_models_says_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(adapter.ENV_MODEL_PATH, str(tmp_path))
    cls = NODE_CLASS_MAPPINGS["HalloModelLoader"]
    assert cls.INPUT_TYPES()["required"]["checkpoint"][0] == []
    msg = cls.VALIDATE_INPUTS(checkpoint="hallo/net.pth")
    assert isinstance(msg, str)
    for part in ("models/hallo", "fudan-generative-ai/hallo", "hallo/net.pth", "wav2vec2-base-960h", str(tmp_path)):
        assert part in msg
    with pytest.raises(FileNotFoundError, match="no Hallo checkpoint found|not found"):
        cls().load("hallo/net.pth", "auto")


def test_loader_produces_a_model(model: HalloModel) -> None:
    assert model.variant == "hallo" and model.checkpoint == "hallo/net.pth"
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert isinstance(model.residency, TorchResidency)  # no ComfyUI here: plain torch, nothing visits
    assert set(model.residency.modules) == {"net", "reference_unet", "vae", "wav2vec"}
    assert not model.residency.visiting


def test_register_model_folder_and_model_management_with_comfyui(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    mods = fake_comfy_modules(tmp_path)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.delenv(adapter.ENV_MODEL_PATH, raising=False)
    adapter.register_model_folder()
    fp = mods["folder_paths"]
    assert fp.folder_names_and_paths["hallo"][0] == [str(tmp_path / "models" / "hallo")]
    assert {".pth", ".safetensors"} <= fp.folder_names_and_paths["hallo"][1]
    assert not (tmp_path / "models").exists(), "registering must not create folders"
    assert "ComfyUI" not in adapter.default_model_dir() and adapter.default_model_dir().endswith("models/hallo")
    # an extra_model_paths.yaml entry pointing at the model folder
    fp.add_model_folder_path("hallo", str(tiny_model_dir))
    assert [e.name for e in adapter.find_checkpoints()] == ["hallo/net.pth", "hallo2/net.pth"]
    (loaded,) = NODE_CLASS_MAPPINGS["HalloModelLoader"]().load("hallo2/net.pth", "fp32")
    assert loaded.is_hallo2 and set(loaded.residency.patchers) == {"net", "vae", "wav2vec"}
    loads = mods["comfy.model_management"].state["loads"]
    with loaded.residency.use("net"):
        with loaded.residency.use("reference_unet", "vae"):  # the ReferenceNet is part of the net
            pass
    assert loads[-2:] == [(["HalloNet"], True), (["HalloNet", "AutoencoderKL"], True)]


def core_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask=None, attn_precision=None,
                   skip_reshape: bool = False, skip_output_reshape: bool = False) -> torch.Tensor:
    """A kernel with the contract of core's ``optimized_attention`` (called with skip_reshape=True)."""
    core_attention.calls += 1
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def test_comfyui_attention_kernel_is_used_from_the_first_model_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, reference, encoded: dict) -> None:
    """Inside ComfyUI the loader registers core's optimized_attention once; the sampler then runs on it and its
    info names it. The sampler asks ComfyUI for the net and the VAE together."""
    mods = fake_comfy_modules(tmp_path)
    core = types.ModuleType("comfy.ldm.modules.attention")
    core.optimized_attention = core_attention
    core_attention.calls = 0
    mods["comfy.ldm.modules.attention"] = core
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(adapter, "_ATTENTION", {"registered": False})
    mods["folder_paths"].add_model_folder_path("hallo", str(tiny_model_dir))
    try:
        assert attention_backend() is None
        (loaded,) = NODE_CLASS_MAPPINGS["HalloModelLoader"]().load("hallo/net.pth", "fp32")
        assert attention_backend() is core_attention
        out = NODE_CLASS_MAPPINGS["HalloSampler"]().sample(loaded, reference, encoded["result"][0], **FAST,
                                                           num_frames=16)
    finally:
        set_attention_backend(None)
    assert core_attention.calls > 50  # every attention of the ReferenceNet and the denoising UNet
    assert out["ui"]["hallo_render"][0]["attention"] == "core_attention"
    loads = mods["comfy.model_management"].state["loads"]
    assert (["HalloNet"], True) in loads and (["HalloNet", "AutoencoderKL"], True) in loads


# ------------------------------------------------------------------------------------------------
# audio, face, reference
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def audio() -> dict:
    return comfy_audio(1.3)  # 33 frames at 25 fps: three clips


@pytest.fixture(scope="module")
def encoded(model: HalloModel, audio: dict) -> dict:
    return NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, audio, 25.0)


def test_audio_encode(encoded: dict, audio: dict) -> None:
    features, frames, fps = encoded["result"]
    assert frames == 33 and fps == 25.0
    assert features.num_frames == 33 and features.features.shape[:3] == (48, 5, 12)
    assert encoded["ui"]["hallo_audio"] == [{"frames": 33, "clips": 3, "clip_length": 16, "fps": 25.0,
                                             "duration": pytest.approx(1.32), "audio_seconds": pytest.approx(1.3)}]


@pytest.fixture(scope="module")
def portrait() -> torch.Tensor:
    return comfy_image("painting_girl.jpg")


@pytest.fixture(scope="module")
def face_out(model: HalloModel, portrait: torch.Tensor) -> dict:
    return NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, portrait, SIZE, SIZE)


def test_face_analysis_outputs(face_out: dict, portrait: torch.Tensor) -> None:
    face, lip, face_mask, full = face_out["result"]
    h, w = portrait.shape[1:3]
    for m in (lip, face_mask, full):
        assert m.shape == (1, h, w) and m.dtype == torch.float32 and 0 <= m.min() and m.max() <= 1
    assert torch.equal(lip[0], torch.from_numpy(face.masks.lip_image))
    assert torch.equal(full[0], torch.from_numpy(face.masks.full_image))
    # the lips lie inside the face, where the full (background) mask is low
    centre = divmod(int(lip[0].argmax()), w)
    assert float(lip[0][centre]) > 0.9 and float(full[0][centre]) < 0.2 and float(face_mask.max()) > 0.5
    assert face.masks.face_locator.shape == (3, SIZE, SIZE)
    info = face_out["ui"]["hallo_face"][0]
    assert info["faces"] == 1 and info["width"] == SIZE
    preview = face_out["ui"]["images"][0]
    assert preview["type"] == "temp" and (adapter.temp_directory() / preview["filename"]).is_file()


def test_face_masks_can_be_replaced(model: HalloModel, portrait: torch.Tensor, face_out: dict) -> None:
    h, w = portrait.shape[1:3]
    custom = torch.zeros(1, 100, 80)
    custom[:, 50:, :40] = 1.0  # lower-left quarter, at another resolution
    out = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, portrait, SIZE, SIZE, lip_mask=custom)
    face, lip, face_mask, _ = out["result"]
    assert lip.shape == (1, h, w)
    assert float(lip[0, int(h * 0.75), int(w * 0.25)]) == pytest.approx(1.0)
    assert float(lip[0, int(h * 0.25), int(w * 0.75)]) == pytest.approx(0.0)
    level0 = face.masks.lip[0].reshape(SIZE // 8, SIZE // 8)
    assert torch.allclose(level0[4:, :4], torch.ones(4, 4)) and float(level0[:4].sum()) == 0.0
    # untouched masks stay the computed ones, and the cached analysis is not modified
    assert torch.equal(face_mask, face_out["result"][2])
    assert not torch.equal(face_out["result"][0].masks.lip[0], face.masks.lip[0])
    (ref,) = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, portrait, face)["result"]
    assert torch.equal(ref.lip_masks[0], face.masks.lip[0])


def test_no_face_is_a_readable_error(model: HalloModel, portrait: torch.Tensor, tmp_path: Path) -> None:
    from face_helpers import make_model_dir

    make_model_dir(tmp_path, faces=[])  # a detector that finds nothing, and the real MediaPipe .task
    no_face_model = dataclasses.replace(model, folder=ModelFolder(tmp_path))
    with pytest.raises(NoFaceError, match="^HalloFaceAnalysis: .*no face was found.*allow_no_face"):
        NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(no_face_model, portrait, SIZE, SIZE)
    with pytest.raises(NoFaceError, match="HalloFaceCrop: no face"):
        NODE_CLASS_MAPPINGS["HalloFaceCrop"]().crop(no_face_model, portrait)
    out = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(no_face_model, portrait, SIZE, SIZE, allow_no_face=True)
    assert out["ui"]["hallo_face"][0]["faces"] == 0
    # MediaPipe's own "no face" (the detector sees one, the landmarker none): the node's name comes first too
    make_model_dir(tmp_path / "m", faces=[(0.3, 0.3, 0.7, 0.7)])
    blank = dataclasses.replace(model, folder=ModelFolder(tmp_path / "m"))
    with pytest.raises(Exception, match="^HalloFaceAnalysis: MediaPipe found no face in the image"):
        NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(blank, torch.full((1, 96, 96, 3), 0.5), SIZE, SIZE)


def test_wrong_input_types_are_readable(model: HalloModel, portrait: torch.Tensor, encoded: dict) -> None:
    sampler = NODE_CLASS_MAPPINGS["HalloSampler"]()
    with pytest.raises(HalloInputError, match="HalloSampler: input 'model' must be a HALLO_MODEL"):
        sampler.sample("hallo/net.pth", None, encoded["result"][0])
    with pytest.raises(HalloInputError, match="input 'reference' must be a HALLO_REFERENCE.*got ndarray"):
        sampler.sample(model, np.zeros(3), encoded["result"][0])
    with pytest.raises(HalloInputError, match="HalloFaceAnalysis: input 'image' must be an IMAGE"):
        NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, portrait[0], SIZE, SIZE)
    with pytest.raises(HalloInputError, match="HalloAudioEncode: input 'audio' must be an AUDIO"):
        NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, portrait, 25.0)
    with pytest.raises(HalloInputError, match="input 'lip_mask' must be a MASK"):
        NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, portrait, SIZE, SIZE, lip_mask=portrait)
    with pytest.raises(ValueError, match="multiples? of 64"):
        NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, portrait, 100, SIZE)


@pytest.fixture(scope="module")
def reference(model: HalloModel, portrait: torch.Tensor, face_out: dict):
    (ref,) = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, portrait, face_out["result"][0])["result"]
    return ref


def test_reference(reference, portrait: torch.Tensor, model: HalloModel, face_out: dict) -> None:
    assert reference.size == (SIZE, SIZE) and reference.latent.shape == (1, 4, SIZE // 8, SIZE // 8)
    with pytest.raises(ValueError, match="connect the same image"):
        NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, portrait[:, :300], face_out["result"][0])


# ------------------------------------------------------------------------------------------------
# sampler
# ------------------------------------------------------------------------------------------------
def test_sampler_chained_segments_equal_one_run(model: HalloModel, reference, encoded: dict, audio: dict) -> None:
    features = encoded["result"][0]
    node = NODE_CLASS_MAPPINGS["HalloSampler"]()
    segment = NODE_CLASS_MAPPINGS["HalloSegment"]().segment
    whole = node.sample(model, reference, features, **FAST, segment=segment(32)[0], audio=audio)["result"]
    first = node.sample(model, reference, features, **FAST, segment=segment(16)[0], audio=audio)
    images1, audio1, fps, motion = first["result"]
    assert images1.shape == (16, SIZE, SIZE, 3) and fps == 25.0
    assert isinstance(motion, MotionState) and motion.next_frame == 16
    rate = audio["sample_rate"]
    assert audio1["sample_rate"] == rate and audio1["waveform"].shape[-1] == round(16 / 25 * rate)
    assert torch.equal(audio1["waveform"], audio["waveform"][..., : audio1["waveform"].shape[-1]])
    second = node.sample(model, reference, features, **FAST, audio=audio, motion=motion)
    images2, audio2, _, motion2 = second["result"]
    assert images2.shape[0] == 33 - 16 and motion2.next_frame == 48
    assert second["ui"]["hallo_render"][0]["start_frame"] == 16
    assert audio2["waveform"].shape[-1] == audio["waveform"].shape[-1] - round(16 / 25 * rate)
    torch.testing.assert_close(torch.cat([images1, images2[:16]]), whole[0], atol=1e-5, rtol=0)


def test_sampler_segment_errors(model: HalloModel, reference, encoded: dict) -> None:
    features = encoded["result"][0]
    node = NODE_CLASS_MAPPINGS["HalloSampler"]()
    with pytest.raises(ValueError, match="HalloSampler: the segment starts at frame 48 .the incoming motion ends., "
                                         "at or past the end of the audio"):
        node.sample(model, reference, features, **FAST, motion=MotionState(torch.zeros(2, 3, SIZE, SIZE), 48, 42))
    segment = NODE_CLASS_MAPPINGS["HalloSegment"]
    assert list(inspect.signature(segment.VALIDATE_INPUTS).parameters) == ["frames"]
    assert segment.VALIDATE_INPUTS(frames=32) is True
    assert segment.VALIDATE_INPUTS(frames=40) == ("HalloSegment: widget 'frames' is 40, not a multiple of 16 (clips "
                                                  "are 16 frames): use 32 or 48")
    assert segment.VALIDATE_INPUTS(frames=10).endswith("use 16")
    # the old widgets of a saved API prompt keep their checks
    with pytest.raises(ValueError, match="input 'start_frame' is 8, not a multiple of 16"):
        node.sample(model, reference, features, **FAST, start_frame=8)
    with pytest.raises(ValueError, match="needs the motion output"):
        node.sample(model, reference, features, **FAST, start_frame=16)
    with pytest.raises(ValueError, match="input 'num_frames' is 10, not a multiple of 16"):
        node.sample(model, reference, features, **FAST, num_frames=10)


def test_sampler_silence_without_audio(model: HalloModel, reference, encoded: dict) -> None:
    out = NODE_CLASS_MAPPINGS["HalloSampler"]().sample(model, reference, encoded["result"][0], **FAST,
                                                        num_frames=16)
    assert out["result"][1]["sample_rate"] == 16000 and out["result"][1]["waveform"].abs().sum() == 0
    assert out["result"][1]["waveform"].shape[-1] == round(16 / 25 * 16000)


def test_interrupt_stops_within_a_step_and_next_run_succeeds(
        model: HalloModel, reference, encoded: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    steps_seen: list[int] = []
    original = adapter.Progress.update_absolute

    def update(self, value, total=None, preview=None):
        steps_seen.append(value)
        if value == 1 and preview is None:
            adapter.interrupt_current_processing()  # "Cancel" pressed during step 1
        original(self, value, total, preview)

    monkeypatch.setattr(adapter.Progress, "update_absolute", update)
    node = NODE_CLASS_MAPPINGS["HalloSampler"]()
    with pytest.raises(RenderCancelled, match="step 2"):
        node.sample(model, reference, encoded["result"][0], steps=3, num_frames=16)
    assert max(steps_seen) == 1
    monkeypatch.setattr(adapter.Progress, "update_absolute", original)
    out = node.sample(model, reference, encoded["result"][0], **FAST, num_frames=16)
    assert out["result"][0].shape[0] == 16


def test_progress_previews_and_interrupt_inside_comfyui(
        model: HalloModel, reference, encoded: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    mods = fake_comfy_modules(tmp_path)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    FakeProgressBar.instances.clear()
    mm = mods["comfy.model_management"]
    node = NODE_CLASS_MAPPINGS["HalloSampler"]()
    node.sample(model, reference, encoded["result"][0], steps=2, num_frames=32)
    bar = FakeProgressBar.instances[-1]
    assert bar.total == 4
    assert [c[0] for c in bar.calls if c[2] is None] == [1, 2, 3, 4]
    previews = [c for c in bar.calls if c[2] is not None]
    assert len(previews) == 2  # one per clip
    for _, _, (fmt, image, max_size) in previews:
        assert fmt == "JPEG" and isinstance(image, Image.Image) and image.size == (SIZE, SIZE) and max_size == 512
    assert [p[0] for p in previews] == [2, 4]
    assert mm.state["checks"] == 4 and mm.state["empty_cache"] >= 1
    # Cancel: ComfyUI's own exception comes out (the queue reports "interrupted", not an error)
    mm.interrupt_current_processing(True)
    with pytest.raises(InterruptProcessingException):
        node.sample(model, reference, encoded["result"][0], steps=2, num_frames=16)
    assert mm.state["checks"] == 5


# ------------------------------------------------------------------------------------------------
# crop / paste-back / render to file
# ------------------------------------------------------------------------------------------------
def test_crop_and_paste_back_round_trip(model: HalloModel) -> None:
    photo = comfy_image("photo_woman.jpg")
    crop_img, box = NODE_CLASS_MAPPINGS["HalloFaceCrop"]().crop(model, photo, face_fraction=0.6, size=128)
    assert crop_img.shape == (1, 128, 128, 3) and box.size == 128
    (pasted,) = NODE_CLASS_MAPPINGS["HalloPasteBack"]().paste(crop_img.repeat(3, 1, 1, 1), photo, box,
                                                              feather=8)["result"]
    assert pasted.shape == (3, *photo.shape[1:])
    h, w = photo.shape[1:3]
    outside = torch.ones(h, w, dtype=torch.bool)
    outside[max(0, box.y0):box.y0 + box.side, max(0, box.x0):box.x0 + box.side] = False
    assert torch.equal(pasted[0][outside], photo[0][outside])
    inside = pasted[0][~outside] - photo[0][~outside]
    assert float(inside.abs().mean()) < 0.03  # a down- and up-scaled copy of the same pixels
    (black,) = NODE_CLASS_MAPPINGS["HalloPasteBack"]().paste(torch.zeros_like(crop_img), photo, box,
                                                             feather=8)["result"]
    assert float(black[0][~outside].mean()) < float(photo[0][~outside].mean())
    with pytest.raises(HalloInputError, match="input 'crop' must be a HALLO_CROP"):
        NODE_CLASS_MAPPINGS["HalloPasteBack"]().paste(crop_img, photo, {"x0": 0})


def test_render_to_video_file_with_paste_back(model: HalloModel, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(adapter.ENV_OUTPUT_DIR, str(tmp_path))
    photo = comfy_image("photo_woman.jpg")
    crop_img, box = NODE_CLASS_MAPPINGS["HalloFaceCrop"]().crop(model, photo, size=SIZE)
    face = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, crop_img, SIZE, SIZE)["result"][0]
    (ref,) = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, crop_img, face)["result"]
    speech = comfy_audio(0.9)  # 23 frames: two clips, the second trimmed
    features = NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, speech, 25.0)["result"][0]
    out = NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"]().render(
        model, ref, features, speech, **FAST, filename_prefix="hallo/test", original=photo, crop=box)
    assert out["result"] == (23, None)  # no VIDEO type outside ComfyUI
    entry = out["ui"]["images"][0]
    path = tmp_path / entry["subfolder"] / entry["filename"]
    assert entry["filename"] == "test_00001_.mp4" and path.is_file() and out["ui"]["animated"] == [True]
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        assert (video.width, video.height) == (photo.shape[2] - photo.shape[2] % 2, photo.shape[1] - photo.shape[1] % 2)
        assert sum(1 for _ in c.decode(video=0)) == 23
        assert len(c.streams.audio) == 1
        duration = float(c.streams.audio[0].duration * c.streams.audio[0].time_base)
    assert duration == pytest.approx(23 / 25, abs=0.05)
    with pytest.raises(ValueError, match="connect both 'original' and 'crop'"):
        NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"]().render(model, ref, features, speech, **FAST, crop=box)


def test_render_to_video_file_stores_the_workflow_like_core_save_video(model: HalloModel, reference, encoded: dict,
                                                                      audio: dict, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The hidden PROMPT / EXTRA_PNGINFO go into the mp4 as JSON tags (what the frontend reads back from a dropped
    file); the ui is core Save Video's; the VIDEO output is empty outside ComfyUI."""
    monkeypatch.setenv(adapter.ENV_OUTPUT_DIR, str(tmp_path))
    hidden = NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"].INPUT_TYPES()["hidden"]
    assert {k: hidden[k] for k in ("prompt", "extra_pnginfo")} == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    prompt = {"7": {"class_type": "HalloRenderToVideoFile", "inputs": {"steps": 1, "note": "naïve"}}}
    workflow = {"nodes": [{"id": 7, "type": "HalloRenderToVideoFile"}], "links": [], "version": 0.4}
    out = NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"]().render(
        model, reference, encoded["result"][0], audio, **FAST, filename_prefix="meta",
        prompt=prompt, extra_pnginfo={"workflow": workflow})
    assert out["ui"]["images"] == [{"filename": "meta_00001_.mp4", "subfolder": "", "type": "output"}]
    assert out["ui"]["animated"] == [True] and out["result"][1] is None
    with av.open(str(tmp_path / "meta_00001_.mp4")) as c:
        tags = dict(c.metadata)
    assert tags["prompt"] == json.dumps(prompt) and tags["workflow"] == json.dumps(workflow)
    plain = NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"]().render(
        model, reference, encoded["result"][0], audio, **FAST, filename_prefix="meta")
    with av.open(str(tmp_path / plain["ui"]["images"][0]["filename"])) as c:
        assert "prompt" not in c.metadata and "workflow" not in c.metadata


# ------------------------------------------------------------------------------------------------
# issue 14: NaN guards, validation, output names, notices, odd sizes, paste-back memory
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("node_id", ["HalloSampler", "HalloRenderToVideoFile"])
def test_non_finite_float_widgets_are_refused(node_id: str, model: HalloModel, reference, encoded: dict,
                                              audio: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(adapter.ENV_OUTPUT_DIR, str(tmp_path))
    cls = NODE_CLASS_MAPPINGS[node_id]
    floats = ("cfg", "pose_weight", "face_weight", "lip_weight")
    # ComfyUI marks every input VALIDATE_INPUTS takes (and skips its own check of them), so the samplers' takes
    # none of these: ComfyUI's own per-widget check (value < min, value > max) refuses NaN and Inf and marks only
    # the widget at fault
    if hasattr(cls, "VALIDATE_INPUTS"):
        assert not set(inspect.getfullargspec(cls.VALIDATE_INPUTS).args) & set(floats)
    spec = all_inputs(cls)
    for name in floats:
        opts = spec[name][1]
        assert float("nan") < opts["min"] and float("inf") > opts["max"] and float("-inf") < opts["min"]
        assert not opts["min"] < opts["min"] and not opts["max"] < opts["min"]  # the bounds themselves pass
    node = cls()
    run = node.sample if node_id == "HalloSampler" else node.render
    args = (model, reference, encoded["result"][0]) + ((audio,) if node_id != "HalloSampler" else ())
    for name in ("cfg", "lip_weight"):
        with pytest.raises(ValueError, match=f"{node_id}: widget '{name}' is nan, not a finite number"):
            run(*args, **{**FAST, name: float("nan")})
    assert not list(tmp_path.rglob("*.mp4"))


def test_loader_validation_marks_only_the_checkpoint() -> None:
    """ComfyUI attaches a VALIDATE_INPUTS error to every input the method takes."""
    cls = NODE_CLASS_MAPPINGS["HalloModelLoader"]
    assert inspect.getfullargspec(cls.VALIDATE_INPUTS).args == ["cls", "checkpoint"]


def test_filename_prefix_with_a_trailing_slash_is_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(adapter.ENV_OUTPUT_DIR, str(tmp_path))
    path, subfolder, name = adapter.next_output_path("hallo/", "mp4", 64, 64)
    assert (subfolder, name) == ("hallo", "Hallo_00001_.mp4") and path == tmp_path / "hallo" / name
    path, subfolder, name = adapter.next_output_path("v1.2/take", "mp4", 64, 64)
    assert (subfolder, name) == ("v1.2", "take_00001_.mp4") and path.parent == tmp_path / "v1.2"
    assert adapter.next_output_path("clip", "mp4", 64, 64)[1:] == ("", "clip_00001_.mp4")
    for bad in ("../x", "/tmp/x", "a/../../x"):
        with pytest.raises(ValueError, match="inside the output folder"):
            adapter.next_output_path(bad, "mp4", 64, 64)
    # inside ComfyUI the prefix goes to core's get_save_image_path with the file name added
    mods = fake_comfy_modules(tmp_path)
    for mod_name, mod in mods.items():
        monkeypatch.setitem(sys.modules, mod_name, mod)
    assert adapter.next_output_path("hallo/", "mp4", 64, 64)[1:] == ("hallo", "Hallo_00001_.mp4")


def test_exception_names_do_not_show_the_install_path(tmp_path: Path) -> None:
    """ComfyUI imports the pack under its path (dots as _x_) and shows errors as module.Class."""
    name = str(tmp_path / "custom_nodes" / "hallo-nodes.v1").replace(".", "_x_")
    code = f"""
import importlib, importlib.util, sys
spec = importlib.util.spec_from_file_location({name!r}, {str(REPO / "__init__.py")!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
assert "HalloSampler" in module.NODE_CLASS_MAPPINGS
common = sys.modules[spec.name + ".nodes.common"]
sampler = importlib.import_module(spec.name + ".pipeline.sampling.sampler")
for cls in (common.HalloInputError, sampler.RenderCancelled, sampler.NonFiniteError):
    print(cls.__module__ + "." + cls.__qualname__)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/").stdout
    assert out.split() == ["hallo_nodes.pipeline.errors.HalloInputError",
                           "hallo_nodes.pipeline.sampling.hooks.RenderCancelled",
                           "hallo_nodes.pipeline.sampling.sampler.NonFiniteError"]


def test_silent_audio_is_shown_on_the_sampler(model: HalloModel, reference, encoded: dict) -> None:
    silent = {"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000}
    node = NODE_CLASS_MAPPINGS["HalloSampler"]()
    out = node.sample(model, reference, encoded["result"][0], **FAST, num_frames=16, audio=silent)
    assert any("audio is silent" in t for t in out["ui"]["text"])
    speech = node.sample(model, reference, encoded["result"][0], **FAST, num_frames=16, audio=comfy_audio(1.0))
    assert "text" not in speech["ui"]


def test_stretched_portrait_is_shown_on_the_reference(model: HalloModel, portrait: torch.Tensor) -> None:
    wide = portrait[:, 200:1100]  # 1432 x 900: stretched to the square output
    face = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, wide, SIZE, SIZE)["result"][0]
    out = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, wide, face)
    assert out["ui"]["text"] == [f"HalloReference: the 1432x900 portrait is stretched to {SIZE}x{SIZE} (the original "
                                 "resizes without cropping); crop it to the output's shape first, e.g. with "
                                 "HalloFaceCrop"]
    square = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, portrait, NODE_CLASS_MAPPINGS[
        "HalloFaceAnalysis"]().analyze(model, portrait, SIZE, SIZE)["result"][0])
    assert "text" not in square["ui"]


def test_paste_back_of_an_odd_photo_gives_even_frames_a_video_accepts(model: HalloModel, tmp_path: Path) -> None:
    photo = comfy_image("photo_woman.jpg")[:, :621, :623]  # odd both ways, as 630x633 in the report
    crop_img, box = NODE_CLASS_MAPPINGS["HalloFaceCrop"]().crop(model, photo, size=SIZE)
    out = NODE_CLASS_MAPPINGS["HalloPasteBack"]().paste(crop_img.repeat(2, 1, 1, 1), photo, box, feather=8)
    (frames,) = out["result"]
    assert frames.shape == (2, 620, 622, 3)
    assert out["ui"]["text"] == ["HalloPasteBack: the photo is 623x621; the frames are 622x620 (the last odd column "
                                 "/ row dropped: H.264 video needs even sides)"]
    # what core's SaveVideo does with them: H.264 in yuv420p
    with av.open(str(tmp_path / "odd.mp4"), "w") as c:
        stream = c.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            img = (f.numpy() * 255 + 0.5).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    even = NODE_CLASS_MAPPINGS["HalloPasteBack"]().paste(crop_img, comfy_image("photo_woman.jpg"), NODE_CLASS_MAPPINGS[
        "HalloFaceCrop"]().crop(model, comfy_image("photo_woman.jpg"), size=SIZE)[1])
    assert even["result"][0].shape == (1, 624, 624, 3) and "text" not in even["ui"]


def test_render_to_file_pastes_back_frame_by_frame(model: HalloModel, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Paste-back memory does not grow with the clip: no float32 clip of full photos (0.56 GB/MP before)."""
    import tracemalloc

    from PIL import Image

    monkeypatch.setenv(adapter.ENV_OUTPUT_DIR, str(tmp_path))
    big = Image.open(asset("portraits", "photo_woman.jpg")).resize((1601, 1201), Image.BICUBIC)
    photo = torch.from_numpy(np.asarray(big, np.float32) / 255.0)[None]
    crop_img, box = NODE_CLASS_MAPPINGS["HalloFaceCrop"]().crop(model, photo, size=SIZE)
    face = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, crop_img, SIZE, SIZE)["result"][0]
    ref = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, crop_img, face)["result"][0]
    speech = comfy_audio(0.7)  # 18 frames: a full clip and a partial one
    features = NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, speech, 25.0)["result"][0]
    tracemalloc.start()
    try:
        out = NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"]().render(
            model, ref, features, speech, **FAST, filename_prefix="odd", original=photo, crop=box)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    photo_uint8 = 1601 * 1201 * 3  # one float32 photo is 4x that; a float32 clip of them 64x (before: ~70x)
    assert peak < 8 * photo_uint8, f"{peak / 2**20:.1f} MiB traced for a {photo_uint8 / 2**20:.1f} MiB photo"
    assert out["result"][0] == 18 and "1601x1201" in out["ui"]["text"][0]
    with av.open(str(tmp_path / "odd_00001_.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (1600, 1200)
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    corner = (photo[0, :40, :40].numpy() * 255).astype(np.float32)  # outside the crop: the photo itself
    assert np.abs(first[:40, :40].astype(np.float32) - corner).mean() < 6  # H.264 error only


def test_notices_reach_every_run_but_log_once_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    """The plumbing for node notices (e.g. skipped vocal separation on HalloAudioEncode)."""
    import logging

    from hallo_nodes.nodes.common import with_notes
    from hallo_nodes.pipeline.notices import collect_notices, notice

    log = logging.getLogger("hallo_nodes.test_notices")
    runs = []
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(2):
            with collect_notices() as notes:
                notice(log, "vocal separation skipped: test", once=True)
                notice(log, "vocal separation skipped: test", once=True)
            runs.append(with_notes({"hallo_audio": [{}]}, notes))
        notice(log, "outside any node")  # logged, collected nowhere
    assert [r["text"] for r in runs] == [["vocal separation skipped: test"]] * 2
    assert caplog.text.count("vocal separation skipped: test") == 1 and "outside any node" in caplog.text
    assert with_notes({}, []) == {}


def test_audio_node_shows_silence_and_skipped_separation(model: HalloModel, caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from hallo_nodes.pipeline import notices

    monkeypatch.setattr(notices, "_LOGGED", set())
    silent = {"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000}
    with caplog.at_level(logging.WARNING):
        out = NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, silent, 25.0, separate_vocals="auto")
    texts = out["ui"]["text"]
    assert all(t.startswith("HalloAudioEncode: ") for t in texts)
    assert any("audio is silent" in t for t in texts)
    # the tiny folder has no Kim_Vocal_2.onnx: one short line on the node, no install path; the log has the detail
    (separation,) = [t for t in texts if "separation" in t]
    assert separation.startswith("HalloAudioEncode: Vocal separation is off: ") and len(separation) <= 100
    assert separation.endswith("(see the node's help)") and "/" not in separation
    assert "audio-separator is not installed" in separation or "Kim_Vocal_2.onnx is missing" in separation
    assert "vocal separation skipped (separate_vocals='auto')" in caplog.text and str(model.folder.root) in caplog.text
    speech = NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, comfy_audio(1.0), 25.0, separate_vocals="off")
    assert "text" not in speech["ui"]
