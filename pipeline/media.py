"""Writing mp4 videos with PyAV (no ffmpeg binary needed); audio files are read by ``audio_io``."""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np
import torch

from .audio_io import load_audio_file
from .soundtrack import SoundtrackSource, encode_soundtrack

__all__ = ["VideoWriter", "load_audio_file", "to_uint8_frames"]

logger = logging.getLogger(__name__)


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) float 0..1 -> uint8 numpy, rounding like image writers do."""
    return (frames.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


class VideoWriter:
    """Streams frames into an H.264 mp4 with an AAC audio track; the file appears only when complete.

    Frames go to ``<out>.partial.mp4`` and are renamed on success, so a crash or a cancel never leaves a
    half-written video under the requested name.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, *,
                 audio: SoundtrackSource | None = None, crf: int = 18) -> None:
        import av

        self._soundtrack = encode_soundtrack(audio) if audio is not None else None  # read once, now
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
        self._audio_stream = self._soundtrack.add_stream(self._container) if self._soundtrack else None
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
        """Mux the soundtrack read at construction, trimmed to the video's duration (as the original's
        ``subclip``; to within one 1024-sample AAC frame)."""
        self._soundtrack.mux(self._container, self._audio_stream, self.frames_written / float(self.fps))

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
