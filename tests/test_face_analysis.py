"""analyze_face end to end: real MediaPipe (Tasks API, the released .task) on real portraits, tiny ONNX face models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from face_helpers import (  # noqa: E402
    GROUP,
    LARGEST_GROUP_FACE,
    LIPS,
    SILHOUETTE,
    SINGLE_PORTRAITS,
    SIX_FACE_BOXES,
    load_rgb,
    make_model_dir,
    normalised,
    pil_level,
    ref_blur,
    ref_box,
    to_comfy,
)
from hallo_nodes.pipeline.face.analysis import (  # noqa: E402
    LandmarkError,
    NoFaceError,
    analyze_face,
)
from hallo_nodes.pipeline.face.detection import FaceModelMissingError  # noqa: E402
from hallo_nodes.pipeline.face.landmarks import TASKS_BACKEND, box_iou  # noqa: E402
from hallo_nodes.pipeline.images import comfy_image_to_rgb  # noqa: E402

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("hallo"))


@pytest.fixture(scope="module")
def no_face_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("noface"), faces=[])


@pytest.fixture(scope="module")
def group_dir(tmp_path_factory) -> Path:
    h, w = load_rgb(GROUP).shape[:2]
    return make_model_dir(tmp_path_factory.mktemp("group"), faces=normalised(SIX_FACE_BOXES, w, h))


def check_masks_independently(result, h: int, w: int, output_size=(512, 512)) -> None:
    lm = result.landmarks
    face_box = ref_box(lm, SILHOUETTE, w, h, 1.2)
    lip_box = ref_box(lm, LIPS, w, h, 2.0)
    assert result.masks.face_box == face_box and result.masks.lip_box == lip_box
    assert face_box[0] <= lip_box[0] < lip_box[2] <= face_box[2]
    assert face_box[1] <= lip_box[1] < lip_box[3] <= face_box[3]
    face_blur, lip_blur = ref_blur(face_box, w, h, 51), ref_blur(lip_box, w, h, 31)
    exp = {
        "full": ((1.0 - face_blur / 255.0) * 255).astype(np.uint8),
        "face": np.maximum(face_blur.astype(int) - lip_blur, 0).astype(np.uint8),
        "lip": lip_blur,
    }
    oh, ow = output_size
    shapes = [(oh // d, ow // d) for d in (8, 16, 32, 64)]
    assert result.masks.level_shapes == shapes
    for name, mask64 in exp.items():
        levels = getattr(result.masks, name)
        assert len(levels) == 4
        for t, (lh, lw) in zip(levels, shapes, strict=True):
            assert t.shape == (lh * lw,) and t.dtype == torch.float32
            assert np.abs(t.numpy() - pil_level(mask64, lh, lw)).max() <= 2.5 / 255
    loc = result.masks.face_locator
    assert loc.shape == (3, oh, ow) and set(np.unique(loc.numpy())) >= {0.0, 1.0}
    for img in (result.masks.full_image, result.masks.face_image, result.masks.lip_image):
        assert img.shape == (h, w) and 0 <= img.min() and img.max() <= 1


@pytest.mark.parametrize("name", SINGLE_PORTRAITS)
def test_real_portraits(model_dir, name):
    rgb = load_rgb(name)
    h, w = rgb.shape[:2]
    r = analyze_face(rgb, model_dir)
    assert r.landmark_model == TASKS_BACKEND and not r.landmarks_from_crop
    assert r.landmarks.shape == (478, 2)
    assert (r.landmarks >= -0.05 * w).all() and (r.landmarks[:, 0] <= 1.05 * w).all()
    assert r.embedding.shape == (512,) and r.embedding.dtype == np.float32 and np.abs(r.embedding).sum() > 0
    assert r.num_faces == 1 and r.face_index == 0
    # the lips sit in the lower half of the face oval, the mouth below the eyes
    oval = r.landmarks[SILHOUETTE]
    lips = r.landmarks[LIPS]
    assert oval[:, 1].min() < lips[:, 1].mean() < oval[:, 1].max()
    assert lips[:, 1].mean() > (oval[:, 1].min() + oval[:, 1].max()) / 2
    check_masks_independently(r, h, w)


def test_non_square_output(model_dir):
    rgb = load_rgb("photo_woman.jpg")
    r = analyze_face(rgb, model_dir, output_size=(512, 384))
    check_masks_independently(r, *rgb.shape[:2], output_size=(512, 384))
    assert [t.numel() for t in r.masks.full] == [64 * 48, 32 * 24, 16 * 12, 8 * 6]


def test_non_square_input(model_dir):
    rgb = np.ascontiguousarray(load_rgb("painting_girl.jpg")[100:1300, 200:1100])  # 900 x 1200, portrait
    r = analyze_face(rgb, model_dir)
    check_masks_independently(r, 1200, 900)


def test_no_private_result_cache(model_dir):
    """ComfyUI caches node outputs; analyze_face keeps no results of its own (each call analyses)."""
    from hallo_nodes.pipeline.face import analysis

    rgb = load_rgb("statue.jpg")
    first = analyze_face(rgb, model_dir)
    again = analyze_face(rgb, model_dir)
    assert again is not first and again.masks is not first.masks
    assert np.array_equal(again.embedding, first.embedding) and np.array_equal(again.landmarks, first.landmarks)
    assert not hasattr(analysis, "clear_face_cache") and not hasattr(analysis, "face_cache_info")


def test_six_faces_largest_and_index(group_dir):
    rgb = load_rgb(GROUP)
    r = analyze_face(rgb, group_dir)
    assert r.num_faces == 6
    largest = SIX_FACE_BOXES[LARGEST_GROUP_FACE]
    assert box_iou(np.array(r.bbox), np.array(largest, float)) > 0.95
    # landmarks and masks belong to the same person as the embedding
    assert box_iou(np.array(r.masks.face_box, float), np.array(largest, float)) > 0.4
    embeddings = []
    for i, box in enumerate(SIX_FACE_BOXES):
        ri = analyze_face(rgb, group_dir, face_index=i, face_order="left_to_right")
        assert box_iou(np.array(ri.bbox), np.array(box, float)) > 0.95
        assert box_iou(np.array(ri.masks.face_box, float), np.array(box, float)) > 0.4, i
        embeddings.append(ri.embedding)
    assert len({e.tobytes() for e in embeddings}) == 6
    with pytest.raises(ValueError, match=r"face_index 7 is out of range: 6 face\(s\)"):
        analyze_face(rgb, group_dir, face_index=7)


def test_no_face_error_by_default(no_face_dir):
    rgb = load_rgb("stylized_3d.jpg")
    with pytest.raises(NoFaceError, match="no face was found in the image; use a closer crop where the face "
                                          "fills 50–70 % of the frame"):
        analyze_face(rgb, no_face_dir)


def test_no_face_fallback_when_allowed(no_face_dir):
    rgb = load_rgb("stylized_3d.jpg")
    h, w = rgb.shape[:2]
    r = analyze_face(rgb, no_face_dir, allow_no_face=True)
    assert np.array_equal(r.embedding, np.zeros(512, np.float32))
    assert r.bbox == (0.0, 0.0, float(w), float(h)) and r.face_index == -1 and r.num_faces == 0
    assert r.landmark_model == TASKS_BACKEND and "zero identity embedding" in r.warning
    check_masks_independently(r, h, w)  # MediaPipe still supplies the masks


def test_no_face_anywhere_uses_centre_box_masks(no_face_dir):
    """Neither the detector nor MediaPipe finds a face: allow_no_face continues with masks from a
    centred box and says so (the old code raised LandmarkError although the option promised to go on)."""
    y, x = np.mgrid[:300, :400]
    rgb = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    with pytest.raises(NoFaceError):
        analyze_face(rgb, no_face_dir)  # without allow_no_face: an error
    r = analyze_face(rgb, no_face_dir, allow_no_face=True)
    assert r.landmark_model == "box" and r.landmarks.shape == (0, 2)
    assert "zero identity embedding" in r.warning and "image centre" in r.warning
    fx1, fy1, fx2, fy2 = r.masks.face_box
    assert abs((fx1 + fx2) / 2 - 200) <= 2 and abs((fy1 + fy2) / 2 - 150) <= 2  # centred
    lx1, ly1, lx2, ly2 = r.masks.lip_box
    assert fx1 <= lx1 < lx2 <= fx2 and (fy1 + fy2) / 2 < ly2 <= fy2  # lips in the lower half of the face
    full, face, lip = r.masks.full_image, r.masks.face_image, r.masks.lip_image
    assert full[150, 200] < 0.05 and full[2, 2] > 0.95 and lip[(ly1 + ly2) // 2, 200] > 0.9
    assert face[fy1 + 5, 200] > 0.5
    assert [t.numel() for t in r.masks.lip] == [64 * 64, 32 * 32, 16 * 16, 8 * 8]


def test_detected_face_without_landmarks_uses_detector_box(tmp_path):
    """The detector finds a face where MediaPipe sees none: with allow_no_face the real embedding is
    kept and the masks come from the detector's box."""
    y, x = np.mgrid[:300, :400]
    rgb = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    models = make_model_dir(tmp_path, faces=[(0.1, 0.2, 0.4, 0.7)])
    with pytest.raises(LandmarkError, match="MediaPipe found no face"):
        analyze_face(rgb, models)
    r = analyze_face(rgb, models, allow_no_face=True)
    assert r.num_faces == 1 and np.abs(r.embedding).sum() > 0 and r.landmark_model == "box"
    assert "detector's face box" in r.warning and "zero identity" not in r.warning
    assert box_iou(np.array(r.masks.face_box, float), np.array(r.bbox)) > 0.6


