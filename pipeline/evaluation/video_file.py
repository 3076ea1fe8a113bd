"""Reading any talking-head video for evaluation: RGB frames and frame rate through PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_video(path: Path | str, what: str = "video") -> tuple[np.ndarray, float]:
    """``((N, H, W, 3) uint8 RGB frames, fps)`` of the first video stream; ValueError naming ``what``."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise ValueError(f"{what} {path} cannot be opened: {exc}") from exc
    with container:
        if not container.streams.video:
            raise ValueError(f"{what} {path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        try:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        except av.error.FFmpegError as exc:
            raise ValueError(f"{what} {path} cannot be decoded: {exc}") from exc
    if len(frames) < 2:
        raise ValueError(f"{what} {path} has {len(frames)} frame(s); the measures need at least 2")
    if not rate or float(rate) <= 0:
        raise ValueError(f"{what} {path} reports no frame rate; re-encode it (e.g. ffmpeg -i in -r 25 out.mp4)")
    return np.stack(frames), float(rate)
