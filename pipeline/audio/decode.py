"""Audio decoding and resampling: one path, PyAV (libswresample), for the CLI and the nodes alike.

Integer samples become float32 as ComfyUI core's ``LoadAudio`` scales them (int16 / 2^15, int32 / 2^31;
unsigned 8-bit, which core does not read, as (x - 128) / 128 like libswresample), so a file decoded here
and the AUDIO that ``LoadAudio`` makes of it hold the same samples. Resampling runs libswresample on
float32 planar chunks, every channel on its own (no rematrixing), with its state carried across chunks:
the result does not depend on how the input is cut into chunks. Mono is the mean of the channels after
resampling, as the original does (``ffmpeg -ar 16000``, then librosa's mean). So decoding a file straight
to 16 kHz mono (the CLI) and resampling its AUDIO waveform (the nodes) give bit-identical samples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..budgets import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_audio_budget, rate_problem, samples_limit
from ..errors import HalloInputError

logger = logging.getLogger(__name__)

TARGET_SAMPLE_RATE = 16000
CHUNK_SAMPLES = 1 << 16  # samples per channel handed to libswresample at a time
_SECONDS_PER_KB = 1.0  # no real codec packs more than ~1 s of audio into 1 KB (8 kbit/s)


def non_finite_samples(waveform: torch.Tensor) -> int:
    """How many samples of ``waveform`` are NaN or infinite (0 for integer PCM). One float64 sum first (NaN
    and inf survive it, float32 samples cannot overflow it), so a clean waveform costs no extra memory."""
    if not waveform.is_floating_point() or not waveform.numel():
        return 0
    if bool(torch.isfinite(waveform.sum(dtype=torch.float64))):
        return 0
    flat = waveform.reshape(-1)
    return sum(int((~torch.isfinite(flat[i:i + CHUNK_SAMPLES * 16])).sum())
               for i in range(0, flat.numel(), CHUNK_SAMPLES * 16))


def check_waveform(waveform: torch.Tensor, sample_rate: object, name: str) -> int:
    """An in-memory ``[..., C, T]`` waveform at the door: rate, channels and duration within the budget, every
    sample finite. Returns the rate as ``int``; ``name`` says which input (a node's ``audio``)."""
    try:
        rate_f = float(sample_rate)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise HalloInputError(f"{name} reports a sample rate of {sample_rate!r}, not a number of Hz: connect an "
                              "AUDIO from LoadAudio") from None
    problem = rate_problem(rate_f)
    if problem:
        raise HalloInputError(f"{name} {problem}")
    rate = int(rate_f)
    channels = int(waveform.shape[-2]) if waveform.ndim >= 2 else 1
    check_audio_budget(name, waveform.shape[-1] / rate, rate, max(channels, 1))
    bad = non_finite_samples(waveform)
    if bad:
        raise HalloInputError(
            f"{name} holds {bad} NaN or infinite samples (of {waveform.numel()}): the waveform is corrupt, and would "
            "be encoded as silence; check the node that made it (a division by zero?) or load the file again")
    return rate


def check_sample_rate(sample_rate: int | float) -> int:
    """Validate that a sample rate is a whole number of Hz in 4-768 kHz and return it as ``int``."""
    try:
        rate_f = float(sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"audio sample_rate must be a number, got {sample_rate!r}") from None
    if not math.isfinite(rate_f) or rate_f != int(rate_f):
        raise ValueError(f"audio sample_rate must be a whole number of Hz, got {sample_rate!r}")
    rate = int(rate_f)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"audio sample_rate {rate} Hz is not supported: use audio sampled at "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (resample it first, e.g. with ffmpeg -ar 16000)"
        )
    return rate


