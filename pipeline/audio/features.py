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

Long audio keeps every step exact: the CNN runs in chunks with whole-file GroupNorm statistics (its
output equals the single-pass output), and the transformer encoder runs over the whole sequence in one
pass as the original does, with SDPA attention whose memory grows linearly. Only audio longer than
``max_window_seconds`` (10 minutes by default; its compute grows quadratically) runs the encoder in
overlapping windows that are cross-faded in the middle of each overlap, an approximation.
``segment_seconds`` reproduces Hallo2's ``use_cut``:
independent segments, each normalised and encoded on its own.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..notices import notice
from .decode import TARGET_SAMPLE_RATE, check_sample_rate, pcm_to_float, to_mono_16k
from .wav2vec import Wav2VecEncoder, interpolate_frames

logger = logging.getLogger(__name__)

SR = TARGET_SAMPLE_RATE
WINDOW_RADIUS = 2  # +-2 frames -> 5
NORM_EPS = 1e-7  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
LOUDNESS_MODES = ("none", "peak", "rms")
PEAK_TARGET = 0.95
RMS_TARGET = 0.1  # -20 dBFS
SILENCE_PEAK = 1e-5
MAX_CHANNELS = 16
_CNN_CHUNK_SECONDS = 20.0

ProgressFn = Callable[[int, int], None]


@dataclass
class AudioFeatures:
    """Per-frame audio conditioning for Hallo.

    ``features`` is ``(N_padded, 5, 12, C)`` float32 on CPU, N_padded a multiple of
    ``clip_length``; frame ``i`` holds the states of frames ``i-2..i+2`` clamped to the padded
    sequence. It is a strided *view* over the ``(N_padded + 4, 12, C)`` per-frame states (no 5x
    copy); treat it as read-only (results are cached and shared) and call ``.contiguous()`` on a
    slice when a compact tensor is needed. ``num_frames`` is the true frame count used to trim
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
# cache
# ---------------------------------------------------------------------------------------------
_CACHE: OrderedDict[str, AudioFeatures] = OrderedDict()
_CACHE_MAX_ENTRIES = 8
_CACHE_MAX_BYTES = 3 << 30


def clear_audio_cache() -> None:
    """Drop every cached ``AudioFeatures``."""
    _CACHE.clear()


def _cache_put(key: str, value: AudioFeatures) -> None:
    _CACHE[key] = value
    _CACHE.move_to_end(key)

    def _bytes(v: AudioFeatures) -> int:
        s = v.features.untyped_storage()
        return s.nbytes()

    while len(_CACHE) > _CACHE_MAX_ENTRIES or (
        len(_CACHE) > 1 and sum(_bytes(v) for v in _CACHE.values()) > _CACHE_MAX_BYTES
    ):
        _CACHE.popitem(last=False)


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
def _cnn_chunked(encoder: Wav2VecEncoder, wave: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """CNN features ``(1, T50, C)`` of a ``(1, S)`` wave computed chunk-wise, equal to one pass.

    With ``feat_extract_norm == "group"`` the first layer's GroupNorm normalises each channel over
    the whole sequence, so its statistics are gathered in a first streaming pass.
    """
    fe = encoder.model.feature_extractor
    layers = list(fe.conv_layers)
    hop, field = encoder.cnn_hop, encoder.cnn_field
    total = wave.shape[1]
    n_frames = _conv_out_len(encoder, total)
    first = layers[0]
    group = isinstance(getattr(first, "layer_norm", None), torch.nn.GroupNorm)
    mean = inv_std = None
    if group:
        conv0 = first.conv
        k0, s0 = conv0.kernel_size[0], conv0.stride[0]
        n0 = (total - k0) // s0 + 1
        ch = conv0.out_channels
        acc = torch.zeros(ch, dtype=torch.float64, device=wave.device)
        acc2 = torch.zeros(ch, dtype=torch.float64, device=wave.device)
        step0 = chunk_frames * hop // s0
        for a in range(0, n0, step0):
            b = min(n0, a + step0)
            y = conv0(wave[:, a * s0 : (b - 1) * s0 + k0].view(1, 1, -1))[0].double()
            acc += y.sum(dim=1)
            acc2 += y.pow(2).sum(dim=1)
        mean = acc / n0
        var = (acc2 / n0 - mean.pow(2)).clamp_min(0.0)
        inv_std = torch.rsqrt(var + first.layer_norm.eps)
    outs: list[torch.Tensor] = []
    for t0 in range(0, n_frames, chunk_frames):
        t1 = min(n_frames, t0 + chunk_frames)
        seg = wave[:, t0 * hop : (t1 - 1) * hop + field]
        h = seg[:, None]
        if group:
            gn = first.layer_norm
            y = first.conv(h)
            y = ((y.double() - mean[None, :, None]) * inv_std[None, :, None]).to(y.dtype)
            y = y * gn.weight[None, :, None] + gn.bias[None, :, None]
            h = first.activation(y)
            rest = layers[1:]
        else:
            rest = layers
        for layer in rest:
            h = layer(h)
        outs.append(h[..., : t1 - t0])
    return torch.cat(outs, dim=2).transpose(1, 2)


def _conv_out_len(encoder: Wav2VecEncoder, samples: int) -> int:
    n = samples
    for layer in encoder.model.feature_extractor.conv_layers:
        n = (n - layer.conv.kernel_size[0]) // layer.conv.stride[0] + 1
    return n


def _crossfade_weights(n: int, start: int, end: int, prev_end: int | None, next_start: int | None) -> torch.Tensor:
    """Weights over ``[start, end)``: 1 inside, linear ramps over the middle half of each overlap."""
    idx = torch.arange(start, end, dtype=torch.float64)
    w = torch.ones(end - start, dtype=torch.float64)
    if prev_end is not None:  # overlap [start, prev_end) with the previous window
        ov = prev_end - start
        lo, span = start + ov / 4.0, max(ov / 2.0, 1.0)
        w = torch.minimum(w, ((idx - lo + 0.5) / span).clamp(0.0, 1.0))
    if next_start is not None:  # overlap [next_start, end) with the next window
        ov = end - next_start
        lo, span = next_start + ov / 4.0, max(ov / 2.0, 1.0)
        w = torch.minimum(w, 1.0 - ((idx - lo + 0.5) / span).clamp(0.0, 1.0))
    return w


def plan_windows(n: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Evenly spaced encoder windows ``[(start, end), ...]`` covering ``[0, n)``.

    Every window is ``window`` frames long (the last ends at ``n``) and consecutive windows
    overlap by at least ``overlap`` frames.
    """
    if n <= window:
        return [(0, n)]
    count = math.ceil((n - overlap) / (window - overlap))
    starts = [round(i * (n - window) / (count - 1)) for i in range(count)]
    return [(s, s + window) for s in starts]


