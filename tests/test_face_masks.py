"""Mask recipe checked against independent recomputations (synthetic landmarks, no MediaPipe)."""

from __future__ import annotations

import numpy as np
import pytest
from face_helpers import LIPS, SILHOUETTE, pil_level, ref_blur, ref_box, ref_expand  # noqa: E402
from hallo_nodes.pipeline.face.masks import (  # noqa: E402
    blur_mask,
    build_box_masks,
    build_masks,
    centre_face_box,
    expand_region,
    hard_mask,
    level_shapes,
)


def synthetic_landmarks(w: int, h: int, face=(0.3, 0.2, 0.7, 0.8), lips=(0.42, 0.62, 0.58, 0.7), seed=0):
    """478 points: silhouette ids on an ellipse inside ``face``, lip ids inside ``lips``, rest random."""
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(face[0], face[2], 478) * w, rng.uniform(face[1], face[3], 478) * h])
    t = np.linspace(0, 2 * np.pi, len(SILHOUETTE), endpoint=False)
    cx, cy = (face[0] + face[2]) / 2 * w, (face[1] + face[3]) / 2 * h
    pts[SILHOUETTE] = np.column_stack([cx + (face[2] - face[0]) / 2 * w * np.cos(t),
                                       cy + (face[3] - face[1]) / 2 * h * np.sin(t)])
    pts[LIPS] = np.column_stack([rng.uniform(lips[0], lips[2], 20) * w, rng.uniform(lips[1], lips[3], 20) * h])
    pts[LIPS[0]] = (lips[0] * w, lips[1] * h)
    pts[LIPS[1]] = (lips[2] * w, lips[3] * h)
    return pts


@pytest.mark.parametrize("seed", range(20))
def test_expand_region_matches_original_semantics(seed):
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(100, 900)), int(rng.integers(100, 900))
    x = np.sort(np.round(rng.uniform(-0.1, 1.1, 2) * w))
    y = np.sort(np.round(rng.uniform(-0.1, 1.1, 2) * h))
    ratio = float(rng.choice([1.0, 1.2, 2.0, 1.5]))
    got = expand_region((x[0], x[1], y[0], y[1]), w, h, ratio)
    assert got[:2] == ref_expand(x[0], x[1], w, ratio)
    assert got[2:] == ref_expand(y[0], y[1], h, ratio)
    assert 0 <= got[0] <= got[1] <= w and 0 <= got[2] <= got[3] <= h


def test_expand_region_known_values():
    # centre 150, side 100 * 1.2 = 120 -> 90..210
    assert expand_region((100, 200, 100, 200), 1000, 1000, 1.2) == (90, 210, 90, 210)
    # overflow on the right: 850..1050 is shifted back inside to 800..1000, size kept
    assert expand_region((900, 1000, 0, 50), 1000, 1000, 2.0) == (800, 1000, 0, 100)
    # box larger than the image: clamped (the original would wrap to a negative start)
    assert expand_region((0, 100, 0, 100), 100, 100, 2.0) == (0, 100, 0, 100)


def test_blur_kernels_and_auto_sigma():
    box = (300, 200, 700, 800)
    mask = hard_mask(1000, 1000, box)
    assert mask[200:800, 300:700].min() == 255 and mask.sum() == 255 * 400 * 600
    for k in (51, 31):
        got = blur_mask(mask, k)
        exp = ref_blur(box, 1000, 1000, k)
        assert got.shape == (64, 64) and got.dtype == np.uint8
        assert got.min() == 0 and got.max() == 255
        assert np.abs(got.astype(int) - exp.astype(int)).max() <= 1
    # a wrong kernel is detectably different
    assert np.abs(blur_mask(mask, 51).astype(int) - ref_blur(box, 1000, 1000, 31).astype(int)).max() > 5


def test_level_shapes():
    assert level_shapes((512, 512)) == [(64, 64), (32, 32), (16, 16), (8, 8)]
    assert level_shapes((512, 384)) == [(64, 48), (32, 24), (16, 12), (8, 6)]
    assert level_shapes((768, 1024)) == [(96, 128), (48, 64), (24, 32), (12, 16)]
    with pytest.raises(ValueError, match="multiples of 64"):
        level_shapes((500, 512))


