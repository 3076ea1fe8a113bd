"""Audio -> per-frame wav2vec2 features, exactly as Hallo computes them (plus long-audio support).

Hallo (``hallo/datasets/audio_processor.py``, ``scripts/inference.py``):

1. (optional) Kim_Vocal_2 vocal separation, then mono 16 kHz;
2. zero-mean/unit-variance over the whole file (``Wav2Vec2FeatureExtractor(do_normalize=True)``:
   ``(x - mean) / sqrt(var + 1e-7)``);
3. ``seq_len = ceil(samples / 16000 * fps)`` is the true frame count; if it is not a multiple of the
   clip length the *normalised* wave is right-padded with zeros by
   ``(clip - seq_len % clip) * (16000 // fps)`` samples and ``seq_len`` rounded up;
4. wav2vec2 with the CNN features linearly interpolated to ``seq_len`` before the encoder, all 12
   layer outputs -> ``(N, 12, C)``;
5. ``+-2``-frame window with edge clamp -> ``(N, 5, 12, C)``.

:func:`encode_audio` runs these as named steps: check the input and options, :func:`prepare_wave`
(optional loudness gain and vocal separation, then 16 kHz mono), :func:`encode_frames` (per segment:
normalise, pad, wav2vec2 via :mod:`.windows`, which also handles long audio), :func:`stack_window`.
Audio longer than ``max_window_seconds`` (10 minutes by default) runs the encoder in overlapping,
cross-faded windows, an approximation; anything shorter is exact. ``segment_seconds`` reproduces
Hallo2's ``use_cut``: independent segments, each normalised and encoded on its own.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..budgets import frames_problem
from ..errors import HalloInputError
from ..notices import notice
from ..sampling.settings import CLIP_LENGTH
from .decode import TARGET_SAMPLE_RATE, check_sample_rate, pcm_to_float, to_mono_16k
from .separation import resolve_separation
from .separation import separate_vocals as vocals_stem
from .wav2vec import Wav2VecEncoder
from .windows import MIN_WINDOW_FRAMES, ProgressFn, encode_wave, plan_windows

__all__ = ["LOUDNESS_MODES", "SILENCE_PEAK", "AudioFeatures", "EncodeOptions", "encode_audio", "encode_frames",
           "frame_count", "normalize_wave", "plan_windows", "prepare_wave", "stack_window", "window_indices"]

logger = logging.getLogger(__name__)

SR = TARGET_SAMPLE_RATE
WINDOW_RADIUS = 2  # +-2 frames -> 5
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
LOUDNESS_MODES = ("none", "peak", "rms")
PEAK_TARGET = 0.95
RMS_TARGET = 0.1  # -20 dBFS
SILENCE_PEAK = 1e-5
MAX_CHANNELS = 16


@dataclass
class AudioFeatures:
    """Per-frame audio conditioning for Hallo.

    ``features`` is ``(N_padded, 5, 12, C)`` float32 on CPU, N_padded a multiple of
    ``clip_length``; frame ``i`` holds the states of frames ``i-2..i+2`` clamped to the padded
    sequence. It is a strided *view* over the ``(N_padded + 4, 12, C)`` per-frame states (no 5x
    copy); treat it as read-only (ComfyUI shares a node's output between the nodes it feeds) and call
    ``.contiguous()`` on a slice when a compact tensor is needed. ``num_frames`` is the true frame count used to trim
    the video.
    """

    features: torch.Tensor
    num_frames: int
    fps: float
    clip_length: int
    duration_s: float

    @property
    def num_padded_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def num_clips(self) -> int:
        return self.num_padded_frames // self.clip_length

    @property
    def frame_states(self) -> torch.Tensor:
        """``(N_padded, 12, C)``: the un-windowed per-frame hidden states (a view)."""
        return self.features[:, WINDOW_RADIUS]

    def clip(self, index: int) -> torch.Tensor:
        """Contiguous ``(clip_length, 5, 12, C)`` features of clip ``index``."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range for {self.num_clips} clips")
        lo = index * self.clip_length
        return self.features[lo : lo + self.clip_length].contiguous()


