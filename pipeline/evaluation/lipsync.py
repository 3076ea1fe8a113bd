"""Lip-sync measures: does the mouth move with the sound, and does it rest when the sound pauses?

Both compare the per-frame mouth opening (:func:`.mouth.mouth_opening`) with the per-frame speech
activity of the sound track (:func:`.speech.speech_activity`), frame ``k`` of each covering the same
``[k / fps, (k + 1) / fps)`` seconds.

Sign convention of the offset: **positive = the mouth moves that many frames after the sound** (the
video lags the audio); negative = the mouth moves before the sound (the video leads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import HalloInputError
from .speech import silent_frames

logger = logging.getLogger(__name__)

#: Fewest frame pairs (face found, inside both signals) a correlation is computed from; fewer give NaN.
MIN_PAIRS = 10


@dataclass(frozen=True)
class LipSync:
    """Result of :func:`lip_sync`.

    ``offset``: frames by which the mouth follows the sound (positive: video lags audio; 0 is right).
    ``confidence``: ``correlations[best] - median(correlations at the other offsets)``; higher is better
    (0: the mouth's motion has nothing to do with the sound; a synthetic face driven by the sound scores ~0.9,
    the same face against shuffled audio 0.1-0.4).
    ``correlations``: Pearson correlation of mouth opening with speech activity at each of ``offsets``.
    """

    offset: int
    confidence: float
    correlations: np.ndarray
    offsets: np.ndarray


def _checked_pair(opening: np.ndarray, activity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    opening = np.asarray(opening, np.float64).reshape(-1)
    activity = np.asarray(activity, np.float64).reshape(-1)
    if opening.shape != activity.shape:
        raise HalloInputError(f"lip sync needs one mouth value per speech-activity frame: {opening.size} mouth "
                              f"values vs {activity.size} audio frames (compute the activity for num_frames="
                              f"{opening.size})")
    return opening, activity


def shifted_correlation(opening: np.ndarray, activity: np.ndarray, offset: int) -> float:
    """Pearson correlation of ``opening[t + offset]`` with ``activity[t]`` over the frames where both exist and
    are finite (NaN = no face); 0 when either side is constant there, NaN with fewer than :data:`MIN_PAIRS`."""
    n = opening.size
    lo, hi = max(0, -offset), min(n, n - offset)
    if hi - lo <= 0:
        return float("nan")
    a = activity[lo:hi]
    m = opening[lo + offset:hi + offset]
    ok = np.isfinite(a) & np.isfinite(m)
    if ok.sum() < MIN_PAIRS:
        return float("nan")
    a, m = a[ok] - a[ok].mean(), m[ok] - m[ok].mean()
    denom = float(np.sqrt((a * a).sum() * (m * m).sum()))
    return float((a * m).sum() / denom) if denom > 1e-12 else 0.0


def lip_sync(opening: np.ndarray, activity: np.ndarray, max_offset: int = 15) -> LipSync:
    """The offset at which the mouth opening correlates best with the speech activity, and how clearly.

    ``corr(d) = pearson(opening[t + d], activity[t])`` over the frames ``t`` where both are defined (frames
    without a face, NaN in ``opening``, are left out), for ``d = -max_offset .. +max_offset``.
    ``offset = argmax corr`` (positive: the mouth moves after the sound; the smaller ``|d|`` wins a tie) and
    ``confidence = corr(offset) - median(corr(d) for d != offset)`` (SyncNet's AV-confidence convention: the
    peak against the other offsets). Offset: 0 is best. Confidence: higher is better.
    Raises :class:`HalloInputError` when the lengths differ or fewer than :data:`MIN_PAIRS` frames have a face.
    """
    opening, activity = _checked_pair(opening, activity)
    if max_offset < 1:
        raise HalloInputError(f"max_offset must be at least 1 frame, got {max_offset}")
    offsets = np.arange(-max_offset, max_offset + 1)
    corr = np.array([shifted_correlation(opening, activity, int(d)) for d in offsets])
    if not np.isfinite(corr[max_offset]):
        raise HalloInputError(f"lip sync needs at least {MIN_PAIRS} frames with a face; found "
                              f"{int(np.isfinite(opening).sum())} of {opening.size}")
    order = np.lexsort((np.abs(offsets), -np.nan_to_num(corr, nan=-np.inf)))
    best = int(order[0])
    others = np.delete(corr, best)
    others = others[np.isfinite(others)]
    confidence = float(corr[best] - np.median(others)) if others.size else float("nan")
    return LipSync(int(offsets[best]), confidence, corr, offsets)


def silent_lip_motion(opening: np.ndarray, activity: np.ndarray, margin: int = 2) -> float | None:
    """Mouth movement while the sound pauses: mean ``|opening[t + 1] - opening[t]|`` over consecutive frame pairs
    that both lie in a pause (:func:`.speech.silent_frames`, minus ``margin`` frames at each end of the pause,
    where a mouth may still be closing or already opening) and both have a face. Units: inter-ocular
    distances per frame. Lower is better (a still mouth gives ~0). None when the audio has no pause (or no
    face is found in one).
    """
    opening, activity = _checked_pair(opening, activity)
    silent = silent_frames(activity)
    if margin > 0:
        edges = np.convolve((~silent).astype(int), np.ones(2 * margin + 1, int), mode="same") > 0
        silent = silent & ~edges
    pair = silent[1:] & silent[:-1]
    steps = np.abs(np.diff(opening))[pair]
    steps = steps[np.isfinite(steps)]
    return float(steps.mean()) if steps.size else None
