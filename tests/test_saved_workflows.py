"""Samplers saved before the option nodes keep their meaning (no ComfyUI needed).

``fixtures/workflows_before_option_nodes/expected_settings.json`` holds what the nodes of that commit resolved the
samplers of every shipped API prompt (and of more combinations: custom recipes, DeepCache intervals, precision,
the motion-frame drop, schedules) into. Now:
* the same old inputs, given by name as a saved API prompt gives them, resolve to exactly those settings;
* the graph the frontend makes of an old UI workflow (``workflow_migration.migrate``, the rules of js/hallo.js):
  new widgets, a Hallo Sampler Options node, Hallo Weight Schedules, a Hallo Segment, resolves to them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hallo_nodes.nodes import NODE_CLASS_MAPPINGS
from hallo_nodes.nodes.legacy_widgets import legacy_values
from hallo_nodes.nodes.sampler import SegmentLength, resolve_segment, sampler_settings, segment_frames
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.sampling.schedules import Keyframes, WeightSchedule
from workflow_migration import NEW_LAYOUT, OLD_LAYOUTS, migrate, old_layout

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "workflows_before_option_nodes"
CASES = json.loads((FIXTURES / "expected_settings.json").read_text())
WIDGETS = ("steps", "cfg", "seed", "pose_weight", "face_weight", "lip_weight", "still")
DEFAULTS = dict(zip(WIDGETS, (40, 3.5, 42, 1.0, 1.0, 1.0, False), strict=True))


def plain(settings: Any) -> dict[str, Any]:
    """Settings as recorded; CFG on at least as many steps as there are is CFG on every step."""
    out = {}
    for name in settings.__dataclass_fields__:
        value = getattr(settings, name)
        out[name] = {"frames": list(value.frames), "values": list(value.values)} \
            if isinstance(value, WeightSchedule) else value
    if out["cfg_steps"] is not None and out["cfg_steps"] >= out["steps"]:
        out["cfg_steps"] = None
    return out


def expected(case: dict) -> dict[str, Any]:
    return plain(type("S", (), {"__dataclass_fields__": case["settings"], **case["settings"]})())


@pytest.mark.parametrize("case", CASES, ids=[f"{c['source']}:{c['node']}" for c in CASES])
def test_old_inputs_by_name_resolve_as_before(case: dict) -> None:
    node = case["node"]
    inputs = case["inputs"]
    widgets = {k: inputs.get(k, default) for k, default in DEFAULTS.items()}
    old = legacy_values(node, {k: v for k, v in inputs.items() if k not in WIDGETS}, node == "HalloSampler")
    recipe, _, settings = sampler_settings(node, 25.0, widgets, None, old)
    assert plain(settings) == expected(case)
    assert recipe.preset == case["options"]["preset"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['source']}:{c['node']}" for c in CASES])
def test_the_migrated_graph_resolves_as_before(case: dict) -> None:
    node = case["node"]
    new = migrate(node, case["inputs"])
    assert set(new.widgets) == set(NEW_LAYOUT[node])
    assert 1 <= new.widgets["steps"] <= 200  # the steps run, shown on the widget
    options = None
    if new.options is not None:
        options = NODE_CLASS_MAPPINGS["HalloSamplerOptions"]().options(**new.options)[0]
    widgets = {k: new.widgets[k] for k in WIDGETS}
    for branch, text in new.schedules.items():
        keyframes = NODE_CLASS_MAPPINGS["HalloWeightSchedule"]().schedule(text)[0]
        assert isinstance(keyframes, Keyframes)
        widgets[f"{branch}_weight"] = keyframes
    old = legacy_values(node, {}, node == "HalloSampler")
    _, _, settings = sampler_settings(node, 25.0, widgets, options, old)
    assert plain(settings) == expected(case)


def test_old_layouts_are_recognised_by_their_length() -> None:
    for node, layouts in OLD_LAYOUTS.items():
        assert len({len(layout) for layout in layouts}) == len(layouts)
        assert len(NEW_LAYOUT[node]) not in {len(layout) for layout in layouts}
    for path in sorted((FIXTURES / "ui").glob("*.json")):
        for n in json.loads(path.read_text())["nodes"]:
            if n["type"] in OLD_LAYOUTS:
                assert old_layout(n["type"], n["widgets_values"]) == OLD_LAYOUTS[n["type"]][-1]


def test_a_segment_replaces_num_frames_and_starts_where_the_motion_ends() -> None:
    features = type("F", (), {"num_frames": 100, "fps": 25.0})()
    motion = type("M", (), {"next_frame": 32})()
    old = legacy_values("HalloSampler", {}, True)
    assert resolve_segment(features, -1, segment_frames("HalloSampler", SegmentLength(48), old), None,
                           "HalloSampler") .end == 48
    span = resolve_segment(features, -1, segment_frames("HalloSampler", SegmentLength(96), old), motion, "HalloSampler")
    assert (span.start, span.end) == (32, 100)
    with pytest.raises(HalloInputError, match="input 'segment' is connected and the old input 'num_frames'"):
        segment_frames("HalloSampler", SegmentLength(48), legacy_values("HalloSampler", {"num_frames": 32}, True))


def test_options_and_old_option_inputs_together_are_refused() -> None:
    options = NODE_CLASS_MAPPINGS["HalloSamplerOptions"]().options()[0]
    widgets = dict(DEFAULTS)
    old = legacy_values("HalloSampler", {"preset": "fast", "low_vram": False}, True)
    with pytest.raises(HalloInputError, match="input 'options' is connected and the old input.s. preset are set"):
        sampler_settings("HalloSampler", 25.0, widgets, options, old)
    # old inputs at their defaults (as a prompt of the last version carries them all) are no conflict
    at_defaults = legacy_values("HalloSampler", {"preset": "faithful"}, True)
    sampler_settings("HalloSampler", 25.0, widgets, options, at_defaults)


@pytest.mark.parametrize(("given", "needle"), [
    ({"preset": "turbo"}, "HalloSampler: input 'preset' is 'turbo', not one of faithful"),
    ({"cfg_steps": 2.5}, "HalloSampler: input 'cfg_steps' must be a whole number"),
    ({"num_frames": 40}, "HalloSampler: input 'num_frames' is 40, not a multiple of 16"),
    ({"motion_frame_drop": float("nan")}, "HalloSampler: input 'motion_frame_drop' is nan, not a finite number"),
    ({"cache_interval": 11}, "HalloSampler: input 'cache_interval' is 11, outside 0..10"),
])
def test_bad_old_inputs_name_the_input(given: dict, needle: str) -> None:
    with pytest.raises(HalloInputError) as info:
        legacy_values("HalloSampler", given, True)
    assert needle in str(info.value)
    with pytest.raises(TypeError, match="unexpected input.s. sampler_name"):
        legacy_values("HalloSampler", {"sampler_name": "euler"}, True)
