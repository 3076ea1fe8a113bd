"""``evaluate``: every built-in measure of one video in one JSON-able report; ``compare`` lines several up.

Each measure has a value, a unit and a direction ("higher is better" / "lower is better" / "closer to 0 is
better"); the per-frame curves behind them are kept for the plot. Measures that cannot be taken (no audio,
no MediaPipe model, no SyncNet checkpoint, a video shorter than one clip) are absent, and ``notes`` says why.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HalloInputError
from .curves import none_if_nan

logger = logging.getLogger(__name__)

SCHEMA = "hallo-eval/1"
HIGHER = "higher is better"
LOWER = "lower is better"
NEAR_ZERO = "closer to 0 is better"


@dataclass
class Measure:
    """One number of the report."""

    value: float | None
    unit: str
    direction: str
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": none_if_nan(self.value) if self.value is not None else None, "unit": self.unit,
                "direction": self.direction, "label": self.label}


@dataclass
class EvalReport:
    """The measures of one video, their per-frame curves (NaN / None: no value in that frame) and notes."""

    name: str
    num_frames: int
    fps: float
    clip_length: int
    boundaries: list[int]
    measures: dict[str, Measure] = field(default_factory=dict)
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, value: float | None, unit: str, direction: str, label: str) -> None:
        self.measures[key] = Measure(None if value is None or not math.isfinite(value) else float(value),
                                     unit, direction, label)

    def value(self, key: str) -> float | None:
        m = self.measures.get(key)
        return None if m is None else m.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "name": self.name, "num_frames": self.num_frames, "fps": self.fps,
            "clip_length": self.clip_length, "boundaries": list(self.boundaries),
            "measures": {k: m.to_dict() for k, m in self.measures.items()},
            "curves": {k: [none_if_nan(v) for v in np.asarray(c, np.float64)] for k, c in self.curves.items()},
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {data.get('schema')!r})")
        report = cls(name=data["name"], num_frames=int(data["num_frames"]), fps=float(data["fps"]),
                     clip_length=int(data["clip_length"]), boundaries=list(data["boundaries"]),
                     notes=list(data.get("notes", [])))
        for key, m in data["measures"].items():
            report.measures[key] = Measure(m["value"], m["unit"], m["direction"], m["label"])
        for key, c in data["curves"].items():
            report.curves[key] = np.array([np.nan if v is None else v for v in c], np.float64)
        return report


def _format(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if unit == "frames":
        return f"{value:.0f}"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"


def compare(reports: list[EvalReport]) -> list[list[str]]:
    """A table (first row: headers) with one row per measure and one column per report."""
    keys: list[str] = []
    for report in reports:
        keys += [k for k in report.measures if k not in keys]
    rows = [["measure", "unit", "better"] + [r.name for r in reports]]
    for key in keys:
        first = next(r.measures[key] for r in reports if key in r.measures)
        better = {HIGHER: "higher", LOWER: "lower", NEAR_ZERO: "near 0"}.get(first.direction, first.direction)
        rows.append([first.label, first.unit, better] + [_format(r.value(key), first.unit) for r in reports])
    return rows


def format_table(rows: list[list[str]]) -> str:
    """Plain-text columns (first row underlined)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_report(reports: list[EvalReport]) -> str:
    """The table of one or several reports, followed by their notes."""
    text = format_table(compare(reports))
    for report in reports:
        for note in report.notes:
            text += f"\nnote ({report.name}): {note}"
    return text


# ------------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------------
def _check_inputs(frames: np.ndarray, reference: np.ndarray, fps: float) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be RGB uint8 (N, H, W, 3), got {got}")
    if len(frames) < 2:
        raise ValueError(f"the video has {len(frames)} frame(s); the measures need at least 2")
    if not isinstance(reference, np.ndarray) or reference.ndim != 3 or reference.shape[-1] != 3:
        raise ValueError("reference must be an RGB uint8 image (H, W, 3)")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")


def _identity(report: EvalReport, frames: np.ndarray, embedding: np.ndarray, models: Any) -> None:
    from .identity import identity_similarity

    ident = identity_similarity(frames, embedding, models, report.fps)
    report.curves["identity"] = ident.similarity
    report.add("identity_mean", ident.mean, "cosine", HIGHER, "identity (ArcFace cosine, mean)")
    report.add("identity_min", ident.minimum, "cosine", HIGHER, "identity (worst frame)")
    report.add("identity_drift", ident.drift_per_10s, "cosine / 10 s", HIGHER, "identity drift (slope)")
    report.add("frames_without_face", ident.frames_without_face, "frames", LOWER, "frames without a face")
    if ident.frames_without_face:
        report.notes.append(f"no face found in {ident.frames_without_face} of {report.num_frames} frames "
                            "(left out of the identity scores)")


def _temporal(report: EvalReport, frames: np.ndarray, reference: np.ndarray, ref_box: np.ndarray,
              offset: int) -> None:
    from .temporal import boundary_jump, colour_drift

    jump = boundary_jump(frames, report.clip_length, offset)
    report.boundaries = jump.boundaries
    report.curves["frame_change"] = jump.change
    report.add("boundary_jump", jump.ratio, "ratio", LOWER, "clip-boundary jump (1 = no seam)")
    if not jump.boundaries:
        report.notes.append(f"the video is not longer than one {report.clip_length}-frame clip: no clip boundary "
                            "to measure")
    drift = colour_drift(frames, reference, ref_box, report.fps, report.clip_length)
    if drift is None:
        report.notes.append("the face fills the frame: no background left to measure the colour drift on")
        return
    report.curves["colour_distance"] = drift.distance
    report.add("colour_final", drift.final, "ΔE76", LOWER, "background colour shift (last clip)")
    report.add("colour_max", drift.maximum, "ΔE76", LOWER, "background colour shift (largest)")
    report.add("colour_drift", drift.slope_per_10s, "ΔE76 / 10 s", LOWER, "background colour drift (slope)")


