"""One-call render: portrait image + audio file + model folder -> mp4 with the original audio."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .audio.features import AudioFeatures, encode_audio
from .audio.separation import resolve_separation
from .audio.wav2vec import load_wav2vec
from .errors import HalloInputError, raised_in_pipeline
from .face.analysis import FaceAnalysisResult, analyze_face
from .face.landmarks import LandmarkError
from .images import load_image_rgb
from .models.loading import load_net, load_vae, parse_dtype
from .paths import FACE_MODELS_SUBDIR, HF_REPO, WAV2VEC_SUBDIR, ModelFileMissing, ModelFolder
from .reference import check_output_size, make_reference
from .sampling.acceleration import compile_mode
from .sampling.residency import VAE, WAV2VEC, low_vram_residency
from .sampling.sampler import ClipOutput, HalloSampler, SamplerSettings
from .sampling.settings import VIDEO_FPS
from .video.output_path import check_output_path
from .video.writer import VideoWriter, load_audio_file

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


__all__ = ["RenderOptions", "load_image_rgb", "pick_device", "render_file"]


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


def _face_model_errors() -> tuple[type[BaseException], ...]:
    """Errors the face models raise on a truncated or corrupt model file."""
    errors: list[type[BaseException]] = []
    try:
        from google.protobuf.message import DecodeError

        errors.append(DecodeError)
    except ImportError:  # pragma: no cover - protobuf comes with onnx and mediapipe
        pass
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort

        errors += [getattr(ort, n) for n in ("InvalidProtobuf", "Fail", "InvalidGraph", "NoSuchFile")
                   if hasattr(ort, n)]
    except ImportError:  # pragma: no cover - onnxruntime is a dependency
        pass
    return tuple(errors)


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
    except _face_model_errors() as exc:
        raise HalloInputError(
            f"the face models in {folder.root / FACE_MODELS_SUBDIR} cannot be used ({type(exc).__name__}: "
            f"{exc}); download {FACE_MODELS_SUBDIR}/ again from the Hugging Face repo '{HF_REPO}'"
        ) from exc


def _load_encoder(folder: ModelFolder, device: torch.device):
    from safetensors import SafetensorError

    try:
        return load_wav2vec(folder.root, device=device)
    except ModelFileMissing:
        raise
    except (SafetensorError, OSError) as exc:
        raise HalloInputError(
            f"the wav2vec2 model in {folder.root / WAV2VEC_SUBDIR} cannot be read (truncated or "
            f"corrupt download? {exc}); download {WAV2VEC_SUBDIR}/ again from '{HF_REPO}'") from exc


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
    """Render ``out`` (mp4, mov or mkv). Returns per-stage timings in seconds.

    Cheap checks come first (options, paths, device, the image, the output's temporary file and the
    soundtrack, the face), the network loads after them, so bad input fails in seconds, not minutes.
    """
    options = options or RenderOptions()
    image, audio = Path(image).expanduser(), Path(audio).expanduser()
    check_output_size(options.height, options.width)
    folder = ModelFolder.at(models)
    out = check_output_path(out, inputs={"image": image, "audio": audio}, models=folder.root,
                            overwrite=options.overwrite)
    device = pick_device(options.device)
    # FP8 matmuls return bf16: with fp8, dtype auto means bf16
    dtype = parse_dtype("bf16" if options.fp8 and options.dtype == "auto" else options.dtype, device)
    check_speedups(options, device, dtype)
    if audio.is_dir():
        raise HalloInputError(f"audio {audio} is a directory; give the voice recording's file name")
    rgb = load_image_rgb(image)
    with VideoWriter(out, options.fps, options.width, options.height, audio=audio,
                     overwrite=options.overwrite) as writer:
        return _render(writer, rgb, image, audio, folder, options, device, dtype,
                       on_step=on_step, should_cancel=should_cancel)


def _render(writer: VideoWriter, rgb, image: Path, audio: Path, folder: ModelFolder, options: RenderOptions,
            device: torch.device, dtype: torch.dtype, *, on_step, should_cancel) -> dict[str, float]:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    face = _analyze(rgb, image, folder, options, device)
    timings["face"] = time.perf_counter() - started

    started = time.perf_counter()
    separator = resolve_separation(options.separate_vocals, folder.root)
    waveform, sample_rate = _decode_audio(audio, separator)
    net, vae, encoder = _load_networks(folder, options, device, dtype)
    # low-VRAM on CUDA: all but the denoising UNet visit the GPU only while they run
    residency = low_vram_residency(net, vae, device, options.sampler.low_vram, wav2vec=encoder.model)
    timings["load"] = time.perf_counter() - started

    started = time.perf_counter()
    with residency.use(WAV2VEC):
        features = _encode(encoder, options, separator, device, waveform, sample_rate)
    del waveform
    timings["audio"] = time.perf_counter() - started

    started = time.perf_counter()
    with residency.use(VAE):
        reference = make_reference(vae, rgb, face, size=(options.height, options.width))
    residency.park()  # the ReferenceNet too: the first clip starts with every visiting network on the CPU
    timings["face"] += time.perf_counter() - started

    sampler = HalloSampler(net, vae, device=device, dtype=dtype, is_hallo2=options.variant == "hallo2",
                           residency=residency)
    started = time.perf_counter()

    def write(clip: ClipOutput) -> None:
        writer.write(clip.frames)

    result = sampler.generate(reference, features.features, features.num_frames, options.sampler,
                              on_clip=write, on_step=on_step, should_cancel=should_cancel, collect=False)
    timings["generate"] = time.perf_counter() - started
    timings.update({f"generate_{k}": v for k, v in result.timings.items()})
    timings["video_seconds"] = features.num_frames / options.fps
    return timings
