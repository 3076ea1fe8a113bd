"""Where the real test assets are: ``$HALLO_TEST_ASSETS``, else ``shared/assets`` beside the checkout.

Every test that reads an asset goes through :func:`require_assets` or :func:`asset`, so a missing asset
folder skips those tests with one reason (and, under ``CI``, fails them: see ``conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("HALLO_TEST_ASSETS") or REPO.parent / "shared" / "assets")
MISSING = f"test assets not found at {ASSETS}: set HALLO_TEST_ASSETS or put shared/assets beside the checkout"
#: The MediaPipe Face Landmarker model of the released download, as kept with the assets.
LANDMARKER_TASK = ("models", "face_landmarker_v2_with_blendshapes.task")


def require_assets() -> Path:
    """The asset folder; skips the calling test when it is missing."""
    if not ASSETS.is_dir():
        pytest.skip(MISSING)
    return ASSETS


def asset(*parts: str) -> Path:
    """``ASSETS/<parts>``; skips when the folder is missing, fails when the folder lacks this file."""
    path = require_assets().joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing from the test assets at {ASSETS}", pytrace=False)
    return path
