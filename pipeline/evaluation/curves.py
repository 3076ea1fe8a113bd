"""Small statistics over per-frame curves that may hold NaN (frames where a measure has no value)."""

from __future__ import annotations

import math

import numpy as np


def finite(values: np.ndarray) -> np.ndarray:
    """The finite entries of ``values`` (NaN marks a frame without a value)."""
    arr = np.asarray(values, np.float64).reshape(-1)
    return arr[np.isfinite(arr)]


def nan_mean(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN when there are none."""
    vals = finite(values)
    return float(vals.mean()) if vals.size else math.nan


def nan_min(values: np.ndarray) -> float:
    vals = finite(values)
    return float(vals.min()) if vals.size else math.nan


def nan_max(values: np.ndarray) -> float:
    vals = finite(values)
    return float(vals.max()) if vals.size else math.nan


def slope_per_10s(values: np.ndarray, fps: float) -> float:
    """Least-squares slope of ``values`` over time, in units per 10 seconds; finite frames only.

    NaN when fewer than two frames have a value (a line needs two points)."""
    arr = np.asarray(values, np.float64).reshape(-1)
    t = np.arange(arr.size, dtype=np.float64) / float(fps)
    keep = np.isfinite(arr)
    if keep.sum() < 2:
        return math.nan
    t, y = t[keep], arr[keep]
    dt = t - t.mean()
    denom = float((dt * dt).sum())
    if denom == 0.0:
        return math.nan
    return float((dt * (y - y.mean())).sum() / denom * 10.0)


def none_if_nan(value: float) -> float | None:
    """``None`` for NaN / inf (JSON has no NaN), else the float."""
    return float(value) if value is not None and math.isfinite(value) else None
