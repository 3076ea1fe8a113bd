"""``hallo-eval`` and the HalloEvaluate node on real media: the synthetic talking face made from a real portrait
and real speech (mouth opened by the voice, or 6 frames late), and a tiny-model render through the nodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from asset_paths import asset
from face_helpers import LANDMARKER_TASK, make_model_dir
from hallo_nodes.nodes import NODE_CLASS_MAPPINGS
from hallo_nodes.pipeline.audio.decode import load_audio_file
from hallo_nodes.pipeline.eval_cli import main
from hallo_nodes.pipeline.evaluation.video_file import read_video
from hallo_nodes.pipeline.video.writer import VideoWriter
from hallo_nodes.testing.synthetic_talking_face import speech_envelope, talking_face_frames
from node_helpers import comfy_audio, comfy_image, load_tiny_model
from PIL import Image

pytest.importorskip("mediapipe")

FPS = 25
SIZE = 192
FRAMES = 75  # 3 s
LAG = 6


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ref.png, synced.mp4 (mouth follows the voice), lagged.mp4 (6 frames late), mute.mp4 (no sound track)."""
    root = tmp_path_factory.mktemp("eval_media")
    ref = np.asarray(Image.open(asset("portraits", "painting_girl.jpg")).convert("RGB").resize((SIZE, SIZE)))
    Image.fromarray(ref).save(root / "ref.png")
    wave, rate = load_audio_file(asset("audio", "speech_7s_44k.wav"))
    wave = wave[:, : rate * FRAMES // FPS]
    env = speech_envelope(wave.numpy().mean(0), rate, FPS, FRAMES)
    frames = talking_face_frames(ref, env, LANDMARKER_TASK)
    lagged = np.concatenate([np.repeat(frames[:1], LAG, 0), frames[:-LAG]])
    for name, video, audio in (("synced", frames, (wave, rate)), ("lagged", lagged, (wave, rate)),
                               ("mute", frames, None)):
        with VideoWriter(root / f"{name}.mp4", FPS, SIZE, SIZE, audio=audio) as writer:
            writer.write(video)
    return {"root": root, "ref": root / "ref.png", "synced": root / "synced.mp4", "lagged": root / "lagged.mp4",
            "mute": root / "mute.mp4", "models": make_model_dir(root / "models")}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, *names: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("hallo-eval: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_cli_compares_two_videos_and_finds_the_late_mouth(media: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([media["synced"], media["lagged"], "--reference", media["ref"], "--models", media["models"],
                          "--plot", tmp_path / "cmp.png", "--json", tmp_path / "cmp.json", "-q"], capsys)
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[-2:] == ["synced", "lagged"]
    data = json.loads((tmp_path / "cmp.json").read_text())
    synced, lagged = data["reports"]
    assert synced["measures"]["lip_sync_offset"]["value"] == 0
    assert lagged["measures"]["lip_sync_offset"]["value"] == LAG  # the audio comes from each video's own track
    assert synced["measures"]["identity_mean"]["value"] > 0.9
    assert synced["boundaries"] == [16, 32, 48, 64]
    assert len(synced["curves"]["mouth_opening"]) == FRAMES
    plot = np.asarray(Image.open(tmp_path / "cmp.png"))
    assert plot.ndim == 3 and plot.shape[1] == 960 and plot.shape[0] > 600  # four panels


