"""Portraits as 8-bit RGB arrays, from a file or from a ComfyUI ``IMAGE``.

* :func:`load_image_rgb` reads a file: EXIF orientation applied, every PIL mode scaled, not clipped.
* :func:`comfy_image_to_rgb` turns a ComfyUI ``IMAGE`` (``[B,H,W,C]`` float 0..1) into one RGB ``uint8``
  array, the equivalent of the original's ``Image.open(path).convert("RGB")``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .budgets import MIN_IMAGE_SIDE, image_problem
from .door import PIL_DATA_ERRORS, image_open_error, probe_image
from .errors import HalloInputError

logger = logging.getLogger(__name__)

# Alpha is composited onto this background: a cut-out portrait gets a plain white backdrop instead of
# whatever colour its transparent pixels happen to store (often black).
ALPHA_BACKGROUND = (255, 255, 255)


def _high_depth_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Greyscale 16-bit, 32-bit integer or float samples -> uint8, scaled by the mode's range."""
    arr = arr.astype(np.float64)
    if mode == "F":  # float images: 0..1 if they fit in it, else read as 0..255
        scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
    elif mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    else:  # "I" (32-bit): PNG 16-bit data lands here on some Pillow versions; 8-bit data stays as is
        peak = float(arr.max()) if arr.size else 0.0
        scale = 1.0 if peak <= 255 else 255.0 / 65535.0 if peak <= 65535 else 255.0 / peak
    out = np.nan_to_num(arr * scale, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def image_to_rgb(img) -> np.ndarray:
    """A PIL image of any mode as an (H, W, 3) uint8 array.

    16-bit / 32-bit / float greyscale is scaled to 8 bits (``convert("RGB")`` would clip it to white);
    palette, LA, RGBA and the premultiplied modes are composited onto white; CMYK, YCbCr and the others go
    through PIL's own conversion.
    """
    from PIL import Image

    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        grey = _high_depth_to_uint8(np.asarray(img), mode)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("P", "PA", "LA", "La", "RGBA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img if mode == "RGB" else img.convert("RGB"))


def load_image_rgb(path: str | Path) -> np.ndarray:
    """Read a portrait as (H, W, 3) uint8 RGB, upright as a photo viewer shows it (EXIF orientation).

    The file is checked at the door first (a regular, readable file whose header is within the image budget),
    so no pixel is decoded for an image that is too large, too small or too narrow.
    """
    from PIL import Image, ImageOps

    path = Path(path).expanduser()
    probe_image(path)
    try:
        with warnings.catch_warnings():  # "Corrupt EXIF data" and the like: the image still loads
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                # in place: a 64-megapixel photo is not copied once more to turn it upright
                ImageOps.exif_transpose(img, in_place=True)
                rgb = image_to_rgb(img)
    except PIL_DATA_ERRORS + (Image.DecompressionBombError,) as exc:
        raise image_open_error(path, exc) from exc
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise HalloInputError(f"image {path} has no pixels; give a real portrait")
    return np.ascontiguousarray(rgb)



AlphaMode = Literal["drop", "white", "black"]


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
    * Images with a side below ``min_side`` pixels raise ``ValueError`` (upscale them first); images beyond
      the budget (pixels, sides, aspect: :mod:`.budgets`) raise :class:`HalloInputError`.
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
    problem = image_problem(w, h)
    if problem:
        raise HalloInputError(f"{name} {problem}")
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
