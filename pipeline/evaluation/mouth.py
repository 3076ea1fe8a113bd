"""How far the mouth is open in each video frame, from MediaPipe Face Landmarker points.

The measure is the mean gap between the inner lips at three points across the mouth (the centre and
half-way to each corner), divided by the distance between the outer eye corners (the inter-ocular
distance), so it does not depend on the face's size in the frame::

    opening = mean(|P82 - P87|, |P13 - P14|, |P312 - P317|) / |P33 - P263|

(MediaPipe face-mesh indices: 82/13/312 upper inner lip, 87/14/317 lower inner lip, 33/263 outer eye
corners). About 0 for a closed mouth, ~0.3-0.5 for a wide-open one. It is a signal, not a score: the
lip-sync measures compare it with the sound track. Frames are analysed one by one (image mode, so a
frame's value never depends on its neighbours) with the kept landmarker of the face stage; the largest
face of a frame is measured, and a frame without a face gives NaN.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from ..errors import HalloInputError
from ..face.landmarks import MAX_FACES, face_landmarks

logger = logging.getLogger(__name__)

UPPER_INNER_LIP = (82, 13, 312)
LOWER_INNER_LIP = (87, 14, 317)
OUTER_EYE_CORNERS = (33, 263)


def task_file(landmarker_task: str | Path) -> Path:
    """The ``.task`` bundle, or :class:`HalloInputError` naming it when it is missing or not a complete bundle."""
    task = Path(landmarker_task)
    if not task.is_file():
        raise HalloInputError(f"MediaPipe model {task} not found: give the path of face_landmarker_v2_with_"
                              "blendshapes.task (in face_analysis/models/ of the Hallo download)")
    if not zipfile.is_zipfile(task):
        raise HalloInputError(f"{task} is not a complete MediaPipe model (truncated download?); download it again")
    return task


def as_uint8_frames(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB from uint8 or float 0..1 frames; :class:`HalloInputError` for other shapes."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise HalloInputError(f"frames must be (N, H, W, 3) RGB, got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def opening_from_points(points: np.ndarray) -> float:
    """The mouth opening (see the module docstring) of one face's (478, 2) landmark points."""
    gaps = np.linalg.norm(points[list(UPPER_INNER_LIP)] - points[list(LOWER_INNER_LIP)], axis=1)
    eyes = float(np.linalg.norm(points[OUTER_EYE_CORNERS[0]] - points[OUTER_EYE_CORNERS[1]]))
    return float(gaps.mean() / eyes) if eyes > 0 else float("nan")


def largest_face(faces: list[np.ndarray]) -> np.ndarray:
    areas = [float(np.prod(f.max(0) - f.min(0))) for f in faces]
    return faces[int(np.argmax(areas))]


def mouth_opening(frames: np.ndarray, landmarker_task: str | Path) -> np.ndarray:
    """(N,) mouth opening per frame: inner-lip gap / inter-ocular distance; NaN where no face is found.

    ``frames``: (N, H, W, 3) RGB, uint8 or float 0..1. ``landmarker_task``: the MediaPipe
    ``face_landmarker_v2_with_blendshapes.task``. Higher = mouth more open (neither better nor worse by
    itself; see :mod:`.lipsync` for the scores built on it).
    """
    task = task_file(landmarker_task)
    frames = as_uint8_frames(frames)
    out = np.full(len(frames), np.nan)
    for k, frame in enumerate(frames):
        faces = face_landmarks(frame, task, MAX_FACES)
        if faces:
            out[k] = opening_from_points(largest_face(faces))
    missing = int(np.isnan(out).sum())
    if missing:
        logger.info("mouth opening: no face in %d of %d frames", missing, len(frames))
    return out
