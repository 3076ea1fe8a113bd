"""Per-frame control on the sampler nodes: Hallo Weight Schedule and float lists on the weight sockets, ``still``;
the schedule texts of saved API prompts."""

from __future__ import annotations

import inspect
from pathlib import Path

import av
import pytest
import torch
from asset_paths import LANDMARKER_TASK
from hallo_nodes.nodes import NODE_CLASS_MAPPINGS
from hallo_nodes.nodes import comfy_adapter as adapter
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.face.landmarks import TASK_FILE
from hallo_nodes.pipeline.sampling.schedules import Keyframes
from node_helpers import comfy_audio, comfy_image, load_tiny_model
from workflow_tools import pack_object_info, widget_inputs

SIZE = 64
FAST = {"steps": 1, "cfg": 3.5, "seed": 42}
NODES = ("HalloSampler", "HalloRenderToVideoFile")
SCHEDULE = NODE_CLASS_MAPPINGS["HalloWeightSchedule"]


@pytest.mark.parametrize("node_id", NODES)
def test_weights_are_float_widgets_a_schedule_connects_to(node_id: str) -> None:
    info = pack_object_info()[node_id]
    for name in ("pose_weight", "face_weight", "lip_weight"):
        assert info["input"]["required"][name][0] == "FLOAT"  # a FLOAT widget, and a FLOAT socket
    assert SCHEDULE.RETURN_TYPES == ("FLOAT",)
    assert info["input"]["optional"]["still"][1]["default"] is False
    assert not {"pose_schedule", "face_schedule", "lip_schedule"} & set(widget_inputs(info))
    assert {"pose_schedule", "face_schedule", "lip_schedule"} <= set(info["input"]["hidden"])


def keyframes(text: str):
    return SCHEDULE().schedule(text)[0]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path):
    task = tiny_model_dir / "face_analysis" / "models" / TASK_FILE
    if not task.is_file():
        task.write_bytes(LANDMARKER_TASK.read_bytes())
    return load_tiny_model(tiny_model_dir)


@pytest.fixture(scope="module")
def inputs(model):
    speech = comfy_audio(1.3)  # 33 frames: three clips
    features = NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, speech, 25.0)["result"][0]
    portrait = comfy_image("painting_girl.jpg")
    face = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, portrait, SIZE, SIZE)["result"][0]
    (reference,) = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, portrait, face)["result"]
    return reference, features, speech


def sample(model, inputs, **kwargs) -> torch.Tensor:
    reference, features, _ = inputs
    return NODE_CLASS_MAPPINGS["HalloSampler"]().sample(model, reference, features, **FAST, **kwargs)["result"][0]


@pytest.fixture(scope="module")
def constant(model, inputs) -> torch.Tensor:
    return sample(model, inputs)


def test_a_weight_schedule_and_a_float_list_reach_the_frames(model, inputs, constant) -> None:
    lip = sample(model, inputs, lip_weight=keyframes("0:1.0, 20:1.0, 21:2.0"))
    assert torch.equal(lip[:16], constant[:16]) and not torch.equal(lip[16:], constant[16:])
    # seconds at the audio's 25 fps: 0.8 s = frame 20, 0.84 s = frame 21
    assert torch.equal(sample(model, inputs, lip_weight=keyframes("0s:1.0, 0.8s:1.0, 0.84s:2.0")), lip)
    # a saved API prompt's schedule text, by its old name: the same frames
    assert torch.equal(sample(model, inputs, lip_schedule="0:1.0, 20:1.0, 21:2.0"), lip)
    # a FLOAT list connected to the pose_weight socket (what schedule nodes send), one value per frame
    pose = sample(model, inputs, pose_weight=[1.0] * 32 + [0.5])
    assert torch.equal(pose[:32], constant[:32]) and not torch.equal(pose[32:], constant[32:])
    # constant schedules and lists, and a schedule that only repeats the widget: the original computation
    assert torch.equal(sample(model, inputs, face_weight=keyframes("0:1.0, 30:1.0"), lip_weight=[1.0] * 33), constant)


def test_still_changes_the_frames(model, inputs, constant) -> None:
    still = sample(model, inputs, still=True)
    assert still.shape == constant.shape and not torch.equal(still, constant)


def test_the_schedule_node_checks_its_keyframes_on_its_own_widget() -> None:
    assert SCHEDULE.VALIDATE_INPUTS(keyframes="0:1.0, 2s:1.5") is True
    msg = SCHEDULE.VALIDATE_INPUTS(keyframes="0:1.0, 20:loud")
    assert msg.startswith("HalloWeightSchedule: widget 'keyframes': the value 'loud' in '20:loud'")
    assert "outside 0..3" in SCHEDULE.VALIDATE_INPUTS(keyframes="0:1.0, 20:4")
    assert list(inspect.signature(SCHEDULE.VALIDATE_INPUTS).parameters) == ["keyframes"]
    with pytest.raises(HalloInputError, match="HalloWeightSchedule: widget 'keyframes': the schedule is empty"):
        SCHEDULE().schedule(" ")


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"lip_schedule": "0:1.0, 20:loud"}, "HalloSampler: input 'lip_schedule': the value 'loud' in '20:loud'"),
    ({"face_schedule": "0:1.0, 20:4"}, "HalloSampler: input 'face_schedule': the value in '20:4' is 4, "
                                       "outside 0..3"),
    ({"pose_weight": [1.0, float("nan")]}, "HalloSampler: input 'pose_weight': value 1 (frame 1) is nan"),
    ({"pose_weight": [1.0, 2.0], "pose_schedule": "0:1"}, "'pose_weight' is connected to a list of values and "
                                                          "'pose_schedule' is set too"),
    ({"pose_weight": Keyframes("0:1, 9:2"), "pose_schedule": "0:1"}, "'pose_weight' is connected to a weight "
                                                                      "schedule and 'pose_schedule' is set too"),
])
def test_bad_schedules_name_the_widget(model, inputs, kwargs: dict, needle: str) -> None:
    with pytest.raises(HalloInputError) as info:
        sample(model, inputs, **kwargs)
    assert needle in str(info.value)


def test_render_to_video_file_takes_schedules_and_still(model, inputs, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(adapter.ENV_OUTPUT_DIR, str(tmp_path))
    reference, features, speech = inputs
    node = NODE_CLASS_MAPPINGS["HalloRenderToVideoFile"]()
    out = node.render(model, reference, features, speech, **FAST, filename_prefix="hallo/pfc",
                      lip_weight=keyframes("0:1.0, 1s:1.5"), still=True)
    entry = out["ui"]["images"][0]
    with av.open(str(tmp_path / entry["subfolder"] / entry["filename"])) as container:
        assert sum(1 for _ in container.decode(video=0)) == out["result"][0] == 33
    with pytest.raises(HalloInputError, match="HalloRenderToVideoFile: input 'pose_schedule'"):
        node.render(model, reference, features, speech, **FAST, pose_schedule="fast")
