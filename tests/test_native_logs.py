"""One line means one line: what MediaPipe, TensorFlow Lite and onnxruntime write to descriptor 2 goes to the debug
log, so an input error is the only line on stderr (checked on real runs of hallo-render)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import short_speech
from face_helpers import make_model_dir
from hallo_nodes.pipeline.native_logs import quiet_native_logs
from PIL import Image

NATIVE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
          "W0000 00:00:1796537643.661000   21880 face_landmarker_graph.cc:181] Sets FaceBlendshapesGraph",
          "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
          "2026-12-06 06:00:00.123456 [W:onnxruntime:, graph.cc:4285 CleanUnusedInitializers] Removing x")


def test_native_lines_go_to_the_debug_log_and_others_stay(capfd: pytest.CaptureFixture[str],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    before = os.fstat(2)
    with caplog.at_level(logging.DEBUG, logger="hallo_nodes.pipeline.native_logs"):
        with quiet_native_logs("a model load"):
            os.write(2, ("\n".join(NATIVE[:2]) + "\n").encode())
            with quiet_native_logs("nested"):  # captured once, by the outer block
                os.write(2, (NATIVE[2] + "\nsomeone else's line\n").encode())
            os.write(2, (NATIVE[3] + "\n").encode())
    os.write(2, b"after the block\n")
    assert capfd.readouterr().err.splitlines() == ["someone else's line", "after the block"]
    assert [r.getMessage() for r in caplog.records] == [f"a model load: {line}" for line in NATIVE]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)  # descriptor 2 is restored


def test_threads_take_turns_and_descriptor_2_is_restored(capfd: pytest.CaptureFixture[str]) -> None:
    before = os.fstat(2)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(20):
                with quiet_native_logs(f"thread {i}"):
                    os.write(2, f"W0000 00:00:1.0 {i} x.cc:1] noise\nline of thread {i}\n".encode())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    err = capfd.readouterr().err.splitlines()
    assert sorted(err) == sorted(f"line of thread {i}" for i in range(4) for _ in range(20))
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def _render(image: Path, audio: Path, models: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hallo_nodes.pipeline.cli", "--image", str(image), "--audio", str(audio),
           "--models", str(models), "--out", str(out), "--size", "64", "--steps", "1", "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _with_networks(models: Path, tiny: Path) -> Path:
    """Every model file is checked at the door, before the face stage: the tiny networks beside the face models."""
    for part in ("hallo", "stable-diffusion-v1-5", "sd-vae-ft-mse", "wav2vec"):
        (models / part).symlink_to(tiny / part)
    return models


def test_no_face_portrait_is_one_line_on_stderr(assets: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    """The tiny detector reports a face; MediaPipe (really loaded and run) finds none on a textured wall."""
    models = _with_networks(make_model_dir(tmp_path / "models"), tiny_model_dir)
    image = tmp_path / "wall.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((256, 256, 3)) * 60 + 100).astype(np.uint8)).save(image)
    proc = _render(image, short_speech(assets, tmp_path / "voice.wav"), models, tmp_path / "o.mp4")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"hallo-render: error: image {image}: MediaPipe found no face")


def test_damaged_task_is_one_line_on_stderr(assets: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    """A ``.task`` that is a whole zip archive whose models are cut short gets as far as MediaPipe's loader."""
    models = _with_networks(make_model_dir(tmp_path / "models"), tiny_model_dir)
    task = models / "face_analysis" / "models" / "face_landmarker_v2_with_blendshapes.task"
    whole = tmp_path / "whole.task"
    task.rename(whole)
    with zipfile.ZipFile(whole) as src, zipfile.ZipFile(task, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[: len(data) // 4])
    proc = _render(assets / "portraits" / "photo_woman.jpg", short_speech(assets, tmp_path / "voice.wav"), models,
                   tmp_path / "o.mp4")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"hallo-render: error: {task} is not a usable MediaPipe model")
    assert "download face_analysis/models/face_landmarker_v2_with_blendshapes.task again" in lines[0]
