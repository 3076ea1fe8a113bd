"""Image conversion for face analysis: ComfyUI IMAGE -> RGB uint8, reference tensor, face crop.

* :func:`comfy_image_to_rgb` turns a ComfyUI ``IMAGE`` (``[B,H,W,C]`` float 0..1) into one RGB
  ``uint8`` array, the equivalent of the original's ``Image.open(path).convert("RGB")``.
* :func:`prepare_reference` is the original ``Resize((H,W)) -> ToTensor -> Normalize(0.5, 0.5)``
  (PIL bilinear resize to the output size, non-square inputs are stretched).
* :func:`face_crop` / :func:`paste_back` make a face-centred square crop (the original asks for a
  square image where the face fills 50-70 % of the frame) and put rendered frames back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from .lazy_import import cv2

logger = logging.getLogger(__name__)

#: Smallest accepted image side. Below this neither the face detector nor MediaPipe find faces.
MIN_IMAGE_SIDE = 64

AlphaMode = Literal["drop", "white", "black"]
PadMode = Literal["edge", "reflect", "constant"]


def comfy_image_to_rgb(
    image: torch.Tensor | np.ndarray,
    *,
    alpha: AlphaMode = "drop",
    min_side: int = MIN_IMAGE_SIDE,
    name: str = "image",
) -> np.ndarray:
    """Convert a ComfyUI IMAGE (``[B,H,W,C]``, ``[H,W,C]`` or ``[H,W]``, float 0..1) to RGB uint8.

    * ``B > 1``: the first image is used and a warning is logged.
    * ``C == 1`` (greyscale) is repeated to RGB; ``C == 2`` is greyscale + alpha.
    * ``C == 4`` (RGBA): ``alpha="drop"`` discards alpha like PIL's ``convert("RGB")`` in the
      original; ``"white"``/``"black"`` composite over that colour.
    * Values are clamped to 0..1 (NaN -> 0) and rounded to the nearest of 256 levels, which
      inverts the ``uint8 / 255`` of ComfyUI's image loader exactly.
    * Images with a side below ``min_side`` pixels raise ``ValueError`` (upscale them first).
    """
    arr = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 4:
        if arr.shape[0] == 0:
            raise ValueError(f"{name}: the image batch is empty")
        if arr.shape[0] > 1:
            logger.warning("%s: batch of %d images; using the first one only", name, arr.shape[0])
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected an IMAGE tensor [B,H,W,C], got shape {tuple(arr.shape)}")
    h, w, c = arr.shape
    if c not in (1, 2, 3, 4):
        raise ValueError(
            f"{name}: expected 1 (grey), 3 (RGB) or 4 (RGBA) channels last, got shape {tuple(arr.shape)}"
        )
    if min(h, w) < min_side:
        raise ValueError(
            f"{name}: the image is only {w}x{h} pixels; face analysis needs at least {min_side} px on "
            f"each side (512x512 is what Hallo was trained on). Upscale the image first, e.g. with an "
            f"upscale node, or use a larger source."
        )
    if arr.dtype == np.uint8:
        u8 = arr
    else:
        f = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        u8 = np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    if c in (2, 4):
        colour, a = u8[:, :, : c - 1], u8[:, :, c - 1 :]
        if alpha == "drop":
            u8 = colour
        else:
            bg = 255.0 if alpha == "white" else 0.0
            af = a.astype(np.float32) / 255.0
            u8 = np.rint(colour.astype(np.float32) * af + bg * (1.0 - af)).astype(np.uint8)
    if u8.shape[2] == 1:
        u8 = np.repeat(u8, 3, axis=2)
    return np.ascontiguousarray(u8)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"output size must be positive (height, width), got {size}")
    return h, w


def prepare_reference(rgb: np.ndarray, size: tuple[int, int] = (512, 512)) -> torch.Tensor:
    """Reference pixels exactly like the original: PIL bilinear resize to ``size`` = (H, W) (no crop,
    non-square inputs stretch), ``/255``, ``(x - 0.5) / 0.5``. Returns float32 ``(3, H, W)`` in [-1, 1].
    """
    h, w = _check_size(size)
    pil = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if pil.size != (w, h):
        pil = pil.resize((w, h), Image.BILINEAR)
    t = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255.0)
    return t.sub(0.5).div(0.5)


@dataclass(frozen=True)
class CropBox:
    """A square crop of a source image: ``side`` x ``side`` source pixels from (x0, y0), which may
    lie partly outside the image (that part was padded), scaled to ``size`` x ``size``."""

    x0: int
    y0: int
    side: int
    size: int
    image_height: int
    image_width: int
    pad_mode: str

    @property
    def scale(self) -> float:
        """Output pixels per source pixel."""
        return self.size / self.side


def face_crop(
    rgb: np.ndarray,
    face_bbox: tuple[float, float, float, float] | np.ndarray,
    face_fraction: float = 0.6,
    size: int = 512,
    *,
    pad_mode: PadMode = "edge",
) -> tuple[np.ndarray, CropBox]:
    """Square crop centred on ``face_bbox`` (x1, y1, x2, y2) whose side is
    ``max(face_w, face_h) / face_fraction``, so the face box spans ``face_fraction`` of the frame's
    side (the original asks for 50-70 %). Where the square leaves the image it is padded with
    ``pad_mode``: ``"edge"`` (repeat border pixels, the default), ``"reflect"`` (mirror) or
    ``"constant"`` (black). The crop is resized to ``size`` x ``size`` (PIL bicubic, antialiased).
    """
    if not 0.05 <= face_fraction <= 1.0:
        raise ValueError(f"face_fraction must be in 0.05..1.0, got {face_fraction}")
    x1, y1, x2, y2 = (float(v) for v in np.asarray(face_bbox, dtype=np.float64)[:4])
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"face_bbox must be (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {face_bbox}")
    h, w = rgb.shape[:2]
    side = max(2, int(round(max(x2 - x1, y2 - y1) / face_fraction)))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    box = CropBox(x0, y0, side, int(size), h, w, pad_mode)
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - w), max(0, y0 + side - h)
    src = rgb
    if pad_l or pad_t or pad_r or pad_b:
        border = {"edge": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101,
                  "constant": cv2.BORDER_CONSTANT}[pad_mode]
        if border == cv2.BORDER_REFLECT_101 and (max(pad_l, pad_r) >= w or max(pad_t, pad_b) >= h):
            border = cv2.BORDER_REPLICATE  # a mirror cannot be wider than the image itself
        src = cv2.copyMakeBorder(rgb, pad_t, pad_b, pad_l, pad_r, border, value=(0, 0, 0))
    crop = src[y0 + pad_t : y0 + pad_t + side, x0 + pad_l : x0 + pad_l + side]
    if side != size:
        crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BICUBIC))
    return np.ascontiguousarray(crop), box


def _feather_weights(box: CropBox, feather: int) -> np.ndarray:
    """(side, side) float32 weights: 1 inside, ramping to 0 over ``feather`` source pixels at each
    crop edge that lies inside the image (edges on or beyond the image border stay hard)."""
    n = box.side
    ramp = np.ones(n, np.float32)
    f = max(0, min(int(feather), n // 2))
    wy, wx = ramp.copy(), ramp.copy()
    if f > 0:
        r = (np.arange(f, dtype=np.float32) + 0.5) / f
        if box.x0 > 0:
            wx[:f] = np.minimum(wx[:f], r)
        if box.x0 + n < box.image_width:
            wx[n - f :] = np.minimum(wx[n - f :], r[::-1])
        if box.y0 > 0:
            wy[:f] = np.minimum(wy[:f], r)
        if box.y0 + n < box.image_height:
            wy[n - f :] = np.minimum(wy[n - f :], r[::-1])
    return wy[:, None] * wx[None, :]


def paste_back(
    frames: torch.Tensor | np.ndarray,
    original: torch.Tensor | np.ndarray,
    crop_box: CropBox,
    feather: int = 16,
) -> torch.Tensor:
    """Paste rendered square frames (``[N,h,w,3]`` float 0..1, or one ``[h,w,3]``) back into the
    original image (``[H,W,3]``/``[1,H,W,3]`` float 0..1, or uint8) at ``crop_box``.

    Each frame is resized to the crop's source side (bicubic), blended with a linear feather of
    ``feather`` source pixels along crop edges inside the image, and clipped to the image.
    Returns a float32 ComfyUI IMAGE ``[N, H, W, 3]``.
    """
    fr = frames.detach().cpu().float().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if fr.ndim == 3:
        fr = fr[None]
    orig = original.detach().cpu().numpy() if isinstance(original, torch.Tensor) else np.asarray(original)
    if orig.ndim == 4:
        orig = orig[0]
    orig = orig.astype(np.float32) / 255.0 if orig.dtype == np.uint8 else orig.astype(np.float32)
    orig = orig[:, :, :3]
    h, w = orig.shape[:2]
    if (h, w) != (crop_box.image_height, crop_box.image_width):
        raise ValueError(
            f"paste_back: the original image is {w}x{h} but the crop box was made for "
            f"{crop_box.image_width}x{crop_box.image_height}"
        )
    n = crop_box.side
    weights = _feather_weights(crop_box, feather)
    # Visible part of the crop square inside the image.
    ix0, iy0 = max(0, crop_box.x0), max(0, crop_box.y0)
    ix1, iy1 = min(w, crop_box.x0 + n), min(h, crop_box.y0 + n)
    if ix1 <= ix0 or iy1 <= iy0:
        raise ValueError("paste_back: the crop box does not overlap the original image")
    cx0, cy0 = ix0 - crop_box.x0, iy0 - crop_box.y0
    wv = weights[cy0 : cy0 + (iy1 - iy0), cx0 : cx0 + (ix1 - ix0), None]
    out = np.empty((fr.shape[0], h, w, 3), np.float32)
    for i, frame in enumerate(fr):
        f = np.clip(frame[:, :, :3].astype(np.float32), 0.0, 1.0)
        if f.shape[:2] != (n, n):
            f = cv2.resize(f, (n, n), interpolation=cv2.INTER_CUBIC)
        region = f[cy0 : cy0 + (iy1 - iy0), cx0 : cx0 + (ix1 - ix0)]
        out[i] = orig
        base = out[i, iy0:iy1, ix0:ix1]
        out[i, iy0:iy1, ix0:ix1] = np.clip(region * wv + base * (1.0 - wv), 0.0, 1.0)
    return torch.from_numpy(out)