def test_cli_audio_option_and_errors(media: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--reference", media["ref"], "--models", media["models"], "-q"]
    code, out, err = run([media["mute"], *common], capsys)
    assert code == 2
    one_line_error(err, "VIDEO", "no audio stream", "--audio")
    code, out, err = run([media["mute"], "--audio", asset("audio", "speech_7s_44k.wav"), *common], capsys)
    assert code == 0 and "lip-sync offset" in out, err
    code, out, err = run([media["mute"], "--no-audio", *common], capsys)
    assert code == 0 and "lip-sync" not in out.split("note")[0] and "no audio" in out
    code, _, err = run([tmp_path / "missing.mp4", *common], capsys)
    assert code == 2
    one_line_error(err, "VIDEO", "missing.mp4")
    code, _, err = run([media["synced"], "--reference", tmp_path / "nope.png", "--models", media["models"]], capsys)
    one_line_error(err, "--reference", "nope.png")
    Image.new("RGB", (SIZE, SIZE)).save(tmp_path / "black.png")
    code, _, err = run([media["synced"], "--reference", tmp_path / "black.png", "--models", media["models"]],
                       capsys)
    assert code == 2
    one_line_error(err, "--reference", "no face")
    code, _, err = run([media["synced"], "--reference", media["ref"], "--models", tmp_path], capsys)
    assert code == 2
    one_line_error(err, "scrfd_10g_bnkps.onnx")
    code, _, err = run([media["synced"], "--models", media["models"]], capsys)
    assert code == 2 and "--reference" in err


def test_cli_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for option in ("VIDEO", "--reference", "--audio", "--plot", "--json", "--models", "--clip-length"):
        assert option in out


def test_read_video_returns_rgb_frames_and_rate(media: dict[str, Path]) -> None:
    frames, fps = read_video(media["synced"])
    assert frames.shape == (FRAMES, SIZE, SIZE, 3) and frames.dtype == np.uint8 and fps == FPS


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path):
    return load_tiny_model(tiny_model_dir)


def test_node_on_the_synthetic_talking_face(media: dict[str, Path], tiny_model) -> None:
    frames = [torch.from_numpy(read_video(media[k])[0].astype(np.float32) / 255.0) for k in ("synced", "lagged")]
    wave, rate = load_audio_file(media["synced"])
    out = NODE_CLASS_MAPPINGS["HalloEvaluate"]().evaluate(
        tiny_model, frames[0], comfy_image("painting_girl.jpg"), 25.0, 16, "synced, lagged",
        audio={"waveform": wave[None], "sample_rate": rate}, images_b=frames[1])
    report, plot = out["result"]
    data = json.loads(report)
    assert [r["name"] for r in data["reports"]] == ["synced", "lagged"]
    assert [r["measures"]["lip_sync_offset"]["value"] for r in data["reports"]] == [0, LAG]
    assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[-1] == 3 and plot.dtype == torch.float32
    assert "synced" in out["ui"]["text"][0] and "lagged" in out["ui"]["text"][0]


def test_node_on_a_tiny_render(tiny_model) -> None:
    """The render chain of the tiny model (noise frames: the mouth is not found, which the report says)."""
    audio = comfy_audio(1.3)  # 33 frames: boundaries at 16 and 32
    portrait = comfy_image("painting_girl.jpg")
    encoded = NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(tiny_model, audio, 25.0, "off")["result"][0]
    face = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(tiny_model, portrait, 64, 64)["result"][0]
    reference = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(tiny_model, portrait, face)["result"][0]
    renders = [NODE_CLASS_MAPPINGS["HalloSampler"]().sample(tiny_model, reference, encoded, steps=1, seed=seed,
                                                            audio=audio)["result"] for seed in (1, 2)]
    images, out_audio, fps, _ = renders[0]
    out = NODE_CLASS_MAPPINGS["HalloEvaluate"]().evaluate(tiny_model, images, portrait, fps, 16, "seed 1, seed 2",
                                                          audio=out_audio, images_b=renders[1][0])
    data = json.loads(out["result"][0])
    first = data["reports"][0]
    assert first["num_frames"] == 33 and first["boundaries"] == [16, 32]
    assert first["measures"]["identity_mean"]["value"] is not None
    assert first["measures"]["boundary_jump"]["value"] > 0
    assert len(first["curves"]["speech_activity"]) == 33
    assert out["result"][1].shape[-1] == 3


def test_node_refuses_a_single_frame(tiny_model) -> None:
    from hallo_nodes.nodes.common import HalloInputError

    with pytest.raises(HalloInputError, match="images"):
        NODE_CLASS_MAPPINGS["HalloEvaluate"]().evaluate(tiny_model, comfy_image(), comfy_image(), 25.0)
