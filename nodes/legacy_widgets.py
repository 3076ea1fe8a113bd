"""The sampler widgets of the first releases, still accepted by name from saved API prompts.

Until the option nodes, both sampler nodes carried every setting as a widget (``preset``, ``solver``,
``cfg_steps``, ``low_vram``, ``dtype``, ``compile``, ``cache_interval``, ``faithful``, ``motion_frame_drop``,
the three ``*_schedule`` texts and, on HalloSampler, ``start_frame`` / ``num_frames``), with ``0`` or ``-1``
meaning "the default". An API prompt stores inputs by name, and ComfyUI hands a node only the inputs it
declares: so these names stay declared as V1 ``hidden`` inputs, which the frontend never shows nor sends and
ComfyUI passes through unchecked. Given here, they mean exactly what they meant then (UI workflows are
rewritten to the option nodes by ``js/hallo.js`` when they load).
"""

from __future__ import annotations

import math
from typing import Any

from ..pipeline.errors import HalloInputError
from ..pipeline.sampling.options import preset_names
from ..pipeline.sampling.precision import COMPUTE_DTYPES
from ..pipeline.sampling.scheduling import SOLVERS
from ..pipeline.sampling.settings import CLIP_LENGTH

#: name: (kind, default, low, high) as the widget was declared; kind "choice" takes ``low`` as the list.
_SEGMENT = {
    "start_frame": ("INT", -1, -1, 1 << 24),
    "num_frames": ("INT", 0, 0, 1 << 24),
}
_OPTIONS = {
    "faithful": ("BOOLEAN", True, None, None),
    "motion_frame_drop": ("FLOAT", -1.0, -1.0, 0.95),
    "preset": ("choice", "faithful", preset_names, None),
    "solver": ("choice", "ddim", lambda: list(SOLVERS), None),
    "cfg_steps": ("INT", 0, 0, 200),
    "low_vram": ("BOOLEAN", False, None, None),
    "dtype": ("choice", "auto", lambda: list(COMPUTE_DTYPES), None),
    "compile": ("BOOLEAN", False, None, None),
    "cache_interval": ("INT", 0, 0, 10),
}
_SCHEDULES = {f"{branch}_schedule": ("STRING", "", None, None) for branch in ("pose", "face", "lip")}
#: The options an ``options`` input replaces (the schedules and the segment have inputs of their own).
OPTION_NAMES = tuple(_OPTIONS)


def _widgets(segment: bool) -> dict[str, tuple]:
    return {**(_SEGMENT if segment else {}), **_OPTIONS, **_SCHEDULES}


def legacy_inputs(segment: bool) -> dict[str, tuple]:
    """The ``hidden`` entries of a sampler node: one per old widget (``segment``: HalloSampler's two)."""
    return {name: ("STRING" if kind == "choice" else kind, {}) for name, (kind, *_) in _widgets(segment).items()}


def legacy_defaults(segment: bool) -> dict[str, Any]:
    return {name: spec[1] for name, spec in _widgets(segment).items()}


def _coerce(node: str, name: str, spec: tuple, value: Any) -> Any:
    kind, _, low, high = spec
    where = f"{node}: input '{name}'"
    if kind == "choice":
        choices = low()
        if value not in choices:
            raise HalloInputError(f"{where} is {value!r}, not one of {', '.join(choices)}")
        return value
    if kind == "STRING":
        return "" if value is None else str(value)
    if kind == "BOOLEAN":
        if not isinstance(value, (bool, int)):
            raise HalloInputError(f"{where} must be true or false, got {value!r}")
        return bool(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HalloInputError(f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise HalloInputError(f"{where} is {value}, not a finite number")
    if kind == "INT":
        if not number.is_integer():
            raise HalloInputError(f"{where} must be a whole number, got {value!r}")
        number = int(number)
    if not low <= number <= high:
        raise HalloInputError(f"{where} is {value}, outside {low}..{high}")
    if name in _SEGMENT and number > 0 and number % CLIP_LENGTH:
        raise HalloInputError(f"{where} is {value}, not a multiple of {CLIP_LENGTH}")
    return number


def legacy_values(node: str, given: dict[str, Any], segment: bool) -> dict[str, Any]:
    """Every old widget of ``node``: the values ``given`` (checked as the widgets checked them), else defaults."""
    widgets = _widgets(segment)
    unknown = sorted(set(given) - set(widgets))
    if unknown:
        raise TypeError(f"{node}: unexpected input(s) {', '.join(unknown)}")
    return {name: _coerce(node, name, spec, given[name]) if name in given else spec[1]
            for name, spec in widgets.items()}


def changed_options(values: dict[str, Any]) -> list[str]:
    """The old option widgets (of ``legacy_values``) set to something else than their default."""
    return [name for name in OPTION_NAMES if values[name] != _OPTIONS[name][1]]
