"""Temporal measures: the seam between generated clips, and the slow colour drift of the background.

* **Clip-boundary jump**: Hallo makes a video 16 frames at a time, each clip continuing from the last two
  frames of the one before. A visible seam shows up as a larger frame-to-frame change across a clip
  boundary than inside a clip. The change between two frames is the mean absolute difference of their
  grey images downscaled to :data:`CHANGE_WIDTH` pixels wide (0..255); the score is the mean change across
  the boundaries divided by the mean change inside the clips: 1.0 = no seam, higher = a jump every clip.
* **Colour drift**: the mean CIELAB colour of the background (outside the reference face box, enlarged by
  :data:`BACKGROUND_MARGIN`) in each frame, against the reference portrait's; the distance is ΔE*76
  (Euclidean in Lab; about 2.3 is a just-noticeable difference). Reported: the distance over the last
  clip, the largest distance, and the least-squares slope per 10 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..lazy_import import cv2
from .curves import finite, slope_per_10s

CHANGE_WIDTH = 64
BACKGROUND_MARGIN = 1.3  # the face box grown by this factor about its centre (hair, neck) is not background
MIN_BACKGROUND_FRACTION = 0.05


@dataclass
class BoundaryJump:
    """Frame-to-frame change and the boundary / inside ratio."""

    ratio: float  # NaN when the video has no clip boundary or no change inside clips
    boundary_change: float
    inner_change: float
    change: np.ndarray  # (N,) change from frame i-1 to frame i; change[0] = NaN
    boundaries: list[int]  # first frame of every clip after the first


@dataclass
class ColourDrift:
    """Background colour distance to the reference, per frame, and its summary."""

    distance: np.ndarray  # (N,) ΔE*76
    final: float  # mean distance over the last clip
    maximum: float
    slope_per_10s: float
    background_fraction: float  # share of the frame measured


def _small_grey(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    width = min(CHANGE_WIDTH, w)
    height = max(1, round(h * width / w))
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """``(N,)``: mean absolute grey difference between frame i-1 and frame i (``[0]`` is NaN)."""
    change = np.full(len(frames), np.nan)
    prev = None
    for i, frame in enumerate(frames):
        cur = _small_grey(frame)
        if prev is not None:
            change[i] = float(np.abs(cur - prev).mean())
        prev = cur
    return change


def clip_boundaries(num_frames: int, clip_length: int = 16, offset: int = 0) -> list[int]:
    """First frame of every clip after the first: ``offset + k * clip_length`` within ``1..num_frames-1``."""
    if clip_length < 1:
        raise ValueError(f"clip_length must be 1 or more, got {clip_length}")
    start = offset % clip_length or clip_length
    return list(range(start, num_frames, clip_length))


def boundary_jump(frames: np.ndarray, clip_length: int = 16, offset: int = 0) -> BoundaryJump:
    """Mean change across clip boundaries over mean change inside clips (see the module docstring)."""
    change = frame_changes(frames)
    bounds = clip_boundaries(len(frames), clip_length, offset)
    at_boundary = np.zeros(len(frames), bool)
    at_boundary[bounds] = True
    across = finite(change[at_boundary])
    inside = finite(change[~at_boundary])
    b = float(across.mean()) if across.size else math.nan
    n = float(inside.mean()) if inside.size else math.nan
    ratio = b / n if math.isfinite(b) and math.isfinite(n) and n > 0 else math.nan
    return BoundaryJump(ratio=ratio, boundary_change=b, inner_change=n, change=change, boundaries=bounds)


def background_mask(shape: tuple[int, int], face_box: np.ndarray, box_size: tuple[int, int]) -> np.ndarray:
    """Bool ``(H, W)``: True outside the face box (given in a ``box_size`` = (H, W) image), enlarged."""
    h, w = shape
    bh, bw = box_size
    x1, y1, x2, y2 = (float(v) for v in face_box)
    x1, x2 = x1 * w / bw, x2 * w / bw
    y1, y2 = y1 * h / bh, y2 * h / bh
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) / 2 * BACKGROUND_MARGIN, (y2 - y1) / 2 * BACKGROUND_MARGIN
    ys, xs = np.mgrid[:h, :w]
    inside = (xs + 0.5 >= cx - hw) & (xs + 0.5 <= cx + hw) & (ys + 0.5 >= cy - hh) & (ys + 0.5 <= cy + hh)
    return ~inside


def mean_lab(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean CIELAB colour (L 0..100) of the pixels of ``rgb`` (uint8) where ``mask`` is True."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    return lab[mask].mean(axis=0).astype(np.float64)


def _resized(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    return cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_AREA)


def colour_drift(frames: np.ndarray, reference_rgb: np.ndarray, face_box: np.ndarray, fps: float,
                 clip_length: int = 16) -> ColourDrift | None:
    """Background ΔE*76 of every frame to the reference (resized to the frame size, as Hallo resizes it).

    ``face_box``: x1, y1, x2, y2 in ``reference_rgb`` pixels. None when the face box leaves less than
    :data:`MIN_BACKGROUND_FRACTION` of the frame as background (nothing to measure)."""
    shape = frames.shape[1:3]
    mask = background_mask(shape, face_box, reference_rgb.shape[:2])
    fraction = float(mask.mean())
    if fraction < MIN_BACKGROUND_FRACTION:
        return None
    ref = mean_lab(_resized(reference_rgb, shape), mask)
    dist = np.array([float(np.linalg.norm(mean_lab(f, mask) - ref)) for f in frames])
    return ColourDrift(distance=dist, final=float(dist[-clip_length:].mean()), maximum=float(dist.max()),
                       slope_per_10s=slope_per_10s(dist, fps), background_fraction=fraction)