# ---------------------------------------------------------------------------------------------
# input validation
# ---------------------------------------------------------------------------------------------
def _as_channels_time(waveform: torch.Tensor) -> torch.Tensor:
    """Validate a ComfyUI AUDIO waveform (``[C, T]`` or ``[B, C, T]``) and return ``[C, T]`` float32."""
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"audio waveform must be a torch.Tensor [C, T] or [B, C, T], got {type(waveform).__name__}")
    if waveform.ndim == 3:
        if waveform.shape[0] == 0:
            raise ValueError("audio waveform batch is empty (shape [0, C, T]); connect an audio with content")
        if waveform.shape[0] > 1:
            logger.warning("audio batch has %d items; only the first one is used", waveform.shape[0])
        waveform = waveform[0]
    elif waveform.ndim == 1:
        waveform = waveform[None]
    elif waveform.ndim != 2:
        raise ValueError(
            f"audio waveform must have shape [C, T] or [B, C, T] (ComfyUI AUDIO layout), got {tuple(waveform.shape)}"
        )
    channels, samples = waveform.shape
    if channels == 0 or samples == 0:
        raise ValueError(f"audio waveform is empty (shape [C, T] = {tuple(waveform.shape)})")
    if channels > MAX_CHANNELS:
        hint = " It looks like [T, C]: transpose it to [C, T]." if samples <= MAX_CHANNELS else ""
        raise ValueError(
            f"audio waveform has {channels} channels (shape {tuple(waveform.shape)}); at most "
            f"{MAX_CHANNELS} are supported in the [C, T] / [B, C, T] layout.{hint}"
        )
    if waveform.dtype in (torch.complex64, torch.complex128) or waveform.dtype == torch.bool:
        raise ValueError(f"audio waveform has dtype {waveform.dtype}; expected float samples in [-1, 1]")
    if not waveform.is_floating_point():
        logger.info("audio waveform is %s PCM; scaling to float as LoadAudio does", waveform.dtype)
        waveform = torch.from_numpy(pcm_to_float(waveform.detach().cpu().numpy()))
    waveform = waveform.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(waveform).all()):
        bad = int((~torch.isfinite(waveform)).sum())
        raise ValueError(
            f"audio contains NaN/inf samples ({bad} of {waveform.numel()}): the input audio waveform is "
            "corrupt; fix or re-decode the audio before encoding it"
        )
    return waveform.contiguous()


def _apply_loudness(waveform: torch.Tensor, mode: str) -> torch.Tensor:
    """Optional gain before separation/normalisation: ``peak`` -> 0.95 peak, ``rms`` -> -20 dBFS."""
    if mode == "none":
        return waveform
    peak = float(waveform.abs().max())
    if peak < SILENCE_PEAK:
        return waveform
    if mode == "peak":
        gain = PEAK_TARGET / peak
    else:
        rms = float(waveform.double().pow(2).mean().sqrt())
        gain = min(RMS_TARGET / rms, 0.99 / peak)  # never push peaks above full scale
    logger.debug("loudness %s: gain %.3f", mode, gain)
    return waveform * gain


def normalize_wave(wave: torch.Tensor) -> torch.Tensor:
    """Zero-mean/unit-variance as ``Wav2Vec2FeatureExtractor``: ``(x - mean) / sqrt(var + 1e-7)``."""
    x = wave.to(torch.float64)
    mean = x.mean()
    var = x.var(unbiased=False)
    return ((x - mean) / torch.sqrt(var + NORM_EPS)).to(torch.float32)


def frame_count(num_samples: int, fps: float) -> int:
    """Hallo's ``ceil(num_samples / 16000 * fps)`` (same float expression)."""
    return math.ceil(num_samples / SR * fps)


def window_indices(num: int, radius: int = WINDOW_RADIUS) -> torch.Tensor:
    """``(num, 2r+1)`` indices ``i-r..i+r`` clamped to ``[0, num-1]``."""
    offsets = torch.arange(-radius, radius + 1)
    return (torch.arange(num)[:, None] + offsets[None, :]).clamp_(0, num - 1)


