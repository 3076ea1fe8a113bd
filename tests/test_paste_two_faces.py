"""Two faces of one photo animated and pasted back in turn: the second paste-back goes into the frames of
the first (HalloPasteBack with a batch of frames as ``original``), as in the
two-speaker example workflow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from face_helpers import CROP_FACE, GROUP, SIX_FACE_BOXES, load_rgb, make_group_model_dir, to_comfy
from hallo_nodes.nodes import NODE_CLASS_MAPPINGS
from hallo_nodes.nodes.common import HalloInputError
from hallo_nodes.pipeline.face.crop import CropBox, face_crop, paste_back
from hallo_nodes.pipeline.face.detection import load_face_models

FRAMES = 3
SIZE = 64


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_rgb(GROUP)


def crop_of(rgb: np.ndarray, face: int) -> CropBox:
    return face_crop(rgb, SIX_FACE_BOXES[face], face_fraction=0.6, size=SIZE)[1]


def square(box: CropBox, h: int, w: int) -> np.ndarray:
    """Where a paste-back at ``box`` may change the photo (the crop square, clipped to the image)."""
    m = np.zeros((h, w), bool)
    m[max(0, box.y0): box.y0 + box.side, max(0, box.x0): box.x0 + box.side] = True
    return m


def renders(seed: int) -> torch.Tensor:
    """``FRAMES`` distinct rendered frames (each a different flat colour plus noise)."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.linspace(0.1, 0.9, FRAMES)[:, None, None, None]
    return (levels + 0.05 * torch.rand(FRAMES, SIZE, SIZE, 3, generator=g)).clamp(0, 1)


def paste_node(images: torch.Tensor, original: torch.Tensor, box: CropBox) -> dict:
    return NODE_CLASS_MAPPINGS["HalloPasteBack"]().paste(images, original, box, feather=8)


def test_second_paste_back_goes_into_each_frame_of_the_first(photo: np.ndarray) -> None:
    a_box, b_box = crop_of(photo, 4), crop_of(photo, 2)
    a, b = renders(1), renders(2)
    (first,) = paste_node(a, to_comfy(photo), a_box)["result"]
    (both,) = paste_node(b, first, b_box)["result"]
    h, w = photo.shape[:2]
    in_a, in_b = square(a_box, h, w), square(b_box, h, w)
    assert not (in_a & in_b).any()
    orig = to_comfy(photo)[0]
    for i in range(FRAMES):
        # outside both squares: the photo, bit for bit
        assert torch.equal(both[i][torch.from_numpy(~(in_a | in_b))], orig[torch.from_numpy(~(in_a | in_b))])
        # face A comes from frame i of the first paste-back (not from its first frame), face B is new
        assert torch.equal(both[i][torch.from_numpy(in_a)], first[i][torch.from_numpy(in_a)])
        assert torch.equal(both[i][torch.from_numpy(in_b)],
                           paste_back(b[i], photo, b_box, feather=8)[0][torch.from_numpy(in_b)])
    assert float((both[2][torch.from_numpy(in_a)] - both[0][torch.from_numpy(in_a)]).abs().mean()) > 0.3


def test_paste_back_into_frames_of_an_odd_photo(photo: np.ndarray) -> None:
    """The first paste-back cuts an odd photo to even sides; the second accepts those frames."""
    odd = np.ascontiguousarray(photo[:601, :1023])
    a_box, b_box = crop_of(odd, 4), crop_of(odd, 2)
    (first,) = paste_node(renders(1), to_comfy(odd), a_box)["result"]
    assert first.shape == (FRAMES, 600, 1022, 3)
    out = paste_node(renders(2), first, b_box)
    assert out["result"][0].shape == (FRAMES, 600, 1022, 3)
    outside = torch.from_numpy(~(square(a_box, 600, 1022) | square(b_box, 600, 1022)))
    assert torch.equal(out["result"][0][0][outside], to_comfy(odd)[0, :600, :1022][outside])
    with pytest.raises(ValueError, match="the original image is 1020x600 but the crop box was made for 1023x601"):
        paste_node(renders(2), first[:, :, :1020], b_box)


def test_frame_count_mismatch_is_a_clear_error(photo: np.ndarray) -> None:
    a_box, b_box = crop_of(photo, 4), crop_of(photo, 2)
    (first,) = paste_node(renders(1), to_comfy(photo), a_box)["result"]
    with pytest.raises(HalloInputError, match=r"input 'original' has 3 frames but 'images' has 2; .*same length"):
        paste_node(renders(2)[:2], first, b_box)
    with pytest.raises(ValueError, match="3 rendered frame"):
        paste_back(renders(2), first[:2], b_box)


def test_group_detector_sees_six_faces_in_the_photo_and_one_in_a_square_crop(photo: np.ndarray, tmp_path) -> None:
    """The tiny detector the two-speaker ComfyUI test uses behaves like a real one on a photo and its crops."""
    detector = load_face_models(make_group_model_dir(tmp_path)).detector
    found = sorted(tuple(np.round(f.bbox).astype(int)) for f in detector.detect(photo))
    assert len(found) == 6
    assert all(np.abs(np.subtract(f, b)).max() <= 2 for f, b in zip(found, sorted(SIX_FACE_BOXES), strict=True))
    crop, _ = face_crop(photo, SIX_FACE_BOXES[2], face_fraction=0.6, size=SIZE)
    (face,) = detector.detect(crop)
    assert np.abs(np.asarray(face.bbox) - np.asarray(CROP_FACE) * SIZE).max() <= 1
