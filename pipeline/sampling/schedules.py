"""Per-frame pose / face / lip weights: keyframe schedules and lists of values.

A weight is a number (the same for every frame, as in the original) or a :class:`WeightSchedule`, one value per
video frame. Schedules come from keyframe text such as ``0:1.0, 50:1.6, 120:0.8`` (frame:value; ``2.5s:1.2``
for seconds; Deforum-style ``0:(1.0)`` also reads) or from a list of floats, one per frame (what schedule
nodes hand over a FLOAT socket: a list, a tuple, a 1-D tensor or array, a pandas Series). Values between
keyframes are linear; before the first keyframe and after the last one the nearest value holds. Frame numbers
count from the first frame of the video (also in chained segments).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import HalloInputError

__all__ = ["Keyframes", "Weight", "WeightSchedule", "clip_weight", "parse_weight"]

EXAMPLE = "'0:1.0, 50:1.6, 120:0.8' (frame:value) or '0s:1.0, 2.5s:1.2' (seconds)"
_KEYFRAME = re.compile(r"^(?P<pos>[^:]*):(?P<value>.*)$")
_SEPARATORS = re.compile(r"[,;\n]")


@dataclass(frozen=True)
class WeightSchedule:
    """Keyframes ``(frame, value)``, sorted by frame; linear in between, held outside."""

    frames: tuple[float, ...]
    values: tuple[float, ...]

    def at(self, start: int, count: int) -> list[float]:
        """The weights of frames ``start`` .. ``start + count - 1``."""
        x = np.arange(start, start + count, dtype=np.float64)
        return [float(v) for v in np.interp(x, self.frames, self.values)]

    def __str__(self) -> str:
        if len(self.frames) > 8:
            return f"{len(self.frames)} per-frame values"
        return ", ".join(f"{f:g}:{v:g}" for f, v in zip(self.frames, self.values, strict=True))


Weight = float | WeightSchedule


@dataclass(frozen=True)
class Keyframes:
    """Keyframe text kept as typed (``0:1.0, 2s:1.5``): seconds become frames where the frame rate is known."""

    text: str

    def __str__(self) -> str:
        return self.text


def clip_weight(weight: Weight, start: int, count: int) -> float | tuple[float, ...]:
    """The weight for the frames of one clip: a number when every frame has the same one, else one per frame.

    A number keeps the computation exactly that of a constant weight (the original's).
    """
    if not isinstance(weight, WeightSchedule):
        return float(weight)
    values = weight.at(start, count)
    return values[0] if all(v == values[0] for v in values) else tuple(values)


def _bad(name: str, problem: str) -> HalloInputError:
    return HalloInputError(f"{name}: {problem}; write keyframes as {EXAMPLE}")


def _check_value(name: str, value: float, bounds: tuple[float, float] | None, where: str) -> float:
    if not math.isfinite(value):
        raise HalloInputError(f"{name}: {where} is {value}, not a finite number; use numbers such as 1.0")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise HalloInputError(f"{name}: {where} is {value:g}, outside {bounds[0]:g}..{bounds[1]:g}; use a value "
                              "in that range")
    return value


def _position(name: str, token: str, text: str, fps: float) -> float:
    """Frame of a keyframe position: ``50`` (a frame) or ``2.5s`` (seconds at ``fps``)."""
    seconds = text.lower().endswith("s")
    number = text[:-1].strip() if seconds else text
    try:
        value = float(number)
    except ValueError:
        raise _bad(name, f"the position {text!r} in {token!r} is not a frame number or seconds") from None
    if not math.isfinite(value) or value < 0:
        raise _bad(name, f"the position {text!r} in {token!r} must be 0 or more")
    if seconds:
        return value * fps
    if value != int(value):
        raise _bad(name, f"the frame {text!r} in {token!r} is not a whole number (for seconds write "
                         f"'{number}s')")
    return value


def _keyframe(name: str, token: str, fps: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    match = _KEYFRAME.match(token)
    if match is None:
        raise _bad(name, f"{token!r} is not a frame:value pair")
    pos, value_text = match["pos"].strip(), match["value"].strip()
    if ":" in value_text:
        raise _bad(name, f"{token!r} holds more than one keyframe (separate keyframes with commas)")
    if value_text.startswith("(") and value_text.endswith(")"):
        value_text = value_text[1:-1].strip()
    try:
        value = float(value_text)
    except ValueError:
        raise _bad(name, f"the value {value_text!r} in {token!r} is not a number") from None
    frame = _position(name, token, pos, fps)
    return frame, _check_value(name, value, bounds, f"the value in {token!r}")


def parse_keyframes(text: str, name: str, fps: float, bounds: tuple[float, float] | None = None
                    ) -> WeightSchedule:
    """``'0:1.0, 50:1.6, 2.5s:1.2'`` -> a schedule; errors name ``name``, the bad token and the fix."""
    tokens = [t.strip() for t in _SEPARATORS.split(text) if t.strip()]
    if not tokens:
        raise _bad(name, "the schedule is empty")
    keys: dict[float, tuple[str, float]] = {}
    for token in tokens:
        frame, value = _keyframe(name, token, fps, bounds)
        if frame in keys:
            raise _bad(name, f"{token!r} and {keys[frame][0]!r} set the same frame {frame:g}")
        keys[frame] = (token, value)
    frames = sorted(keys)
    return WeightSchedule(tuple(frames), tuple(keys[f][1] for f in frames))


def _as_vector(value: Any, name: str) -> np.ndarray:
    """A list of numbers (also a 1-item wrapper of one, a tensor, an array, a Series) as a 1-D float64 array."""
    while isinstance(value, (list, tuple)) and len(value) == 1 and not np.isscalar(value[0]):
        value = value[0]  # some nodes hand over ([...],) or (Series,)
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise HalloInputError(f"{name}: got {type(value).__name__}, which is not a number or a list of numbers "
                              "(one per frame); connect a FLOAT or a list of floats") from None
    array = array.reshape(-1) if array.ndim == 0 or (array.ndim == 2 and 1 in array.shape) else array
    if array.ndim != 1 or array.size == 0:
        raise HalloInputError(f"{name}: a list of weights must be one value per frame, got shape "
                              f"{tuple(array.shape)}; connect a flat list of floats")
    return array


def weight_from_values(value: Any, name: str, bounds: tuple[float, float] | None = None) -> Weight:
    """A list of floats, one per frame from frame 0 (the last one holds after its end), as a weight."""
    array = _as_vector(value, name)
    for i, v in enumerate(array):
        _check_value(name, float(v), bounds, f"value {i} (frame {i})")
    if np.all(array == array[0]):
        return float(array[0])
    return WeightSchedule(tuple(float(i) for i in range(array.size)), tuple(float(v) for v in array))


def parse_weight(value: Any, name: str, fps: float, bounds: tuple[float, float] | None = None) -> Weight:
    """A number, keyframe text, or a list of per-frame floats -> a :data:`Weight`.

    ``name`` starts every error message (the widget or option at fault); ``bounds`` = (min, max) if any.
    """
    if isinstance(value, Keyframes):
        return parse_keyframes(value.text, name, fps, bounds)
    if isinstance(value, bool):
        raise HalloInputError(f"{name}: got a boolean; give a number or a schedule such as {EXAMPLE}")
    if isinstance(value, (int, float)):
        return _check_value(name, float(value), bounds, "the weight")
    if isinstance(value, str):
        text = value.strip()
        if ":" in text:
            return parse_keyframes(text, name, fps, bounds)
        try:
            number = float(text)
        except ValueError:
            raise _bad(name, f"{text!r} is neither a number nor a schedule") from None
        return _check_value(name, number, bounds, "the weight")
    if isinstance(value, Sequence) or hasattr(value, "__array__") or hasattr(value, "detach"):
        return weight_from_values(value, name, bounds)
    raise HalloInputError(f"{name}: got {type(value).__name__}; give a number, a schedule such as {EXAMPLE}, "
                          "or a list of floats")
