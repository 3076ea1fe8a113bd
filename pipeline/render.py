"""One-call render: portrait image + audio file + model folder -> mp4 with the original audio."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio_features import AudioFeatures, encode_audio
from .face_analysis import analyze_face
from .loading import load_net, load_vae, parse_dtype
from .media import VideoWriter, load_audio_file
from .model_folder import ModelFolder
from .reference import check_output_size, make_reference
from .sampler import ClipOutput, HalloSampler, SamplerSettings
from .vocal_separation import resolve_separation
from .wav2vec import load_wav2vec

logger = logging.getLogger(__name__)


@dataclass
class RenderOptions:
    variant: str = "hallo"
    width: int = 512
    height: int = 512
    fps: float = 25.0
    face_expand_ratio: float = 1.2
    face_index: int | None = None
    allow_no_face: bool = False
    # "auto" (separate as the original when audio-separator and the model file are there), "on" or "off".
    separate_vocals: str = "auto"
    loudness: str = "none"
    # Hallo2 encodes audio in 60-s segments; None = 60 for hallo2, a single pass for hallo.
    audio_segment_seconds: float | None = None
    device: str = "auto"
    dtype: str = "auto"
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    # VAE precision (None: same as dtype); "fp32" keeps the decode in full precision under fp16/bf16.
    vae_dtype: str | None = None
    # Opt-in speed switches (pipeline/acceleration.py): same math, different kernels.
    channels_last: bool = False
    compile: bool = False


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_image_rgb(path: str | Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except UnidentifiedImageError as exc:
        raise ValueError(f"{path} is not an image PIL can read") from exc


def render_file(
    image: str | Path,
    audio: str | Path,
    models: str | Path,
    out: str | Path,
    options: RenderOptions | None = None,
    *,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Render ``out`` (mp4). Returns per-stage timings in seconds."""
    options = options or RenderOptions()
    check_output_size(options.height, options.width)
    folder = ModelFolder.at(models)
    device = pick_device(options.device)
    dtype = parse_dtype(options.dtype, device)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    rgb = load_image_rgb(image)
    separator = resolve_separation(options.separate_vocals, folder.root)
    if separator is not None:  # the separator works on the full-rate stereo signal
        waveform, sample_rate = load_audio_file(audio)
    else:  # decode straight to 16 kHz mono: a long file never sits in memory at 48 kHz stereo
        waveform, sample_rate = load_audio_file(audio, sample_rate=16000, mono=True)
    net = load_net(folder, options.variant, device=device, dtype=dtype)
    vae = load_vae(folder, device=device, dtype=parse_dtype(options.vae_dtype or dtype, device))
    encoder = load_wav2vec(folder.root, device=device)
    if options.channels_last:
        from .acceleration import use_channels_last

        use_channels_last(net, vae)
    if options.compile:
        from .acceleration import compile_denoiser

        compile_denoiser(net)
    low_vram = options.sampler.low_vram and device.type == "cuda"
    timings["load"] = time.perf_counter() - started

    started = time.perf_counter()
    segment = options.audio_segment_seconds
    if segment is None and options.variant == "hallo2":
        segment = 60.0
    features: AudioFeatures = encode_audio(
        waveform, sample_rate, encoder, fps=options.fps, clip_length=options.sampler.clip_length,
        separate_vocals=separator is not None, separator_model=separator,
        loudness=options.loudness, segment_seconds=segment, device=device,
    )
    del waveform  # the video's audio track is transcoded from the file itself
    if low_vram:
        encoder.to(device="cpu")  # wav2vec2 is done for this render
    timings["audio"] = time.perf_counter() - started

    started = time.perf_counter()
    face = analyze_face(rgb, folder.root, output_size=(options.height, options.width),
                        face_expand_ratio=options.face_expand_ratio, face_index=options.face_index,
                        allow_no_face=options.allow_no_face, device=str(device))
    reference = make_reference(vae, rgb, face, size=(options.height, options.width))
    if low_vram:
        from .offload import offload_to_cpu

        offload_to_cpu(net.reference_unet, vae)  # they visit the GPU once per clip from here on
    timings["face"] = time.perf_counter() - started

    sampler = HalloSampler(net, vae, device=device, dtype=dtype, is_hallo2=options.variant == "hallo2")
    started = time.perf_counter()
    with VideoWriter(out, options.fps, options.width, options.height, audio=audio) as writer:
        def write(clip: ClipOutput) -> None:
            writer.write(clip.frames)

        result = sampler.generate(reference, features.features, features.num_frames, options.sampler,
                                  on_clip=write, on_step=on_step, should_cancel=should_cancel, collect=False)
    timings["generate"] = time.perf_counter() - started
    timings.update({f"generate_{k}": v for k, v in result.timings.items()})
    timings["video_seconds"] = features.num_frames / options.fps
    return timings
