"""Reading audio files and writing mp4 videos with PyAV (no ffmpeg binary needed)."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np
import torch

logger = logging.getLogger(__name__)


def load_audio_file(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode any audio file PyAV/FFmpeg reads into a float32 waveform [C, T] and its sample rate."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate)
            chunks = []
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                if frame.format.is_planar:
                    data = arr.astype(np.float32)
                else:
                    data = arr.reshape(-1, len(frame.layout.channels)).T.astype(np.float32)
                if np.issubdtype(arr.dtype, np.integer):
                    data = data / float(np.iinfo(arr.dtype).max)
                chunks.append(data)
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot decode audio file {path}: {exc}") from exc
    if not chunks:
        raise ValueError(f"{path} contains no audio samples")
    return torch.from_numpy(np.concatenate(chunks, axis=1)), rate


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) float 0..1 -> uint8 numpy, rounding like image writers do."""
    return (frames.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


class VideoWriter:
    """Streams frames into an H.264 mp4 with an AAC audio track; the file appears only when complete.

    Frames go to ``<out>.partial.mp4`` and are renamed on success, so a crash or a cancel never leaves a
    half-written video under the requested name.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, *,
                 audio: tuple[torch.Tensor, int] | None = None, crf: int = 18) -> None:
        import av

        self.path = Path(path)
        self.partial = self.path.with_name(self.path.stem + ".partial" + self.path.suffix)
        self.path.parent.mkdir(parents=True, exist_ok=True)
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
            channels = 1 if (audio[0].shape[-2] if audio[0].ndim >= 2 else 1) == 1 else 2
            self._audio_stream = self._container.add_stream("aac", rate=int(audio[1]))
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

    def _mux_audio(self) -> None:
        import av

        waveform, rate = self._audio
        wave = waveform.detach().float().cpu()
        if wave.ndim == 3:
            wave = wave[0]
        wave = wave[:2]
        duration = self.frames_written / float(self.fps)
        if wave.ndim == 1:
            wave = wave[None]
        wave = wave[:, : int(round(duration * rate))].clamp(-1, 1).numpy()
        stream = self._audio_stream
        layout = stream.layout.name
        frame_size = 1024
        for start in range(0, wave.shape[1], frame_size):
            chunk = np.ascontiguousarray(wave[:, start:start + frame_size], dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = int(rate)
            frame.pts = start
            for packet in stream.encode(frame):
                self._container.mux(packet)
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
        os.replace(self.partial, self.path)
        logger.info("wrote %s (%d frames at %s fps)", self.path, self.frames_written, self.fps)
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(success=exc_type is None)
