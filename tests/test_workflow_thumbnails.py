"""Each shipped workflow's thumbnail shows its own graph (drawn by tests/workflow_thumbnails.py)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image
from workflow_thumbnails import WORKFLOWS, thumbnail

NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((160, 100), Image.BILINEAR), np.float32)


@pytest.mark.parametrize("a,b", list(itertools.combinations(NAMES, 2)))
def test_thumbnails_differ(a: str, b: str) -> None:
    with Image.open(WORKFLOWS / f"{a}.jpg") as ia, Image.open(WORKFLOWS / f"{b}.jpg") as ib:
        assert np.abs(pixels(ia) - pixels(ib)).mean() > 2.0, f"{a} and {b} show the same picture"


@pytest.mark.parametrize("name", NAMES)
def test_thumbnail_is_its_own_graph(name: str) -> None:
    drawn = thumbnail(json.loads((WORKFLOWS / f"{name}.json").read_text()))
    with Image.open(WORKFLOWS / f"{name}.jpg") as shipped:
        assert shipped.size == drawn.size
        assert np.abs(pixels(shipped) - pixels(drawn)).mean() < 2.0  # JPEG (and font) differences only
