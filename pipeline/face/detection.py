"""Face detection (SCRFD) and ArcFace embedding with onnxruntime, without the insightface package.

This re-implements what Hallo gets from insightface 0.7.3
(``FaceAnalysis(name="", root=face_analysis).prepare(ctx_id, det_size=(640, 640))`` then
``face["embedding"]`` of the largest face) over the released antelopev2 files in
``<model_dir>/face_analysis/models/``:

* detector ``scrfd_10g_bnkps.onnx``: letterbox (aspect-preserving ``cv2.resize`` into the top-left
  of a black 640x640 canvas), input ``(x - 127.5) / 128`` RGB, 9 outputs (scores, box distances,
  5 key points for strides 8/16/32, 2 anchors per location), score threshold 0.5, NMS IoU 0.4,
  boxes and key points scaled back to the original image.
* recogniser ``glintr100.onnx``: 5-point similarity (Umeyama, least squares) alignment onto the
  standard ArcFace 112x112 template, ``cv2.warpAffine`` bilinear with a black border, input
  ``(x - 127.5) / 127.5`` RGB (``0 / 1`` for MXNet-converted graphs, detected the way insightface
  does), output the raw, un-normalised 512-d vector.

insightface converts RGB to BGR and its blobs swap back to RGB; all steps are per channel, so this
module works on RGB directly with identical numbers. The tests check it against insightface's own
``model_zoo`` SCRFD / ArcFaceONNX classes on the same files (same boxes and points, embeddings within
1e-4); the package itself is not used because it pulls in the GUI ``opencv-python`` (a third OpenCV
build next to ours and MediaPipe's, all writing the same ``cv2`` folder), scipy, scikit-image and
requests, and its alignment calls a scikit-image API that is deprecated for removal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import public_name
from ..lazy_import import cv2
from ..native_logs import quiet_native_logs
from ..paths import DETECTOR_FILE, RECOGNIZER_FILE, ModelFileMissing, face_model_file

logger = logging.getLogger(__name__)

DET_SIZE = (640, 640)
DET_THRESH = 0.5
NMS_THRESH = 0.4

#: ArcFace 112x112 five-point template (left eye, right eye, nose, left and right mouth corner).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

FaceOrder = Literal["largest", "left_to_right"]


@public_name
class FaceModelMissingError(ModelFileMissing):
    """A face-analysis model file is not where it must be."""


@public_name
class NoFaceError(ValueError):
    """The detector found no face in the image."""


NO_FACE_HINT = (
    "no face was found in the image; use a closer crop where the face fills 50–70 % of the frame, "
    "seen from the front (turned less than about 30°), well lit and not covered."
)
NO_FACE_MESSAGE = (
    f"{NO_FACE_HINT} For stylised or non-photographic faces the detector may fail: then enable "
    "'allow_no_face' to continue with the original Hallo fallback (zero identity embedding; masks from "
    "MediaPipe, or from the image centre)."
)


def require_model_file(model_dir: Path | str, filename: str) -> Path:
    """Path of a released face model file, or :class:`FaceModelMissingError` naming it."""
    return face_model_file(model_dir, filename, error=FaceModelMissingError)


def _providers(device: str | object | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    dev = str(device or "cpu")
    if dev.startswith("cuda"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        logger.info("onnxruntime has no CUDA provider here; face models run on the CPU")
    return ["CPUExecutionProvider"]


def _session(path: Path, device: str | object | None):
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # errors only, for the whole process (the session's own level below)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    with quiet_native_logs(f"onnxruntime loading {path.name}"):
        return ort.InferenceSession(str(path), sess_options=opts, providers=_providers(device))


@dataclass
class DetectedFace:
    """One detection in original-image pixels."""

    bbox: np.ndarray  # (4,) float32 x1, y1, x2, y2
    score: float
    kps: np.ndarray | None  # (5, 2) float32 or None

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


def nms(dets: np.ndarray, thresh: float = NMS_THRESH) -> list[int]:
    """Greedy NMS over ``(N, 5)`` rows ``x1, y1, x2, y2, score`` (insightface's +1 pixel areas)."""
    x1, y1, x2, y2, scores = (dets[:, i] for i in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = iw * ih
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thresh]
    return keep


class FaceDetector:
    """SCRFD detector (``scrfd_10g_bnkps.onnx`` layout: 9 outputs, strides 8/16/32, 2 anchors)."""

    def __init__(self, path: Path, device: str | object | None = "cpu", det_size: tuple[int, int] = DET_SIZE,
                 det_thresh: float = DET_THRESH, nms_thresh: float = NMS_THRESH) -> None:
        self.path = Path(path)
        self.session = _session(self.path, device)
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        n = len(outputs)
        if n not in (6, 9, 10, 15):
            raise ValueError(
                f"{self.path} does not look like an SCRFD detector: it has {n} outputs, expected 9 "
                f"(scores, boxes and key points for strides 8, 16, 32)"
            )
        self.fmc = 3 if n in (6, 9) else 5
        self.strides = [8, 16, 32] if self.fmc == 3 else [8, 16, 32, 64, 128]
        self.num_anchors = 2 if self.fmc == 3 else 1
        self.use_kps = n in (9, 15)
        self.batched = len(outputs[0].shape) == 3
        self.det_size = (int(det_size[0]), int(det_size[1]))  # (width, height)
        self.det_thresh = float(det_thresh)
        self.nms_thresh = float(nms_thresh)
        self._centers: dict[tuple[int, int, int], np.ndarray] = {}

    def _anchor_centers(self, height: int, width: int, stride: int) -> np.ndarray:
        key = (height, width, stride)
        if key not in self._centers:
            ys, xs = np.mgrid[:height, :width]
            centers = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
            if self.num_anchors > 1:
                centers = np.repeat(centers, self.num_anchors, axis=0)
            self._centers[key] = centers
        return self._centers[key]

    def letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """Resize keeping the aspect into the top-left of a black ``det_size`` canvas."""
        dw, dh = self.det_size
        h, w = rgb.shape[:2]
        if h / w > dh / dw:
            new_h = dh
            new_w = int(new_h / (h / w))
        else:
            new_w = dw
            new_h = int(new_w * (h / w))
        new_w, new_h = max(new_w, 1), max(new_h, 1)
        canvas = np.zeros((dh, dw, 3), np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h))
        return canvas, new_h / h

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """All faces, in NMS order (highest score first), in original-image pixels."""
        canvas, scale = self.letterbox(rgb)
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(blob)})
        ih, iw = blob.shape[2], blob.shape[3]
        scores_l, boxes_l, kps_l = [], [], []
        for i, stride in enumerate(self.strides):
            pick = (lambda a: a[0]) if self.batched else (lambda a: a)
            scores = pick(outs[i]).reshape(-1)
            dist = pick(outs[i + self.fmc]).reshape(-1, 4) * stride
            centers = self._anchor_centers(ih // stride, iw // stride, stride)
            if centers.shape[0] != scores.shape[0]:
                raise ValueError(
                    f"{self.path}: stride {stride} output has {scores.shape[0]} anchors, expected "
                    f"{centers.shape[0]} for a {iw}x{ih} input"
                )
            pos = np.where(scores >= self.det_thresh)[0]
            c = centers[pos]
            d = dist[pos]
            boxes_l.append(np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1],
                                     c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=-1))
            scores_l.append(scores[pos])
            if self.use_kps:
                k = pick(outs[i + 2 * self.fmc]).reshape(-1, 10)[pos] * stride
                kps_l.append(k.reshape(-1, 5, 2) + c[:, None, :])
        scores = np.concatenate(scores_l)
        if scores.size == 0:
            return []
        order = np.argsort(-scores, kind="stable")
        boxes = np.concatenate(boxes_l)[order] / scale
        dets = np.hstack([boxes, scores[order, None]]).astype(np.float32)
        kpss = (np.concatenate(kps_l)[order] / scale).astype(np.float32) if self.use_kps else None
        keep = nms(dets, self.nms_thresh)
        return [DetectedFace(dets[i, :4].copy(), float(dets[i, 4]), None if kpss is None else kpss[i])
                for i in keep]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``
    (Umeyama 1991), as a 2x3 matrix."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n, dim = src.shape
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n
    sign = np.ones(dim)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("cannot align a face whose key points all coincide")
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        rot = u @ vt
    elif rank == dim - 1:
        d = sign.copy()
        d[-1] = -1
        rot = u @ np.diag(d) @ vt
    else:
        rot = u @ np.diag(sign) @ vt
    var = (sc**2).sum() / n
    scale = float(s @ sign) / var
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * (rot @ mu_s)
    return m


