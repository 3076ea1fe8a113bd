"""What a sampler saved with the old widgets becomes with the option nodes: the rules ``js/hallo.js`` applies when
a UI workflow loads, written again in Python so the tests can check them against the node code.

Until the option nodes, HalloSampler and HalloRenderToVideoFile stored every setting as a widget, by position in
the UI format. ``OLD_LAYOUTS`` are the widget orders that were released; ``migrate`` turns the values of one
sampler into its new widgets, the Hallo Sampler Options node it needs (if any), Hallo Weight Schedule texts and
a Hallo Segment length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hallo_nodes.nodes.legacy_widgets import OPTION_NAMES, legacy_defaults
from hallo_nodes.nodes.sampler_options import AS_TRAINED, DROP_CHOICES, option_widgets
from hallo_nodes.pipeline.sampling.options import CUSTOM
from hallo_nodes.pipeline.sampling.presets import PRESETS

HEAD = ["steps", "cfg", "seed", "control_after_generate", "pose_weight", "face_weight", "lip_weight"]
_OPTIONS_V1 = ["preset", "solver", "cfg_steps", "low_vram", "dtype", "compile"]
_SCHEDULES = ["pose_schedule", "face_schedule", "lip_schedule", "still"]
#: Widget orders of the released versions, by node: before presets, with presets, with schedules, with DeepCache.
OLD_LAYOUTS = {
    "HalloSampler": [
        HEAD + ["start_frame", "num_frames", "faithful", "motion_frame_drop"],
        HEAD + ["start_frame", "num_frames", "faithful", "motion_frame_drop"] + _OPTIONS_V1,
        HEAD + ["start_frame", "num_frames", "faithful", "motion_frame_drop"] + _OPTIONS_V1 + _SCHEDULES,
        HEAD + ["start_frame", "num_frames", "faithful", "motion_frame_drop"] + _OPTIONS_V1 + ["cache_interval"]
        + _SCHEDULES,
    ],
    "HalloRenderToVideoFile": [
        HEAD + ["faithful", "motion_frame_drop", "filename_prefix", "feather"],
        HEAD + ["faithful", "motion_frame_drop", "filename_prefix", "feather"] + _OPTIONS_V1,
        HEAD + ["faithful", "motion_frame_drop", "filename_prefix", "feather"] + _OPTIONS_V1 + _SCHEDULES,
        HEAD + ["faithful", "motion_frame_drop", "filename_prefix", "feather"] + _OPTIONS_V1 + ["cache_interval"]
        + _SCHEDULES,
    ],
}
NEW_LAYOUT = {
    "HalloSampler": HEAD + ["still"],
    "HalloRenderToVideoFile": HEAD + ["still", "filename_prefix", "feather"],
}


def old_layout(node_type: str, values: list[Any]) -> list[str] | None:
    """The old layout ``values`` were saved in (None: the current one)."""
    return next((layout for layout in OLD_LAYOUTS[node_type] if len(layout) == len(values)), None)


@dataclass
class Migrated:
    widgets: dict[str, Any]  # the sampler's widgets by name (NEW_LAYOUT)
    options: dict[str, Any] | None = None  # a Hallo Sampler Options node's widgets, when one is needed
    schedules: dict[str, str] = field(default_factory=dict)  # branch -> keyframes of a Hallo Weight Schedule
    segment: int | None = None  # frames of a Hallo Segment


def preset_steps() -> dict[str, int]:
    return {name: r["steps"] for name, r in option_widgets()["preset"][1]["recipes"].items()}


def migrate(node_type: str, old: dict[str, Any]) -> Migrated:
    """The new graph pieces of one old sampler; ``old``: its widget values by name (missing ones: defaults)."""
    v = {**legacy_defaults(node_type == "HalloSampler"), "steps": 0, "cfg": 3.5, "seed": 42,
         "control_after_generate": "fixed", "pose_weight": 1.0, "face_weight": 1.0, "lip_weight": 1.0,
         "still": False, "filename_prefix": "hallo/Hallo", "feather": 16, **old}
    steps = int(v["steps"]) or preset_steps()[v["preset"]]
    widgets = {name: v[name] for name in NEW_LAYOUT[node_type]} | {"steps": steps}
    out = Migrated(widgets)
    if any(v[name] != default for name, default in legacy_defaults(False).items() if name in OPTION_NAMES):
        out.options = options_widgets(v, steps)
    out.schedules = {name[:-len("_schedule")]: v[name] for name in ("pose_schedule", "face_schedule", "lip_schedule")
                     if str(v[name]).strip()}
    if node_type == "HalloSampler" and int(v["num_frames"]) > 0:
        out.segment = int(v["num_frames"])
    return out


def options_widgets(v: dict[str, Any], steps: int) -> dict[str, Any]:
    defaults = {name: spec[1]["default"] for name, spec in option_widgets().items()}
    w = {**defaults, "dtype": v["dtype"], "low_vram": v["low_vram"], "compile": v["compile"],
         "reference_quirks": v["faithful"], "motion_frame_drop": drop_choice(float(v["motion_frame_drop"]))}
    preset, interval = v["preset"], int(v["cache_interval"])
    if preset == CUSTOM:
        w.update(preset=CUSTOM, solver=v["solver"], cfg_steps=int(v["cfg_steps"]) or steps,
                 cache_interval=interval or 1)
    elif interval:  # a named preset with its DeepCache interval replaced: that recipe, spelled out
        p = PRESETS[preset]
        w.update(preset=CUSTOM, solver=p.solver, cfg_steps=p.cfg_steps or steps, cache_interval=interval)
    else:
        w["preset"] = preset
    return w


def drop_choice(value: float) -> str:
    if value < 0:
        return AS_TRAINED
    return min(DROP_CHOICES[1:], key=lambda c: abs(float(c) - value))
