"""The checks at the door: every input file is what it claims to be and within its budget, before any work.

Only headers are read: the image's size from PIL without decoding pixels, the audio's rate, channels and
duration from PyAV's container metadata, weighed against the file's size (a header may lie about its
length; the file cannot hold more samples than its bytes). No torch, no numpy: ``hallo-render`` runs these
before it imports the networks, the nodes run the same budgets on their tensors (:mod:`.budgets`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .budgets import MAX_IMAGE_PIXELS, check_audio_budget, check_image_budget
from .errors import HalloInputError
from .file_checks import DENIED, DIRECTORY, MISSING, PERMISSION_FIX, file_problem

# Exceptions PIL's decoders raise on corrupt data (besides OSError): a damaged file, not a bug of ours.
PIL_DATA_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError, EOFError, IndexError,
                                                    KeyError, TypeError, ZeroDivisionError, OverflowError)
# Decoders whose samples are stored as is: the file's size bounds the duration exactly.
_PCM_BITS = re.compile(r"pcm_[a-z]*?(\d+)")
#: Lower bound of any speech codec's bit rate (codec2 reaches 700 bit/s): a compressed file of N bytes cannot
#: hold more than 8 N / 600 seconds.
MIN_CODEC_BITRATE = 600


def check_input_file(path: Path, what: str, hint: str) -> Path:
    """``path`` is a regular, non-empty file this user can read; else FileNotFoundError (missing) or
    :class:`HalloInputError` with the true reason. ``what`` names the input, ``hint`` the fix for a folder."""
    problem = file_problem(path)
    if problem is None:
        return path
    kind, text = problem
    if kind == MISSING:
        raise FileNotFoundError(f"{what} not found: {path}" + ("" if text == "does not exist" else f" ({text})"))
    if kind == DIRECTORY:
        raise HalloInputError(f"{what} {path} is a directory; {hint}")
    if kind == DENIED:
        raise HalloInputError(f"{what} {path} {text}; {PERMISSION_FIX}")
    raise HalloInputError(f"{what} {path} {text}; {hint}")


def _looks_like_jpeg_png_webp(path: Path) -> bool:
    """The file starts as a JPEG, PNG or WebP does: PIL before 13 calls a truncated one unidentified."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (head[:4], head[8:]) == (b"RIFF", b"WEBP")


def image_open_error(path: Path, exc: BaseException) -> HalloInputError:
    """The one-line error for an image PIL cannot open or decode."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "larger than PIL's safety limit"
        return HalloInputError(f"image {path} is {size}; the limit is {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels "
                               "(8192x8192): resize it (a portrait needs about 1024 px a side), the file is too large")
    if isinstance(exc, PermissionError):
        return HalloInputError(f"image {path} cannot be read: permission denied; {PERMISSION_FIX}")
    if isinstance(exc, UnidentifiedImageError) and not _looks_like_jpeg_png_webp(path):
        return HalloInputError(f"image {path} is not an image PIL can read; give a JPEG, PNG or WebP file")
    return HalloInputError(
        f"image {path} cannot be decoded (truncated or corrupt file? {type(exc).__name__}: {exc}); "
        "export it again or use another copy")


def probe_image(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file from its header, checked against the budget; no pixel is decoded."""
    from PIL import Image

    path = check_input_file(Path(path).expanduser(), "image file", "give the portrait's file name")
    try:
        with warnings.catch_warnings():  # the bomb warning (the budget below says it), "Corrupt EXIF data", ...
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
    except PIL_DATA_ERRORS + (Image.DecompressionBombError,) as exc:
        raise image_open_error(path, exc) from exc
    check_image_budget(f"image {path}", width, height)
    return width, height


@dataclass(frozen=True)
class AudioHeader:
    """What an audio file's header says, with the duration bounded by the file's size."""

    rate: int
    channels: int
    seconds: float | None  # None: the container states no duration (the decoder's budget still applies)
    codec: str


def _size_bound(size: int, codec: str, rate: int, channels: int) -> float:
    """The longest duration ``size`` bytes of ``codec`` can hold."""
    pcm = _PCM_BITS.match(codec)
    if pcm and rate > 0 and channels > 0:
        return size * 8 / (int(pcm.group(1)) * rate * channels)
    return size * 8 / MIN_CODEC_BITRATE


def _header_seconds(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def probe_audio(path: str | Path, what: str = "audio file") -> AudioHeader:
    """Rate, channels and duration of an audio file from its header, checked against the budget; ``what`` names
    the input in a missing file's message."""
    import av

    path = check_input_file(Path(path).expanduser(), what, "give the voice recording's file name")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise HalloInputError(f"audio file {path} cannot be opened as audio ({exc}); give a WAV, FLAC, MP3, M4A "
                              "or other audio file") from exc
    with container:
        if not container.streams.audio:
            raise HalloInputError(f"audio file {path} has no audio stream; give a file with a voice track")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        rate, channels = int(ctx.sample_rate or stream.rate or 0), int(ctx.channels or 0)
        claimed = _header_seconds(container, stream)
        codec = str(ctx.name or "")
    if rate <= 0 or channels <= 0:
        raise HalloInputError(f"audio file {path} reports {rate} Hz and {channels} channels; re-encode it "
                              "(e.g. ffmpeg -i in -c:a pcm_s16le out.wav)")
    bound = _size_bound(path.stat().st_size, codec, rate, channels)
    seconds = bound if claimed is None and _PCM_BITS.match(codec) else claimed
    if seconds is not None:
        seconds = min(max(seconds, 0.0), bound)
    check_audio_budget(f"audio file {path}", seconds or 0.0, rate, channels)
    if seconds is not None and seconds * rate < 1:
        raise HalloInputError(f"audio file {path} contains no audio samples; give a recording of the voice")
    return AudioHeader(rate, channels, seconds, codec)


def check_render_inputs(image: str | Path, audio: str | Path) -> tuple[tuple[int, int], AudioHeader]:
    """The portrait and the voice of one render, at the door: regular files, readable, within budget."""
    return probe_image(image), probe_audio(audio)
