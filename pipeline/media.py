"""Reading audio files and writing mp4 videos with PyAV (no ffmpeg binary needed)."""

from __future__ import annotations

import logging
import os
import secrets
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np
import torch

from .errors import HalloInputError

logger = logging.getLogger(__name__)


def _open_audio(path: Path):
    import av

    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot open audio file {path}: {exc}") from exc
    if not container.streams.audio:
        container.close()
        raise ValueError(f"{path} has no audio stream")
    return container


def _frame_to_float(frame) -> np.ndarray:
    """An AudioFrame as float32 [C, n]."""
    arr = frame.to_ndarray()
    data = arr if frame.format.is_planar else arr.reshape(-1, len(frame.layout.channels)).T
    if np.issubdtype(arr.dtype, np.integer):
        return data.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    return data.astype(np.float32, copy=False)


def audio_file_info(path: str | Path) -> tuple[int, int]:
    """(sample rate, channels) of the first audio stream."""
    with _open_audio(Path(path)) as container:
        ctx = container.streams.audio[0].codec_context
        return int(ctx.sample_rate), int(ctx.channels)


def load_audio_file(
    path: str | Path, *, sample_rate: int | None = None, mono: bool = False
) -> tuple[torch.Tensor, int]:
    """Decode any audio file PyAV/FFmpeg reads into a float32 waveform [C, T] and its sample rate.

    With ``sample_rate``/``mono`` the audio is resampled/downmixed by FFmpeg while decoding (the original
    resamples with ``ffmpeg -ar 16000`` too), so a long file never exists in memory at its full rate. The
    output is written into one preallocated buffer: peak memory is the decoded result, not twice it.
    """
    import av

    path = Path(path)
    try:
        with _open_audio(path) as container:
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate)
            channels = int(stream.codec_context.channels) or 1
            out_rate = int(sample_rate or rate)
            out_channels = 1 if mono else channels
            resampler = None
            if sample_rate is not None or mono:
                resampler = av.AudioResampler(format="fltp", layout="mono" if mono else stream.layout.name,
                                              rate=out_rate)
            seconds = float(stream.duration * stream.time_base) if stream.duration else (
                container.duration / 1_000_000 if container.duration else 0.0)
            buffer = np.empty((out_channels, int(seconds * out_rate) + out_rate), dtype=np.float32)
            filled = 0

            def put(data: np.ndarray) -> None:
                nonlocal buffer, filled
                n = data.shape[1]
                if filled + n > buffer.shape[1]:  # the duration was underestimated: grow geometrically
                    grown = np.empty((out_channels, max(2 * buffer.shape[1], filled + n)), dtype=np.float32)
                    grown[:, :filled] = buffer[:, :filled]
                    buffer = grown
                buffer[:, filled:filled + n] = data
                filled += n

            for frame in container.decode(stream):
                if resampler is None:
                    put(_frame_to_float(frame))
                else:
                    for res in resampler.resample(frame):
                        put(_frame_to_float(res))
            if resampler is not None:
                for res in resampler.resample(None):
                    put(_frame_to_float(res))
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot decode audio file {path}: {exc}") from exc
    if filled == 0:
        raise ValueError(f"{path} contains no audio samples")
    return torch.from_numpy(buffer[:, :filled]), out_rate


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) float 0..1 -> uint8 numpy, rounding like image writers do."""
    return (frames.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def reserve_partial_path(path: Path) -> Path:
    """Create and return an empty temporary file beside ``path``, unique to this call (O_EXCL)."""
    for _ in range(100):
        name = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{path.suffix}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any file
        except FileExistsError:
            continue
        except OSError as exc:  # permission denied, read-only file system, a file where a folder should be
            raise HalloInputError(f"output {path}: cannot create a file in {path.parent} ({exc.strerror or exc}); "
                                  "choose a folder you can write to") from exc
        os.close(fd)
        return name
    raise FileExistsError(f"could not create a temporary file beside {path}")  # pragma: no cover


class VideoWriter:
    """Streams frames into an H.264 mp4 with an AAC audio track; the file appears only when complete.

    Frames go to a hidden temporary file unique to this writer (``.<stem>.<pid>-<random>.partial.mp4`` beside
    the output) that is renamed on success, so a crash, a cancel or a concurrent render to the same name never
    leaves a half-written video under the requested name. With ``overwrite=False`` an output that appeared
    meanwhile is never replaced: the finished video stays under its temporary name and an error says where.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, *,
                 audio: tuple[torch.Tensor, int] | str | Path | None = None, crf: int = 18,
                 overwrite: bool = True) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self._closed = True  # until the container is open: close() then has nothing to finish
        self.partial = reserve_partial_path(self.path)
        try:
            self._open(fps, width, height, audio=audio, crf=crf)
        except BaseException:
            self._discard()
            raise

    def _open(self, fps: float, width: int, height: int, *,
              audio: tuple[torch.Tensor, int] | str | Path | None, crf: int) -> None:
        import av

        self.fps = Fraction(fps).limit_denominator(1001)
        self.frames_written = 0
        self._container = av.open(str(self.partial), mode="w")
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width = width
        self._video.height = height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "medium"}
        self._audio = audio
        self._audio_stream = None
        if audio is not None:
            if isinstance(audio, str | Path):
                rate, channels = audio_file_info(audio)
            else:
                rate, channels = int(audio[1]), (audio[0].shape[-2] if audio[0].ndim >= 2 else 1)
            self._audio_stream = self._container.add_stream("aac", rate=rate)
            self._audio_stream.layout = "mono" if channels == 1 else "stereo"
        self._closed = False

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append (N, H, W, 3) frames (float 0..1 tensor or uint8 array)."""
        import av

        data = to_uint8_frames(frames) if isinstance(frames, torch.Tensor) else np.asarray(frames, dtype=np.uint8)
        for image in data:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def _audio_chunks(self, limit: int):
        """The audio track as float32 [C, n] chunks, at most ``limit`` samples in all."""
        import av

        stream = self._audio_stream
        layout = stream.layout.name
        if isinstance(self._audio, str | Path):  # transcode from the source file, streaming
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=stream.rate)
            with _open_audio(Path(self._audio)) as container:
                for frame in container.decode(container.streams.audio[0]):
                    for res in resampler.resample(frame):
                        yield _frame_to_float(res)
                for res in resampler.resample(None):
                    yield _frame_to_float(res)
            return
        wave = self._audio[0].detach()
        wave = wave[0] if wave.ndim == 3 else wave
        wave = wave[None] if wave.ndim == 1 else wave[:2]
        for start in range(0, min(wave.shape[1], limit), 1 << 16):
            yield wave[:, start:start + (1 << 16)].float().cpu().numpy()

    def _mux_audio(self) -> None:
        """Encode the audio track, trimmed to the video's duration (as the original's ``subclip``)."""
        import av

        stream = self._audio_stream
        rate = int(stream.rate)
        limit = int(round(self.frames_written / float(self.fps) * rate))
        layout = stream.layout.name
        channels = 1 if layout == "mono" else 2
        written = 0
        for chunk in self._audio_chunks(limit):
            chunk = chunk[:channels, : limit - written]
            if chunk.shape[0] < channels:
                chunk = np.repeat(chunk, channels, axis=0)
            for start in range(0, chunk.shape[1], 1024):
                piece = np.ascontiguousarray(np.clip(chunk[:, start:start + 1024], -1, 1), dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
                frame.sample_rate = rate
                frame.pts = written + start
                for packet in stream.encode(frame):
                    self._container.mux(packet)
            written += chunk.shape[1]
            if written >= limit:
                break
        for packet in stream.encode(None):
            self._container.mux(packet)

    def close(self, success: bool = True) -> Path | None:
        """Finish the file (mux audio, rename) or, when ``success`` is False, delete the partial file."""
        if self._closed:
            return self.path if success else None
        self._closed = True
        try:
            if success:
                for packet in self._video.encode(None):
                    self._container.mux(packet)
                if self._audio_stream is not None and self.frames_written:
                    self._mux_audio()
            self._container.close()
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise
        if not success or self.frames_written == 0:
            self.partial.unlink(missing_ok=True)
            return None
        self._publish()
        logger.info("wrote %s (%d frames at %s fps)", self.path, self.frames_written, self.fps)
        return self.path

    def _discard(self) -> None:
        """Drop the temporary file after a failed start."""
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                logger.debug("closing the half-opened container of %s failed", self.partial, exc_info=True)
        self.partial.unlink(missing_ok=True)

    def _publish(self) -> None:
        """Move the finished file to its name: atomic, and never over a file that appeared meanwhile."""
        if self.overwrite:
            os.replace(self.partial, self.path)
            return
        try:
            os.link(self.partial, self.path)  # fails if the name exists: no clobbering, no race window
        except FileExistsError:
            raise HalloInputError(
                f"output {self.path} was created by another program while rendering and was left alone; this "
                f"render is kept as {self.partial}: rename it or render again with --overwrite") from None
        except OSError:  # a file system without hard links: check, then rename
            if self.path.exists():
                raise HalloInputError(f"output {self.path} appeared while rendering and was left alone; this "
                                      f"render is kept as {self.partial}") from None
            os.replace(self.partial, self.path)
            return
        self.partial.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(success=exc_type is None)
