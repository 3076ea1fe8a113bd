"""What insightface (the face library the original calls) outputs on the tiny face models, kept as goldens.

insightface is not installed with the pack or its test extra: every release so far requires the GUI
``opencv-python`` build, which would sit beside the OpenCV build mediapipe brings in one ``cv2`` folder.
Its outputs on the cross-check cases are recorded in ``fixtures/insightface_goldens.npz`` (insightface 2.1,
onnxruntime CPU). Where insightface is importable, the test also runs it live and compares; to record the
goldens again, in a throwaway venv with the test extra plus ``pip install insightface``::

    HALLO_RECORD_INSIGHTFACE=1 python -m pytest -q tests/test_face_embedding.py -k insightface
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

GOLDENS = Path(__file__).resolve().parent / "fixtures" / "insightface_goldens.npz"


def insightface_outputs(files: Path, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Boxes with scores [N, 5], key points [N, 5, 2] and embeddings [N, 512] from insightface's model_zoo
    classes on ``files`` (the folder with scrfd_10g_bnkps.onnx and glintr100.onnx)."""
    from insightface.app.common import Face
    from insightface.model_zoo import get_model

    det = get_model(str(files / "scrfd_10g_bnkps.onnx"), providers=["CPUExecutionProvider"])
    rec = get_model(str(files / "glintr100.onnx"), providers=["CPUExecutionProvider"])
    assert type(det).__name__ == "SCRFD" and type(rec).__name__ == "ArcFaceONNX"
    det.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    rec.prepare(-1)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # insightface takes BGR
    boxes, kps = det.detect(bgr, max_num=0, metric="default")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-image deprecation inside insightface 2.1
        embeddings = [rec.get(bgr, Face(bbox=boxes[i, :4], kps=kps[i], det_score=boxes[i, 4]))
                      for i in range(len(boxes))]
    return {"boxes": np.asarray(boxes, np.float64), "kps": np.asarray(kps, np.float64),
            "embeddings": np.asarray(embeddings, np.float64)}


def load_goldens(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDENS) as data:
        return {key: data[f"{name}/{key}"] for key in ("boxes", "kps", "embeddings")}


def record_goldens(name: str, outputs: dict[str, np.ndarray]) -> None:
    """Add or replace ``name``'s arrays in the goldens file."""
    stored = dict(np.load(GOLDENS)) if GOLDENS.exists() else {}
    stored.update({f"{name}/{key}": value for key, value in outputs.items()})
    np.savez_compressed(GOLDENS, **stored)