def test_a_folder_without_the_task_uses_the_shipped_copy(tmp_path, caplog):
    """The released download has the .task; a folder without it falls back to the identical shipped file,
    and says so once."""
    import logging

    models = make_model_dir(tmp_path, landmarker=False)
    with caplog.at_level(logging.INFO, logger="hallo_nodes"):
        first = analyze_face(load_rgb("statue.jpg"), models)
        again = analyze_face(load_rgb("statue.jpg"), models)
    assert first.landmark_model == again.landmark_model == TASKS_BACKEND
    assert caplog.text.count("using the identical copy shipped with hallo-nodes") == 1


def test_missing_task_file_is_named(tmp_path, monkeypatch):
    from hallo_nodes.pipeline import paths

    monkeypatch.setattr(paths, "SHIPPED_LANDMARKER_TASK", tmp_path / "absent.task")  # an install without it
    models = make_model_dir(tmp_path, landmarker=False)
    task = models / "face_analysis" / "models" / "face_landmarker_v2_with_blendshapes.task"
    with pytest.raises(FaceModelMissingError) as err:
        analyze_face(load_rgb("statue.jpg"), models)
    assert str(task) in str(err.value) and "fudan-generative-ai/hallo" in str(err.value)
    assert "face_analysis/models" in str(err.value)


