"""MediaPipe face landmarks (478 points, pixel coordinates of the original image).

Landmarks come from the MediaPipe **Tasks API** ``FaceLandmarker`` with the released
``<model_dir>/face_analysis/models/face_landmarker_v2_with_blendshapes.task`` (what Hallo uses). This
works on every MediaPipe release with the Tasks API, 1.x included (those bundle no face-mesh model).

Unlike the original (which crashes unless exactly one face is found) several faces are handled:
the one overlapping the detector's chosen face box is used; when MediaPipe misses that face on the
full image (small faces in group photos), it is re-run on a square crop around the box and the
points are mapped back (``used_crop`` in the result). Images larger than
:data:`MAX_LANDMARK_SIDE` are analysed on a downscaled copy and the points scaled back.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import HalloInputError, public_name
from ..file_checks import file_problem
from ..lazy_import import cv2
from ..native_logs import quiet_native_env, quiet_native_logs
from ..paths import FACE_MODELS_SUBDIR, HF_REPO, landmarker_task_file
from ..paths import LANDMARKER_FILE as TASK_FILE
from .crop import square_window
from .detection import require_model_file

logger = logging.getLogger(__name__)

TASKS_BACKEND = "tasks_face_landmarker"
NUM_LANDMARKS = 478
MAX_FACES = 8
MAX_LANDMARK_SIDE = 4096
#: Minimum IoU between a landmark set's box and the detector's face box to count as the same face.
MATCH_IOU = 0.2


@public_name
class LandmarkError(RuntimeError):
    """MediaPipe found no usable face or could not run."""


NO_LANDMARKS_MESSAGE = (
    "MediaPipe found no face in the image ({w}x{h}), so the lip/face masks cannot be made. Use a "
    "closer crop where one face fills 50–70 % of the frame, seen from the front (turned less than "
    "about 30°), well lit and not covered."
)


@dataclass
class LandmarkResult:
    """Landmarks of one face."""

    points: np.ndarray  # (478, 2) float64, x/y in original-image pixels
    backend: str  # TASKS_BACKEND
    num_faces: int  # faces MediaPipe found on the full image
    used_crop: bool  # True when the points come from a crop around the detector box


def _import_mediapipe():
    # MediaPipe's C++ side logs through glog/absl straight to descriptor 2: lowered here, captured around each
    # native call (quiet_native_logs), so that a clear error stays the only line on stderr.
    quiet_native_env()
    try:
        with quiet_native_logs("import mediapipe"):
            import mediapipe as mp
            from mediapipe.tasks.python import vision  # noqa: F401  (the Tasks API must be present)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LandmarkError(
            f"the 'mediapipe' package with its Tasks API is needed for the face masks ({exc}): "
            "pip install -U mediapipe"
        ) from exc
    return mp


def landmarker_task_path(model_dir: Path | str) -> Path:
    """``<model_dir>/face_analysis/models/face_landmarker_v2_with_blendshapes.task``, else the identical file
    shipped with the pack; :class:`~.detection.FaceModelMissingError` naming the folder's path and where to
    download it when neither is there, or :class:`HalloInputError` when the file is not a complete bundle (a
    ``.task`` is a zip archive: a truncated download fails here with its name, not deep in MediaPipe)."""
    task = landmarker_task_file(model_dir)
    if file_problem(task) is not None:  # missing, or there but unreadable: the true reason, naming the file
        task = require_model_file(model_dir, TASK_FILE)
    if not zipfile.is_zipfile(task):
        raise HalloInputError(f"{task} is not a complete MediaPipe model (truncated download?); download "
                              f"{FACE_MODELS_SUBDIR}/{TASK_FILE} again from '{HF_REPO}'")
    return task


# One MediaPipe FaceLandmarker is kept (a model cache, not a result cache): creating one loads and
# initialises the .task bundle, which costs far more than a detection. At most one entry (a new task file or
# face count closes and replaces it); the lock guards the dict and every detect call, since a landmarker may
# not be used from two threads at once.
_LANDMARKERS: dict[tuple, object] = {}
_LANDMARKER_LOCK = threading.Lock()


def _landmarker(task: Path, max_faces: int):
    """The kept Tasks ``FaceLandmarker`` (image mode) for ``task``; call under the lock."""
    st = task.stat()
    key = (str(task.resolve()), st.st_size, st.st_mtime_ns, max_faces)
    if key not in _LANDMARKERS:
        mp = _import_mediapipe()
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(task)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
        )
        with quiet_native_logs(f"MediaPipe loading {task.name}"):
            for _, old in _LANDMARKERS.values():
                old.close()
            _LANDMARKERS.clear()
            try:
                landmarker = vision.FaceLandmarker.create_from_options(options)
            except (RuntimeError, ValueError) as exc:  # a bundle whose models MediaPipe cannot read
                raise HalloInputError(
                    f"{task} is not a usable MediaPipe model ({' '.join(str(exc).split())}); download "
                    f"{FACE_MODELS_SUBDIR}/{TASK_FILE} again from '{HF_REPO}'") from exc
            _LANDMARKERS[key] = (mp, landmarker)
    return _LANDMARKERS[key]


def _run_tasks(rgb: np.ndarray, task: Path, max_faces: int) -> list[np.ndarray]:
    h, w = rgb.shape[:2]
    with _LANDMARKER_LOCK:
        mp, landmarker = _landmarker(task, max_faces)
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        with quiet_native_logs("MediaPipe face landmarker"):
            result = landmarker.detect(image)
    return [np.array([[p.x * w, p.y * h] for p in face], np.float64) for face in result.face_landmarks]


def face_landmarks(rgb: np.ndarray, task: Path, max_faces: int) -> list[np.ndarray]:
    """Every face's 478 landmarks (pixel x, y) found by the MediaPipe Tasks face landmarker in ``rgb``."""
    h, w = rgb.shape[:2]
    scale = 1.0
    if max(h, w) > MAX_LANDMARK_SIDE:
        scale = MAX_LANDMARK_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        logger.info("landmarks: %dx%d image analysed at %dx%d", w, h, rgb.shape[1], rgb.shape[0])
    try:
        faces = _run_tasks(rgb, task, max_faces)
    except (LandmarkError, HalloInputError):
        raise
    except Exception as exc:
        raise LandmarkError(f"MediaPipe ({TASKS_BACKEND}, {task.name}) failed on the image: {exc}") from exc
    faces = [f for f in faces if f.shape == (NUM_LANDMARKS, 2)] if faces else []
    if scale != 1.0:
        sx, sy = w / rgb.shape[1], h / rgb.shape[0]
        faces = [f * np.array([sx, sy]) for f in faces]
    return faces