def mono_wave(audio: tuple[Any, int]) -> tuple[np.ndarray, int]:
    """``(wave, rate)`` with wave ``(T,)``, ``(C, T)`` or ``(B, C, T)`` (numpy or torch) -> float32 mono."""
    wave, rate = audio
    arr = np.asarray(wave.detach().cpu().numpy() if hasattr(wave, "detach") else wave, np.float32)
    while arr.ndim > 2:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr.mean(axis=0)
    if arr.size == 0:
        raise ValueError("the audio holds no samples")
    return np.ascontiguousarray(arr, np.float32), int(rate)


def _lip_sync(report: EvalReport, frames: np.ndarray, audio: tuple[Any, int] | None, task: Path | None) -> None:
    if audio is None:
        report.notes.append("no audio: the lip-sync measures were skipped")
        return
    from .speech import speech_activity

    wave, rate = mono_wave(audio)
    activity = speech_activity(wave, rate, report.fps, report.num_frames)
    report.curves["speech_activity"] = np.asarray(activity, np.float64)
    if task is None or not Path(task).is_file():
        report.notes.append("no MediaPipe face_landmarker_v2_with_blendshapes.task: the lip-sync measures were "
                            "skipped")
        return
    from .lipsync import lip_sync, silent_lip_motion
    from .mouth import mouth_opening

    opening = np.asarray(mouth_opening(frames, task), np.float64)
    report.curves["mouth_opening"] = opening
    try:
        sync = lip_sync(opening, activity)
    except HalloInputError as exc:  # too few frames where MediaPipe finds the mouth
        report.notes.append(f"lip-sync measures skipped: {exc}")
        return
    report.add("lip_sync_offset", sync.offset, "frames", NEAR_ZERO, "lip-sync offset (mouth after voice)")
    report.add("lip_sync_confidence", sync.confidence, "correlation", HIGHER, "lip-sync confidence")
    report.add("silent_lip_motion", silent_lip_motion(opening, activity), "IOD / frame", LOWER,
               "lip motion in silence")


def _syncnet(report: EvalReport, frames: np.ndarray, audio: tuple[Any, int] | None, models: Any,
             checkpoint: Path | None, device: str) -> None:
    if checkpoint is None or audio is None or not Path(checkpoint).is_file():
        return
    from .syncnet import SyncNetUnavailable, syncnet_scores

    try:
        scores = syncnet_scores(frames, mono_wave(audio), report.fps, checkpoint, models, device)
    except SyncNetUnavailable as exc:
        report.notes.append(str(exc))
        return
    report.add("lse_c", scores.confidence, "", HIGHER, "SyncNet LSE-C")
    report.add("lse_d", scores.distance, "", LOWER, "SyncNet LSE-D")


def evaluate(frames: np.ndarray, reference: np.ndarray, fps: float, model_dir: Path | str, *,
             audio: tuple[Any, int] | None = None, landmarker_task: Path | str | None = None,
             syncnet_checkpoint: Path | str | None = None, clip_length: int = 16, boundary_offset: int = 0,
             name: str = "video", device: str = "cpu") -> EvalReport:
    """Every built-in measure of ``frames`` ((N, H, W, 3) uint8 RGB) against the ``reference`` portrait.

    ``model_dir``: the ``hallo`` model folder (its ``face_analysis/models`` detector and ArcFace; also the
    default place of the MediaPipe ``.task``, else the pack's own copy is used, and of an optional
    ``syncnet_v2.model``). ``audio``: ``(wave, rate)`` of the voice, for the lip-sync measures. ``clip_length``
    / ``boundary_offset``: where clips start (Hallo: every 16 frames from frame 0). Raises :class:`NoFaceError`
    when the reference shows no face."""
    from ..face.detection import load_face_models
    from ..paths import landmarker_task_file
    from .identity import reference_face
    from .syncnet import SYNCNET_FILE

    _check_inputs(frames, reference, fps)
    model_dir = Path(model_dir)
    models = load_face_models(model_dir, device)
    embedding, ref_box = reference_face(np.ascontiguousarray(reference, np.uint8), models)
    report = EvalReport(name=name, num_frames=len(frames), fps=float(fps), clip_length=int(clip_length),
                        boundaries=[])
    _identity(report, frames, embedding, models)
    _temporal(report, frames, reference, ref_box, boundary_offset)
    task = landmarker_task or landmarker_task_file(model_dir)
    _lip_sync(report, frames, audio, Path(task))
    _syncnet(report, frames, audio, models, Path(syncnet_checkpoint or model_dir / SYNCNET_FILE), device)
    logger.info("evaluated %s: %d frames, %d measures", name, len(frames), len(report.measures))
    return report


def reports_to_dict(reports: list[EvalReport]) -> dict[str, Any]:
    """Several reports as one JSON-able document (what the CLI's --json and the node's output hold)."""
    return {"schema": SCHEMA, "reports": [r.to_dict() for r in reports],
            "comparison": compare(reports)}
