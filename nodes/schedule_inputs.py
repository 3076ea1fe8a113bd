"""Per-frame control on the sampler nodes: pose / face / lip schedules and ``still``.

The FLOAT widgets ``pose_weight``, ``face_weight`` and ``lip_weight`` stay as they were (saved workflows store
widget values by position); the schedules and ``still`` are optional widgets after all existing ones, so a
workflow saved before them loads with their defaults (no schedule, not still): the original computation.

Two ways to give a weight per frame:
* a keyframe text in ``<branch>_schedule`` (``0:1.0, 50:1.6, 120:0.8``; ``2.5s:1.2`` for seconds), which
  replaces the FLOAT widget when it is not empty;
* a list of floats (one per frame) connected to the FLOAT socket ``<branch>_weight`` itself: schedule nodes
  (KJNodes, FizzNodes, ...) output a FLOAT whose value is a Python list (or a tensor, a pandas Series), and
  ComfyUI hands that value to a FLOAT input unchanged.
Parsing and interpolation live in ``pipeline/sampling/schedules.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..pipeline.errors import HalloInputError
from ..pipeline.sampling.schedules import EXAMPLE, Weight, parse_weight
from .common import check_finite

logger = logging.getLogger(__name__)

BRANCHES = ("pose", "face", "lip")
#: The range of the pose / face / lip FLOAT widgets; schedules and connected lists keep to it too.
WEIGHT_BOUNDS = (0.0, 3.0)
WHAT = {"pose": "head pose (full mask)", "face": "expression (face mask)", "lip": "the lips (lip mask)"}


def schedule_inputs() -> dict:
    """The optional inputs, in the order they are appended after the existing ones."""
    inputs: dict[str, tuple] = {}
    for branch in BRANCHES:
        inputs[f"{branch}_schedule"] = ("STRING", {
            "default": "", "multiline": False,
            "tooltip": f"Per-frame strength of the audio on {WHAT[branch]}: keyframes frame:value, linear in "
                       f"between, held before the first and after the last, e.g. {EXAMPLE}. Frames count from "
                       f"the start of the video. Not empty: replaces {branch}_weight. Empty: {branch}_weight (a "
                       "number, or a list of floats, one per frame, connected from a schedule node).",
        })
    inputs["still"] = ("BOOLEAN", {
        "default": False,
        "tooltip": "Keep the head pose of the portrait (presenter videos): at every denoising step everything "
                   "outside the face box (hair, neck, shoulders, background) is set back to the portrait, so the "
                   "head does not turn or sway; lips, jaw, eyes and expression still move with the audio. Less "
                   "natural motion; the face box edge can show where the head would have moved.",
    })
    return inputs


def frame_weights(node: str, fps: float, weights: tuple[Any, Any, Any], schedules: tuple[str, str, str]
                  ) -> tuple[Weight, Weight, Weight]:
    """The pose, face and lip weights for ``SamplerSettings``: numbers or per-frame schedules.

    ``weights``: the values of the FLOAT inputs ``pose_weight``, ``face_weight``, ``lip_weight`` (numbers, or
    lists from a connected schedule node); ``schedules``: ``pose_schedule``, ``face_schedule``,
    ``lip_schedule``. Seconds in keyframes are converted at ``fps``.
    """
    return tuple(_branch_weight(node, fps, branch, widget, (text or "").strip())
                 for branch, widget, text in zip(BRANCHES, weights, schedules, strict=True))


def _branch_weight(node: str, fps: float, branch: str, widget: Any, text: str) -> Weight:
    number = isinstance(widget, (int, float)) and not isinstance(widget, bool)
    if not text:
        if number:  # the widget as before: finite (its min/max are checked when the prompt is queued)
            check_finite(node, **{f"{branch}_weight": widget})
            return float(widget)
        return parse_weight(widget, f"{node}: input '{branch}_weight'", fps, WEIGHT_BOUNDS)
    if not number:
        raise HalloInputError(f"{node}: '{branch}_weight' is connected to a list of values and "
                              f"'{branch}_schedule' is set too; clear '{branch}_schedule' or disconnect "
                              f"'{branch}_weight'")
    if float(widget) != 1.0:
        logger.info("%s: %s_schedule is set; the %s_weight widget (%s) is not used", node, branch, branch, widget)
    return parse_weight(text, f"{node}: widget '{branch}_schedule'", fps, WEIGHT_BOUNDS)
