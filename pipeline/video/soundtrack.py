"""A video's soundtrack, read and AAC-encoded once, before any frame is rendered.

The source (a file or an in-memory waveform) is decoded, downmixed to stereo (or kept mono) by
libswresample with the source's channel layout, so a 5.1 track with the dialogue in the centre channel
keeps it, resampled to the nearest sample rate AAC encodes, and encoded into AAC packets held in memory
(about 1 MB a minute at 128 kbit/s). The writer muxes them when the video is complete: moving or rewriting the source
file during a render changes nothing, and a track that cannot be read or encoded fails before the render.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..audio.decode import decoded_chunks, open_audio, packed_frame, waveform_chunks

logger = logging.getLogger(__name__)

AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
AAC_FRAME = 1024
AAC_BIT_RATE = 128000

SoundtrackSource = tuple[torch.Tensor, int] | str | Path


def aac_sample_rate(rate: int) -> int:
    """The AAC rate nearest to ``rate`` (the higher one on a tie); ``rate`` itself when AAC takes it."""
    return min(AAC_SAMPLE_RATES, key=lambda r: (abs(r - rate), -r))


def source_layout(channels: int, name: str | None = None) -> str | None:
    """A channel layout libswresample can downmix: ``name`` when it orders ``channels`` channels, else the
    default layout for that count, else None (no standard layout: the channels are averaged)."""
    import av

    for candidate in (name, f"{channels}c"):
        if not candidate or candidate.endswith("channels"):
            continue
        try:
            layout = av.AudioLayout(candidate)
        except ValueError:
            continue
        if layout.nb_channels == channels:
            return layout.name
    return None


@dataclass
class Soundtrack:
    """AAC packets (time base ``1/rate``) of a mono or stereo track, ready to be muxed."""

    rate: int
    layout: str
    packets: list = field(default_factory=list)

    def add_stream(self, container):
        """Add the matching AAC stream to an output container."""
        stream = container.add_stream("aac", rate=self.rate)
        stream.layout = self.layout
        stream.codec_context.bit_rate = AAC_BIT_RATE
        return stream

    def mux(self, container, stream, seconds: float) -> None:
        """Mux the packets that start within the first ``seconds`` (the video's duration)."""
        limit = int(round(seconds * self.rate))
        for packet in self.packets:
            if packet.pts is not None and packet.pts >= limit:
                break
            packet.stream = stream
            container.mux(packet)


def _source(audio: SoundtrackSource, label: str) -> tuple[Iterator[np.ndarray], int, int, str | None, object]:
    """(chunks, rate, channels, layout, container or None) of a file or a waveform."""
    if isinstance(audio, str | Path):
        from ..door import probe_audio

        probe_audio(audio, label)  # rate, channels and length within the budget before any sample is decoded
        container = open_audio(audio, label)
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        return decoded_chunks(container), rate, channels, source_layout(channels, stream.layout.name), container
    wave, rate = audio
    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"{label}: expected (waveform tensor, sample_rate), got {type(wave).__name__}")
    wave = wave[0] if wave.ndim == 3 else wave
    wave = wave[None] if wave.ndim == 1 else wave
    if wave.ndim != 2 or wave.shape[0] == 0:
        raise ValueError(f"{label}: the waveform must be [C, T] or [B, C, T], got shape {tuple(wave.shape)}")
    channels = int(wave.shape[0])
    return waveform_chunks(wave), int(rate), channels, source_layout(channels), None


def _encoder(rate: int, layout: str):
    import av

    ctx = av.CodecContext.create("aac", "w")
    ctx.sample_rate = rate
    ctx.layout = layout
    ctx.format = "fltp"
    ctx.bit_rate = AAC_BIT_RATE
    ctx.time_base = Fraction(1, rate)
    ctx.open()
    return ctx


def _frames(chunks: Iterator[np.ndarray], rate: int, layout: str | None, out_rate: int, out_layout: str):
    """Float32 ``[C, n]`` chunks -> fltp frames of 1024 samples at ``out_rate`` in ``out_layout``."""
    import av

    resampler = av.AudioResampler(format="fltp", layout=out_layout, rate=out_rate, frame_size=AAC_FRAME)
    for chunk in chunks:
        if layout is None:  # no standard layout to downmix from: average the channels
            chunk = chunk.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
        frame = packed_frame(chunk, layout or "mono")  # packed: PyAV fails on planar frames of 8+ channels
        frame.sample_rate = rate
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def encode_soundtrack(audio: SoundtrackSource, label: str = "soundtrack") -> Soundtrack:
    """Read ``audio`` (a file path, or ``(waveform [C, T] or [B, C, T], sample_rate)``) into AAC packets."""
    import av

    chunks, rate, channels, layout, container = _source(audio, label)
    try:
        if rate <= 0 or channels <= 0:
            raise ValueError(f"{label}: the audio reports {rate} Hz and {channels} channels")
        out_layout = "mono" if channels == 1 or layout is None else "stereo"
        out_rate = aac_sample_rate(rate)
        if out_rate != rate:
            logger.info("%s: resampling %d Hz to %d Hz for AAC", label, rate, out_rate)
        track = Soundtrack(out_rate, out_layout)
        encoder = _encoder(out_rate, out_layout)
        written = 0
        for frame in _frames(chunks, rate, layout, out_rate, out_layout):
            data = np.clip(np.nan_to_num(frame.to_ndarray()), -1.0, 1.0)
            clipped = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=out_layout)
            clipped.sample_rate, clipped.pts, clipped.time_base = out_rate, written, Fraction(1, out_rate)
            written += clipped.samples
            track.packets.extend(encoder.encode(clipped))
        track.packets.extend(encoder.encode(None))
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot encode the {label} ({audio if container else 'waveform'}) as AAC: {exc}; "
                         "convert it to a common format first (e.g. ffmpeg -i in -ar 48000 out.wav)") from exc
    finally:
        if container is not None:
            container.close()
    if written == 0:
        if container is not None:
            raise ValueError(f"audio file {audio} contains no audio samples; give a recording of the voice")
        raise ValueError(f"the {label} waveform contains no audio samples")
    logger.debug("%s: %d AAC packets, %.1f s at %d Hz %s", label, len(track.packets), written / out_rate,
                 out_rate, out_layout)
    return track
