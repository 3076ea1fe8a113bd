"""One-call render: portrait image + audio file + model folder -> mp4 with the original audio."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio.features import AudioFeatures, encode_audio
from .audio.separation import resolve_separation
from .audio.wav2vec import load_wav2vec
from .door import check_render_inputs
from .errors import HalloInputError, raised_in_pipeline
from .face.analysis import FaceAnalysisResult, analyze_face
from .face.landmarks import LandmarkError
from .images import load_image_rgb
from .models.loading import load_net, load_vae, parse_dtype
from .paths import ModelFolder
from .reference import check_output_size, make_reference
from .sampling.acceleration import compile_mode
from .sampling.residency import VAE, WAV2VEC, low_vram_residency
from .sampling.sampler import ClipOutput, HalloSampler, SamplerSettings
from .sampling.settings import VIDEO_FPS
from .video.output_path import check_output_path
from .video.writer import VideoWriter, load_audio_file, to_uint8_frames

logger = logging.getLogger(__name__)


@dataclass
class RenderOptions:
    variant: str = "hallo"
    width: int = 512
    height: int = 512
    fps: float = VIDEO_FPS
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
    # Opt-in speed switches (pipeline/sampling/acceleration.py): same math, different kernels.
    channels_last: bool = False
    # "off", "default" (True), "reduce-overhead" (CUDA graphs) or "max-autotune-no-cudagraphs".
    compile: str | bool = "off"
    # FP8 matmuls for the denoising UNet's Linear layers (CUDA >= 8.9, bf16, torchao); changes the numbers.
    fp8: bool = False
    # Replace an existing output file (as ffmpeg's -y); otherwise an existing output is refused up front.
    overwrite: bool = False


__all__ = ["LoadKey", "RenderOptions", "Renderer", "load_image_rgb", "pick_device", "render_file"]


def _device_available(dev: torch.device) -> bool:
    if dev.type == "cpu":
        return True
    if dev.type == "cuda":
        return torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count())
    if dev.type == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    backend = getattr(torch, dev.type, None)
    return bool(backend is not None and hasattr(backend, "is_available") and backend.is_available())


def pick_device(device: str) -> torch.device:
    """'auto' (CUDA when there is one, else CPU) or a torch device string that this machine has."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise HalloInputError(f"--device {device} is not a device name torch knows; use --device auto, "
                              "--device cpu, cuda, cuda:1 or mps") from None
    if not _device_available(dev):
        raise HalloInputError(f"--device {device}: this machine (or this torch build) has no such device; use "
                              "--device auto or --device cpu")
    return dev


def _analyze(rgb, image: Path, folder: ModelFolder, options: RenderOptions, device: torch.device
             ) -> FaceAnalysisResult:
    """The face stage, first of all (cheap next to the network loads): no face -> one clear error."""
    try:
        return analyze_face(rgb, folder.root, output_size=(options.height, options.width),
                            face_expand_ratio=options.face_expand_ratio, face_index=options.face_index,
                            allow_no_face=options.allow_no_face, device=str(device))
    except HalloInputError:
        raise  # already names its input (a damaged model file, say)
    except (ValueError, LandmarkError) as exc:  # no face, a face index out of range, no landmarker
        if isinstance(exc, ValueError) and not raised_in_pipeline(exc):
            raise  # a library's ValueError is a bug, not bad input: keep its traceback
        raise HalloInputError(f"image {image}: {exc}") from exc


def _load_encoder(folder: ModelFolder, device: torch.device):
    return load_wav2vec(folder.root, device=device)  # names a missing, unreadable or damaged file itself


def _load_networks(folder: ModelFolder, options: RenderOptions, device: torch.device, dtype: torch.dtype):
    """The denoising network, the VAE and wav2vec2, with the opt-in speed switches applied."""
    net = load_net(folder, options.variant, device=device, dtype=dtype)
    vae = load_vae(folder, device=device, dtype=parse_dtype(options.vae_dtype or dtype, device))
    encoder = _load_encoder(folder, device)
    if options.channels_last or options.fp8 or compile_mode(options.compile, device) != "off":
        from .sampling.acceleration import apply_speedups

        apply_speedups(net, vae, device, channels_last=options.channels_last, compile=options.compile,
                       fp8=options.fp8)
    return net, vae, encoder


