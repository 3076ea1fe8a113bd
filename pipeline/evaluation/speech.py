"""Per-video-frame speech activity of a sound track (the audio side of the lip-sync measures).

Frame ``k`` of a video at ``fps`` covers the audio samples ``[k * rate / fps, (k + 1) * rate / fps)``; its
activity is the RMS level of those samples in dB, mapped linearly from ``peak - DYNAMIC_RANGE_DB`` (0) to
``peak`` (1), where ``peak`` is the file's 95th-percentile frame level (at most 12 dB below its loudest
frame). The per-file normalisation makes the measure independent of the recording's loudness; the fixed
range keeps quiet breaths and room noise at 0.
"""

from __future__ import annotations

import numpy as np

from ..errors import HalloInputError

#: Level range (dB below the file's loud frames) mapped onto activity 1..0.
DYNAMIC_RANGE_DB = 30.0
#: Percentile of the frame levels taken as the file's "loud" level (robust to a few clicks).
PEAK_PERCENTILE = 95.0
#: ... but never further than this below the loudest frame (a file that is mostly silence).
PEAK_BELOW_MAX_DB = 12.0
#: Activity below which a frame counts as silent (that is, 24 dB below the loud frames).
SILENCE_THRESHOLD = 0.2
#: Shortest run of silent frames that counts as a pause (shorter dips are gaps between syllables).
MIN_SILENT_FRAMES = 5


def frame_levels_db(wave: np.ndarray, rate: int, fps: float, num_frames: int) -> np.ndarray:
    """(N,) RMS level in dB of the audio under each video frame (DC removed); -120 dB past the audio's end."""
    wave = np.asarray(wave, np.float64)
    if wave.ndim != 1:
        raise HalloInputError(f"speech activity needs a mono waveform, got shape {wave.shape}; average the channels")
    if rate <= 0 or fps <= 0 or num_frames < 0:
        raise HalloInputError(f"speech activity needs rate > 0, fps > 0, num_frames >= 0 (got {rate}, {fps}, "
                              f"{num_frames})")
    edges = np.round(np.arange(num_frames + 1) * (rate / fps)).astype(np.int64)
    levels = np.full(num_frames, -120.0)
    for k in range(num_frames):
        chunk = wave[edges[k]:edges[k + 1]]
        if chunk.size:
            rms = float(np.sqrt(np.mean((chunk - chunk.mean()) ** 2)))
            levels[k] = 20.0 * np.log10(max(rms, 1e-6))
    return levels


def speech_activity(wave: np.ndarray, rate: int, fps: float, num_frames: int) -> np.ndarray:
    """(N,) speech activity in [0, 1] per video frame: ``clip((L_k - (P - 30 dB)) / 30 dB, 0, 1)``.

    ``L_k``: RMS level (dB) of the samples under frame ``k``, i.e. ``[k / fps, (k + 1) / fps)`` seconds;
    ``P``: the 95th percentile of ``L`` over the file (at least ``max(L) - 12 dB``). 1 = as loud as the
    file's loud speech, 0 = 30 dB or more below it (silence, breath, room noise). Frames past the end of
    ``wave`` are 0; an all-silent file gives all zeros. Higher = more speech (a signal, not a score).
    """
    levels = frame_levels_db(wave, rate, fps, num_frames)
    if num_frames == 0:
        return np.zeros(0)
    peak = max(float(np.percentile(levels, PEAK_PERCENTILE)), float(levels.max()) - PEAK_BELOW_MAX_DB)
    if peak <= -100.0:
        return np.zeros(num_frames)
    return np.clip((levels - (peak - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0)


def silent_frames(activity: np.ndarray, threshold: float = SILENCE_THRESHOLD,
                  min_frames: int = MIN_SILENT_FRAMES) -> np.ndarray:
    """(N,) bool: frames in a pause, i.e. in a run of at least ``min_frames`` frames with ``activity < threshold``."""
    quiet = np.asarray(activity, np.float64) < threshold
    mask = np.zeros_like(quiet)
    start = None
    for k, q in enumerate([*quiet, False]):
        if q and start is None:
            start = k
        elif not q and start is not None:
            if k - start >= min_frames:
                mask[start:k] = True
            start = None
    return mask