@torch.no_grad()
def _encode_wave(
    encoder: Wav2VecEncoder,
    wave: torch.Tensor,
    seq_len: int,
    fps: float,
    max_window_seconds: float,
    overlap_seconds: float,
    progress: ProgressFn | None,
    single_pass: bool = True,
) -> torch.Tensor:
    """Normalised, padded 16 kHz wave -> ``(seq_len, 12, C)`` float32 CPU.

    ``single_pass``: one encoder pass over the whole sequence (as the original); otherwise overlapping windows
    of ``max_window_seconds``.
    """
    dev, dt = encoder.device, encoder.dtype
    if wave.shape[0] < encoder.cnn_field:  # too short for one CNN frame: zero-extend (post-normalisation)
        wave = F.pad(wave, (0, encoder.cnn_field - wave.shape[0]))
    window = max(16, int(round(max_window_seconds * fps)))
    chunk_frames = max(64, int(_CNN_CHUNK_SECONDS * SR / encoder.cnn_hop))
    if wave.shape[0] <= chunk_frames * encoder.cnn_hop and single_pass:
        out = encoder(wave.to(dev, dt), seq_len).cpu()
        if progress is not None:
            progress(1, 1)
        return out
    x = wave.to(dev, dt)[None]
    # Long audio: the CNN runs in chunks (exact: whole-file GroupNorm statistics), so its activations stay
    # bounded; the transformer then runs over the whole sequence in one pass, as the original does, as long as
    # it is not longer than ``max_window_seconds`` (SDPA keeps its attention memory linear in length).
    cnn = _cnn_chunked(encoder, x, chunk_frames)
    hidden = encoder.project(interpolate_frames(cnn, seq_len))
    del cnn
    if single_pass or seq_len <= window:
        out = encoder.encode_hidden(hidden).float().cpu()
        if progress is not None:
            progress(1, 1)
        return out
    overlap = int(round(overlap_seconds * fps))
    overlap = max(4, min(overlap, window // 3))
    spans = plan_windows(seq_len, window, overlap)
    out = torch.zeros(seq_len, encoder.num_layers, encoder.hidden_size, dtype=torch.float32)
    for i, (s, e) in enumerate(spans):
        states = encoder.encode_hidden(hidden[:, s:e]).float().cpu()
        prev_end = spans[i - 1][1] if i > 0 else None
        next_start = spans[i + 1][0] if i + 1 < len(spans) else None
        w = _crossfade_weights(seq_len, s, e, prev_end, next_start).to(torch.float32)
        out[s:e] += states * w[:, None, None]
        if progress is not None:
            progress(i + 1, len(spans))
    logger.info("encoded %d frames in %d windows of %d frames (overlap %d)", seq_len, len(spans), window, overlap)
    return out


def _pad_for_clips(wave: torch.Tensor, seq_len: int, total_before: int, clip_length: int, fps: float
                   ) -> tuple[torch.Tensor, int]:
    """Zero-pad the normalised last piece of the audio exactly as the original does.

    Hallo (one piece, ``total_before`` = 0): pad to the next multiple of the clip length. Hallo2 (the last
    of several segments): the padding is decided on the segment's own length (``seq_len % clip``) but sized
    from the total (``clip - (total_before + seq_len) % clip``), so a total that is already a multiple gets a
    whole clip of zeros, and a segment that is itself a multiple gets none (the caller then repeats its last
    features up to the next multiple, see ``encode_audio``).
    """
    if seq_len % clip_length == 0:
        return wave, seq_len
    extra = clip_length - (total_before + seq_len) % clip_length
    hop = int(SR // fps)
    return F.pad(wave, (0, extra * hop)), seq_len + extra


def _encoder_identity(encoder: Wav2VecEncoder) -> str:
    return f"{getattr(encoder, 'identity', id(encoder))}|{encoder.device}|{encoder.dtype}"


def _as_encoder(encoder: object) -> Wav2VecEncoder:
    if isinstance(encoder, Wav2VecEncoder):
        return encoder
    if isinstance(encoder, torch.nn.Module) and hasattr(encoder, "feature_extractor"):
        return Wav2VecEncoder(encoder, identity=f"module:{id(encoder)}")
    raise TypeError(
        f"encoder must be a Wav2VecEncoder (see pipeline.wav2vec.load_wav2vec), got {type(encoder).__name__}"
    )


def encode_audio(
    waveform: torch.Tensor,
    sample_rate: int,
    encoder: Wav2VecEncoder,
    *,
    fps: float = 25.0,
    clip_length: int = 16,
    separate_vocals: bool | str = False,
    separator_model: Path | None = None,
    loudness: str = "none",
    segment_seconds: float | None = None,
    max_window_seconds: float = 600.0,
    overlap_seconds: float = 10.0,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    use_cache: bool = True,
) -> AudioFeatures:
    """Encode a ComfyUI AUDIO waveform into Hallo's per-frame features (see module docstring).

    ``separate_vocals``: ``"auto"``/``"on"``/``"off"`` or a bool (see ``pipeline.vocal_separation``; the
    original always separates, ``"auto"`` does when the optional package and ``separator_model`` exist).
    ``loudness``: ``"none"`` (original: only the whole-file zero-mean/unit-variance, which is
    already gain-invariant) or ``"peak"``/``"rms"``: a gain applied to the input before vocal
    separation, whose output does depend on the input level. ``segment_seconds``: Hallo2's
    independent segments (60 s there), each normalised and encoded on its own, only the last one
    padded, by Hallo2's rule (see ``_pad_for_clips``), ``num_frames`` = sum of per-segment frame counts
    as in Hallo2. ``max_window_seconds``/``overlap_seconds``: beyond this length the
    encoder (quadratic compute) runs in overlapping windows; below it, in one pass as the original.
    ``device``: where the encoder runs (moves it there);
    default: where it is. Results are cached in memory (LRU) unless ``use_cache=False``.
    """
    enc = _as_encoder(encoder)
    wav = _as_channels_time(waveform)
    rate = check_sample_rate(sample_rate)
    if rate < SR:
        logger.warning("the audio is sampled at %d Hz: it has nothing above %d Hz, while wav2vec2 was trained on "
                       "16 kHz speech; the lips may move less precisely", rate, rate // 2)
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 1.0 <= fps <= 240.0):
        raise ValueError(f"fps must be a number in 1-240, got {fps!r}")
    if not (isinstance(clip_length, int) and clip_length >= 1):
        raise ValueError(f"clip_length must be a positive integer, got {clip_length!r}")
    if loudness not in LOUDNESS_MODES:
        raise ValueError(f"loudness must be one of {LOUDNESS_MODES}, got {loudness!r}")
    if segment_seconds is not None and not (segment_seconds * fps >= 1 and math.isfinite(segment_seconds)):
        raise ValueError(f"segment_seconds must be at least one frame long (or None), got {segment_seconds!r}")
    if not (max_window_seconds * fps >= 16):
        raise ValueError(f"max_window_seconds must cover at least 16 frames, got {max_window_seconds!r}")
    duration = wav.shape[1] / rate
    if duration < 1.0 / fps:
        raise ValueError(
            f"audio is {duration * 1000:.1f} ms long, shorter than one video frame: provide at least "
            f"{1000.0 / fps:.1f} ms of audio ({math.ceil(rate / fps)} samples at {rate} Hz, {fps:g} fps)"
        )
    from .separation import resolve_separation

    separator_file = resolve_separation(separate_vocals, separator_model)
    if device is not None and torch.device(device) != enc.device:
        logger.info("moving the wav2vec encoder to %s", device)
        enc.to(device=device)

    key = None
    if use_cache:
        h = hashlib.blake2b(digest_size=20)
        h.update(memoryview(wav.numpy()).cast("B"))
        sep_id = ""
        if separator_file is not None:
            sep_id = f"{separator_file.resolve()}:{separator_file.stat().st_size}"
        h.update(repr((tuple(wav.shape), rate, float(fps), clip_length, sep_id, loudness,
                       segment_seconds, float(max_window_seconds), float(overlap_seconds),
                       _encoder_identity(enc))).encode())
        key = h.hexdigest()
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            logger.debug("audio features cache hit")
            if progress is not None:
                progress(1, 1)
            return hit

    wav = _apply_loudness(wav, loudness)
    if separator_file is not None:
        from .separation import separate_vocals as _separate

        wav, rate = _separate(wav, rate, separator_file)
    wave16 = to_mono_16k(wav, rate)  # libswresample, as the CLI's decoder: the same samples for the same file
    del wav
    if float(wave16.abs().max()) < SILENCE_PEAK:
        notice(logger, f"the audio is silent (peak below {SILENCE_PEAK:.0e}): the face will not speak")

    n16 = wave16.shape[0]
    if segment_seconds is None:
        pieces = [wave16]
    else:
        seg = max(1, int(round(segment_seconds * SR)))
        pieces = [wave16[i : i + seg] for i in range(0, n16, seg)]
    states: list[torch.Tensor] = []
    true_frames = 0
    padded_total = 0
    total_steps = len(pieces)
    for idx, piece in enumerate(pieces):
        seq = frame_count(piece.shape[0], fps)
        true_frames += seq
        normed = normalize_wave(piece)
        if idx == len(pieces) - 1:
            normed, seq = _pad_for_clips(normed, seq, padded_total, clip_length, fps)

        def _sub(done: int, total: int, _i: int = idx) -> None:
            if progress is not None:  # segments: report in 1/1000ths of a segment
                progress(_i * 1000 + done * 1000 // max(total, 1), total_steps * 1000)

        report = progress if total_steps == 1 else _sub
        single = piece.shape[0] <= max_window_seconds * SR  # the bound is on the audio, not on its padding
        states.append(_encode_wave(enc, normed, seq, fps, max_window_seconds, overlap_seconds, report, single))
        padded_total += seq
    frame_states = torch.cat(states, dim=0) if len(states) > 1 else states[0]
    # Hallo2 audio whose last segment is a clip multiple while the total is not: the original encodes that
    # segment unpadded and never renders the final partial clip (its video ends up to 15 frames short).
    # Encoding it unpadded keeps every feature the original renders; repeating the last frame's states up to
    # the next clip multiple lets the partial clip render too (its extra frames are trimmed).
    padded_len = math.ceil(frame_states.shape[0] / clip_length) * clip_length
    feats = AudioFeatures(
        features=stack_window(frame_states, length=padded_len),
        num_frames=true_frames,
        fps=float(fps),
        clip_length=clip_length,
        duration_s=duration,
    )
    logger.info("audio: %.2f s -> %d frames (%d padded) at %g fps", feats.duration_s, true_frames,
                feats.num_padded_frames, fps)
    if key is not None:
        _cache_put(key, feats)
    return feats
