"""Face analysis for Hallo: identity embedding, landmarks and masks of one portrait, cached.

``analyze_face`` does what ``ImageProcessor.preprocess`` of the original does with the face
(steps 2.1-2.4): SCRFD + ArcFace on the original-resolution image (largest face, raw embedding),
MediaPipe landmarks, lip/face/full masks at the latent pyramid sizes and the FaceLocator box.
With ``allow_no_face`` a missing face is not an error: the original's zero embedding, and masks made
from the detector's box (or a centred box) where MediaPipe finds no landmarks; ``warning`` says so.
Results are not kept here: ComfyUI caches node outputs, so a graph re-run with the same portrait and
settings does not call this again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..paths import DETECTOR_FILE
from .detection import (
    NO_FACE_MESSAGE,
    FaceModelMissingError,
    FaceOrder,
    NoFaceError,
    load_face_models,
    order_faces,
    select_face,
)
from .landmarks import TASKS_BACKEND, LandmarkError, LandmarkResult, detect_landmarks, landmarker_task_path
from .masks import HalloMasks, build_box_masks, build_masks, centre_face_box, level_shapes

__all__ = [
    "EMBEDDING_DIM",
    "FaceAnalysisResult",
    "FaceModelMissingError",
    "HalloMasks",
    "LandmarkError",
    "NoFaceError",
    "analyze_face",
]

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 512


@dataclass
class FaceAnalysisResult:
    """Everything Hallo needs from the reference portrait. Treat as read-only (ComfyUI shares a node's
    output between the nodes it feeds)."""

    embedding: np.ndarray  # (512,) float32, raw ArcFace (not normalised); zeros in the no-face fallback
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    num_faces: int  # faces the detector found
    face_index: int  # index of the chosen face in the detector's output order (-1: fallback)
    landmarks: np.ndarray  # (478, 2) float64, image pixels; empty (0, 2) when the masks come from a box
    landmark_model: str  # "tasks_face_landmarker", or "box" in the allow_no_face mask fallback
    masks: HalloMasks
    image_size: tuple[int, int] = (0, 0)  # (H, W)
    det_score: float = 0.0
    landmarks_from_crop: bool = False
    face_rank: int = -1  # the chosen face counted in face_order (what the user's face_index means)
    warning: str = ""  # non-empty when a fallback was used (allow_no_face)


def _validate_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"analyze_face expects an RGB uint8 array (H, W, 3), got {arr.dtype} {arr.shape}; convert "
            "ComfyUI images with images.comfy_image_to_rgb first"
        )
    return np.ascontiguousarray(arr)


BOX_MASKS = "box"
NO_FACE_WARNING = ("no face was detected: using a zero identity embedding (the original Hallo fallback), so the "
                   "video will not keep this person's identity")
NO_LANDMARKS_WARNING = ("MediaPipe found no face landmarks: the lip/face masks were made from the {what} and are "
                        "approximate; check the mask preview, or connect hand-made masks")


@dataclass
class _Detection:
    embedding: np.ndarray
    bbox: tuple[float, float, float, float] | None  # None: no face box (fallback)
    num_faces: int
    index: int
    rank: int
    score: float


def _detect(rgb: np.ndarray, model_dir: Path, device, face_index, face_order, face_point,
            allow_no_face: bool) -> _Detection:
    """Detector + ArcFace on the chosen face; the zero-embedding fallback when allowed."""
    h, w = rgb.shape[:2]
    models = load_face_models(model_dir, device)
    faces = models.detector.detect(rgb)
    logger.info("face analysis: detector found %d face(s) in a %dx%d image", len(faces), w, h)
    if not faces:
        if not allow_no_face:
            raise NoFaceError(f"{NO_FACE_MESSAGE} (image {w}x{h})")
        return _Detection(np.zeros(EMBEDDING_DIM, np.float32), None, 0, -1, -1, 0.0)
    idx = select_face(faces, face_index=face_index, face_order=face_order, face_point=face_point, image_size=(h, w))
    face = faces[idx]
    if face.kps is None:
        raise ValueError(f"{DETECTOR_FILE} gives no key points; the ArcFace alignment needs them")
    embedding = models.recognizer.embed(rgb, face.kps)
    rank = order_faces(faces, face_order).index(idx)
    return _Detection(np.asarray(embedding, np.float32).reshape(-1), tuple(float(v) for v in face.bbox),
                      len(faces), idx, rank, float(face.score))


def _landmarks_or_box(rgb: np.ndarray, model_dir: Path, bbox, allow_no_face: bool
                      ) -> tuple[LandmarkResult | None, tuple[float, float, float, float] | None]:
    """MediaPipe landmarks of the chosen face; with ``allow_no_face``, ``(None, box)`` when it finds
    none: the detector's box, or a centred box when there is none."""
    try:
        return detect_landmarks(rgb, model_dir, face_bbox=None if bbox is None else np.array(bbox)), None
    except LandmarkError:
        if not allow_no_face:
            raise
        logger.info("face analysis: no landmarks", exc_info=True)
        return None, bbox if bbox is not None else centre_face_box(rgb.shape[:2])