def stack_window(states: torch.Tensor, radius: int = WINDOW_RADIUS, length: int | None = None) -> torch.Tensor:
    """``(N, L, C)`` -> ``(length, 2r+1, L, C)`` edge-clamped window, as a view over one edge-padded copy.

    ``length`` (default N) may exceed N: the extra frames repeat the last one (see ``encode_audio``).
    """
    n = states.shape[0]
    length = n if length is None else int(length)
    tail = radius + max(0, length - n)
    padded = torch.cat([states[:1].expand(radius, *states.shape[1:]), states,
                        states[-1:].expand(tail, *states.shape[1:])], dim=0)
    # unfold(0, size, 1): (length, L, C, 2r+1) view -> (length, 2r+1, L, C)
    view = padded[: length + 2 * radius].unfold(0, 2 * radius + 1, 1).permute(0, 3, 1, 2)
    assert view.shape[0] == length
    return view


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------
def _pad_for_clips(wave: torch.Tensor, seq_len: int, total_before: int, clip_length: int, fps: float
                   ) -> tuple[torch.Tensor, int]:
    """Zero-pad the normalised last piece of the audio exactly as the original does.

    Hallo (one piece, ``total_before`` = 0): pad to the next multiple of the clip length. Hallo2 (the last
    of several segments): the padding is decided on the segment's own length (``seq_len % clip``) but sized
    from the total (``clip - (total_before + seq_len) % clip``), so a total that is already a multiple gets a
    whole clip of zeros, and a segment that is itself a multiple gets none (the caller then repeats its last
    features up to the next multiple, see :func:`encode_frames`).
    """
    if seq_len % clip_length == 0:
        return wave, seq_len
    extra = clip_length - (total_before + seq_len) % clip_length
    hop = int(SR // fps)
    return F.pad(wave, (0, extra * hop)), seq_len + extra


def _as_encoder(encoder: object) -> Wav2VecEncoder:
    if isinstance(encoder, Wav2VecEncoder):
        return encoder
    if isinstance(encoder, torch.nn.Module) and hasattr(encoder, "feature_extractor"):
        return Wav2VecEncoder(encoder)
    raise TypeError(
        f"encoder must be a Wav2VecEncoder (see pipeline.audio.wav2vec.load_wav2vec), got {type(encoder).__name__}"
    )


@dataclass(frozen=True)
class EncodeOptions:
    """How :func:`encode_audio` turns a waveform into frames (see its docstring for each field)."""

    fps: float = 25.0
    clip_length: int = CLIP_LENGTH
    loudness: str = "none"
    segment_seconds: float | None = None
    max_window_seconds: float = 600.0
    overlap_seconds: float = 10.0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option out of range."""
        fps = self.fps
        if not (isinstance(fps, int | float) and math.isfinite(fps) and 1.0 <= fps <= 240.0):
            raise ValueError(f"fps must be a number in 1-240, got {fps!r}")
        if not (isinstance(self.clip_length, int) and self.clip_length >= 1):
            raise ValueError(f"clip_length must be a positive integer, got {self.clip_length!r}")
        if self.loudness not in LOUDNESS_MODES:
            raise ValueError(f"loudness must be one of {LOUDNESS_MODES}, got {self.loudness!r}")
        seg = self.segment_seconds
        if seg is not None and not (seg * fps >= 1 and math.isfinite(seg)):
            raise ValueError(f"segment_seconds must be at least one frame long (or None), got {seg!r}")
        if not (self.max_window_seconds * fps >= MIN_WINDOW_FRAMES):
            raise ValueError(f"max_window_seconds must cover at least {MIN_WINDOW_FRAMES} frames, "
                             f"got {self.max_window_seconds!r}")


def _checked_rate(sample_rate: int) -> int:
    rate = check_sample_rate(sample_rate)
    if rate < SR:
        logger.warning("the audio is sampled at %d Hz: it has nothing above %d Hz, while wav2vec2 was trained on "
                       "16 kHz speech; the lips may move less precisely", rate, rate // 2)
    return rate


def _checked_duration(wav: torch.Tensor, rate: int, fps: float) -> float:
    """The duration in seconds; audio shorter than one video frame is refused."""
    duration = wav.shape[1] / rate
    problem = frames_problem(math.ceil(duration * fps), fps)  # the frame budget: an hour at 60 fps
    if problem:
        raise HalloInputError(f"the video {problem}")
    if duration < 1.0 / fps:
        raise ValueError(
            f"audio is {duration * 1000:.1f} ms long, shorter than one video frame: provide at least "
            f"{1000.0 / fps:.1f} ms of audio ({math.ceil(rate / fps)} samples at {rate} Hz, {fps:g} fps)"
        )
    return duration


def prepare_wave(wav: torch.Tensor, rate: int, loudness: str, separator_file: Path | None) -> torch.Tensor:
    """``[C, T]`` at ``rate`` -> ``(S,)`` 16 kHz mono: optional loudness gain and vocal separation first."""
    wav = _apply_loudness(wav, loudness)
    if separator_file is not None:
        wav, rate = vocals_stem(wav, rate, separator_file)
    wave16 = to_mono_16k(wav, rate)  # libswresample, as the CLI's decoder: the same samples for the same file
    if float(wave16.abs().max()) < SILENCE_PEAK:
        notice(logger, f"the audio is silent (peak below {SILENCE_PEAK:.0e}): the face will not speak")
    return wave16


def _segment_progress(progress: ProgressFn | None, index: int, count: int) -> ProgressFn | None:
    """Progress of segment ``index`` of ``count``, reported in 1/1000ths of a segment."""
    if progress is None or count == 1:
        return progress

    def report(done: int, total: int) -> None:
        progress(index * 1000 + done * 1000 // max(total, 1), count * 1000)

    return report


def encode_frames(encoder: Wav2VecEncoder, wave16: torch.Tensor, opts: EncodeOptions,
                  progress: ProgressFn | None = None) -> tuple[torch.Tensor, int]:
    """16 kHz mono wave -> (``(N_padded, 12, C)`` frame states, true frame count).

    Each segment (the whole wave unless ``opts.segment_seconds``) is normalised on its own; only the last
    one is padded (see ``_pad_for_clips``); the true frame count is the sum of the segments' counts.
    """
    if opts.segment_seconds is None:
        pieces = [wave16]
    else:
        seg = max(1, int(round(opts.segment_seconds * SR)))
        pieces = [wave16[i : i + seg] for i in range(0, wave16.shape[0], seg)]
    states: list[torch.Tensor] = []
    true_frames = padded_total = 0
    for idx, piece in enumerate(pieces):
        seq = frame_count(piece.shape[0], opts.fps)
        true_frames += seq
        normed = normalize_wave(piece)
        if idx == len(pieces) - 1:
            normed, seq = _pad_for_clips(normed, seq, padded_total, opts.clip_length, opts.fps)
        single = piece.shape[0] <= opts.max_window_seconds * SR  # the bound is on the audio, not on its padding
        states.append(encode_wave(encoder, normed, seq, opts.fps, opts.max_window_seconds, opts.overlap_seconds,
                                  _segment_progress(progress, idx, len(pieces)), single))
        padded_total += seq
    return (torch.cat(states, dim=0) if len(states) > 1 else states[0]), true_frames


def encode_audio(
    waveform: torch.Tensor,
    sample_rate: int,
    encoder: Wav2VecEncoder,
    *,
    fps: float = 25.0,
    clip_length: int = CLIP_LENGTH,
    separate_vocals: bool | str = False,
    separator_model: Path | None = None,
    loudness: str = "none",
    segment_seconds: float | None = None,
    max_window_seconds: float = 600.0,
    overlap_seconds: float = 10.0,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
) -> AudioFeatures:
    """Encode a ComfyUI AUDIO waveform into Hallo's per-frame features (see module docstring).

    ``separate_vocals``: ``"auto"``/``"on"``/``"off"`` or a bool (see ``pipeline.audio.separation``; the
    original always separates, ``"auto"`` does when the optional package and ``separator_model`` exist).
    ``loudness``: ``"none"`` (original: only the whole-file zero-mean/unit-variance, which is
    already gain-invariant) or ``"peak"``/``"rms"``: a gain applied to the input before vocal
    separation, whose output does depend on the input level. ``segment_seconds``: Hallo2's
    independent segments (60 s there), each normalised and encoded on its own, only the last one
    padded, by Hallo2's rule (see ``_pad_for_clips``), ``num_frames`` = sum of per-segment frame counts
    as in Hallo2. ``max_window_seconds``/``overlap_seconds``: beyond this length the
    encoder (quadratic compute) runs in overlapping windows; below it, in one pass as the original.
    ``device``: where the encoder runs (moves it there); default: where it is. Nothing is cached here:
    ComfyUI caches the node's output.
    """
    enc = _as_encoder(encoder)
    wav = _as_channels_time(waveform)
    rate = _checked_rate(sample_rate)
    opts = EncodeOptions(fps, clip_length, loudness, segment_seconds, max_window_seconds, overlap_seconds)
    opts.check()
    duration = _checked_duration(wav, rate, fps)
    separator_file = resolve_separation(separate_vocals, separator_model)
    if device is not None and torch.device(device) != enc.device:
        logger.info("moving the wav2vec encoder to %s", device)
        enc.to(device=device)
    wave16 = prepare_wave(wav, rate, loudness, separator_file)
    del wav  # only the 16 kHz mono wave is needed from here on
    frame_states, true_frames = encode_frames(enc, wave16, opts, progress)
    # Hallo2 audio whose last segment is a clip multiple while the total is not: the original encodes that
    # segment unpadded and never renders the final partial clip (its video ends up to 15 frames short).
    # Encoding it unpadded keeps every feature the original renders; repeating the last frame's states up to
    # the next clip multiple lets the partial clip render too (its extra frames are trimmed).
    padded_len = math.ceil(frame_states.shape[0] / clip_length) * clip_length
    feats = AudioFeatures(features=stack_window(frame_states, length=padded_len), num_frames=true_frames,
                          fps=float(fps), clip_length=clip_length, duration_s=duration)
    logger.info("audio: %.2f s -> %d frames (%d padded) at %g fps", duration, true_frames,
                feats.num_padded_frames, fps)
    return feats
