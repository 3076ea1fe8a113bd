"""hallo-render takes the same weight schedules as the nodes, and --still."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import pytest
from cli_helpers import add_face_task, assert_one_line_error, run_main, short_speech
from hallo_nodes.pipeline.cli import _options, build_parser
from hallo_nodes.pipeline.sampling.schedules import WeightSchedule


def test_weight_options_take_numbers_and_schedules() -> None:
    args = build_parser().parse_args(["--lip-weight", "0:1.0, 2s:1.6", "--pose-weight", "0.5", "--still"])
    settings = _options(args).sampler
    assert settings.lip_weight == WeightSchedule((0.0, 50.0), (1.0, 1.6))  # 2 s at hallo-render's 25 fps
    assert settings.pose_weight == 0.5 and settings.face_weight == 1.0 and settings.still
    default = _options(build_parser().parse_args([])).sampler
    assert (default.pose_weight, default.face_weight, default.lip_weight, default.still) == (1.0, 1.0, 1.0, False)


@pytest.mark.parametrize(("value", "needle"), [("0:1.0, 50:abc", "'50:abc'"), ("fast", "'fast'"),
                                               ("0:1, 10.5:2", "'10.5s'")])
def test_a_bad_schedule_is_one_line_naming_the_option_and_the_token(value: str, needle: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(["--image", "x.png", "--audio", "x.wav", "--models", str(tmp_path), "--face-weight", value],
                         capsys)
    assert code == 2
    assert_one_line_error(err, "--face-weight", needle, "0:1.0, 50:1.6, 120:0.8")


def test_a_render_with_a_schedule_and_still(tiny_model_dir: Path, assets: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models, ignore=shutil.ignore_patterns("hallo2"))
    add_face_task(models, assets)
    out = tmp_path / "out.mp4"
    code, err = run_main(["--image", str(assets / "portraits" / "statue.jpg"), "--audio",
                          str(short_speech(assets, tmp_path / "voice.wav")), "--models", str(models), "--out", str(out),
                          "--size", "64", "--steps", "1", "-q", "--lip-weight", "0:1.0, 5:2.0", "--still"], capsys)
    assert code == 0, err
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10  # 0.4 s at 25 fps
