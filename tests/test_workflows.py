"""Every shipped workflow against the node definitions (the pack's own and core ones recorded from ComfyUI)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image
from workflow_tools import (
    API_DIR,
    BUILDERS,
    CORE_FIXTURE,
    core_object_info,
    object_info,
    shipped_workflows,
    ui_to_api,
    validate_api,
    validate_ui,
)

WORKFLOWS = shipped_workflows()
NAMES = [p.stem for p in WORKFLOWS]
PACK_PREFIX = "Hallo"


@pytest.fixture(scope="module")
def info() -> dict:
    return object_info()


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_expected_workflows_are_shipped() -> None:
    assert set(NAMES) == set(BUILDERS)
    for name in NAMES:
        assert (API_DIR / f"{name}.json").is_file(), f"{name} has no API twin"
    assert sorted(p.stem for p in API_DIR.glob("*.json")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_thumbnail(name: str) -> None:
    thumbs = [p for ext in ("jpg", "png") if (p := WORKFLOWS[0].parent / f"{name}.{ext}").is_file()]
    assert thumbs, f"{name} has no thumbnail"
    with Image.open(thumbs[0]) as img:
        assert min(img.size) >= 64


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_valid(name: str, info: dict) -> None:
    workflow = load(WORKFLOWS[NAMES.index(name)])
    assert validate_ui(workflow, info) == []
    core = core_object_info()
    subgraphs = workflow.get("definitions", {}).get("subgraphs", [])
    for node in [n for g in [workflow, *subgraphs] for n in g["nodes"]]:
        assert node["type"].startswith(PACK_PREFIX) or node["type"] in core or \
            node["type"] in {sg["id"] for sg in subgraphs}


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_matches_and_is_valid(name: str, info: dict) -> None:
    ui = load(WORKFLOWS[NAMES.index(name)])
    api = load(API_DIR / f"{name}.json")
    assert api == ui_to_api(ui, info)
    assert validate_api(api, info) == []


def test_core_fixture_is_from_a_real_comfyui() -> None:
    data = json.loads(CORE_FIXTURE.read_text())
    assert "0.3.64" in data["_source"]
    for name, node in data["nodes"].items():
        assert node["name"] == name and "input" in node and "output" in node


def test_validators_catch_broken_workflows(info: dict) -> None:
    """The validators are able to fail: each kind of breakage is reported."""
    good = load(WORKFLOWS[NAMES.index("hallo_talking_video_from_portrait_and_audio")])
    by_type = {n["type"]: n for n in good["nodes"]}

    bad = copy.deepcopy(good)
    next(n for n in bad["nodes"] if n["type"] == "HalloSampler")["type"] = "HalloSamplerV9"
    assert any("unknown node type" in e for e in validate_ui(bad, info))

    bad = copy.deepcopy(good)
    link = next(lk for lk in bad["links"] if lk[5] == "HALLO_REFERENCE")
    src = next(n for n in bad["nodes"] if n["type"] == "HalloAudioEncode")
    link[1], link[2], link[5] = src["id"], 0, "HALLO_AUDIO"
    src["outputs"][0]["links"].append(link[0])
    assert any("HALLO_AUDIO" in e and "reference" in e for e in validate_ui(bad, info))

    bad = copy.deepcopy(good)
    sampler = next(n for n in bad["nodes"] if n["type"] == "HalloSampler")
    sampler["widgets_values"][0] = -1  # steps below its minimum
    assert any("steps: -1 is below the minimum 1" in e for e in validate_ui(bad, info))
    sampler["widgets_values"][3] = "sometimes"  # not a control_after_generate value
    assert any("control_after_generate" in e for e in validate_ui(bad, info))

    bad = copy.deepcopy(good)
    loader = next(n for n in bad["nodes"] if n["type"] == "HalloModelLoader")
    loader["widgets_values"][1] = "fp8"
    assert any("'fp8' is not one of" in e for e in validate_ui(bad, info))

    api = load(API_DIR / "hallo_talking_video_from_portrait_and_audio.json")
    bad_api = copy.deepcopy(api)
    sampler_id = next(k for k, v in bad_api.items() if v["class_type"] == "HalloSampler")
    del bad_api[sampler_id]["inputs"]["reference"]
    bad_api[sampler_id]["inputs"]["cfg"] = "high"
    errors = validate_api(bad_api, info)
    assert any("required input 'reference' missing" in e for e in errors)
    assert any("cfg: expected a number" in e for e in errors)
    save_id = next(k for k, v in bad_api.items() if v["class_type"] == "CreateVideo")
    bad_api[save_id]["inputs"]["images"] = [sampler_id, 3]  # the HALLO_MOTION output
    assert any("expects IMAGE" in e and "HALLO_MOTION" in e for e in validate_api(bad_api, info))
    assert by_type  # keeps the lookup used


def test_chained_workflow_hands_motion_over(info: dict) -> None:
    api = load(API_DIR / "hallo_long_audio_video_in_chained_segments.json")
    samplers = {k: v for k, v in api.items() if v["class_type"] == "HalloSampler"}
    assert len(samplers) == 2
    (second_id, second), = [(k, v) for k, v in samplers.items() if "motion" in v["inputs"]]
    first_id = second["inputs"]["motion"][0]
    assert first_id in samplers and second["inputs"]["motion"][1] == 3
    segment = api[samplers[first_id]["inputs"]["segment"][0]]
    assert segment["class_type"] == "HalloSegment" and segment["inputs"]["frames"] % 16 == 0
    assert "segment" not in second["inputs"]  # continues to the end of the audio
    saves = [v for v in api.values() if v["class_type"] == "CreateVideo"]
    assert {s["inputs"]["audio"][0] for s in saves} == set(samplers)  # each part gets its own audio


def test_upscale_workflow_uses_a_core_upscaler(info: dict) -> None:
    api = load(API_DIR / "hallo_talking_video_upscaled.json")
    ups = [v for v in api.values() if v["class_type"] == "ImageScaleBy"]
    assert len(ups) == 1 and ups[0]["inputs"]["scale_by"] > 1


def test_template_names_say_what_they_make() -> None:
    """The frontend's template browser shows a custom pack's file name as title and description and searches
    nothing else: each name carries the pack's prefix and "video" (a search for it finds every template), and
    the README lists each by that name."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert len(NAMES) >= 9
    for name in NAMES:
        assert name.startswith("hallo_") and "video" in name.split("_"), name
        assert f"- `{name}`:" in readme, f"README does not list the example workflow {name}"
