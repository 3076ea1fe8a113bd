"""Face crop and paste-back: any photo to a face-centred square, and the rendered frames back into it.

:func:`face_crop` makes the square crop the original asks for (a square image where the face fills
50-70 % of the frame); :class:`PasteCompositor` / :func:`paste_back` put rendered frames back, one frame at
a time, with a feathered seam.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ..lazy_import import cv2

logger = logging.getLogger(__name__)

#: Rows blended at a time by the paste-back (bounds its float32 temporaries).
BLEND_ROWS = 128
#: Largest crop window cut at full resolution; a larger one is scaled down before it is padded (its pixels end
#: up resized to at most 2048 anyway), so a crop never costs more than this squared times 3 bytes.
MAX_CROP_WINDOW = 4096

PadMode = Literal["edge", "reflect", "constant"]


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


def square_window(rgb: np.ndarray, x0: int, y0: int, side: int, max_side: int,
                  border: int = cv2.BORDER_CONSTANT) -> tuple[np.ndarray, float]:
    """The ``side`` x ``side`` square of ``rgb`` at (x0, y0), filled with ``border`` (black, or the edge
    repeated) where it leaves the image, at most ``max_side`` pixels a side: returns (window, scale) with window
    pixels = image pixels x scale.

    Only the window is allocated (never the padded whole image), and a window larger than ``max_side`` is
    scaled down from the part inside the image before it is padded, so memory stays below ``max_side``^2 x 3
    bytes whatever the face box claims.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / side)
    out = max(1, int(round(side * scale)))
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if ix1 <= ix0 or iy1 <= iy0:
        return np.zeros((out, out, 3), np.uint8), out / side
    ox0, oy0 = int(round((ix0 - x0) * scale)), int(round((iy0 - y0) * scale))
    ow = min(out - ox0, max(1, int(round((ix1 - ix0) * scale))))
    oh = min(out - oy0, max(1, int(round((iy1 - iy0) * scale))))
    inside = rgb[iy0:iy1, ix0:ix1]
    if (ow, oh) != (ix1 - ix0, iy1 - iy0):
        inside = cv2.resize(inside, (ow, oh), interpolation=cv2.INTER_AREA)
    pads = (oy0, out - oy0 - oh, ox0, out - ox0 - ow)
    window = cv2.copyMakeBorder(np.ascontiguousarray(inside), *pads, border, value=(0, 0, 0)) if any(pads) else inside
    return np.ascontiguousarray(window), out / side


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
    if side > MAX_CROP_WINDOW:  # a face box far larger than a portrait: scale first, never pad the whole image
        border = cv2.BORDER_CONSTANT if pad_mode == "constant" else cv2.BORDER_REPLICATE
        window, _ = square_window(rgb, x0, y0, side, MAX_CROP_WINDOW, border)
        crop = np.asarray(Image.fromarray(window).resize((size, size), Image.BICUBIC))
        return np.ascontiguousarray(crop), box
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


def even_size(height: int, width: int) -> tuple[int, int]:
    """The largest even height and width that fit (H.264 in yuv420p needs even sides)."""
    return height - height % 2, width - width % 2


def _float_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An [H,W,C] / [1,H,W,C] image as an RGB view (float 0..1, or uint8), without copying when possible."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"paste_back: the original must be an RGB(A) image [H,W,C], got shape {tuple(arr.shape)}")
    return arr[:, :, :3]


def _paste_size(source: np.ndarray, box: CropBox, even: bool) -> tuple[int, int]:
    """(height, width) of the composited frames. The original is the photo the box was made for or, with
    ``even``, that photo already cut to even sides (frames of an earlier paste-back into the same photo)."""
    h, w = source.shape[:2]
    made_for = (box.image_height, box.image_width)
    if (h, w) == made_for or (even and (h, w) == even_size(*made_for)):
        return even_size(h, w) if even else (h, w)
    raise ValueError(
        f"paste_back: the original image is {w}x{h} but the crop box was made for "
        f"{box.image_width}x{box.image_height}"
    )


