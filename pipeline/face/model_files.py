"""Damaged face model files (SCRFD, ArcFace ONNX) reported by name, the same way in the CLI and the nodes."""

from __future__ import annotations

from pathlib import Path

from ..errors import HalloInputError
from ..paths import FACE_MODELS_SUBDIR, HF_REPO


def face_model_errors() -> tuple[type[BaseException], ...]:
    """Errors onnx and onnxruntime raise on a truncated or corrupt model file."""
    errors: list[type[BaseException]] = []
    try:
        from google.protobuf.message import DecodeError

        errors.append(DecodeError)
    except ImportError:  # pragma: no cover - protobuf comes with onnx and mediapipe
        pass
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort

        errors += [getattr(ort, n) for n in ("InvalidProtobuf", "Fail", "InvalidGraph", "NoSuchFile",
                                              "InvalidArgument") if hasattr(ort, n)]
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        pass
    try:
        from onnx.onnx_cpp2py_export.checker import ValidationError

        errors.append(ValidationError)
    except ImportError:  # pragma: no cover - the module moved in some onnx release
        pass
    return tuple(errors)


def damaged_face_model(path: Path, exc: BaseException) -> HalloInputError:
    """The one-line error for a face model file that exists but does not load."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return HalloInputError(
        f"face model {path} cannot be used (truncated or corrupt download? {type(exc).__name__}: {detail[:200]}); "
        f"download {FACE_MODELS_SUBDIR}/{Path(path).name} again from the Hugging Face repo '{HF_REPO}'")
