"""Image conversion, reference preparation, face crop and paste-back."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from face_helpers import load_rgb, to_comfy  # noqa: E402
from hallo_nodes.pipeline.face.crop import PasteCompositor, face_crop, paste_back  # noqa: E402
from hallo_nodes.pipeline.images import comfy_image_to_rgb  # noqa: E402
from hallo_nodes.pipeline.reference import prepare_reference  # noqa: E402
from PIL import Image


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_rgb("photo_woman.jpg")


def test_comfy_roundtrip_is_exact(photo):
    assert np.array_equal(comfy_image_to_rgb(to_comfy(photo)), photo)
    # numpy input and an un-batched [H,W,C] tensor work the same way
    assert np.array_equal(comfy_image_to_rgb(to_comfy(photo)[0].numpy()), photo)


def test_non_square_kept(photo):
    wide = np.ascontiguousarray(photo[100:400])
    out = comfy_image_to_rgb(to_comfy(wide))
    assert out.shape == (300, 624, 3)


def test_rgba_drop_and_composite(photo):
    alpha = np.zeros(photo.shape[:2] + (1,), np.uint8)
    alpha[:, : photo.shape[1] // 2] = 255
    rgba = to_comfy(np.concatenate([photo, alpha], axis=2))
    dropped = comfy_image_to_rgb(rgba)
    assert dropped.shape == photo.shape and np.array_equal(dropped, photo)  # like PIL convert("RGB")
    white = comfy_image_to_rgb(rgba, alpha="white")
    half = photo.shape[1] // 2
    assert np.array_equal(white[:, :half], photo[:, :half])
    assert (white[:, half:] == 255).all()


def test_greyscale_becomes_rgb(photo):
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    out = comfy_image_to_rgb(to_comfy(grey[:, :, None]))
    assert out.shape == photo.shape
    assert np.array_equal(out[:, :, 0], grey) and np.array_equal(out[:, :, 2], grey)


def test_batch_uses_first_and_warns(photo, caplog):
    batch = torch.cat([to_comfy(photo), torch.zeros_like(to_comfy(photo))])
    with caplog.at_level(logging.WARNING):
        out = comfy_image_to_rgb(batch)
    assert np.array_equal(out, photo)
    assert "batch of 2 images; using the first one only" in caplog.text


def test_tiny_image_clear_error():
    with pytest.raises(ValueError, match=r"only 40x32 pixels.*at least 64 px.*Upscale"):
        comfy_image_to_rgb(torch.rand(1, 32, 40, 3))


def test_bad_layout_error():
    with pytest.raises(ValueError, match="channels last"):
        comfy_image_to_rgb(torch.rand(1, 3, 128, 128))


def test_nan_is_clamped():
    img = torch.full((1, 64, 64, 3), float("nan"))
    img[0, 0, 0] = 2.0
    out = comfy_image_to_rgb(img)
    assert out[0, 0, 0] == 255 and out[5, 5, 0] == 0


def test_prepare_reference_matches_resize_to_tensor_normalize(photo):
    ref = prepare_reference(photo)
    # independent: PIL bilinear to 512x512, /255, (x - 0.5) / 0.5
    expect = np.asarray(Image.fromarray(photo).resize((512, 512), Image.BILINEAR), np.float32) / 255.0
    expect = (expect - 0.5) / 0.5
    assert ref.shape == (3, 512, 512) and ref.dtype == torch.float32
    assert torch.allclose(ref, torch.from_numpy(expect).permute(2, 0, 1), atol=1e-6)
    assert ref.min() >= -1 and ref.max() <= 1


def test_prepare_reference_stretches_non_square(photo):
    wide = np.ascontiguousarray(photo[:312])  # 624 x 312
    ref = prepare_reference(wide, (512, 512))
    assert ref.shape == (3, 512, 512)
    ref2 = prepare_reference(wide, (512, 384))
    assert ref2.shape == (3, 512, 384)


def test_prepare_reference_identity_at_output_size():
    img = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    ref = prepare_reference(img)
    assert torch.equal(ref, (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - 0.5) / 0.5)


def test_face_crop_fraction_and_box(photo):
    box = (200.0, 150.0, 440.0, 470.0)  # 240 x 320
    crop, cb = face_crop(photo, box, face_fraction=0.6, size=512)
    assert crop.shape == (512, 512, 3)
    assert cb.side == round(320 / 0.6)
    # the face box, mapped into the crop, spans 60 % of the frame height and is centred
    y1 = (box[1] - cb.y0) * cb.scale
    y2 = (box[3] - cb.y0) * cb.scale
    assert abs((y2 - y1) / 512 - 0.6) < 0.01
    assert abs((y1 + y2) / 2 - 256) < 2


def test_face_crop_pads_outside_image(photo):
    crop, cb = face_crop(photo, (0, 0, 120, 120), face_fraction=0.5, size=256, pad_mode="constant")
    assert cb.x0 < 0 and cb.y0 < 0
    assert (crop[:10, :10] == 0).all()  # black padding in the corner
    crop_e, _ = face_crop(photo, (0, 0, 120, 120), face_fraction=0.5, size=256, pad_mode="edge")
    assert not (crop_e[:10, :10] == 0).all()
    crop_r, _ = face_crop(photo, (0, 0, 120, 120), face_fraction=0.5, size=256, pad_mode="reflect")
    assert crop_r.shape == (256, 256, 3)


def test_paste_back_roundtrip_and_feather(photo):
    crop, cb = face_crop(photo, (200, 150, 440, 470), face_fraction=0.6, size=512)
    frames = torch.from_numpy(np.stack([crop, 255 - crop]).astype(np.float32) / 255.0)
    out = paste_back(frames, photo, cb, feather=16)
    assert out.shape == (2, 624, 624, 3) and out.dtype == torch.float32
    orig = photo.astype(np.float32) / 255.0
    # outside the crop square nothing changes
    inside = np.zeros(photo.shape[:2], bool)
    inside[max(cb.y0, 0): cb.y0 + cb.side, max(cb.x0, 0): cb.x0 + cb.side] = True
    assert np.array_equal(out[1].numpy()[~inside], orig[~inside])
    # pasting the crop itself back reproduces the original (resampling error only)
    assert np.abs(out[0].numpy() - orig)[inside].mean() < 0.02
    # the inverted frame is fully used in the centre and blended at the seam
    cy, cx = cb.y0 + cb.side // 2, cb.x0 + cb.side // 2
    assert abs(out[1, cy, cx, 0].item() - (1 - orig[cy, cx, 0])) < 0.05
    if cb.x0 > 0:
        seam = out[1, cy, cb.x0, 0].item()
        assert abs(seam - orig[cy, cb.x0, 0]) < abs((1 - orig[cy, cb.x0, 0]) - orig[cy, cb.x0, 0]) + 1e-6


def test_paste_back_wrong_original(photo):
    _, cb = face_crop(photo, (200, 150, 440, 470))
    with pytest.raises(ValueError, match="crop box was made for 624x624"):
        paste_back(torch.zeros(1, 512, 512, 3), np.zeros((100, 100, 3), np.uint8), cb)


def test_paste_back_holds_no_float_copy_of_the_photo(photo):
    """Besides its output, paste_back works on one frame's crop region (it copied the whole photo in float32)."""
    import tracemalloc

    big = torch.from_numpy(np.asarray(Image.fromarray(photo).resize((2000, 1500)), np.float32) / 255.0)
    _, cb = face_crop(np.asarray(big.mul(255).byte()), (600, 450, 1000, 950), face_fraction=0.9, size=128)
    frames = torch.rand(3, 128, 128, 3)
    tracemalloc.start()
    try:
        out = paste_back(frames, big, cb, feather=16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (3, 1500, 2000, 3)
    assert peak < 0.25 * big.numel() * 4, f"{peak / 2**20:.1f} MiB"  # under a quarter of one float32 photo


def test_paste_back_even_and_uint8_frames_match_the_float_composite(photo):
    odd = np.ascontiguousarray(photo[:601, :603])
    crop, cb = face_crop(odd, (200, 150, 440, 470), face_fraction=0.6, size=256)
    frames = torch.from_numpy(np.stack([crop, 255 - crop]).astype(np.float32) / 255.0)
    full = paste_back(frames, odd, cb, feather=16)
    even = paste_back(frames, odd, cb, feather=16, even=True)
    assert full.shape == (2, 601, 603, 3) and even.shape == (2, 600, 602, 3)
    assert torch.equal(even, full[:, :600, :602])
    comp = PasteCompositor(to_comfy(odd)[0], cb, feather=16, even=True)
    u8 = comp.to_uint8(frames[1])
    assert u8.dtype == np.uint8 and u8.shape == (600, 602, 3)
    ref = np.rint(even[1].numpy() * 255.0)
    # the crop is scaled in uint8 for the video: off by a rounding step at most (bicubic on quantized pixels)
    assert np.abs(u8.astype(np.float32) - ref).max() <= 2 and np.abs(u8.astype(np.float32) - ref).mean() < 0.3
    assert comp.to_uint8(frames[1]).tobytes() == u8.tobytes()  # the photo itself is not modified
