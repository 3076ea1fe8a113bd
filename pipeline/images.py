"""Reading a portrait file as 8-bit RGB: EXIF orientation applied, every PIL mode scaled, not clipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import HalloInputError

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
    return np.asarray(img.convert("RGB"))


def _open_error(path: Path, exc: BaseException) -> HalloInputError:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, Image.DecompressionBombError):
        return HalloInputError(
            f"image {path} is too large for a portrait ({exc}); resize it to at most a few thousand pixels a side")
    if isinstance(exc, PermissionError):
        return HalloInputError(f"image {path} cannot be read (permission denied); check the file's permissions")
    if isinstance(exc, UnidentifiedImageError):
        return HalloInputError(f"image {path} is not an image PIL can read; give a JPEG, PNG or WebP file")
    return HalloInputError(
        f"image {path} cannot be decoded (truncated or corrupt file? {type(exc).__name__}: {exc}); "
        "export it again or use another copy")


def load_image_rgb(path: str | Path) -> np.ndarray:
    """Read a portrait as (H, W, 3) uint8 RGB, upright as a photo viewer shows it (EXIF orientation)."""
    from PIL import Image, ImageOps

    path = Path(path).expanduser()
    if path.is_dir():
        raise HalloInputError(f"image {path} is a directory; give the portrait's file name")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = image_to_rgb(upright)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _open_error(path, exc) from exc
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise HalloInputError(f"image {path} has no pixels; give a real portrait")
    return np.ascontiguousarray(rgb)
