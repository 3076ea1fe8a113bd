"""The built-in evaluation measures on real portraits: each shown to score what it should, and to fail.

Face models are the tiny ones in the released layout (the detector reports the centred face box of any image,
ArcFace is a fixed random projection of the aligned crop), so "another face" means other pixels in that box:
the people of the real group photo, cropped like a portrait.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from face_helpers import GROUP, SIX_FACE_BOXES, load_rgb, make_model_dir
from hallo_nodes.pipeline.evaluation.curves import slope_per_10s
from hallo_nodes.pipeline.evaluation.identity import identity_similarity, reference_face
from hallo_nodes.pipeline.evaluation.plot import COLOURS, plot_reports
from hallo_nodes.pipeline.evaluation.report import SCHEMA, EvalReport, compare, evaluate, format_table
from hallo_nodes.pipeline.evaluation.temporal import boundary_jump, clip_boundaries, colour_drift
from hallo_nodes.pipeline.face.detection import NoFaceError, load_face_models
from PIL import Image

FPS = 25.0
SIZE = 128


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("eval_models"))


@pytest.fixture(scope="module")
def models(model_dir: Path):
    return load_face_models(model_dir)


def group_face(index: int) -> np.ndarray:
    """Person ``index`` of the group photo as a square portrait, the face in the middle 44 % (as a portrait)."""
    x1, y1, x2, y2 = SIX_FACE_BOXES[index]
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) / 0.44
    crop = Image.fromarray(load_rgb(GROUP)).crop((int(cx - side / 2), int(cy - side / 2),
                                                  int(cx + side / 2), int(cy + side / 2)))
    return np.asarray(crop.resize((SIZE, SIZE), Image.BILINEAR))


def repeat(rgb: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(rgb[None], n, axis=0)


# ------------------------------------------------------------------------------------------------
# identity
# ------------------------------------------------------------------------------------------------
def test_reference_repeated_scores_one_and_another_face_scores_lower(models) -> None:
    ref = group_face(0)
    embedding, _ = reference_face(ref, models)
    same = identity_similarity(repeat(ref, 20), embedding, models, FPS)
    assert same.mean == pytest.approx(1.0, abs=1e-5)
    assert same.minimum == pytest.approx(1.0, abs=1e-5)
    assert same.drift_per_10s == pytest.approx(0.0, abs=1e-6)
    assert same.frames_without_face == 0
    for other in range(1, 6):
        score = identity_similarity(repeat(group_face(other), 5), embedding, models, FPS)
        assert score.mean < 0.85, (other, score.mean)


def test_slow_cross_fade_to_another_face_drifts_down(models) -> None:
    ref, other = group_face(0).astype(np.float32), group_face(5).astype(np.float32)
    w = np.linspace(0.0, 1.0, 100)[:, None, None, None]
    frames = np.round((1 - w) * ref + w * other).astype(np.uint8)
    embedding, _ = reference_face(group_face(0), models)
    result = identity_similarity(frames, embedding, models, FPS)
    assert result.similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert result.drift_per_10s < -0.5  # 4 s from 1.0 to about 0.7
    assert result.minimum < 0.8


def test_frames_without_a_face_are_counted_not_scored(models) -> None:
    ref = group_face(0)
    frames = repeat(ref, 10)
    frames[3] = 0  # black: no face
    frames[7] = 0
    embedding, _ = reference_face(ref, models)
    result = identity_similarity(frames, embedding, models, FPS)
    assert result.frames_without_face == 2
    assert np.isnan(result.similarity[[3, 7]]).all()
    assert result.mean == pytest.approx(1.0, abs=1e-5)  # the black frames are not counted as 0


def test_reference_without_a_face_is_a_clear_error(models) -> None:
    with pytest.raises(NoFaceError, match="reference"):
        reference_face(np.zeros((SIZE, SIZE, 3), np.uint8), models)


def test_slope_is_least_squares_per_10_seconds() -> None:
    values = 0.5 - 0.02 * np.arange(50)  # -0.02 per frame = -0.5 per second
    assert slope_per_10s(values, 25.0) == pytest.approx(-5.0)
    values[[3, 9]] = np.nan
    assert slope_per_10s(values, 25.0) == pytest.approx(-5.0)
    assert math.isnan(slope_per_10s(np.array([1.0, np.nan]), 25.0))


# ------------------------------------------------------------------------------------------------
# clip boundaries and colour
# ------------------------------------------------------------------------------------------------
def panning(n: int) -> np.ndarray:
    """A real portrait sliding a third of a pixel per frame: steady motion everywhere."""
    side = 3 * SIZE
    big = np.asarray(Image.fromarray(load_rgb("painting_girl.jpg")).resize((side + n, side + n)))
    return np.stack([np.asarray(Image.fromarray(big[k:k + side, k:k + side]).resize((SIZE, SIZE), Image.BOX))
                     for k in range(n)])


def test_clip_boundaries() -> None:
    assert clip_boundaries(50) == [16, 32, 48]
    assert clip_boundaries(50, 16, 8) == [8, 24, 40]
    assert clip_boundaries(16) == []


def test_step_every_clip_scores_a_jump_and_smooth_motion_does_not() -> None:
    smooth = panning(64)
    seams = smooth.astype(np.int16)
    for start in (16, 32, 48):
        seams[start:] += 12  # a brightness jump at every clip start
    seams = np.clip(seams, 0, 255).astype(np.uint8)
    calm = boundary_jump(smooth)
    jumpy = boundary_jump(seams)
    assert calm.ratio == pytest.approx(1.0, abs=0.15)
    assert jumpy.ratio > 2.0
    assert jumpy.boundaries == [16, 32, 48]
    # the same steps off the boundary grid are not seams there
    assert boundary_jump(seams, 16, 8).ratio < 1.0


def test_colour_drift_detects_a_slow_tint_of_the_background() -> None:
    ref = load_rgb("painting_girl.jpg")
    ref = np.asarray(Image.fromarray(ref).resize((SIZE, SIZE)))
    box = np.array([0.28, 0.22, 0.72, 0.78]) * SIZE
    frames = repeat(ref, 50).astype(np.float32)
    tint = np.linspace(0, 30, 50)[:, None, None]
    frames[..., 2] += tint  # bluer and bluer
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    steady = colour_drift(repeat(ref, 50), ref, box, FPS)
    drift = colour_drift(frames, ref, box, FPS)
    assert steady.maximum < 0.5 and abs(steady.slope_per_10s) < 0.1
    assert drift.final > 5.0 and drift.slope_per_10s > 10.0
    # a tint of the face alone is not background drift
    face_only = repeat(ref, 50).astype(np.float32)
    face_only[:, int(0.3 * SIZE):int(0.7 * SIZE), int(0.35 * SIZE):int(0.65 * SIZE), 2] += 60
    inside = colour_drift(np.clip(face_only, 0, 255).astype(np.uint8), ref, box, FPS)
    assert inside.maximum < 0.5


# ------------------------------------------------------------------------------------------------
# report, comparison, plot
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_reports(model_dir: Path) -> list[EvalReport]:
    ref = group_face(0)
    same = repeat(ref, 40)
    w = np.linspace(0.0, 1.0, 40)[:, None, None, None]
    fade = np.round((1 - w) * ref + w * group_face(5)).astype(np.uint8)
    return [evaluate(same, ref, FPS, model_dir, name="same"), evaluate(fade, ref, FPS, model_dir, name="fade")]


def test_report_is_json_with_units_directions_and_curves(two_reports: list[EvalReport]) -> None:
    same, fade = two_reports
    data = json.loads(json.dumps(same.to_dict(), allow_nan=False))  # no NaN in the JSON
    assert data["schema"] == SCHEMA
    assert data["boundaries"] == [16, 32]
    for key in ("identity_mean", "identity_min", "identity_drift", "boundary_jump", "colour_final"):
        m = data["measures"][key]
        assert set(m) == {"value", "unit", "direction", "label"}
        assert m["direction"] in ("higher is better", "lower is better", "closer to 0 is better")
    assert len(data["curves"]["identity"]) == 40 and data["curves"]["frame_change"][0] is None
    assert "no audio" in " ".join(data["notes"])
    assert EvalReport.from_dict(data).to_dict() == data
    assert fade.value("identity_mean") < same.value("identity_mean") - 0.05
    assert fade.value("identity_drift") < -0.5


def test_compare_lines_up_the_reports(two_reports: list[EvalReport]) -> None:
    rows = compare(two_reports)
    assert rows[0] == ["measure", "unit", "better", "same", "fade"]
    ident = next(r for r in rows if r[0].startswith("identity (ArcFace"))
    assert float(ident[3]) == pytest.approx(1.0, abs=1e-3) and float(ident[4]) < 0.95
    text = format_table(rows)
    assert text.splitlines()[1].startswith("----")


def test_plot_draws_each_report_and_the_clip_boundaries(two_reports: list[EvalReport]) -> None:
    img = plot_reports(two_reports)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    for colour in COLOURS[:2]:
        assert (img == np.array(colour, np.uint8)).all(axis=-1).sum() > 100, colour
    one = plot_reports(two_reports[:1])
    assert (one == np.array(COLOURS[1], np.uint8)).all(axis=-1).sum() == 0
    # three panels (identity, change, colour) without audio; the mouth panel appears with its curves
    with_mouth = EvalReport.from_dict(two_reports[0].to_dict())
    with_mouth.curves["mouth_opening"] = np.linspace(0, 1, 40)
    with_mouth.curves["speech_activity"] = np.linspace(1, 0, 40)
    assert plot_reports([with_mouth]).shape[0] > one.shape[0]