def check_speedups(options: RenderOptions, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a compile mode or FP8 that cannot run here before anything slow happens."""
    compile_mode(options.compile, device, option="--compile")
    if options.fp8:
        import importlib.util

        from .sampling.fp8 import fp8_refusal

        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        reason = fp8_refusal(device.type, capability, dtype, importlib.util.find_spec("torchao") is not None)
        if reason is not None:
            raise HalloInputError(f"--fp8: {reason}")


def _encode(encoder, options: RenderOptions, separator: Path | None, device: torch.device,
            waveform: torch.Tensor, sample_rate: int) -> AudioFeatures:
    segment = options.audio_segment_seconds
    if segment is None and options.variant == "hallo2":
        segment = 60.0
    return encode_audio(
        waveform, sample_rate, encoder, fps=options.fps, clip_length=options.sampler.clip_length,
        separate_vocals=separator is not None, separator_model=separator,
        loudness=options.loudness, segment_seconds=segment, device=device,
    )


def _decode_audio(audio: Path, separator: Path | None) -> tuple[torch.Tensor, int]:
    if separator is not None:  # the separator works on the full-rate stereo signal
        return load_audio_file(audio)
    # decode straight to 16 kHz mono: a long file never sits in memory at 48 kHz stereo
    return load_audio_file(audio, sample_rate=16000, mono=True)


@dataclass(frozen=True)
class LoadKey:
    """What loaded networks depend on: renders with the same key share them."""

    variant: str
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    channels_last: bool
    compile: str | bool
    fp8: bool


class Renderer:
    """The networks of one model folder, loaded once and used for any number of renders.

    :meth:`render` is :func:`render_file` with the same checks in the same order (cheap checks, the face, then
    the networks). The first render loads the networks; later renders with the same variant, device, precision
    and speed switches reuse them, and one that needs others replaces them (one set is kept). The networks
    carry no state from one render to the next, so a job's frames are the frames it gets rendered alone.
    """

    def __init__(self, models: str | Path) -> None:
        self.folder = ModelFolder.at(models)
        self._key: LoadKey | None = None
        self._networks: tuple | None = None
        self.loads = 0  # how many times networks were loaded

    def render(self, image: str | Path, audio: str | Path, out: str | Path, options: RenderOptions | None = None,
               *, on_step: Callable[[int, int], None] | None = None, should_cancel: Callable[[], bool] | None = None,
               on_frames: Callable[[np.ndarray], None] | None = None,
               metadata: dict[str, str] | None = None) -> dict[str, float]:
        """Render ``out``; per-stage timings in seconds (``load`` is 0 when the networks were kept)."""
        return render_file(image, audio, self.folder.root, out, options, on_step=on_step,
                           should_cancel=should_cancel, on_frames=on_frames, metadata=metadata, renderer=self)

    def networks(self, options: RenderOptions, device: torch.device, dtype: torch.dtype) -> tuple:
        """The denoising network, the VAE and wav2vec2 for ``options``: kept from before, or loaded now."""
        key = LoadKey(options.variant, device, dtype, parse_dtype(options.vae_dtype or dtype, device),
                      options.channels_last, options.compile, options.fp8)
        if key != self._key:
            self._networks = self._key = None  # the old set goes before the new one loads
            self._networks = _load_networks(self.folder, options, device, dtype)
            self._key = key
            self.loads += 1
        return self._networks


def render_file(
    image: str | Path,
    audio: str | Path,
    models: str | Path,
    out: str | Path,
    options: RenderOptions | None = None,
    *,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_frames: Callable[[np.ndarray], None] | None = None,
    metadata: dict[str, str] | None = None,
    renderer: Renderer | None = None,
) -> dict[str, float]:
    """Render ``out`` (mp4, mov or mkv). Returns per-stage timings in seconds, the video's seconds and frames.

    ``on_frames``: called with each clip's frames as written, (N, H, W, 3) uint8.
    ``metadata``: container tags to store in the video (``VideoWriter``'s ``metadata``).
    ``renderer``: networks kept from earlier renders of the same model folder (default: loaded for this call).

    Cheap checks come first (options, paths, device, the image, the output's temporary file and the
    soundtrack, the face), the network loads after them, so bad input fails in seconds, not minutes.
    """
    options = options or RenderOptions()
    image, audio = Path(image).expanduser(), Path(audio).expanduser()
    check_output_size(options.height, options.width)
    check_render_inputs(image, audio)  # regular, readable files within the budget; headers only
    renderer = renderer if renderer is not None else Renderer(models)
    folder = renderer.folder
    folder.check_files(options.variant)  # every model file the render opens: a readable regular file
    out = check_output_path(out, inputs={"image": image, "audio": audio}, models=folder.root,
                            overwrite=options.overwrite)
    device = pick_device(options.device)
    # FP8 matmuls return bf16: with fp8, dtype auto means bf16
    dtype = parse_dtype("bf16" if options.fp8 and options.dtype == "auto" else options.dtype, device)
    check_speedups(options, device, dtype)
    rgb = load_image_rgb(image)
    with VideoWriter(out, options.fps, options.width, options.height, audio=audio,
                     overwrite=options.overwrite, metadata=metadata) as writer:
        timings = _render(writer, rgb, image, audio, renderer, options, device, dtype,
                          on_step=on_step, should_cancel=should_cancel, on_frames=on_frames)
        timings["frames"] = float(writer.frames_written)
        return timings


def _render(writer: VideoWriter, rgb, image: Path, audio: Path, renderer: Renderer, options: RenderOptions,
            device: torch.device, dtype: torch.dtype, *, on_step, should_cancel, on_frames=None) -> dict[str, float]:
    folder = renderer.folder
    timings: dict[str, float] = {}
    started = time.perf_counter()
    face = _analyze(rgb, image, folder, options, device)
    timings["face"] = time.perf_counter() - started

    started = time.perf_counter()
    separator = resolve_separation(options.separate_vocals, folder.root)
    waveform, sample_rate = _decode_audio(audio, separator)
    decoding = time.perf_counter() - started
    started = time.perf_counter()
    net, vae, encoder = renderer.networks(options, device, dtype)
    # low-VRAM on CUDA: all but the denoising UNet visit the GPU only while they run
    residency = low_vram_residency(net, vae, device, options.sampler.low_vram, wav2vec=encoder.model)
    timings["load"] = time.perf_counter() - started

    started = time.perf_counter()
    with residency.use(WAV2VEC):
        features = _encode(encoder, options, separator, device, waveform, sample_rate)
    del waveform
    timings["audio"] = decoding + time.perf_counter() - started

    started = time.perf_counter()
    with residency.use(VAE):
        reference = make_reference(vae, rgb, face, size=(options.height, options.width))
    residency.park()  # the ReferenceNet too: the first clip starts with every visiting network on the CPU
    timings["face"] += time.perf_counter() - started

    sampler = HalloSampler(net, vae, device=device, dtype=dtype, is_hallo2=options.variant == "hallo2",
                           residency=residency)
    started = time.perf_counter()

    def write(clip: ClipOutput) -> None:
        frames = to_uint8_frames(clip.frames)
        if on_frames is not None:
            on_frames(frames)
        writer.write(frames)

    result = sampler.generate(reference, features.features, features.num_frames, options.sampler,
                              on_clip=write, on_step=on_step, should_cancel=should_cancel, collect=False)
    timings["generate"] = time.perf_counter() - started
    timings.update({f"generate_{k}": v for k, v in result.timings.items()})
    timings["video_seconds"] = features.num_frames / options.fps
    return timings