def _box(points: np.ndarray) -> np.ndarray:
    return np.array([*points.min(0), *points.max(0)], np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two ``x1, y1, x2, y2`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _landmarks_in_crop(rgb: np.ndarray, bbox: np.ndarray, task: Path) -> np.ndarray | None:
    """Run MediaPipe on square crops around ``bbox`` (2x, then 3x the box side), map points back."""
    h, w = rgb.shape[:2]
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    side0 = max(bbox[2] - bbox[0], bbox[3] - bbox[1])
    for factor in (2.0, 3.0):
        side = max(1, int(round(side0 * factor)))
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        crop, scale = square_window(rgb, x0, y0, side, MAX_LANDMARK_SIDE)
        faces = face_landmarks(crop, task, MAX_FACES)
        faces = [f / scale + np.array([x0, y0], np.float64) for f in faces]
        scored = [(box_iou(_box(f), bbox), f) for f in faces]
        scored = [s for s in scored if s[0] >= MATCH_IOU]
        if scored:
            return max(scored, key=lambda s: s[0])[1]
    return None


def detect_landmarks(
    rgb: np.ndarray,
    model_dir: Path | str,
    *,
    face_bbox: np.ndarray | tuple[float, float, float, float] | None = None,
    max_faces: int = MAX_FACES,
) -> LandmarkResult:
    """478 MediaPipe landmarks of one face in ``rgb`` (H, W, 3 uint8).

    ``face_bbox`` (x1, y1, x2, y2): the face chosen by the detector; the landmark set that overlaps
    it most is returned (or one found on a crop around it). Without it, the largest face is used.
    Raises :class:`LandmarkError` when no face is found and
    :class:`~.detection.FaceModelMissingError` when the ``.task`` file is missing.
    """
    task = landmarker_task_path(model_dir)
    h, w = rgb.shape[:2]
    faces = face_landmarks(rgb, task, max_faces)
    logger.info("landmarks: MediaPipe found %d face(s)", len(faces))
    if face_bbox is not None:
        bbox = np.asarray(face_bbox, np.float64)[:4]
        scored = [(box_iou(_box(f), bbox), i) for i, f in enumerate(faces)]
        good = [s for s in scored if s[0] >= MATCH_IOU]
        if good:
            return LandmarkResult(faces[max(good)[1]], TASKS_BACKEND, len(faces), False)
        points = _landmarks_in_crop(rgb, bbox, task)
        if points is not None:
            logger.info("landmarks: found the selected face on a crop around its box")
            return LandmarkResult(points, TASKS_BACKEND, len(faces), True)
        if not faces:
            raise LandmarkError(NO_LANDMARKS_MESSAGE.format(w=w, h=h))
        raise LandmarkError(
            f"MediaPipe found {len(faces)} face(s) in the image ({w}x{h}) but none at the selected face "
            f"box {np.round(bbox).astype(int).tolist()}; pick another face or crop the image to that face"
        )
    if not faces:
        raise LandmarkError(NO_LANDMARKS_MESSAGE.format(w=w, h=h))
    areas = [float(np.prod(_box(f)[2:] - _box(f)[:2])) for f in faces]
    return LandmarkResult(faces[int(np.argmax(areas))], TASKS_BACKEND, len(faces), False)
