"""Per-frame weight schedules: keyframe text, lists of floats, interpolation, and the errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.sampling.sampler import SamplerSettings
from hallo_nodes.pipeline.sampling.schedules import WeightSchedule, clip_weight, parse_weight

FPS = 25.0
BOUNDS = (0.0, 3.0)


def parse(value, name: str = "lip_schedule", bounds=BOUNDS):
    return parse_weight(value, name, FPS, bounds)


def test_keyframes_interpolate_linearly_and_hold_outside() -> None:
    schedule = parse("10:1.0, 20:2.0, 30:0.5")
    assert isinstance(schedule, WeightSchedule)
    assert schedule.at(0, 3) == [1.0, 1.0, 1.0]  # held before the first keyframe
    assert schedule.at(10, 1) == [1.0]
    assert schedule.at(15, 1) == [1.5]
    assert schedule.at(20, 1) == [2.0]
    assert schedule.at(25, 1) == pytest.approx([1.25])
    assert schedule.at(30, 3) == [0.5, 0.5, 0.5]  # held after the last one


def test_seconds_deforum_parentheses_order_and_separators() -> None:
    assert parse("2s:1.5, 0:1.0").frames == (0.0, 50.0)  # 2 s at 25 fps; any order
    assert parse("0:(1.0)\n1.5s:(2.0)").values == (1.0, 2.0)
    assert parse("0:1; 4:2").at(2, 1) == [1.5]
    assert parse_weight("1s:2", "w", 30.0).frames == (30.0,)


def test_numbers_and_constant_inputs_stay_numbers() -> None:
    assert parse(1.25) == 1.25 and parse("1.25") == 1.25 and parse(2) == 2.0
    assert parse([1.0] * 40) == 1.0  # a constant list is the plain weight: the original computation
    assert parse(torch.full((8,), 0.5)) == 0.5
    assert parse(np.float32(1.5)) == 1.5
    assert clip_weight(parse("0:1.0, 100:1.0"), 0, 16) == 1.0


def test_lists_of_floats_as_schedule_nodes_send_them() -> None:
    values = [1.0, 1.5, 2.0, 2.5]
    for value in (values, tuple(values), torch.tensor(values), np.array(values), (values,), [values],
                  torch.tensor(values)[:, None]):
        schedule = parse(value)
        assert isinstance(schedule, WeightSchedule), type(value)
        assert schedule.at(0, 6) == [1.0, 1.5, 2.0, 2.5, 2.5, 2.5]  # one per frame; the last one holds


def test_clip_weight_is_a_number_where_the_clip_is_constant() -> None:
    schedule = parse("0:1.0, 40:1.0, 41:2.0")
    assert clip_weight(schedule, 0, 16) == 1.0
    assert clip_weight(schedule, 16, 16) == 1.0
    third = clip_weight(schedule, 32, 16)
    assert third == tuple([1.0] * 9 + [2.0] * 7)
    assert clip_weight(schedule, 48, 16) == 2.0


def test_settings_give_per_frame_tensors_only_where_needed() -> None:
    settings = SamplerSettings(lip_weight=parse("0:1.0, 20:2.0"), face_weight=0.5)
    pose, face, lip = settings.clip_weights(0, 16)
    assert pose == 1.0 and face == 0.5
    assert isinstance(lip, torch.Tensor) and lip.dtype == torch.float32 and lip.shape == (16,)
    assert lip[0] == 1.0 and float(lip[10]) == pytest.approx(1.5)
    assert SamplerSettings().clip_weights(32, 16) == (1.0, 1.0, 1.0)
    settings.validate()


@pytest.mark.parametrize(("text", "needle"), [
    ("0:1.0, 50:abc", "the value 'abc' in '50:abc' is not a number"),
    ("0:1.0, fifty:1.2", "the position 'fifty' in 'fifty:1.2' is not a frame number or seconds"),
    ("0:1.0 50:1.6", "'0:1.0 50:1.6' holds more than one keyframe (separate keyframes with commas)"),
    ("12.5:1.0", "the frame '12.5' in '12.5:1.0' is not a whole number (for seconds write '12.5s')"),
    ("-5:1.0", "the position '-5' in '-5:1.0' must be 0 or more"),
    ("0:1.0, 1s:2.0, 25:1.0", "'25:1.0' and '1s:2.0' set the same frame 25"),
    ("0:1.0, 50", "'50' is not a frame:value pair"),
    (" , ,", "neither a number nor a schedule"),
    ("loud", "'loud' is neither a number nor a schedule"),
    ("0:1.0, 50:9", "the value in '50:9' is 9, outside 0..3"),
    ("0:nan", "the value in '0:nan' is nan, not a finite number"),
])
def test_bad_keyframes_name_the_widget_the_token_and_the_fix(text: str, needle: str) -> None:
    with pytest.raises(HalloInputError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith("lip_schedule: ")
    assert needle in message
    if "finite" not in message and "outside" not in message:
        assert "'0:1.0, 50:1.6, 120:0.8'" in message  # the fix: how a schedule is written


@pytest.mark.parametrize(("value", "needle"), [
    ([1.0, float("inf")], "value 1 (frame 1) is inf, not a finite number"),
    ([1.0, 4.0], "value 1 (frame 1) is 4, outside 0..3"),
    ([], "one value per frame, got shape (0,)"),
    ([[1.0, 2.0], [3.0, 4.0]], "one value per frame, got shape (2, 2)"),
    (["a", "b"], "not a number or a list of numbers"),
    ({"x": 1}, "got dict"),
    (True, "got a boolean"),
    (float("nan"), "the weight is nan, not a finite number"),
])
def test_bad_lists_and_values_are_refused(value, needle: str) -> None:
    with pytest.raises(HalloInputError, match="^lip_schedule: ") as info:
        parse(value)
    assert needle in str(info.value)


def test_no_bounds_for_the_cli() -> None:
    assert parse_weight("0:5.0, 10:-1", "--lip-weight", FPS).values == (5.0, -1.0)
