"""What one input may cost: the limits every input is checked against before any work, CLI and nodes alike.

Standard library only, so ``hallo-render`` checks its inputs before it imports torch. Each check raises
:class:`~.errors.HalloInputError` with one line: what the input claims, the limit, and how to get under it.

The limits are generous but finite. The peak host memory each one allows (measured on the tiny models, the
face stage's share computed for the released ones; README, "Hostile input") is:

* image: decode (PIL's 4-byte pixels and the RGB array) plus the face stage (the hard masks and the face
  locator at image size, the detector's and landmarker's scaled copies, bounded by their own sizes; the
  image-size mask previews are drawn only when a node shows them): measured 0.43 GB at 1 megapixel, 0.65 GB at
  16 and 1.05 GB at 64 (:data:`MAX_IMAGE_PIXELS`), so about 0.4 GB + 10 bytes a pixel; the tests hold the worst
  allowed image under 1.5 GB. The side and aspect limits keep the face crops bounded too: a landmark or face
  crop is cut at most 4096 pixels a side (``pipeline/face/crop.py``), whatever box the detector claims.
* audio: the soundtrack (AAC, ~1 MB a minute), the 16 kHz mono waveform (64 KB a second) and the wav2vec2
  features of every frame (12 x 768 floats, 37 KB a frame, 0.9 MB a second at 25 fps). With the full-size
  wav2vec2 the audio stage measured 1.1 GB at 10 s and 2.3 GB at 10 min (``bench/bench_audio.py``): about
  1.1 GB + 2 MB a second, so ~8.3 GB at :data:`MAX_AUDIO_SECONDS` (extrapolated). Decoding is streamed, so
  the input's rate and channel count cost time, not memory: :data:`MAX_AUDIO_SAMPLES` bounds that time.
* steps cost time only; frames cost time (and, as an IMAGE batch in the nodes, 12 bytes a pixel each);
  the output size costs ~ (width x height / 512^2) x the 512^2 figures in the README ("Speed and memory").
"""

from __future__ import annotations

import math

from .errors import HalloInputError

# -- images -------------------------------------------------------------------------------------------------
#: Smallest side: below it neither the face detector nor MediaPipe find a face.
MIN_IMAGE_SIDE = 64
#: Largest side of an image, in pixels.
MAX_IMAGE_SIDE = 16384
#: Largest pixel count: 64 megapixels (8192 x 8192); a portrait needs far fewer.
MAX_IMAGE_PIXELS = 8192 * 8192
#: Longest side over the shortest: a panorama strip cannot hold a portrait.
MAX_IMAGE_ASPECT = 8.0

# -- audio --------------------------------------------------------------------------------------------------
#: Longest audio: one hour (longer talks render in parts, chained through the sampler's motion output).
MAX_AUDIO_SECONDS = 3600
#: Sample rates the resampler takes (Hz).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 768000
#: Most channels (7.1 and 16-channel studio layouts fit).
MAX_AUDIO_CHANNELS = 16
#: Most samples (all channels together) decoded for one input: an hour of 48 kHz stereo. At high rates and
#: many channels this is the limit that applies first (768 kHz x 16 channels: 28 s).
MAX_AUDIO_SAMPLES = MAX_AUDIO_SECONDS * 48000 * 2

# -- options ------------------------------------------------------------------------------------------------
#: Denoising steps per clip (the original uses 40).
MAX_STEPS = 200
#: Output sides: multiples of 64 from 64 to 2048.
SIZE_MULTIPLE = 64
MIN_OUTPUT_SIDE = 64
MAX_OUTPUT_SIDE = 2048
#: Frame rates the audio encoder takes, and so the most frames one render can have.
MAX_FPS = 60.0
MAX_FRAMES = math.ceil(MAX_AUDIO_SECONDS * MAX_FPS)


