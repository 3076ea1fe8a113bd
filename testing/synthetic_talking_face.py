"""A synthetic talking face made from a real portrait, for testing the lip-sync measures.

:func:`talking_face_frames` opens the portrait's mouth by a given amount per frame: it finds the inner
lip line with MediaPipe, then moves everything below it (lower lip, chin) down by
``envelope[k] * MAX_OPEN * inter-ocular distance`` at the mouth's centre, tapering to nothing at the mouth
corners (an elliptic profile) and back to nothing a little below the chin, and fills the gap that opens
between the lips with a dark mouth interior. The envelope is the frame's only input, so a measure that
reads the mouth from the frames can be checked against a known ground truth.
"""

from __future__ import annotations

import numpy as np

from ..pipeline.evaluation.mouth import largest_face, task_file
from ..pipeline.evaluation.speech import speech_activity
from ..pipeline.face.landmarks import MAX_FACES, LandmarkError, face_landmarks
from ..pipeline.lazy_import import cv2

UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
#: Largest lip gap, in inter-ocular distances (a wide-open mouth).
MAX_OPEN = 0.4
MOUTH_INTERIOR = np.array([70, 28, 34], np.float32)


class _MouthGeometry:
    """Where the mouth is: the inner-lip line ``line(x)``, its corners, the chin and the gap's size."""

    def __init__(self, points: np.ndarray):
        up, lo = points[list(UPPER_INNER)], points[list(LOWER_INNER)]
        xs = np.linspace(points[78, 0], points[308, 0], 64)
        order_up, order_lo = np.argsort(up[:, 0]), np.argsort(lo[:, 0])
        mid = (np.interp(xs, up[order_up, 0], up[order_up, 1]) + np.interp(xs, lo[order_lo, 0], lo[order_lo, 1])) / 2
        self.xs, self.mid = xs, mid
        self.cx = float(xs.mean())
        self.half = float((xs[-1] - xs[0]) / 2)
        self.line_y = float(mid.mean())
        self.chin = float(points[152, 1])
        self.scale = float(np.linalg.norm(points[33] - points[263]))

    def line(self, x: np.ndarray) -> np.ndarray:
        return np.interp(x, self.xs, self.mid)

    def lens(self, x: np.ndarray) -> np.ndarray:
        """1 at the mouth's centre, 0 at and beyond its corners (elliptic)."""
        return np.sqrt(np.clip(1.0 - ((x - self.cx) / self.half) ** 2, 0.0, 1.0))

    def hold(self, src_y: np.ndarray) -> np.ndarray:
        """How much of the opening a source row below the lip line moves: 1 down to the chin, fading to 0."""
        fade = max(self.chin - self.line_y, 1.0)
        t = np.clip((src_y - self.chin) / fade, 0.0, 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * t))


def _open_mouth(rgb: np.ndarray, geo: _MouthGeometry, amount: float) -> np.ndarray:
    """``rgb`` with the lower lip and chin moved down by ``amount`` pixels at the mouth's centre."""
    out = rgb.copy()
    if amount <= 0:
        return out
    h, w = rgb.shape[:2]
    x0, x1 = max(0, int(geo.cx - geo.half) - 1), min(w, int(geo.cx + geo.half) + 2)
    y0 = max(0, int(geo.mid.min()) - 1)
    y1 = min(h, int(geo.chin + max(geo.chin - geo.line_y, 1.0) + amount) + 2)
    if x1 <= x0 or y1 <= y0:
        return out
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    line = geo.line(xs[0])[None, :]
    gap = amount * geo.lens(xs[0])[None, :]
    below = ys >= line
    src = ys.copy()
    for _ in range(8):  # invert dst = src + gap * hold(src) by fixed-point iteration
        src = np.where(below, ys - gap * geo.hold(src), ys)
    src = np.maximum(src, np.where(below, line, 0.0))
    patch = cv2.remap(rgb, xs.astype(np.float32), src.astype(np.float32), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    inside = (np.clip(np.minimum(ys - line, line + gap - ys) + 0.5, 0.0, 1.0) * (gap > 0.5))[..., None]
    out[y0:y1, x0:x1] = np.clip(patch * (1 - inside) + MOUTH_INTERIOR * inside + 0.5, 0, 255).astype(np.uint8)
    return out


def talking_face_frames(portrait_rgb: np.ndarray, envelope: np.ndarray, landmarker_task) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of ``portrait_rgb`` (H, W, 3 uint8) with the mouth opened by ``envelope[k]`` in
    [0, 1] (0: as in the portrait, 1: :data:`MAX_OPEN` inter-ocular distances) in frame ``k``."""
    faces = face_landmarks(np.ascontiguousarray(portrait_rgb), task_file(landmarker_task), MAX_FACES)
    if not faces:
        raise LandmarkError("MediaPipe found no face in the portrait given to talking_face_frames")
    geo = _MouthGeometry(largest_face(faces))
    env = np.clip(np.asarray(envelope, np.float64), 0.0, 1.0)
    return np.stack([_open_mouth(portrait_rgb, geo, float(e) * MAX_OPEN * geo.scale) for e in env])


def speech_envelope(wave: np.ndarray, rate: int, fps: float, num_frames: int) -> np.ndarray:
    """(N,) envelope in [0, 1] for :func:`talking_face_frames`: the speech activity of ``wave`` per frame."""
    return speech_activity(wave, rate, fps, num_frames)
