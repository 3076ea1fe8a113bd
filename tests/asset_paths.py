"""Where the real test assets are: ``$HALLO_TEST_ASSETS``, else ``tests/assets`` in this checkout.

The portraits and the speech files are kept in the repository (``tests/assets/README.md`` gives each file's
source and licence), so a plain clone runs every asset test. The MediaPipe landmarker is the ``.task`` the
pack ships (``pipeline/face/assets/``): the tests use what users get. Every test that reads an asset goes
through :func:`require_assets` or :func:`asset`, so an override pointing at a missing folder skips those tests
with one reason (and, under ``CI``, fails them: see ``conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("HALLO_TEST_ASSETS") or REPO / "tests" / "assets")
MISSING = f"test assets not found at {ASSETS}: unset HALLO_TEST_ASSETS to use tests/assets of this checkout"
#: The MediaPipe Face Landmarker model the pack ships (the released download's file, byte for byte).
LANDMARKER_TASK = REPO / "pipeline" / "face" / "assets" / "face_landmarker_v2_with_blendshapes.task"


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