def _megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def image_problem(width: int, height: int) -> str | None:
    """What is wrong with an image of ``width`` x ``height`` pixels, and how to fix it (None: within budget)."""
    w, h = int(width), int(height)
    claims = f"is {w}x{h} pixels"
    if min(w, h) < MIN_IMAGE_SIDE:
        return (f"{claims}; the face stage needs at least {MIN_IMAGE_SIDE} px on each side (512x512 is what "
                "Hallo was trained on): use a larger image or upscale it")
    if max(w, h) > MAX_IMAGE_SIDE:
        return f"{claims}; the limit is {MAX_IMAGE_SIDE} px a side: resize it (a portrait needs about 1024 px)"
    if w * h > MAX_IMAGE_PIXELS:
        return (f"{claims} ({_megapixels(w * h)}); the limit is {_megapixels(MAX_IMAGE_PIXELS)} (8192x8192): "
                "resize it (a portrait needs about 1024 px a side)")
    aspect = max(w, h) / min(w, h)
    if aspect > MAX_IMAGE_ASPECT:
        return (f"{claims} (aspect {aspect:.1f}:1); the limit is {MAX_IMAGE_ASPECT:g}:1: crop it around the face "
                "(a square works best)")
    return None


def check_image_budget(name: str, width: int, height: int) -> None:
    """Refuse an image outside the budget; ``name`` says which input (a path, or a node's input)."""
    problem = image_problem(width, height)
    if problem:
        raise HalloInputError(f"{name} {problem}")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def rate_problem(rate: float) -> str | None:
    """What is wrong with a sample rate (None: within budget)."""
    if not (isinstance(rate, int | float) and math.isfinite(rate)) or rate != int(rate):
        return f"reports a sample rate of {rate!r} Hz, not a whole number: re-encode it (e.g. ffmpeg -ar 16000)"
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return (f"is sampled at {int(rate)} Hz; the limits are {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz: resample "
                "it (e.g. ffmpeg -i in -ar 16000 out.wav)")
    return None


def audio_problem(seconds: float, rate: float, channels: int) -> str | None:
    """What is wrong with ``seconds`` of audio at ``rate`` Hz with ``channels`` channels (None: within budget)."""
    problem = rate_problem(rate)
    if problem:
        return problem
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        return (f"has {channels} channels; the limit is {MAX_AUDIO_CHANNELS}: mix it down "
                "(e.g. ffmpeg -i in -ac 2 out.wav)")
    if not math.isfinite(seconds) or seconds > MAX_AUDIO_SECONDS:
        return (f"is {_duration(seconds)} long; the limit is {_duration(MAX_AUDIO_SECONDS)}: trim it or render it "
                f"in parts (e.g. ffmpeg -i in -t {MAX_AUDIO_SECONDS} out.wav)")
    samples = seconds * rate * channels
    if samples > MAX_AUDIO_SAMPLES:
        fits = MAX_AUDIO_SAMPLES / (rate * channels)
        return (f"holds {samples:.3g} samples ({_duration(seconds)} at {int(rate)} Hz x {channels} channels); the "
                f"limit is {MAX_AUDIO_SAMPLES:.3g} (1 h of 48 kHz stereo, {_duration(fits)} at this rate and "
                "channel count): resample or mix it down (e.g. ffmpeg -i in -ar 48000 -ac 2 out.wav)")
    return None


def check_audio_budget(name: str, seconds: float, rate: float, channels: int) -> None:
    """Refuse audio outside the budget; ``name`` says which input."""
    problem = audio_problem(seconds, rate, channels)
    if problem:
        raise HalloInputError(f"{name} {problem}")


def samples_limit(rate: int, channels: int) -> int:
    """Samples per channel a decoder may produce at ``rate`` and ``channels`` before the budget is spent."""
    return int(min(MAX_AUDIO_SECONDS * rate, MAX_AUDIO_SAMPLES // max(1, channels)))


def steps_problem(steps: int) -> str | None:
    if steps > MAX_STEPS:
        return f"is {steps}; the limit is {MAX_STEPS} (the original uses 40): use fewer steps"
    return None


def size_problem(value: int) -> str | None:
    """What is wrong with an output side (None: a multiple of 64 in 64..2048)."""
    if value < MIN_OUTPUT_SIDE or value % SIZE_MULTIPLE:
        return f"is {value}; it must be a positive multiple of {SIZE_MULTIPLE} (e.g. 512)"
    if value > MAX_OUTPUT_SIDE:
        return f"is {value}; the limit is {MAX_OUTPUT_SIDE} (Hallo was trained at 512): use a smaller size"
    return None


def frames_problem(frames: int, fps: float) -> str | None:
    if frames > MAX_FRAMES:
        return (f"would be {frames} frames ({_duration(frames / fps)} at {fps:g} fps); the limit is {MAX_FRAMES}: "
                "trim the audio or render it in parts")
    return None
