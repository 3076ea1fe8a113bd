"""Shared helpers for the face tests: real portraits, tiny face models, independent recomputations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from asset_paths import ASSETS, LANDMARKER_TASK, asset
from hallo_nodes.testing.tiny_face_models import write_face_models
from PIL import Image

PORTRAITS = ASSETS / "portraits"

SINGLE_PORTRAITS = ["painting_girl.jpg", "stylized_3d.jpg", "statue.jpg", "photo_woman.jpg"]
GROUP = "group_six_faces.jpg"
#: Hand-measured face boxes (x1, y1, x2, y2, pixels) of the six people in the group photo, left to right.
SIX_FACE_BOXES = [
    (55, 265, 160, 390),
    (265, 140, 375, 265),
    (460, 245, 590, 400),
    (740, 320, 860, 470),
    (900, 40, 1040, 200),  # largest box
    (1125, 250, 1230, 380),
]
LARGEST_GROUP_FACE = 4

# Index sets of the original (hallo/utils/util.py), written out again here on purpose.
SILHOUETTE = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
              152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375]


def load_rgb(name: str) -> np.ndarray:
    return np.array(Image.open(asset("portraits", name)).convert("RGB"))


def to_comfy(rgb: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, C) -> ComfyUI IMAGE [1, H, W, C] float 0..1."""
    return torch.from_numpy(rgb.astype(np.float32) / 255.0)[None]


def make_model_dir(root: Path, faces=None, seed: int = 0, landmarker: bool = True, square_faces=None) -> Path:
    """A ``hallo`` model folder with tiny face models and (``landmarker``) the real MediaPipe
    ``.task``; returns the folder (parent of face_analysis)."""
    write_face_models(root / "face_analysis" / "models", seed=seed, faces=faces, square_faces=square_faces,
                      landmarker_task=LANDMARKER_TASK if landmarker else None)
    return root


#: Where a face crop (HalloFaceCrop, face_fraction 0.6) shows its face: the centred 60 % square.
CROP_FACE = (0.2, 0.2, 0.8, 0.8)


def make_group_model_dir(root: Path) -> Path:
    """Tiny face models that see the group photo's six faces, and one centred face in a square face crop."""
    with Image.open(asset("portraits", GROUP)) as photo:
        w, h = photo.size
    return make_model_dir(root, faces=normalised(SIX_FACE_BOXES, w, h), square_faces=[CROP_FACE])


def normalised(boxes, width: int, height: int) -> list[tuple[float, float, float, float]]:
    return [(x1 / width, y1 / height, x2 / width, y2 / height) for x1, y1, x2, y2 in boxes]


def ref_expand(lo: float, hi: float, limit: int, ratio: float) -> tuple[int, int]:
    """One axis of the original expand_region, spelled out independently (floor divisions, shift)."""
    mid = np.floor((hi + lo) / 2)
    half = np.floor((hi - lo) * ratio / 2)
    a, b = mid - half, mid + half
    if a < 0:
        b, a = b - a, 0
    if b > limit:
        a, b = a - (b - limit), limit
    return int(round(max(a, 0))), int(round(b))


def ref_box(landmarks: np.ndarray, ids, w: int, h: int, ratio: float) -> tuple[int, int, int, int]:
    pts = landmarks[ids]
    lo, hi = np.round(pts.min(0)), np.round(pts.max(0))
    x1, x2 = ref_expand(lo[0], hi[0], w, ratio)
    y1, y2 = ref_expand(lo[1], hi[1], h, ratio)
    return x1, y1, x2, y2


def ref_blur(box, w: int, h: int, kernel: int) -> np.ndarray:
    """Hard box -> 64x64 bilinear -> Gaussian blur with the explicit auto sigma -> min-max uint8."""
    mask = np.zeros((h, w), np.uint8)
    mask[box[1]:box[3], box[0]:box[2]] = 255
    small = cv2.resize(mask, (64, 64), interpolation=cv2.INTER_LINEAR)
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8  # OpenCV's rule for sigma = 0
    blurred = cv2.GaussianBlur(small, (kernel, kernel), sigmaX=sigma, sigmaY=sigma)
    f = blurred.astype(np.float64)
    return np.clip(np.rint((f - f.min()) * 255.0 / (f.max() - f.min())), 0, 255).astype(np.uint8)


def pil_level(mask64: np.ndarray, h: int, w: int) -> np.ndarray:
    img = Image.fromarray(mask64, "L")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    return np.asarray(img, np.float32).reshape(-1) / 255.0
