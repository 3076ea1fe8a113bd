"""Identity preservation: ArcFace cosine similarity of each frame's face to the reference portrait.

The convention of the talking-head papers (CSIM): the same SCRFD detector and ArcFace recogniser that give
Hallo its identity embedding (``face_analysis/models`` of the model folder) embed the reference and the
largest face of every frame; the score is the cosine of the two raw embeddings (1 = the same face).
Frames where the detector finds no face get NaN and are counted, never scored as 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..face.detection import NO_FACE_HINT, FaceModels, NoFaceError, select_face
from .curves import nan_mean, nan_min, slope_per_10s

logger = logging.getLogger(__name__)

MIN_FACE_AREA = 16.0  # square pixels: a smaller box (e.g. on a black frame) cannot be aligned, so it is no face


@dataclass
class IdentityResult:
    """Per-frame similarity (NaN: no face in that frame) and its summary."""

    similarity: np.ndarray  # (N,) float64
    mean: float
    minimum: float
    drift_per_10s: float  # least-squares slope of the similarity, per 10 s of video (negative: drifting away)
    frames_without_face: int


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm > 0 else 0.0


def face_embedding(rgb: np.ndarray, models: FaceModels) -> tuple[np.ndarray, np.ndarray] | None:
    """(raw ArcFace embedding, box) of the largest face in ``rgb``; None when there is no face."""
    faces = [f for f in models.detector.detect(np.ascontiguousarray(rgb)) if f.area >= MIN_FACE_AREA]
    if not faces:
        return None
    face = faces[select_face(faces)]
    if face.kps is None:
        raise ValueError("the face detector gives no key points; the ArcFace alignment needs them")
    return models.recognizer.embed(rgb, face.kps), face.bbox


def reference_face(rgb: np.ndarray, models: FaceModels, what: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """(embedding, box) of the reference portrait's largest face, or :class:`NoFaceError` naming ``what``."""
    found = face_embedding(rgb, models)
    if found is None:
        h, w = rgb.shape[:2]
        raise NoFaceError(f"{what}: {NO_FACE_HINT} (image {w}x{h})")
    return found


def identity_similarity(frames: np.ndarray, reference_embedding: np.ndarray, models: FaceModels,
                        fps: float) -> IdentityResult:
    """ArcFace cosine similarity of every frame (``(N, H, W, 3)`` uint8) to ``reference_embedding``."""
    sims = np.full(len(frames), np.nan)
    for i, frame in enumerate(frames):
        found = face_embedding(frame, models)
        if found is not None:
            sims[i] = cosine(found[0], reference_embedding)
    missing = int(np.isnan(sims).sum())
    if missing:
        logger.info("identity: no face in %d of %d frames (not scored)", missing, len(frames))
    return IdentityResult(similarity=sims, mean=nan_mean(sims), minimum=nan_min(sims),
                          drift_per_10s=slope_per_10s(sims, fps), frames_without_face=missing)
