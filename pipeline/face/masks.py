"""Hallo's lip / face / full masks from MediaPipe landmarks (``hallo/utils/util.py`` recipe).

1. Lip box: bbox of the 20 outer-lip landmarks (``np.round``), :func:`expand_region` x2.0; face box:
   bbox of the 36 face-oval landmarks, x ``face_expand_ratio`` (1.2). Filled with 255 at image size.
2. Each hard mask: ``cv2.resize`` to 64x64 (bilinear) -> ``GaussianBlur`` (51x51 face, 31x31 lip,
   sigma 0 = automatic) -> ``normalize`` NORM_MINMAX 0..255, uint8.
3. full = ``uint8((1 - face_blur / 255) * 255)``, face = ``cv2.subtract(face_blur, lip_blur)``
   (saturating), lip = ``lip_blur``.
4. Per latent level: PIL bilinear resize of the 64x64 uint8 masks to (H/8, W/8), (H/16, W/16),
   (H/32, W/32), (H/64, W/64) of the output size, ``/255``, flattened.
5. FaceLocator input: the hard face mask as RGB, PIL bilinear resize to the output size, ``/255``.

One deliberate difference: where an expanded box is larger than the image, the original shifts it
to a negative start and numpy slicing then wraps (the mask covers only a strip at the far edge);
here the box is clamped to the image, which is what the shift intends.

Without landmarks (the ``allow_no_face`` fallback) :func:`build_box_masks` makes the same masks from a
face box, with the lip box placed where the mouth sits in a frontal face.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..lazy_import import cv2

logger = logging.getLogger(__name__)

SILHOUETTE_IDS = [
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288,
    397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136,
    172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
]
LIP_IDS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375]
LIP_EXPAND_RATIO = 2.0
BLUR_SIZE = 64
FACE_BLUR_KERNEL = 51
LIP_BLUR_KERNEL = 31
#: Output sizes must be multiples of this (the latent pyramid goes down to H/64).
SIZE_MULTIPLE = 64
#: Mask fallback without landmarks: where the mouth sits in a frontal detector face box
#: (x1, y1, x2, y2 as fractions of the box), before the lip expansion.
LIP_IN_FACE_BOX = (0.3, 0.68, 0.7, 0.86)
#: Mask fallback without any face box: a centred face spanning this share of each image side.
CENTRE_FACE_FRACTION = 0.6


@dataclass
class HalloMasks:
    """The masks Hallo's denoiser and FaceLocator consume, plus image-size previews.

    The previews (``full_image``, ``face_image``, ``lip_image``: (H_img, W_img) float32 0..1) are drawn from
    ``sources`` when asked for: at 64 megapixels each is 256 MB, which a render that never shows them should not
    hold.
    """

    full: list[torch.Tensor]  # 4 levels, each (h_l * w_l,) float32 0..1
    face: list[torch.Tensor]
    lip: list[torch.Tensor]
    level_shapes: list[tuple[int, int]]
    face_locator: torch.Tensor  # (3, H_out, W_out) float32 0..1, hard face box
    image_size: tuple[int, int]  # (H_img, W_img) of the previews
    # "full" / "face" / "lip" -> the mask the preview is resized from: the blurred BLUR_SIZE square (uint8 0..255)
    # or a mask connected in its place (float32 0..1, any resolution)
    sources: dict[str, np.ndarray]
    face_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # x1, y1, x2, y2 of the hard face mask
    lip_box: tuple[int, int, int, int] = (0, 0, 0, 0)

    def preview(self, which: str, size: tuple[int, int] | None = None) -> np.ndarray:
        """The ``"full"``, ``"face"`` or ``"lip"`` mask at ``size`` (H, W; default the image's), float32 0..1."""
        image_h, image_w = size or self.image_size
        return _preview(self.sources[which], image_h, image_w)

    @property
    def full_image(self) -> np.ndarray:
        return self.preview("full")

    @property
    def face_image(self) -> np.ndarray:
        return self.preview("face")

    @property
    def lip_image(self) -> np.ndarray:
        return self.preview("lip")


def level_shapes(output_size: tuple[int, int] = (512, 512)) -> list[tuple[int, int]]:
    """Latent pyramid sizes (h, w) for an output (H, W): /8, /16, /32, /64."""
    h, w = int(output_size[0]), int(output_size[1])
    if h <= 0 or w <= 0 or h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(
            f"output size (height, width) = {output_size} must be positive multiples of {SIZE_MULTIPLE} "
            "(e.g. 512x512, or 512x384 for portrait formats)"
        )
    return [(h // d, w // d) for d in (8, 16, 32, 64)]


def expand_region(
    region: tuple[float, float, float, float], image_w: int, image_h: int, expand_ratio: float = 1.0
) -> tuple[int, int, int, int]:
    """Scale a (min_x, max_x, min_y, max_y) box about its centre like the original: centre
    ``(min + max) // 2``, half side ``side * ratio // 2``; a box that leaves the image is shifted
    back inside (and clamped if larger than the image). Returns rounded ints in the same order."""
    min_x, max_x, min_y, max_y = (float(v) for v in region)
    out = []
    for lo, hi, limit in ((min_x, max_x, image_w), (min_y, max_y, image_h)):
        mid = (hi + lo) // 2
        half = ((hi - lo) * expand_ratio) // 2
        lo, hi = mid - half, mid + half
        if lo < 0:
            hi -= lo
            lo = 0.0
        if hi > limit:
            lo -= hi - limit
            hi = float(limit)
        lo = max(lo, 0.0)
        out += [round(lo), round(hi)]
    return out[0], out[1], out[2], out[3]


def landmark_box(
    landmarks: np.ndarray, ids: list[int], image_w: int, image_h: int, expand_ratio: float
) -> tuple[int, int, int, int]:
    """Expanded box (x1, y1, x2, y2) of the landmarks ``ids``."""
    pts = np.take(np.asarray(landmarks, np.float64), ids, axis=0)
    lo, hi = np.round(pts.min(0)), np.round(pts.max(0))
    x1, x2, y1, y2 = expand_region((lo[0], hi[0], lo[1], hi[1]), image_w, image_h, expand_ratio)
    return x1, y1, x2, y2


def hard_mask(image_h: int, image_w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 (H, W) mask with 255 inside ``box`` (x1, y1, x2, y2)."""
    mask = np.zeros((image_h, image_w), np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = 255
    return mask


def blur_mask(mask: np.ndarray, kernel: int, size: int = BLUR_SIZE) -> np.ndarray:
    """Resize to ``size`` x ``size`` (bilinear), Gaussian blur (auto sigma), min-max to 0..255."""
    small = cv2.resize(mask, (size, size))
    blurred = cv2.GaussianBlur(small, (kernel, kernel), 0)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)


def _to_levels(mask64: np.ndarray, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    pil = Image.fromarray(mask64, "L")
    out = []
    for h, w in shapes:
        img = pil if pil.size == (w, h) else pil.resize((w, h), Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(img, np.uint8).astype(np.float32) / 255.0).reshape(-1))
    return out


def _preview(mask: np.ndarray, image_h: int, image_w: int) -> np.ndarray:
    """Bilinear resize to (image_h, image_w), float32 0..1 (uint8 masks are divided by 255 in place)."""
    out = cv2.resize(mask, (image_w, image_h), interpolation=cv2.INTER_LINEAR).astype(np.float32, copy=False)
    if mask.dtype == np.uint8:
        out /= np.float32(255.0)  # in place: one image-size float array, not two
    else:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def build_masks(
    landmarks: np.ndarray,
    image_size: tuple[int, int],
    output_size: tuple[int, int] = (512, 512),
    face_expand_ratio: float = 1.2,
) -> HalloMasks:
    """All masks for 478 landmarks (pixels) of an image of ``image_size`` = (H, W)."""
    if face_expand_ratio <= 0:
        raise ValueError(f"face_expand_ratio must be positive, got {face_expand_ratio}")
    img_h, img_w = int(image_size[0]), int(image_size[1])
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 2 or lm.shape[0] < 478 or lm.shape[1] < 2:
        raise ValueError(f"expected (478, 2) MediaPipe landmarks, got shape {lm.shape}")
    lip_box = landmark_box(lm, LIP_IDS, img_w, img_h, LIP_EXPAND_RATIO)
    face_box = landmark_box(lm, SILHOUETTE_IDS, img_w, img_h, face_expand_ratio)
    return masks_from_boxes(lip_box, face_box, (img_h, img_w), output_size)


def centre_face_box(image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A face box (x1, y1, x2, y2) for an image with no detected face: the centre, spanning
    :data:`CENTRE_FACE_FRACTION` of each side (the framing Hallo recommends)."""
    h, w = float(image_size[0]), float(image_size[1])
    f = CENTRE_FACE_FRACTION
    return (w * (1 - f) / 2, h * (1 - f) / 2, w * (1 + f) / 2, h * (1 + f) / 2)


def build_box_masks(
    face_bbox: tuple[float, float, float, float] | np.ndarray,
    image_size: tuple[int, int],
    output_size: tuple[int, int] = (512, 512),
    face_expand_ratio: float = 1.2,
) -> HalloMasks:
    """Masks without landmarks, from a face box (x1, y1, x2, y2 pixels): the face box expanded by
    ``face_expand_ratio``; the lip box from :data:`LIP_IN_FACE_BOX` (where the mouth sits in a
    frontal face box), expanded by the original's lip ratio. A fallback only: less exact than
    landmark masks."""
    if face_expand_ratio <= 0:
        raise ValueError(f"face_expand_ratio must be positive, got {face_expand_ratio}")
    img_h, img_w = int(image_size[0]), int(image_size[1])
    x1, y1, x2, y2 = (float(v) for v in np.asarray(face_bbox, np.float64)[:4])
    bw, bh = x2 - x1, y2 - y1
    if not (bw > 0 and bh > 0):
        raise ValueError(f"the face box {face_bbox} is empty")
    lx1, ly1, lx2, ly2 = LIP_IN_FACE_BOX
    lip = (x1 + lx1 * bw, x1 + lx2 * bw, y1 + ly1 * bh, y1 + ly2 * bh)
    lip_box = expand_region(tuple(np.round(lip)), img_w, img_h, LIP_EXPAND_RATIO)
    face_box = expand_region(tuple(np.round((x1, x2, y1, y2))), img_w, img_h, face_expand_ratio)
    return masks_from_boxes((lip_box[0], lip_box[2], lip_box[1], lip_box[3]),
                            (face_box[0], face_box[2], face_box[1], face_box[3]), (img_h, img_w), output_size)


def masks_from_boxes(
    lip_box: tuple[int, int, int, int],
    face_box: tuple[int, int, int, int],
    image_size: tuple[int, int],
    output_size: tuple[int, int] = (512, 512),
) -> HalloMasks:
    """Blurred lip / face / full masks, their latent levels and the FaceLocator input from the hard
    lip and face boxes (x1, y1, x2, y2 image pixels)."""
    img_h, img_w = int(image_size[0]), int(image_size[1])
    shapes = level_shapes(output_size)
    lip_hard = hard_mask(img_h, img_w, lip_box)
    face_hard = hard_mask(img_h, img_w, face_box)
    if not lip_hard.any() or not face_hard.any():
        raise ValueError(f"the face or lip box is empty (face {face_box}, lip {lip_box}); the landmarks are unusable")
    face_blur = blur_mask(face_hard, FACE_BLUR_KERNEL)
    lip_blur = blur_mask(lip_hard, LIP_BLUR_KERNEL)
    full64 = ((1.0 - face_blur / 255.0) * 255).astype(np.uint8)
    face64 = cv2.subtract(face_blur, lip_blur)
    lip64 = lip_blur
    out_h, out_w = int(output_size[0]), int(output_size[1])
    locator = Image.fromarray(face_hard, "L").convert("RGB")
    if locator.size != (out_w, out_h):
        locator = locator.resize((out_w, out_h), Image.BILINEAR)
    face_locator = torch.from_numpy(np.asarray(locator, np.uint8).astype(np.float32) / 255.0).permute(2, 0, 1)
    return HalloMasks(
        full=_to_levels(full64, shapes),
        face=_to_levels(face64, shapes),
        lip=_to_levels(lip64, shapes),
        level_shapes=shapes,
        face_locator=face_locator.contiguous(),
        image_size=(img_h, img_w),
        sources={"full": full64, "face": face64, "lip": lip64},
        face_box=tuple(int(v) for v in face_box),
        lip_box=tuple(int(v) for v in lip_box),
    )
