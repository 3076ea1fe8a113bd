"""Face analysis for Hallo: identity embedding, landmarks and masks of one portrait, cached.

``analyze_face`` does what ``ImageProcessor.preprocess`` of the original does with the face
(steps 2.1-2.4): SCRFD + ArcFace on the original-resolution image (largest face, raw embedding),
MediaPipe landmarks, lip/face/full masks at the latent pyramid sizes and the FaceLocator box.
Results are kept in an in-memory LRU keyed by a hash of the image bytes and all settings, so
re-running a graph with the same portrait costs nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .face_embedding import (
    DETECTOR_FILE,
    NO_FACE_MESSAGE,
    RECOGNIZER_FILE,
    FaceModelMissingError,
    FaceOrder,
    NoFaceError,
    face_models_dir,
    load_face_models,
    select_face,
)
from .face_landmarks import LandmarkError, detect_landmarks, landmark_backend
from .face_masks import HalloMasks, build_masks, level_shapes

__all__ = [
    "EMBEDDING_DIM",
    "FaceAnalysisResult",
    "FaceModelMissingError",
    "HalloMasks",
    "LandmarkError",
    "NoFaceError",
    "analyze_face",
    "clear_face_cache",
    "face_cache_info",
]

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 512
CACHE_SIZE = 16


@dataclass
class FaceAnalysisResult:
    """Everything Hallo needs from the reference portrait. Treat as read-only (it is cached)."""

    embedding: np.ndarray  # (512,) float32, raw ArcFace (not normalised); zeros in the no-face fallback
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    num_faces: int  # faces the detector found
    face_index: int  # index of the chosen face in the detector's output order (-1: fallback)
    landmarks: np.ndarray  # (478, 2) float64, image pixels
    landmark_model: str  # "tasks_face_landmarker" or "bundled_face_mesh"
    masks: HalloMasks
    image_size: tuple[int, int] = (0, 0)  # (H, W)
    det_score: float = 0.0
    landmarks_from_crop: bool = False


_CACHE: OrderedDict[str, FaceAnalysisResult] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_STATS = {"hits": 0, "misses": 0}


def clear_face_cache() -> None:
    """Drop all cached results."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _STATS.update(hits=0, misses=0)


def face_cache_info() -> dict[str, int]:
    """``{"hits", "misses", "size"}`` of the result cache."""
    with _CACHE_LOCK:
        return {**_STATS, "size": len(_CACHE)}


def _file_sig(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}:absent"
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _cache_key(rgb: np.ndarray, model_dir: Path, settings: tuple) -> str:
    h = hashlib.sha256()
    h.update(repr((rgb.shape, str(rgb.dtype))).encode())
    h.update(np.ascontiguousarray(rgb).data)
    models = face_models_dir(model_dir)
    backend, task = landmark_backend(model_dir)
    files = (DETECTOR_FILE, RECOGNIZER_FILE)
    h.update(repr((settings, [_file_sig(models / f) for f in files], backend,
                   _file_sig(task) if task else None)).encode())
    return h.hexdigest()


def _validate_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"analyze_face expects an RGB uint8 array (H, W, 3), got {arr.dtype} {arr.shape}; convert "
            "ComfyUI images with image_prep.comfy_image_to_rgb first"
        )
    return np.ascontiguousarray(arr)


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
        allow_no_face: when the detector finds no face, continue with the original's fallback
            (zero embedding, whole image as box) instead of raising :class:`NoFaceError`. MediaPipe
            must still find a face for the masks.
        device: ``"cpu"`` or ``"cuda"`` for the ONNX models (MediaPipe always runs on the CPU).

    Raises:
        FaceModelMissingError, NoFaceError, LandmarkError, ValueError (bad input or face_index).
    """
    rgb = _validate_rgb(rgb)
    model_dir = Path(model_dir)
    level_shapes(output_size)  # validate early
    settings = (tuple(int(v) for v in output_size), float(face_expand_ratio), face_index, face_order,
                None if face_point is None else tuple(float(v) for v in face_point), bool(allow_no_face))
    key = _cache_key(rgb, model_dir, settings)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            _STATS["hits"] += 1
            logger.debug("face analysis: cache hit")
            return hit
        _STATS["misses"] += 1

    h, w = rgb.shape[:2]
    models = load_face_models(model_dir, device)
    faces = models.detector.detect(rgb)
    logger.info("face analysis: detector found %d face(s) in a %dx%d image", len(faces), w, h)
    if faces:
        idx = select_face(faces, face_index=face_index, face_order=face_order, face_point=face_point,
                          image_size=(h, w))
        face = faces[idx]
        if face.kps is None:
            raise ValueError(f"{DETECTOR_FILE} gives no key points; the ArcFace alignment needs them")
        embedding = models.recognizer.embed(rgb, face.kps)
        bbox = tuple(float(v) for v in face.bbox)
        det_score = face.score
    elif allow_no_face:
        logger.warning("face analysis: no face detected; using a zero identity embedding and the whole "
                       "image as face box (original Hallo fallback)")
        idx, det_score = -1, 0.0
        embedding = np.zeros(EMBEDDING_DIM, np.float32)
        bbox = (0.0, 0.0, float(w), float(h))
    else:
        raise NoFaceError(f"{NO_FACE_MESSAGE} (image {w}x{h})")

    lm = detect_landmarks(rgb, model_dir, face_bbox=np.array(bbox) if faces else None)
    logger.info("face analysis: landmarks from %s%s", lm.backend, " (crop around the face)" if lm.used_crop else "")
    masks = build_masks(lm.points, (h, w), output_size, face_expand_ratio)
    result = FaceAnalysisResult(
        embedding=np.asarray(embedding, np.float32).reshape(-1),
        bbox=bbox,
        num_faces=len(faces),
        face_index=idx,
        landmarks=lm.points,
        landmark_model=lm.backend,
        masks=masks,
        image_size=(h, w),
        det_score=float(det_score),
        landmarks_from_crop=lm.used_crop,
    )
    with _CACHE_LOCK:
        _CACHE[key] = result
        _CACHE.move_to_end(key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result