class PasteCompositor:
    """Pastes rendered square frames into one photo at a :class:`CropBox`, one frame at a time.

    Only the crop square is blended (in float32, at most ``side`` x ``side``); the rest of each frame is a
    plain copy of the photo, so the memory a frame needs is the output frame itself. ``even=True`` drops
    the last row / column of an odd-sized photo (what H.264 in yuv420p needs).
    """

    def __init__(self, original: torch.Tensor | np.ndarray, crop_box: CropBox, feather: int = 16, *,
                 even: bool = False) -> None:
        self.source = _float_rgb(original)
        self.box = crop_box
        self.height, self.width = _paste_size(self.source, crop_box, even)
        n = crop_box.side
        ix0, iy0 = max(0, crop_box.x0), max(0, crop_box.y0)
        ix1, iy1 = min(self.width, crop_box.x0 + n), min(self.height, crop_box.y0 + n)
        if ix1 <= ix0 or iy1 <= iy0:
            raise ValueError("paste_back: the crop box does not overlap the original image")
        self.rows, self.cols = slice(iy0, iy1), slice(ix0, ix1)
        cy0, cx0 = iy0 - crop_box.y0, ix0 - crop_box.x0
        self.crop_rows, self.crop_cols = slice(cy0, cy0 + iy1 - iy0), slice(cx0, cx0 + ix1 - ix0)
        self.weights = _feather_weights(crop_box, feather)[self.crop_rows, self.crop_cols, None]
        self._uint8: np.ndarray | None = None

    def _resized(self, frame: torch.Tensor | np.ndarray, uint8: bool) -> np.ndarray:
        """One rendered frame scaled to the crop's side (bicubic): float32 0..1, or uint8 for a video."""
        f = frame.detach().cpu().float().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
        f = np.clip(f[:, :, :3].astype(np.float32, copy=False), 0.0, 1.0)
        if uint8:  # 3 bytes per crop pixel instead of 12 (cv2 saturates the bicubic overshoot)
            f = np.rint(f * 255.0).astype(np.uint8)
        n = self.box.side
        if f.shape[:2] != (n, n):
            f = cv2.resize(f, (n, n), interpolation=cv2.INTER_CUBIC)
        return f[self.crop_rows, self.crop_cols]

    def _blend(self, region: np.ndarray, dst: np.ndarray, top: float) -> None:
        """``dst = clip(region * w + dst * (1 - w), 0, top)``, in bands of rows (small float32 temporaries)."""
        for y in range(0, dst.shape[0], BLEND_ROWS):
            w = self.weights[y:y + BLEND_ROWS]
            mixed = region[y:y + BLEND_ROWS].astype(np.float32) * w
            mixed += dst[y:y + BLEND_ROWS].astype(np.float32) * (1.0 - w)
            np.clip(mixed, 0.0, top, out=mixed)
            dst[y:y + BLEND_ROWS] = np.rint(mixed) if dst.dtype == np.uint8 else mixed

    def to_float(self, frame: torch.Tensor | np.ndarray, out: np.ndarray,
                 background: np.ndarray | None = None) -> np.ndarray:
        """Composite ``frame`` into ``out`` (float32 [height, width, 3], e.g. one slot of an IMAGE batch), over
        the photo or over ``background`` (another frame of the photo's size, e.g. an earlier paste-back's)."""
        if background is not None and background.shape[:2] != self.source.shape[:2]:
            raise ValueError(f"paste_back: the original frames differ in size ({background.shape[1]}x"
                             f"{background.shape[0]} and {self.source.shape[1]}x{self.source.shape[0]})")
        src = (self.source if background is None else background[:, :, :3])[: self.height, : self.width]
        if src.dtype == np.uint8:
            np.divide(src, np.float32(255.0), out=out, dtype=np.float32)
        else:
            out[...] = src
        self._blend(self._resized(frame, uint8=False), out[self.rows, self.cols], 1.0)
        return out

    def to_uint8(self, frame: torch.Tensor | np.ndarray) -> np.ndarray:
        """One composited frame as a new uint8 [height, width, 3] array (for a video writer)."""
        if self._uint8 is None:  # the photo in uint8, once: 3 bytes per pixel
            src = self.source[: self.height, : self.width]
            self._uint8 = src.copy() if src.dtype == np.uint8 else _to_uint8(src)
        out = self._uint8.copy()
        self._blend(self._resized(frame, uint8=True), out[self.rows, self.cols], 255.0)
        return out


def _to_uint8(image: np.ndarray, rows: int = 256) -> np.ndarray:
    """float 0..1 [H,W,3] -> uint8, a band of rows at a time (no full-size float temporary)."""
    out = np.empty(image.shape, np.uint8)
    for y in range(0, image.shape[0], rows):
        band = np.nan_to_num(image[y:y + rows].astype(np.float32), nan=0.0)
        out[y:y + rows] = np.rint(np.clip(band, 0.0, 1.0) * 255.0)
    return out


def paste_back(
    frames: torch.Tensor | np.ndarray,
    original: torch.Tensor | np.ndarray,
    crop_box: CropBox,
    feather: int = 16,
    *,
    even: bool = False,
) -> torch.Tensor:
    """Paste rendered square frames (``[N,h,w,3]`` float 0..1, or one ``[h,w,3]``) back into the
    original image (``[H,W,3]``/``[1,H,W,3]`` float 0..1, or uint8) at ``crop_box``.

    Each frame is resized to the crop's source side (bicubic), blended with a linear feather of
    ``feather`` source pixels along crop edges inside the image, and clipped to the image. Outside the
    crop square the output is the original, unchanged. ``even=True`` drops the last row / column of an
    odd-sized image. The original may also be a batch of ``N`` frames of that photo (e.g. the output of an
    earlier paste-back of another face): frame ``i`` is pasted into original frame ``i``. Returns a float32
    ComfyUI IMAGE ``[N, H, W, 3]``; besides it only one frame's crop region is held in float32 at a time.
    """
    if frames.ndim == 3:
        frames = frames[None]
    n_orig = original.shape[0] if original.ndim == 4 else 1
    if n_orig not in (1, frames.shape[0]):
        raise ValueError(f"paste_back: {frames.shape[0]} rendered frame(s) but {n_orig} original frames; the "
                         "original must be one photo or as many frames of it as were rendered")
    comp = PasteCompositor(original, crop_box, feather, even=even)
    out = torch.empty((frames.shape[0], comp.height, comp.width, 3), dtype=torch.float32)
    view = out.numpy()
    for i in range(frames.shape[0]):
        background = _float_rgb(original[i]) if n_orig > 1 and i > 0 else None
        comp.to_float(frames[i], view[i], background)
    return out