def test_huge_image(model_dir):
    small = load_rgb("photo_woman.jpg")
    big = cv2.resize(small, (4000, 4000), interpolation=cv2.INTER_CUBIC)
    r_small = analyze_face(small, model_dir)
    r_big = analyze_face(big, model_dir)
    scale = 4000 / small.shape[0]
    assert r_big.masks.full_image.shape == (4000, 4000)
    assert np.abs(r_big.landmarks / scale - r_small.landmarks).max() < 0.02 * small.shape[0]
    assert np.abs(np.array(r_big.bbox) / scale - np.array(r_small.bbox)).max() < 3
    assert r_big.masks.face_locator.shape == (3, 512, 512)


def test_comfy_inputs_rgba_grey_batch(model_dir, caplog):
    rgb = load_rgb("photo_woman.jpg")
    rgba = to_comfy(np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 128, np.uint8)], axis=2))
    r = analyze_face(comfy_image_to_rgb(rgba), model_dir)
    assert r.landmarks.shape == (478, 2)
    grey = to_comfy(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None])
    rg = analyze_face(comfy_image_to_rgb(grey), model_dir)
    assert box_iou(np.array(rg.masks.face_box, float), np.array(r.masks.face_box, float)) > 0.9
    batch = torch.cat([to_comfy(rgb), to_comfy(rgb[::-1].copy())])
    rb = analyze_face(comfy_image_to_rgb(batch), model_dir)
    assert rb.masks.face_box == r.masks.face_box
    assert "using the first one only" in caplog.text


def test_bad_array_input(model_dir):
    with pytest.raises(ValueError, match="RGB uint8 array"):
        analyze_face(np.zeros((100, 100, 3), np.float32), model_dir)
    with pytest.raises(ValueError, match="multiples of 64"):
        analyze_face(load_rgb("statue.jpg"), model_dir, output_size=(500, 500))


def test_corrupt_task_file_is_a_clear_error(tmp_path):
    """A damaged .task file fails before MediaPipe with a message naming the file and the download."""
    from hallo_nodes.pipeline.errors import HalloInputError
    from hallo_nodes.pipeline.face.landmarks import detect_landmarks

    models = make_model_dir(tmp_path, landmarker=False)
    (models / "face_analysis" / "models" / "face_landmarker_v2_with_blendshapes.task").write_bytes(b"junk")
    with pytest.raises(HalloInputError, match=r"face_landmarker_v2_with_blendshapes.task is not a complete "
                                              r"MediaPipe model .* again from 'fudan-generative-ai/hallo'"):
        detect_landmarks(load_rgb("statue.jpg"), models)