def analyze_face(
    rgb: np.ndarray,
    model_dir: Path | str,
    *,
    output_size: tuple[int, int] = (512, 512),
    face_expand_ratio: float = 1.2,
    face_index: int | None = None,
    face_order: FaceOrder = "largest",
    face_point: tuple[float, float] | None = None,
    allow_no_face: bool = False,
    device: str | object | None = "cpu",
) -> FaceAnalysisResult:
    """Analyse the face in ``rgb`` (H, W, 3 uint8, original resolution).

    Args:
        model_dir: the ``hallo`` model folder (holds ``face_analysis/models/``).
        output_size: (H, W) of the video; multiples of 64. Sets the mask pyramid and locator size.
        face_expand_ratio: face box expansion (original default 1.2).
        face_index: which face in group photos, counted in ``face_order`` (``"largest"`` first, the
            default and the original's choice, or ``"left_to_right"``); ``None`` = largest.
        face_point: (x, y) in 0..1 of the image: choose the face at/nearest that point instead.
        allow_no_face: continue instead of raising when no face is found: with a zero identity
            embedding when the detector finds none (the original's fallback), and with masks made
            from the detector's box (or a centred box) when MediaPipe finds no landmarks. The
            result's ``warning`` then says what was done.
        device: ``"cpu"`` or ``"cuda"`` for the ONNX models (MediaPipe always runs on the CPU).

    Raises:
        FaceModelMissingError, NoFaceError, LandmarkError, ValueError (bad input or face_index).
    """
    rgb = _validate_rgb(rgb)
    model_dir = Path(model_dir)
    level_shapes(output_size)  # validate early
    landmarker_task_path(model_dir)  # a missing MediaPipe model is named before the detector runs
    return _analyze(rgb, model_dir, output_size, face_expand_ratio, face_index, face_order, face_point,
                    allow_no_face, device)


def _analyze(rgb, model_dir, output_size, face_expand_ratio, face_index, face_order, face_point,
             allow_no_face, device) -> FaceAnalysisResult:
    h, w = rgb.shape[:2]
    det = _detect(rgb, model_dir, device, face_index, face_order, face_point, allow_no_face)
    warnings = [] if det.bbox is not None else [NO_FACE_WARNING]
    lm, mask_box = _landmarks_or_box(rgb, model_dir, det.bbox, allow_no_face)
    if lm is not None:
        logger.info("face analysis: landmarks from MediaPipe%s", " (crop around the face)" if lm.used_crop else "")
        masks = build_masks(lm.points, (h, w), output_size, face_expand_ratio)
    else:
        what = "detector's face box" if det.bbox is not None else "image centre (no face box either)"
        warnings.append(NO_LANDMARKS_WARNING.format(what=what))
        masks = build_box_masks(mask_box, (h, w), output_size, face_expand_ratio)
    warning = "; ".join(warnings)
    if warning:
        logger.warning("face analysis: %s", warning)
    return FaceAnalysisResult(
        embedding=det.embedding,
        bbox=det.bbox if det.bbox is not None else (0.0, 0.0, float(w), float(h)),
        num_faces=det.num_faces,
        face_index=det.index,
        landmarks=lm.points if lm is not None else np.zeros((0, 2), np.float64),
        landmark_model=TASKS_BACKEND if lm is not None else BOX_MASKS,
        masks=masks,
        image_size=(h, w),
        det_score=det.score,
        landmarks_from_crop=bool(lm is not None and lm.used_crop),
        face_rank=det.rank,
        warning=warning,
    )
