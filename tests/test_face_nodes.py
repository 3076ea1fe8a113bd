"""HalloFaceAnalysis / HalloFaceCrop on the tiny model folder, real portraits and the real MediaPipe .task."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from face_helpers import GROUP, SIX_FACE_BOXES, load_rgb, make_model_dir, normalised, to_comfy
from hallo_nodes.nodes import NODE_CLASS_MAPPINGS
from hallo_nodes.nodes import comfy_adapter as adapter
from hallo_nodes.nodes.common import HalloModel
from hallo_nodes.pipeline.face.detection import NoFaceError
from hallo_nodes.pipeline.paths import ModelFolder
from node_helpers import load_tiny_model
from PIL import Image

pytest.importorskip("mediapipe")

SIZE = 64


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> HalloModel:
    return load_tiny_model(tiny_model_dir)


def with_faces(model: HalloModel, root: Path, faces) -> HalloModel:
    """The same model with a face folder whose tiny detector reports ``faces``."""
    return dataclasses.replace(model, folder=ModelFolder(make_model_dir(root, faces=faces)))


def pattern(h: int = 300, w: int = 400) -> torch.Tensor:
    """An image without any face (MediaPipe finds none)."""
    y, x = np.mgrid[:h, :w]
    return to_comfy(np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8))


def test_allow_no_face_continues_when_mediapipe_finds_nothing(model: HalloModel, tmp_path: Path) -> None:
    no_face = with_faces(model, tmp_path, [])
    node = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]()
    with pytest.raises(NoFaceError, match="allow_no_face"):
        node.analyze(no_face, pattern(), SIZE, SIZE)
    out = node.analyze(no_face, pattern(), SIZE, SIZE, allow_no_face=True)
    face, lip, face_mask, full = out["result"]
    info = out["ui"]["hallo_face"][0]
    assert info["faces"] == 0 and info["masks"] == "box"
    assert "zero identity embedding" in info["warning"] and "image centre" in info["warning"]
    assert not face.embedding.any()
    assert lip.shape == (1, 300, 400) and float(lip[0, 170:200, 190:210].max()) > 0.9
    assert float(full[0, 150, 200]) < 0.05 and float(full[0, 0, 0]) > 0.95
    (ref,) = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(no_face, pattern(), face)["result"]
    assert torch.equal(ref.lip_masks[0], face.masks.lip[0])


def test_crop_no_face_message_names_inputs_it_has(model: HalloModel, tmp_path: Path) -> None:
    no_face = with_faces(model, tmp_path, [])
    with pytest.raises(NoFaceError) as err:
        NODE_CLASS_MAPPINGS["HalloFaceCrop"]().crop(no_face, to_comfy(load_rgb("statue.jpg")))
    msg = str(err.value)
    assert msg.startswith("HalloFaceCrop: no face was found")
    assert "HalloFaceAnalysis" in msg and "crop the photo to the face by hand" in msg
    assert "enable 'allow_no_face'" not in msg  # HalloFaceCrop has no such input


@pytest.mark.parametrize(("face_index", "face_order", "shown"),
                         [(1, "left_to_right", 1), (0, "largest", 0), (-1, "left_to_right", 5), (2, "largest", 2)])
def test_info_shows_the_users_face_index(model: HalloModel, tmp_path: Path, face_index: int, face_order: str,
                                         shown: int) -> None:
    rgb = load_rgb(GROUP)
    h, w = rgb.shape[:2]
    group = with_faces(model, tmp_path, normalised(SIX_FACE_BOXES, w, h))
    out = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(group, to_comfy(rgb), SIZE, SIZE,
                                                             face_index=face_index, face_order=face_order)
    info = out["ui"]["hallo_face"][0]
    assert info["faces"] == 6 and info["face_index"] == shown and info["face_order"] == face_order
    ranked = sorted(SIX_FACE_BOXES, key=lambda b: b[0] if face_order == "left_to_right"
                    else -(b[2] - b[0]) * (b[3] - b[1]))
    x1, y1, x2, y2 = ranked[shown]
    assert abs(info["bbox"][0] - x1) < 3 and abs(info["bbox"][3] - y2) < 3


def test_mask_preview_is_downscaled(model: HalloModel) -> None:
    big = cv2.resize(load_rgb("photo_woman.jpg"), (3511, 3511), interpolation=cv2.INTER_CUBIC)
    out = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, to_comfy(big), SIZE, SIZE)
    path = adapter.temp_directory() / out["ui"]["images"][0]["filename"]
    with Image.open(path) as img:
        assert max(img.size) == 1024 and img.size[0] == img.size[1]
    assert path.stat().st_size < 3_000_000
    assert out["result"][1].shape == (1, 3511, 3511)  # the MASK outputs keep the image's resolution


def test_sizes_are_checked_each_on_its_own_widget(model: HalloModel) -> None:
    """ComfyUI attaches a VALIDATE_INPUTS error to every widget the method takes: each takes one size widget."""
    crop = NODE_CLASS_MAPPINGS["HalloFaceCrop"]
    assert list(inspect.signature(crop.VALIDATE_INPUTS).parameters) == ["size"]
    assert crop.VALIDATE_INPUTS(size=500) == "HalloFaceCrop: widget 'size' is 500, not a multiple of 64: use 448 or 512"
    assert crop.VALIDATE_INPUTS(size=0) == "HalloFaceCrop: widget 'size' is 0, not a multiple of 64: use 64"
    assert crop.VALIDATE_INPUTS(size=512) is True
    fraction = crop.INPUT_TYPES()["required"]["face_fraction"][1]
    assert float("nan") < fraction["min"] and 0.05 < fraction["min"] and not 0.1 < fraction["min"]  # ComfyUI's check
    with pytest.raises(ValueError, match="HalloFaceCrop: widget 'size' is 0, not a multiple of 64: use 64"):
        crop().crop(model, to_comfy(load_rgb("photo_woman.jpg")), size=0)
    analysis = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]
    assert list(inspect.signature(analysis.VALIDATE_INPUTS).parameters) == ["width"]
    assert analysis.VALIDATE_INPUTS(width=700) == ("HalloFaceAnalysis: widget 'width' is 700, not a multiple of 64: "
                                                   "use 640 or 704")
    assert analysis.VALIDATE_INPUTS(width=768) is True
    portrait = to_comfy(load_rgb("photo_woman.jpg"))
    for name in ("width", "height"):  # height: when the node runs (one queue-time check per node, see above)
        with pytest.raises(ValueError, match=f"HalloFaceAnalysis: widget '{name}' is 500, not a multiple of 64: "
                                             "use 448 or 512"):
            analysis().analyze(model, portrait, **{"width": 512, "height": 512, name: 500})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name", ["lip_mask", "face_mask", "full_mask"])
def test_non_finite_masks_are_refused(model: HalloModel, name: str, bad: float) -> None:
    mask = torch.full((1, 50, 50), 0.5)
    mask[0, 10, 10] = bad
    with pytest.raises(ValueError, match=f"HalloFaceAnalysis: input '{name}' contains 1 NaN or infinite"):
        NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, to_comfy(load_rgb("statue.jpg")), SIZE, SIZE,
                                                           **{name: mask})


def test_truncated_landmarker_is_named_on_the_node(model: HalloModel, tmp_path: Path) -> None:
    """A damaged .task is reported by the face stage itself, so the nodes get the same message as the CLI."""
    from hallo_nodes.pipeline.errors import HalloInputError

    broken = with_faces(model, tmp_path, None)
    task = broken.folder.root / "face_analysis" / "models" / "face_landmarker_v2_with_blendshapes.task"
    task.write_bytes(task.read_bytes()[:1000])
    with pytest.raises(HalloInputError, match="not a complete MediaPipe model"):
        NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(broken, pattern(), SIZE, SIZE)
