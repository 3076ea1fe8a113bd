"""Per-frame control on the sampler nodes: the Hallo Weight Schedule node, float lists, ``still``.

The FLOAT widgets ``pose_weight``, ``face_weight`` and ``lip_weight`` give a weight for the whole video; each
is also a socket. Two ways to give a weight per frame, both through that socket:
* a ``HalloWeightSchedule`` node: keyframe text (``0:1.0, 50:1.6, 120:0.8``; ``2.5s:1.2`` for seconds), whose
  output is a FLOAT carrying the keyframes (seconds become frames at the audio's frame rate in the sampler);
* a list of floats (one per frame): schedule nodes (KJNodes, FizzNodes, ...) output a FLOAT whose value is a
  Python list (or a tensor, a pandas Series), and ComfyUI hands that value to a FLOAT input unchanged.
Saved API prompts may still give keyframe text by name (``pose_schedule``, ...: ``legacy_widgets.py``).
Parsing and interpolation live in ``pipeline/sampling/schedules.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..pipeline.errors import HalloInputError
from ..pipeline.sampling.schedules import EXAMPLE, Keyframes, Weight, parse_keyframes, parse_weight
from .common import CATEGORY, check_finite, node_messages

logger = logging.getLogger(__name__)

BRANCHES = ("pose", "face", "lip")
#: The range of the pose / face / lip FLOAT widgets; schedules and connected lists keep to it too.
WEIGHT_BOUNDS = (0.0, 3.0)
NODE = "HalloWeightSchedule"
STILL_TOOLTIP = (
    "Keep the head pose of the portrait (presenter videos): at every denoising step everything outside the face box "
    "(hair, neck, shoulders, background) is set back to the portrait, so the head does not turn or sway; lips, "
    "jaw, eyes and expression still move with the audio. Less natural motion; the face box edge can show where "
    "the head would have moved."
)


def still_input() -> dict:
    return {"still": ("BOOLEAN", {"default": False, "tooltip": STILL_TOOLTIP})}


def keyframes_problem(text: str) -> str | None:
    """What is wrong with keyframe ``text`` (None when it reads): the syntax and the value range."""
    try:
        parse_keyframes(str(text), f"{NODE}: widget 'keyframes'", 25.0, WEIGHT_BOUNDS)
    except HalloInputError as exc:
        return str(exc)
    return None


class HalloWeightSchedule:
    DESCRIPTION = (
        "A pose, face or lip weight that changes over the video: keyframes frame:value (or seconds, 2.5s:1.2), "
        "linear in between, held before the first and after the last. Connect its output to the pose_weight, "
        "face_weight or lip_weight socket of a Hallo sampler."
    )
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("weight",)
    OUTPUT_TOOLTIPS = ("The weight per frame: connect it to pose_weight, face_weight or lip_weight of a sampler.",)
    FUNCTION = "schedule"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"keyframes": ("STRING", {
            "default": "0:1.0, 50:1.6, 120:0.8", "multiline": False,
            "tooltip": f"Keyframes frame:value, e.g. {EXAMPLE}; linear in between, held before the first and after "
                       "the last. Frames count from the start of the video (also in a chained segment); seconds "
                       "use the audio's frame rate. Values 0-3, like the weight widgets."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, keyframes: str | None = None) -> bool | str:  # noqa: N802
        return True if keyframes is None else keyframes_problem(keyframes) or True

    @node_messages("HalloWeightSchedule")
    def schedule(self, keyframes: str) -> tuple[Keyframes]:
        problem = keyframes_problem(keyframes)
        if problem:
            raise HalloInputError(problem)
        return (Keyframes(str(keyframes).strip()),)


def frame_weights(node: str, fps: float, weights: tuple[Any, Any, Any], schedules: tuple[str, str, str]
                  ) -> tuple[Weight, Weight, Weight]:
    """The pose, face and lip weights for ``SamplerSettings``: numbers or per-frame schedules.

    ``weights``: the values of the FLOAT inputs ``pose_weight``, ``face_weight``, ``lip_weight`` (numbers,
    ``Keyframes`` from a Hallo Weight Schedule, or lists from another schedule node); ``schedules``: the keyframe
    texts of a saved API prompt (``pose_schedule``, ...; empty otherwise). Seconds are converted at ``fps``.
    """
    return tuple(_branch_weight(node, fps, branch, widget, (text or "").strip())
                 for branch, widget, text in zip(BRANCHES, weights, schedules, strict=True))


def _branch_weight(node: str, fps: float, branch: str, widget: Any, text: str) -> Weight:
    if isinstance(widget, Keyframes) and text:
        raise HalloInputError(f"{node}: '{branch}_weight' is connected to a weight schedule and '{branch}_schedule' "
                              f"is set too; clear '{branch}_schedule' or disconnect '{branch}_weight'")
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
    return parse_weight(text, f"{node}: input '{branch}_schedule'", fps, WEIGHT_BOUNDS)
