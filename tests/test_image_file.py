"""Portrait files are read upright and in their real tones, whatever their mode (EXIF, 16-bit, alpha)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hallo_nodes.pipeline.render import load_image_rgb
from PIL import Image


@pytest.fixture()
def statue(assets: Path) -> Image.Image:
    with Image.open(assets / "portraits" / "statue.jpg") as img:
        return img.convert("RGB").crop((0, 0, 559, 400))  # not square: a sideways read changes the shape


@pytest.mark.parametrize("orientation, stored", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                                 (3, Image.Transpose.ROTATE_180)])
def test_exif_orientation_applied(statue: Image.Image, tmp_path: Path, orientation: int, stored) -> None:
    """A phone stores a portrait sideways with an Orientation tag; it is read as the viewer shows it."""
    path = tmp_path / "phone.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    statue.transpose(stored).save(path, exif=exif)
    np.testing.assert_array_equal(load_image_rgb(path), np.asarray(statue))


def test_16_bit_greyscale_is_scaled_not_clipped(statue: Image.Image, tmp_path: Path) -> None:
    grey = np.asarray(statue.convert("L")).astype(np.uint16)
    path = tmp_path / "scan16.png"
    Image.fromarray(grey * 257).save(path)  # full 16-bit range, as a scanner writes it
    with Image.open(path) as img:
        assert img.mode in ("I;16", "I")
    rgb = load_image_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == grey.shape + (3,)
    assert np.abs(rgb[..., 0].astype(int) - grey).max() <= 1
    assert (rgb == 255).mean() < 0.05  # convert("RGB") turned 99.9 % of it white


def test_transparent_background_becomes_white(statue: Image.Image, tmp_path: Path) -> None:
    rgba = np.dstack([np.asarray(statue), np.full(statue.size[::-1], 255, np.uint8)])
    rgba[:, :100] = 0  # a cut-out: transparent pixels stored as transparent black
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = load_image_rgb(path)
    assert (rgb[:, :100] == 255).all()
    np.testing.assert_array_equal(rgb[:, 100:], np.asarray(statue)[:, 100:])


def test_palette_with_transparency_becomes_white(tmp_path: Path) -> None:
    img = Image.new("P", (64, 64), 0)  # 64 px: the smallest side the image budget allows
    img.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    img.paste(1, (32, 0, 64, 64))
    path = tmp_path / "logo.png"
    img.save(path, transparency=0)
    rgb = load_image_rgb(path)
    assert (rgb[:, :32] == 255).all()
    assert (rgb[:, 32:] == (200, 30, 40)).all()
