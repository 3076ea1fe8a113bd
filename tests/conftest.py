"""Shared fixtures: real assets from ../shared/assets and a tiny model folder in the released layout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# The tiny models are made of many small ops: one thread avoids oversubscription and is faster on CI's
# two cores (a 16-frame clip takes ~0.4 s instead of several seconds when other processes compete).
torch.set_num_threads(int(os.environ.get("HALLO_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
# Test helper modules (face_helpers, audio_helpers) live beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
ASSETS = Path(os.environ.get("HALLO_TEST_ASSETS", REPO.parent / "shared" / "assets"))
KEY_LIST = Path(os.environ.get("HALLO_KEY_LIST", REPO.parent / "shared" / "reference" / "net_pth_keys.tsv"))


@pytest.fixture(scope="session")
def assets() -> Path:
    if not ASSETS.is_dir():
        pytest.skip(f"test assets not found at {ASSETS} (set HALLO_TEST_ASSETS)")
    return ASSETS


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model folder with hallo/ and hallo2/ checkpoints, VAE, wav2vec2 and face models
    (plus the real MediaPipe landmarker, so the face masks run on the Tasks API)."""
    from hallo_nodes.pipeline.tiny_models import write_tiny_model_folder

    task = ASSETS / "models" / "face_landmarker_v2_with_blendshapes.task"
    # Without it only the face-mask tests fail, with an error naming the file.
    return write_tiny_model_folder(tmp_path_factory.mktemp("models"),
                                   landmarker_task=task if task.is_file() else None)
