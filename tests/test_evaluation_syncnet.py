"""SyncNet LSE-C / LSE-D: optional, through the ``syncnet-python`` package when it is installed.

With the package: a random ``syncnet_v2.model`` in the released file layout (the state dict of its network,
``torch.save``) runs through the real loading and scoring code on the synthetic talking face. Without it
(CI: the package pulls in torchvision, pandas, scenedetect and a second OpenCV), the same folder gives a
report without the two scores and a note saying what to install; nothing else changes.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from asset_paths import asset
from face_helpers import LANDMARKER_TASK, make_model_dir
from hallo_nodes.pipeline.audio.decode import load_audio_file
from hallo_nodes.pipeline.evaluation.report import evaluate
from hallo_nodes.pipeline.evaluation.syncnet import SYNCNET_FILE, load_syncnet
from hallo_nodes.testing.synthetic_talking_face import speech_envelope, talking_face_frames
from PIL import Image

pytest.importorskip("mediapipe")

HAS_SYNCNET = importlib.util.find_spec("syncnet_python") is not None
FPS = 25.0
FRAMES = 40


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, int]]:
    ref = np.asarray(Image.open(asset("portraits", "painting_girl.jpg")).convert("RGB").resize((160, 160)))
    wave, rate = load_audio_file(asset("audio", "speech_7s_44k.wav"))
    wave = wave.numpy().mean(0)[: int(rate * FRAMES / FPS)]
    frames = talking_face_frames(ref, speech_envelope(wave, rate, FPS, FRAMES), LANDMARKER_TASK)
    return frames, ref, (wave, rate)


def write_random_checkpoint(path: Path) -> None:
    """A random SyncNet v2 in the released layout: ``torch.save`` of the network's state dict."""
    import syncnet_python
    import torch

    torch.manual_seed(0)
    torch.save(syncnet_python.SyncNetModel().state_dict(), path)


def test_syncnet_scores_when_the_checkpoint_is_in_the_model_folder(tmp_path: Path, clip) -> None:
    frames, ref, audio = clip
    models = make_model_dir(tmp_path / "models")
    if HAS_SYNCNET:
        write_random_checkpoint(models / SYNCNET_FILE)
    else:
        (models / SYNCNET_FILE).write_bytes(b"not used: the package is missing")
    report = evaluate(frames, ref, FPS, models, audio=audio)
    if not HAS_SYNCNET:
        assert "lse_c" not in report.measures and "lse_d" not in report.measures
        assert any("pip install syncnet-python" in note for note in report.notes), report.notes
        assert report.value("lip_sync_offset") == 0  # the rest of the report is there
        return
    lse_c, lse_d = report.value("lse_c"), report.value("lse_d")
    assert lse_c is not None and lse_d is not None and math.isfinite(lse_c) and math.isfinite(lse_d)
    assert lse_c >= 0 and lse_d > 0  # median minus minimum; a distance
    assert report.measures["lse_c"].direction == "higher is better"
    assert report.measures["lse_d"].direction == "lower is better"
    import torch

    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "other.model")
    with pytest.raises(ValueError, match="not a SyncNet v2 checkpoint"):
        load_syncnet(tmp_path / "other.model")


def test_without_the_checkpoint_no_syncnet_is_attempted(tmp_path: Path, clip) -> None:
    frames, ref, audio = clip
    report = evaluate(frames, ref, FPS, make_model_dir(tmp_path / "models"), audio=audio)
    assert "lse_c" not in report.measures and not any("syncnet" in n.lower() for n in report.notes)