@pytest.mark.parametrize("image_size,output_size", [((700, 500), (512, 512)), ((480, 640), (512, 384))])
def test_build_masks_against_independent_recipe(image_size, output_size):
    h, w = image_size
    lm = synthetic_landmarks(w, h)
    m = build_masks(lm, (h, w), output_size, 1.2)
    face_box = ref_box(lm, SILHOUETTE, w, h, 1.2)
    lip_box = ref_box(lm, LIPS, w, h, 2.0)
    assert m.face_box == face_box and m.lip_box == lip_box
    # lip box inside face box
    assert face_box[0] <= lip_box[0] and lip_box[2] <= face_box[2]
    assert face_box[1] <= lip_box[1] and lip_box[3] <= face_box[3]
    face_blur = ref_blur(face_box, w, h, 51)
    lip_blur = ref_blur(lip_box, w, h, 31)
    full64 = 255 - face_blur.astype(int)  # up to 1 lower after the original's float truncation
    face64 = np.maximum(face_blur.astype(int) - lip_blur.astype(int), 0)
    shapes = level_shapes(output_size)
    assert m.level_shapes == shapes
    for lvl, (lh, lw) in enumerate(shapes):
        for got, exp in ((m.full, full64), (m.face, face64), (m.lip, lip_blur.astype(int))):
            t = got[lvl]
            assert t.shape == (lh * lw,) and t.dtype.is_floating_point
            assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
            ref = pil_level(np.clip(exp, 0, 255).astype(np.uint8), lh, lw)
            assert np.abs(t.numpy() - ref).max() <= 2.5 / 255
    # level 0 of a 512 output is the 64x64 mask itself: full + face + lip == 1 where lip <= face blur
    if output_size == (512, 512):
        full, face, lip = (x[0].numpy() for x in (m.full, m.face, m.lip))
        fb = face_blur.reshape(-1) / 255.0
        ok = lip <= fb + 1e-6
        assert np.abs(full + face + lip - 1)[ok].max() <= 2 / 255
        assert full.max() == 1.0 and lip.max() == 1.0  # background far from the face; lip centre
    # FaceLocator: hard face box, resized to the output, RGB, 0..1
    oh, ow = output_size
    loc = m.face_locator
    assert loc.shape == (3, oh, ow) and float(loc.min()) == 0.0 and float(loc.max()) == 1.0
    assert np.array_equal(loc[0].numpy(), loc[2].numpy())
    cy = int((face_box[1] + face_box[3]) / 2 * oh / h)
    cx = int((face_box[0] + face_box[2]) / 2 * ow / w)
    assert loc[0, cy, cx] == 1.0 and loc[0, 0, 0] == 0.0
    frac = float(loc[0].mean())
    box_frac = (face_box[2] - face_box[0]) * (face_box[3] - face_box[1]) / (w * h)
    assert abs(frac - box_frac) < 0.01
    # previews at image resolution
    for img in (m.full_image, m.face_image, m.lip_image):
        assert img.shape == (h, w) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1


def test_bad_landmarks():
    with pytest.raises(ValueError, match=r"\(478, 2\)"):
        build_masks(np.zeros((68, 2)), (100, 100))


def test_box_masks_follow_the_same_recipe():
    """The no-landmark fallback: face box = the given box expanded like the original, lip box inside
    its lower part expanded x2; blurs and levels as for landmark masks."""
    h, w = 600, 800
    box = (250.0, 100.0, 550.0, 500.0)
    m = build_box_masks(box, (h, w), (512, 512), 1.2)
    x1, x2 = ref_expand(250, 550, w, 1.2)
    y1, y2 = ref_expand(100, 500, h, 1.2)
    assert m.face_box == (x1, y1, x2, y2)
    lx1, ly1, lx2, ly2 = m.lip_box
    assert x1 < lx1 < 400 < lx2 < x2 and 300 < ly1 < ly2 <= y2  # centred, lower half of the face
    face_blur, lip_blur = ref_blur(m.face_box, w, h, 51), ref_blur(m.lip_box, w, h, 31)
    ref_face = np.maximum(face_blur.astype(int) - lip_blur.astype(int), 0).astype(np.uint8)
    assert np.abs(m.face[0].numpy() - pil_level(ref_face, 64, 64)).max() <= 2.5 / 255
    assert np.abs(m.lip[0].numpy() - pil_level(lip_blur, 64, 64)).max() <= 2.5 / 255
    centre = centre_face_box((h, w))
    assert centre == pytest.approx((160.0, 120.0, 640.0, 480.0))
    with pytest.raises(ValueError, match="empty"):
        build_box_masks((10, 10, 10, 50), (h, w))