def pcm_to_float(samples: np.ndarray) -> np.ndarray:
    """PCM samples as float32 in [-1, 1): signed / 2^(bits-1), unsigned (x - 2^(bits-1)) / 2^(bits-1)."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    bits = 8 * samples.dtype.itemsize
    scale = np.float32(2.0 ** -(bits - 1))
    if samples.dtype.kind == "u":
        return (samples.astype(np.float32) - np.float32(2.0 ** (bits - 1))) * scale
    if samples.dtype.kind == "i":
        return samples.astype(np.float32) * scale
    raise ValueError(f"audio samples of dtype {samples.dtype} are not PCM")


def frame_to_float(frame) -> np.ndarray:
    """A decoded ``av.AudioFrame`` as float32 ``[C, n]`` (planar or packed, core's integer scaling)."""
    arr = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    return pcm_to_float(arr)


def open_audio(path: str | Path, what: str = "audio file"):
    """Open ``path`` with PyAV; clear errors for a missing, unreadable or audio-less file."""
    import av

    from ..door import check_input_file

    path = check_input_file(Path(path), what, "give the voice recording's file name")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot open {what} {path}: {exc}") from exc
    if not container.streams.audio:
        container.close()
        raise ValueError(f"{what} {path} has no audio stream")
    return container


def decoded_chunks(container) -> Iterator[np.ndarray]:
    """The first audio stream of an open container as float32 ``[C, n]`` chunks."""
    stream = container.streams.audio[0]
    rate, channels = int(stream.codec_context.sample_rate or 1), int(stream.codec_context.channels or 1)
    limit, decoded = samples_limit(rate, channels), 0
    for frame in container.decode(stream):
        if frame.samples:
            decoded += frame.samples
            if decoded > limit:  # a header that hid the length: stop at the budget, not at the end of the file
                check_audio_budget(f"audio file {container.name}", decoded / rate, rate, channels)
                raise HalloInputError(f"audio file {container.name} decodes to more than {limit} samples per "
                                      "channel; trim it (e.g. ffmpeg -i in -t 3600 out.wav)")  # pragma: no cover
            yield frame_to_float(frame)


def waveform_chunks(waveform: torch.Tensor, size: int = CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    """A ``[C, T]`` tensor as float32 numpy ``[C, n]`` chunks, converted one chunk at a time."""
    for start in range(0, waveform.shape[-1], size):
        piece = waveform[:, start:start + size].detach().cpu().numpy()
        yield np.ascontiguousarray(pcm_to_float(piece))


class ChunkResampler:
    """libswresample from ``rate`` to ``out_rate`` over float32 ``[C, n]`` chunks; the state flows on.

    Every channel is resampled on its own (the same layout in and out: no rematrix), so the channel
    layout does not matter. Call :meth:`push` with each chunk, then :meth:`flush` once.
    """

    def __init__(self, channels: int, rate: int, out_rate: int) -> None:
        import av

        self.channels, self.rate, self.out_rate = int(channels), int(rate), int(out_rate)
        self._layout = f"{self.channels} channels"
        self._swr = None
        if self.rate != self.out_rate:  # packed samples: PyAV miscounts the planes of planar frames from 8 channels
            self._swr = av.AudioResampler(format="flt", layout=self._layout, rate=self.out_rate)

    def push(self, chunk: np.ndarray) -> list[np.ndarray]:
        """Resample one ``[C, n]`` float32 chunk; returns the output chunks that are ready."""
        if self._swr is None:
            return [chunk]
        frame = packed_frame(chunk, self._layout)
        frame.sample_rate = self.rate
        return [unpack(out, self.channels) for out in self._swr.resample(frame)]

    def flush(self) -> list[np.ndarray]:
        """The last output samples held in the resampler's filter."""
        if self._swr is None:
            return []
        return [unpack(out, self.channels) for out in self._swr.resample(None)]


def packed_frame(chunk: np.ndarray, layout: str):
    """A ``[C, n]`` float32 chunk as a packed (interleaved) ``flt`` frame. Planar frames cannot be used: PyAV
    (18) counts more planes than a planar frame of 8 or more channels has, and fails on them."""
    import av

    packed = np.ascontiguousarray(np.asarray(chunk, dtype=np.float32).T).reshape(1, -1)
    return av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)


def unpack(frame, channels: int) -> np.ndarray:
    """A packed ``flt`` frame as float32 ``[C, n]``."""
    return np.ascontiguousarray(frame.to_ndarray().reshape(-1, channels).T)


def mean_channels(chunk: np.ndarray) -> np.ndarray:
    """``[C, n]`` -> ``[1, n]``: the mean of the channels, summed in float64 in channel order."""
    if chunk.shape[0] == 1:
        return chunk
    acc = chunk[0].astype(np.float64)
    for row in chunk[1:]:
        acc += row
    return (acc / chunk.shape[0]).astype(np.float32)[None]


def convert_chunks(chunks: Iterable[np.ndarray], channels: int, rate: int, out_rate: int,
                   mono: bool) -> Iterator[np.ndarray]:
    """Resample (then, with ``mono``, average the channels of) a stream of ``[C, n]`` float32 chunks."""
    resampler = ChunkResampler(channels, rate, out_rate)
    for chunk in chunks:
        if chunk.shape[0] != channels:
            raise ValueError(f"the audio changes from {channels} to {chunk.shape[0]} channels mid-stream")
        for out in resampler.push(chunk):
            yield mean_channels(out) if mono else out
    for out in resampler.flush():
        yield mean_channels(out) if mono else out


class GrowingBuffer:
    """A float32 ``[C, capacity]`` buffer filled chunk by chunk, grown geometrically when full."""

    def __init__(self, channels: int, capacity: int) -> None:
        self.data = np.empty((channels, max(1, int(capacity))), dtype=np.float32)
        self.filled = 0

    def put(self, chunk: np.ndarray) -> None:
        n = chunk.shape[1]
        if self.filled + n > self.data.shape[1]:
            grown = np.empty((self.data.shape[0], max(2 * self.data.shape[1], self.filled + n)), dtype=np.float32)
            grown[:, :self.filled] = self.data[:, :self.filled]
            self.data = grown
        self.data[:, self.filled:self.filled + n] = chunk
        self.filled += n

    def result(self) -> np.ndarray:
        """The filled part (a copy only when it is much smaller than the buffer)."""
        out = self.data[:, :self.filled]
        return out.copy() if self.filled < self.data.shape[1] // 2 else out


def _capacity_hint(container, path: Path, out_rate: int) -> int:
    """Samples per channel to reserve: the header's duration, never more than the file size allows."""
    stream = container.streams.audio[0]
    seconds = 0.0
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000
    bound = max(1.0, path.stat().st_size / 1024 * _SECONDS_PER_KB)  # a header may claim centuries
    return int(min(max(seconds, 0.0), bound) * out_rate) + out_rate


def load_audio_file(path: str | Path, *, sample_rate: int | None = None, mono: bool = False
                    ) -> tuple[torch.Tensor, int]:
    """Decode an audio file into a float32 waveform ``[C, T]`` and its sample rate.

    With ``sample_rate``/``mono`` it is resampled (libswresample) and averaged to mono while decoding, so a
    long file never sits in memory at its full rate; the samples equal :func:`to_mono_16k` of the file's
    full-rate waveform bit for bit; the file's own rate must then be one :func:`check_sample_rate` accepts.
    Memory grows with what is decoded, not with the duration the header claims.
    """
    import av

    from ..door import probe_audio

    path = Path(path)
    probe_audio(path)  # a regular, readable audio file whose header is within the budget
    with open_audio(path) as container:
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        if rate <= 0 or channels <= 0:
            raise ValueError(f"audio file {path}: the stream reports {rate} Hz and {channels} channels; "
                             "re-encode it (e.g. ffmpeg -i in -c:a pcm_s16le out.wav)")
        out_rate = int(sample_rate or rate)
        if sample_rate is not None:
            check_sample_rate(rate)
        buffer = GrowingBuffer(1 if mono else channels, _capacity_hint(container, path, out_rate))
        try:
            for chunk in convert_chunks(decoded_chunks(container), channels, rate, out_rate, mono):
                buffer.put(chunk)
        except av.error.FFmpegError as exc:
            raise ValueError(f"cannot decode audio file {path}: {exc}") from exc
    if buffer.filled == 0:
        raise ValueError(f"audio file {path} contains no audio samples")
    return torch.from_numpy(buffer.result()), out_rate


def resample_waveform(waveform: torch.Tensor, rate: int, out_rate: int = TARGET_SAMPLE_RATE, *,
                      mono: bool = False) -> torch.Tensor:
    """Resample a ``[C, T]`` waveform (libswresample, chunk by chunk); ``[1, T']`` with ``mono``."""
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2:
        raise ValueError(f"resample_waveform expects a [C, T] waveform, got shape {tuple(waveform.shape)}")
    rate, out_rate = check_sample_rate(rate), int(out_rate)
    channels = int(waveform.shape[0])
    expected = math.ceil(waveform.shape[1] * out_rate / rate)
    buffer = GrowingBuffer(1 if mono else channels, expected + 64)
    for chunk in convert_chunks(waveform_chunks(waveform), channels, rate, out_rate, mono):
        buffer.put(chunk)
    return torch.from_numpy(buffer.result())


def to_mono_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """A ``[C, T]`` waveform at any rate -> ``[T']`` float32 mono at 16 kHz (see the module docstring)."""
    return resample_waveform(waveform, sample_rate, TARGET_SAMPLE_RATE, mono=True)[0]