def align_face(rgb: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp the face onto the ArcFace template (``size`` a multiple of 112 or 128, like insightface)."""
    if size % 112 == 0:
        dst = ARCFACE_TEMPLATE * (size / 112.0)
    elif size % 128 == 0:
        dst = ARCFACE_TEMPLATE * (size / 128.0)
        dst[:, 0] += 8.0 * size / 128.0
    else:
        raise ValueError(f"ArcFace input size must be a multiple of 112 or 128, got {size}")
    m = similarity_transform(np.asarray(kps, np.float32).reshape(5, 2), dst)
    return cv2.warpAffine(rgb, m, (size, size), borderValue=0.0)


class ArcFaceRecognizer:
    """ArcFace recogniser (``glintr100.onnx``: input ``[1,3,112,112]`` -> ``[1,512]``)."""

    def __init__(self, path: Path, device: str | object | None = "cpu") -> None:
        self.path = Path(path)
        # insightface's rule: graphs converted from MXNet start with Sub/Mul nodes that normalise
        # the input themselves; those get raw 0..255 pixels, the others (x - 127.5) / 127.5.
        import onnx

        graph = onnx.load(str(self.path), load_external_data=False).graph
        names = [node.name for node in graph.node[:8]]
        mxnet = any(n.startswith(("Sub", "_minus")) for n in names) and any(
            n.startswith(("Mul", "_mul")) for n in names)
        self.input_mean, self.input_std = (0.0, 1.0) if mxnet else (127.5, 127.5)
        self.session = _session(self.path, device)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) != 4 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise ValueError(f"{self.path}: expected an ArcFace input [1,3,112,112], got {shape}")
        self.input_size = int(shape[2])
        outs = self.session.get_outputs()
        if len(outs) != 1:
            raise ValueError(f"{self.path}: expected one embedding output, got {len(outs)}")
        self.output_name = outs[0].name

    def embed_aligned(self, aligned_rgb: np.ndarray) -> np.ndarray:
        """Raw embedding of an aligned ``(S, S, 3)`` RGB uint8 crop."""
        blob = ((aligned_rgb.astype(np.float32) - self.input_mean) / self.input_std).transpose(2, 0, 1)[None]
        out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(blob)})[0]
        return np.asarray(out, np.float32).reshape(-1)

    def embed(self, rgb: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Raw (un-normalised) float32 embedding of the face with key points ``kps``."""
        return self.embed_aligned(align_face(rgb, kps, self.input_size))


@dataclass
class FaceModels:
    """The detector and recogniser of one model folder."""

    detector: FaceDetector
    recognizer: ArcFaceRecognizer
    key: tuple = field(default=())


# The onnxruntime sessions of one model folder are kept (a model cache, not a result cache): creating them
# reads and optimises the graphs (glintr100.onnx alone is about 250 MB), seconds next to a detection. At most
# one entry (another folder, file or device replaces it); the lock makes concurrent first calls build the
# sessions once.
_MODELS: dict[tuple, FaceModels] = {}
_MODELS_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _load(cls: type, path: Path, device: str | object | None):
    """``cls(path, device)``; a file onnx or onnxruntime cannot read is reported by name."""
    from .model_files import damaged_face_model, face_model_errors

    try:
        return cls(path, device)
    except face_model_errors() as exc:
        raise damaged_face_model(path, exc) from exc


def load_face_models(model_dir: Path | str, device: str | object | None = "cpu") -> FaceModels:
    """Load (and keep) the detector and recogniser from ``<model_dir>/face_analysis/models``."""
    det_path = require_model_file(model_dir, DETECTOR_FILE)
    rec_path = require_model_file(model_dir, RECOGNIZER_FILE)
    key = (_file_key(det_path), _file_key(rec_path), str(device or "cpu"))
    with _MODELS_LOCK:
        models = _MODELS.get(key)
        if models is None:
            logger.info("loading face detector %s and recogniser %s", det_path, rec_path)
            models = FaceModels(_load(FaceDetector, det_path, device), _load(ArcFaceRecognizer, rec_path, device),
                                key)
            _MODELS.clear()
            _MODELS[key] = models
    return models


def order_faces(faces: Sequence[DetectedFace], order: FaceOrder = "largest") -> list[int]:
    """Indices of ``faces`` sorted by ``order``: ``"largest"`` (box area, descending, the original's
    choice) or ``"left_to_right"`` (box centre x, ascending)."""
    if order == "largest":
        return sorted(range(len(faces)), key=lambda i: -faces[i].area)
    if order == "left_to_right":
        return sorted(range(len(faces)), key=lambda i: float(faces[i].bbox[0] + faces[i].bbox[2]))
    raise ValueError(f"face_order must be 'largest' or 'left_to_right', got {order!r}")


def select_face(
    faces: Sequence[DetectedFace],
    *,
    face_index: int | None = None,
    face_order: FaceOrder = "largest",
    face_point: tuple[float, float] | None = None,
    image_size: tuple[int, int] | None = None,
) -> int:
    """Pick one face; returns its index into ``faces``.

    * ``face_point`` (x, y in 0..1 of the image, needs ``image_size`` = (H, W)): the face whose box
      contains the point (the smallest such box), else the face with the nearest box centre.
    * else ``face_index`` counts in ``face_order`` (0 = largest, or leftmost); negative counts from
      the end. ``None`` = the largest face, like the original.
    """
    if not faces:
        raise NoFaceError(NO_FACE_MESSAGE)
    if face_point is not None:
        if image_size is None:
            raise ValueError("face_point needs the image size")
        px, py = float(face_point[0]) * image_size[1], float(face_point[1]) * image_size[0]
        inside = [i for i, f in enumerate(faces) if f.bbox[0] <= px <= f.bbox[2] and f.bbox[1] <= py <= f.bbox[3]]
        if inside:
            return min(inside, key=lambda i: faces[i].area)
        centres = [((f.bbox[0] + f.bbox[2]) / 2 - px) ** 2 + ((f.bbox[1] + f.bbox[3]) / 2 - py) ** 2 for f in faces]
        return int(np.argmin(centres))
    ranked = order_faces(faces, face_order)
    if face_index is None:
        return ranked[0]
    if not -len(faces) <= face_index < len(faces):
        how = "by size, largest first" if face_order == "largest" else "from left to right"
        raise ValueError(
            f"face_index {face_index} is out of range: {len(faces)} face(s) were found "
            f"(valid: 0..{len(faces) - 1}, counted {how})"
        )
    return ranked[face_index]
