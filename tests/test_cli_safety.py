"""hallo-render never destroys data: inputs, existing outputs, model folders, a concurrent run's file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import add_face_task, assert_one_line_error, run_main, short_speech
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.video.writer import VideoWriter
from hallo_nodes.testing.tiny_models import write_tiny_model_folder


@pytest.fixture()
def models(tiny_model_dir: Path, assets: Path) -> Path:
    return add_face_task(tiny_model_dir, assets)


def _args(assets: Path, audio: Path, models: Path, out: Path, *extra: str) -> list[str]:
    return ["--image", str(assets / "portraits" / "statue.jpg"), "--audio", str(audio), "--models", str(models),
            "--out", str(out), "--size", "64", "--steps", "1", "-q", *extra]


@pytest.mark.parametrize("link", [False, True], ids=["same-path", "hard-link"])
def test_out_equal_to_audio_input_is_refused(models: Path, assets: Path, tmp_path: Path, link: bool,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    voice = short_speech(assets, tmp_path / "voice.mp4")  # a voice recording saved under a video name
    original = voice.read_bytes()
    out = voice
    if link:
        out = tmp_path / "alias.mp4"
        os.link(voice, out)
    code, err = run_main(_args(assets, voice, models, out, "--overwrite"), capsys)
    assert code == 2
    assert_one_line_error(err, str(out), "audio")
    assert voice.read_bytes() == original


def test_existing_output_is_refused_without_overwrite(models: Path, assets: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    audio = short_speech(assets, tmp_path / "voice.wav")
    out = tmp_path / "hallo.mp4"
    out.write_bytes(b"an earlier render the user keeps")
    own_partial = tmp_path / "hallo.partial.mp4"  # a file of the user's that happens to have this name
    own_partial.write_bytes(b"mine")
    code, err = run_main(_args(assets, audio, models, out), capsys)
    assert code == 2
    assert_one_line_error(err, str(out), "--overwrite")
    assert out.read_bytes() == b"an earlier render the user keeps"
    code, err = run_main(_args(assets, audio, models, out, "--overwrite"), capsys)
    assert code == 0, err
    assert out.stat().st_size > 1000 and out.read_bytes()[4:8] == b"ftyp"
    assert own_partial.read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hallo.mp4", "hallo.partial.mp4", "voice.wav"]


def test_make_tiny_models_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = tmp_path / "hallo-models"
    (real / "hallo").mkdir(parents=True)
    (real / "hallo" / "net.pth").write_bytes(b"4.85 GB of trained weights")
    code, err = run_main(["--make-tiny-models", str(real)], capsys)
    assert code == 2
    assert_one_line_error(err, str(real), "not empty")
    assert (real / "hallo" / "net.pth").read_bytes() == b"4.85 GB of trained weights"
    assert sorted(p.name for p in real.iterdir()) == ["hallo"]
    with pytest.raises(HalloInputError, match="not empty"):
        write_tiny_model_folder(real)


def _frames(n: int) -> np.ndarray:
    return np.full((n, 64, 64, 3), 128, dtype=np.uint8)


def test_concurrent_writers_to_one_name_never_clobber(tmp_path: Path) -> None:
    out = tmp_path / "hallo.mp4"
    first = VideoWriter(out, 25.0, 64, 64, overwrite=False)
    second = VideoWriter(out, 25.0, 64, 64, overwrite=False)
    assert first.partial != second.partial  # each run has its own temporary file
    assert not out.exists()
    second.write(_frames(3))
    assert second.close() == out
    first.write(_frames(5))
    with pytest.raises(HalloInputError, match="another program"):
        first.close()
    with __import__("av").open(str(out)) as container:  # the published file is the second run's, whole
        assert sum(1 for _ in container.decode(video=0)) == 3
    assert first.partial.is_file()  # the first run's finished video is kept, and the error said where


def test_overwrite_publishes_atomically_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "hallo.mp4"
    out.write_bytes(b"old")
    with VideoWriter(out, 25.0, 64, 64, overwrite=True) as writer:
        writer.write(_frames(2))
        assert out.read_bytes() == b"old"  # the old file stays whole until the new one is complete
    assert out.read_bytes()[4:8] == b"ftyp"
    assert [p.name for p in tmp_path.iterdir()] == ["hallo.mp4"]
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, 25.0, 64, 64) as writer:
        writer.write(_frames(2))
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["hallo.mp4"]


def test_sigterm_removes_the_temporary_file(models: Path, assets: Path, tmp_path: Path) -> None:
    """``timeout`` and ``docker stop`` send SIGTERM: the run stops, nothing is left under the output folder."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cmd = [sys.executable, "-m", "hallo_nodes.pipeline.cli", *_args(assets, assets / "audio" / "speech_7s_44k.wav",
                                                                     models, out_dir / "hallo.mp4")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out_dir.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert list(out_dir.iterdir()) == []
    assert "Traceback" not in err


def test_audio_file_moved_mid_render_keeps_the_render(models: Path, assets: Path, tmp_path: Path) -> None:
    """The soundtrack is read once at the start: moving or deleting the audio file mid-render loses nothing."""
    from hallo_nodes.pipeline.render import RenderOptions, render_file
    from hallo_nodes.pipeline.sampling.sampler import SamplerSettings

    audio = short_speech(assets, tmp_path / "voice.wav", seconds=1.0)
    out = tmp_path / "out.mp4"

    def move_audio(done: int, total: int) -> None:
        if audio.exists():
            audio.rename(tmp_path / "moved.wav")

    render_file(assets / "portraits" / "statue.jpg", audio, models, out,
                RenderOptions(width=64, height=64, sampler=SamplerSettings(steps=1)), on_step=move_audio)
    with __import__("av").open(str(out)) as container:
        assert container.streams.audio and sum(f.samples for f in container.decode(audio=0)) > 40000
