"""Hypothesis strategies for hostile inputs: images of any size, mode, bit depth and EXIF; WAV and FLAC headers
that lie about rate, channels and length; paths that are links, FIFOs, folders or unreadable. Each strategy
draws a recipe, and ``make_*`` writes it to a file, so a failing example prints as a short readable recipe."""

from __future__ import annotations

import io
import os
import struct
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK", "YCbCr"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}
# the modes each format can write (PIL converts nothing by itself)
FORMAT_MODES = {"PNG": {"1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I"}, "JPEG": {"L", "RGB", "CMYK", "YCbCr"},
                "TIFF": {"1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK", "YCbCr"},
                "WEBP": {"RGB", "RGBA"}, "BMP": {"1", "L", "P", "RGB"}, "GIF": {"L", "P"}}


@dataclass(frozen=True)
class ImageRecipe:
    """A real image (``claim`` None) or a PNG whose header claims ``claim`` = (w, h) over a few bytes of data."""

    fmt: str
    mode: str
    size: tuple[int, int]
    orientation: int = 1  # EXIF orientation tag (1 = upright)
    claim: tuple[int, int] | None = None
    cut: float | None = None  # keep this share of the file's bytes (a truncated download)


@st.composite
def image_recipes(draw: st.DrawFn) -> ImageRecipe:
    """Real images at and around the side, pixel and aspect limits (drawn small, claimed big)."""
    if draw(st.booleans()):  # a header that claims any size, with almost no data behind it
        side = st.sampled_from([1, 2, 63, 64, 65, 1000, 16384, 16385, 60000, 2**31 - 1])
        return ImageRecipe("PNG", "RGB", (1, 1), claim=(draw(side | st.integers(1, 70000)),
                                                        draw(side | st.integers(1, 70000))))
    fmt = draw(st.sampled_from(list(FORMATS)))
    mode = draw(st.sampled_from(sorted(FORMAT_MODES[fmt])))
    w = draw(st.sampled_from([1, 8, 63, 64, 65, 96, 600]) | st.integers(1, 700))
    h = draw(st.sampled_from([1, 8, 63, 64, 65, 96, 600]) | st.integers(1, 700))
    orientation = draw(st.integers(1, 8)) if fmt in ("JPEG", "TIFF", "WEBP", "PNG") else 1
    cut = draw(st.none() | st.floats(0.0, 0.99))
    return ImageRecipe(fmt, mode, (w, h), orientation, None, cut)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_image(recipe: ImageRecipe, path: Path) -> Path:
    """Write ``recipe`` to ``path`` (the suffix is the format's)."""
    if recipe.claim is not None:
        w, h = recipe.claim
        head = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        path.write_bytes(head + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
        return path
    w, h = recipe.size
    rng = np.random.default_rng(w * 1000 + h)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if recipe.mode in ("I;16", "I", "F"):
        grey = rng.random((h, w)) * (65535 if recipe.mode == "I;16" else 1.0 if recipe.mode == "F" else 70000)
        img = Image.fromarray(grey.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[recipe.mode]))
    else:
        img = img.convert(recipe.mode)
    kwargs = {}
    if recipe.orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = recipe.orientation
        kwargs["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    img.save(buffer, format=recipe.fmt, **kwargs)
    data = buffer.getvalue()
    if recipe.cut is not None:
        data = data[: int(len(data) * recipe.cut)]
    path.write_bytes(data)
    return path


@dataclass(frozen=True)
class AudioRecipe:
    """A WAV (or FLAC) of ``frames`` frames whose header may lie: ``rate``, ``channels`` and the data size field
    are written as given, ``data_claim`` bytes (None: the truth)."""

    container: str
    rate: int
    channels: int
    width: int  # bytes per sample
    frames: int
    data_claim: int | None = None


RATES = [1, 8, 3999, 4000, 8000, 16000, 44100, 48000, 768000, 768001, 2**31 - 1]


@st.composite
def audio_recipes(draw: st.DrawFn) -> AudioRecipe:
    container = draw(st.sampled_from(["wav", "wav", "flac"]))
    rate = draw(st.sampled_from(RATES) | st.integers(1, 1_000_000))
    channels = draw(st.sampled_from([1, 2, 6, 16, 17, 255]) | st.integers(1, 64))
    width = draw(st.sampled_from([1, 2, 3, 4]))
    frames = draw(st.sampled_from([0, 1, 100, 4000]) | st.integers(0, 6000))
    lie = draw(st.none() | st.sampled_from([0, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1))
    if container == "flac":  # PyAV's FLAC encoder: 16-bit, 1..8 channels, rates up to 655350
        channels, width = min(channels, 8), 2
        rate = min(max(rate, 1), 655350)
    return AudioRecipe(container, rate, channels, width, frames, lie)


def _wav_bytes(recipe: AudioRecipe) -> bytes:
    rng = np.random.default_rng(recipe.frames)
    raw = rng.integers(0, 256, recipe.frames * recipe.channels * recipe.width, dtype=np.uint8).tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(recipe.width)
        out.setframerate(8000)
        out.writeframes(raw)
    data = bytearray(buffer.getvalue())
    # the header as the recipe says, whatever the truth: channels, rate, byte rate, block align, data size
    block = recipe.channels * recipe.width
    struct.pack_into("<HIIH", data, 22, recipe.channels & 0xFFFF, recipe.rate & 0xFFFFFFFF,
                     (recipe.rate * block) & 0xFFFFFFFF, block & 0xFFFF)
    if recipe.data_claim is not None:
        struct.pack_into("<I", data, 40, recipe.data_claim)
    return bytes(data)


def _flac_bytes(recipe: AudioRecipe) -> bytes:
    import av

    buffer = io.BytesIO()
    layout = {1: "mono", 2: "stereo"}.get(recipe.channels, f"{recipe.channels}c")
    rate = max(recipe.rate, 1)
    with av.open(buffer, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout=layout)
        if recipe.frames:
            samples = np.random.default_rng(recipe.frames).integers(-3000, 3000, (1, recipe.frames * recipe.channels))
            frame = av.AudioFrame.from_ndarray(samples.astype(np.int16), format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = bytearray(buffer.getvalue())
    if recipe.data_claim is not None and data[:4] == b"fLaC":  # STREAMINFO's 36-bit total sample count
        offset = 8 + 13  # "fLaC", block header, then 13 bytes into STREAMINFO
        head = data[offset] & 0xF0
        total = recipe.data_claim * 16  # claim more (or fewer) samples than the frames hold
        data[offset] = head | ((total >> 32) & 0x0F)
        struct.pack_into(">I", data, offset + 1, total & 0xFFFFFFFF)
    return bytes(data)


def make_audio(recipe: AudioRecipe, path: Path) -> Path:
    path.write_bytes(_wav_bytes(recipe) if recipe.container == "wav" else _flac_bytes(recipe))
    return path


PATH_KINDS = ["dangling-link", "link-to-dir", "link-to-dev-zero", "fifo", "directory", "dev-urandom", "empty",
              "unreadable"]


def make_path_kind(kind: str, path: Path) -> Path:
    """``path`` made into something that is not a readable regular file."""
    if kind == "dangling-link":
        path.symlink_to(path.with_name("gone"))
    elif kind == "link-to-dir":
        path.symlink_to(path.parent)
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "dev-urandom":
        path.symlink_to("/dev/urandom")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "unreadable":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
        path.chmod(0)
    return path
