"""The README's main job: ``hallo-render`` writes an mp4 with the original audio; cancels leave nothing behind."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import pytest
from cli_helpers import add_face_task, assert_one_line_error, run_main
from hallo_nodes.pipeline.cli import main
from hallo_nodes.pipeline.render import RenderOptions, render_file
from hallo_nodes.pipeline.sampling.sampler import RenderCancelled, SamplerSettings


@pytest.fixture()
def tiny_model_dir(tiny_model_dir: Path, assets: Path) -> Path:
    """The session's tiny folder with the real MediaPipe landmarker, so the face stage runs."""
    return add_face_task(tiny_model_dir, assets)


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "frames": sum(1 for _ in container.decode(video=0)),
            "size": (video.codec_context.height, video.codec_context.width),
            "fps": float(video.average_rate),
            "audio": [(s.codec_context.name, s.codec_context.sample_rate) for s in container.streams.audio],
        }
    with av.open(str(path)) as container:
        if container.streams.audio:
            samples = sum(f.samples for f in container.decode(audio=0))
            info["audio_seconds"] = samples / container.streams.audio[0].codec_context.sample_rate
    return info


def test_cli_renders_mp4_with_audio(tiny_model_dir: Path, assets: Path, tmp_path: Path) -> None:
    audio = assets / "audio" / "speech_7s_44k.wav"
    out = tmp_path / "talking.mp4"
    code = main(["--image", str(assets / "portraits" / "statue.jpg"), "--audio", str(audio),
                 "--models", str(tiny_model_dir), "--out", str(out), "--size", "64", "--steps", "1", "-q"])
    assert code == 0
    with wave.open(str(audio)) as w:
        seconds = w.getnframes() / w.getframerate()
    info = probe(out)
    assert info["frames"] == math.ceil(seconds * 25)
    assert info["size"] == (64, 64)
    assert info["fps"] == 25.0
    assert info["audio"] == [("aac", 44100)]
    assert abs(info["audio_seconds"] - seconds) < 0.1
    assert [p.name for p in tmp_path.iterdir()] == ["talking.mp4"]  # no temporary file left


def test_cli_reports_missing_models(tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(["--image", str(assets / "portraits" / "statue.jpg"),
                          "--audio", str(assets / "audio" / "speech_7s_44k.wav"), "--models", str(tmp_path / "none"),
                          "--out", str(tmp_path / "out.mp4"), "-q"], capsys)
    assert code == 2
    assert_one_line_error(err, "model folder not found", str(tmp_path / "none"))


def test_cancel_mid_clip_leaves_no_output_and_next_run_works(tiny_model_dir: Path, assets: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "cancelled.mp4"
    options = RenderOptions(width=64, height=64, sampler=SamplerSettings(steps=2))
    steps = []
    with pytest.raises(RenderCancelled):
        render_file(assets / "portraits" / "statue.jpg", assets / "audio" / "speech_7s_44k.wav", tiny_model_dir,
                    out, options, on_step=lambda d, t: steps.append(d), should_cancel=lambda: len(steps) >= 5)
    assert len(steps) == 5  # stopped within one denoising step of the request, mid-clip
    assert list(tmp_path.iterdir()) == []  # neither the mp4 nor a partial file
    timings = render_file(assets / "portraits" / "statue.jpg", assets / "audio" / "speech_7s_44k.wav",
                          tiny_model_dir, out, RenderOptions(width=64, height=64, sampler=SamplerSettings(steps=1)))
    assert out.is_file() and probe(out)["frames"] == 188
    assert timings["video_seconds"] == pytest.approx(188 / 25)
