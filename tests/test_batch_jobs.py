"""hallo-batch's jobs file: every bad row is reported at once, before anything renders; options come from
hallo-render's own parser, layered workflow < command line < row; a job's id follows its content."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from batch_helpers import FAST, run_batch, workspace, write_csv, write_jsonl
from conftest import REPO
from hallo_nodes.pipeline.batch.identity import ContentHashes, job_id
from hallo_nodes.pipeline.batch.jobs import JobsChecker
from hallo_nodes.pipeline.batch.options import RowParser
from hallo_nodes.pipeline.batch.workflow import WorkflowError, workflow_settings
from hallo_nodes.pipeline.sampling.schedules import WeightSchedule

WORKFLOWS = REPO / "tests" / "fixtures" / "workflows_api"
BASIC = "hallo_talking_video_from_portrait_and_audio"
LEGACY = REPO / "tests" / "fixtures" / "workflows_before_option_nodes" / "api"  # saved before the option nodes


@pytest.fixture()
def work(tmp_path: Path, assets: Path) -> Path:
    return workspace(tmp_path / "work", assets)


def _problem_lines(err: str) -> list[str]:
    return [line.strip() for line in err.splitlines() if line.startswith("  ")]


def test_every_bad_row_is_reported_at_once_and_nothing_renders(work: Path, tiny_model_dir: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    jobs = write_csv(work / "jobs.csv", [
        {"image": "statue.jpg", "audio": "short.wav", "out": "out/good.mp4", "seed": "1", "lip_wieght": ""},
        {"image": "missing.jpg", "audio": "short.wav", "out": "out/a.mp4", "seed": "-1"},
        {"image": "statue.jpg", "audio": "short.wav", "out": "out/good.mp4", "preset": "fastest"},
        {"image": "statue.jpg", "audio": "short.wav", "out": "short.wav", "lip_weight": "0:1.0, 50:x"},
        {"image": "statue.jpg", "audio": "", "out": "out/b.mp4", "solver": "dpmpp", "still": "maybe"},
        {"image": "photo_woman.jpg", "audio": "short.wav", "out": "statue.jpg"},
        {"image": "photo_woman.jpg", "audio": "short.wav", "out": "out/c.txt", "cfg": "nan"},
    ])
    code, err = run_batch([str(jobs), "--models", str(tiny_model_dir), *FAST], capsys)
    assert code == 2
    lines = _problem_lines(err)
    expected = [
        ("jobs.csv:1", "column lip_wieght", "did you mean lip_weight"),
        ("jobs.csv:3: row 2", "column image", "missing.jpg not found"),
        ("jobs.csv:3: row 2", "column seed", "outside the generator's range"),
        ("jobs.csv:4: row 3", "column preset", "invalid choice: 'fastest'"),
        ("jobs.csv:4: row 3", "column out", "also the output of row 1"),
        ("jobs.csv:5: row 4", "column lip_weight", "'x'"),
        ("jobs.csv:5: row 4", "column out", "audio input"),
        ("jobs.csv:6: row 5", "column audio", "missing"),
        ("jobs.csv:6: row 5", "column still", "'maybe' is not true or false"),
        ("jobs.csv:7: row 6", "column out", "row 1's image input"),
        ("jobs.csv:8: row 7", "column cfg", "not a finite number"),
        ("jobs.csv:8: row 7", "column out", "'.txt'"),
    ]
    for parts in expected:
        assert any(all(p in line for p in parts) for line in lines), (parts, lines)
    assert "problem(s) in 7 row(s); nothing was rendered" in err  # the header line counts every row
    assert "Traceback" not in err
    assert not (work / "out").exists()  # not one video, not one results table


def test_solver_under_a_named_preset_is_refused_by_hallo_renders_own_check(work: Path, tiny_model_dir: Path,
                                                                           capsys: pytest.CaptureFixture[str]
                                                                           ) -> None:
    jobs = write_jsonl(work / "jobs.jsonl", [
        {"image": "statue.jpg", "audio": "short.wav", "out": "out/a.mp4", "solver": "dpmpp"},
        {"image": "statue.jpg", "audio": "short.wav", "out": "out/b.mp4", "preset": "custom", "solver": "dpmpp"},
    ])
    code, err = run_batch([str(jobs), "--models", str(tiny_model_dir)], capsys)
    assert code == 2
    (line,) = _problem_lines(err)
    assert "jobs.jsonl:1: row 1" in line and "--solver is 'dpmpp', but only preset 'custom' uses it" in line


def _check(jobs_file: Path, models: Path, defaults: argparse.Namespace | None = None, **kwargs):
    checker = JobsChecker(jobs_file, defaults or RowParser().defaults(), models, **kwargs)
    jobs = checker.check()
    return jobs, [str(p) for p in checker.problems]


def test_jsonl_values_relative_paths_and_defaults(work: Path, tiny_model_dir: Path) -> None:
    sub = work / "lists"
    sub.mkdir()
    jobs_file = write_jsonl(sub / "jobs.jsonl", [
        {"image": "../statue.jpg", "audio": str(work / "short.wav"), "out": "../out/a.mp4"},
        {"image": "../photo_woman.jpg", "audio": "../short.wav", "out": "../out/b.mp4", "seed": 7, "still": True,
         "lip-weight": "0:1.0, 2s:1.6", "compile": False, "size": 128.0},
    ])
    rows = RowParser()
    defaults = rows.parse({"seed": 3, "steps": 5, "preset": "fast"}, base=rows.defaults())
    jobs, problems = _check(jobs_file, tiny_model_dir, defaults)
    assert problems == []
    a, b = jobs
    assert (a.image, a.out) == (work / "statue.jpg", work / "out" / "a.mp4")
    assert a.options.sampler.seed == 3 and a.options.sampler.steps == 5 and a.options.sampler.solver == "dpmpp"
    assert b.options.sampler.seed == 7 and b.options.sampler.steps == 5 and b.options.sampler.still is True
    assert b.options.sampler.lip_weight == WeightSchedule((0.0, 50.0), (1.0, 1.6))
    assert (b.options.width, b.options.height, b.options.compile) == (128, 128, "off")
    assert json.loads(json.dumps(b.spec()))["args"]["seed"] == 7  # what a worker gets is plain JSON
    assert a.job_id != b.job_id and all(len(j.job_id) == 64 for j in jobs)


def test_workflow_settings_sit_under_the_command_line_and_the_rows(work: Path, tiny_model_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    workflow = WORKFLOWS / "hallo_video_with_per_frame_pose_and_lip_control.json"
    with pytest.raises(WorkflowError, match=r"2 sampler nodes \(7 \(HalloSampler\), 10 \(HalloSampler\)\): pick one"):
        workflow_settings(workflow)
    cells = workflow_settings(workflow, "7")  # its weights come from two Hallo Weight Schedule nodes
    assert cells["lip_weight"] == "0:1.0, 1s:1.0, 2s:1.5, 5s:1.5, 6s:1.0" and cells["still"] is False
    assert workflow_settings(workflow, "10")["still"] is True
    jobs_file = write_csv(work / "jobs.csv", [
        {"image": "statue.jpg", "audio": "short.wav", "out": "out/a.mp4", "cfg": ""},
        {"image": "statue.jpg", "audio": "short.wav", "out": "out/b.mp4", "cfg": "2.0"},
    ])
    # --size 64 replaces the workflow's 512x512
    code, err = run_batch([str(jobs_file), "--models", str(tiny_model_dir), "--from-workflow", str(workflow),
                           "--workflow-node", "7", "--seed", "5", "--size", "64", "--steps", "1", "--still",
                           "--force", "-q"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (work / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["done", "done"]
    # what the rows ran with: the workflow's schedules, the command line's seed and still, row 2's cfg
    rows_parser = RowParser()
    base = rows_parser.parse(workflow_settings(workflow, "7"), base=rows_parser.defaults())
    base = rows_parser.parse({"seed": 5, "size": 64, "steps": 1, "still": True}, base=base)
    jobs, problems = _check(jobs_file, tiny_model_dir, base, force=True)
    assert problems == []
    assert [j.job_id for j in jobs] == [r["job_id"] for r in rows]
    sampler = jobs[1].options.sampler
    assert (sampler.seed, sampler.guidance_scale, sampler.still) == (5, 2.0, True)
    assert sampler.lip_weight == WeightSchedule((0.0, 25.0, 50.0, 125.0, 150.0), (1.0, 1.0, 1.5, 1.5, 1.0))
    assert jobs[0].options.sampler.guidance_scale == 3.5


@pytest.mark.parametrize(("name", "node", "expected"), [
    ("hallo_fast_video_draft_speed_presets.json", "7", {"preset": "fast", "steps": 20}),  # a Hallo Sampler Options node
    ("hallo_fast_video_draft_speed_presets.json", "9", {"steps": 40}),
    (LEGACY / "hallo_speed_presets.json", "7", {"preset": "fast"}),  # the first releases' sampler widgets
    (LEGACY / "hallo_per_frame_control.json", "7", {"lip_weight": "0:1.0, 1s:1.0, 2s:1.5, 5s:1.5, 6s:1.0"}),
])
def test_workflow_settings_of_option_nodes_and_of_saved_prompts(name: str | Path, node: str, expected: dict) -> None:
    cells = workflow_settings(WORKFLOWS / name, node)
    assert {k: cells.get(k) for k in expected} == expected
    assert "solver" not in cells and "cfg_steps" not in cells  # a named preset brings its own recipe


@pytest.mark.parametrize(("name", "node", "message"), [
    ("hallo_video_face_cropped_and_pasted_back.json", None, "node 3 (HalloFaceCrop) does a face crop"),
    ("hallo_two_speakers_video_from_group_photo_and_audio.json", "10:104", "node 10:100 (HalloFaceCrop)"),
    (LEGACY / "hallo_two_speakers.json", "14", "node 10 (HalloFaceCrop)"),
    ("hallo_long_audio_video_in_chained_segments.json", "9", "node 9 (HalloSampler) renders a segment"),
    (LEGACY / "hallo_long_audio_chained.json", "7", "sets num_frames=96"),
    ("hallo_talking_video_from_portrait_and_audio.json", "6",
     "--workflow-node 6 is not a sampler node; the sampler nodes are: 7 (HalloSampler)"),
])
def test_workflow_settings_hallo_render_cannot_reproduce_are_refused(name: str | Path, node: str | None,
                                                                     message: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        workflow_settings(WORKFLOWS / name, node)
    assert message in str(caught.value)


def test_a_ui_format_workflow_is_refused_with_the_fix(tmp_path: Path, tiny_model_dir: Path, work: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    jobs_file = write_csv(work / "jobs.csv", [{"image": "statue.jpg", "audio": "short.wav", "out": "a.mp4"}])
    code, err = run_batch([str(jobs_file), "--models", str(tiny_model_dir), "--from-workflow",
                           str(REPO / "example_workflows" / f"{BASIC}.json")], capsys)
    assert code == 2
    assert "UI format" in err and "Export (API)" in err and len(err.strip().splitlines()) == 1


def test_an_existing_file_the_batch_did_not_write_is_refused_unless_overwrite(work: Path,
                                                                              tiny_model_dir: Path) -> None:
    (work / "out").mkdir()
    (work / "out" / "a.mp4").write_bytes(b"someone's video")
    jobs_file = write_csv(work / "jobs.csv", [{"image": "statue.jpg", "audio": "short.wav", "out": "out/a.mp4"}])
    jobs, problems = _check(jobs_file, tiny_model_dir)
    assert len(problems) == 1 and "was not written by hallo-batch; pass --overwrite" in problems[0]
    jobs, problems = _check(jobs_file, tiny_model_dir, overwrite=True)
    assert problems == [] and jobs[0].action == "replace"


def test_job_id_follows_the_inputs_content_and_the_options(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hallo_nodes.pipeline.batch import identity
    from hallo_nodes.pipeline.render import RenderOptions

    hashes = ContentHashes()
    options = RenderOptions(width=64, height=64)
    base = job_id(hashes(work / "statue.jpg"), hashes(work / "short.wav"), options)
    assert base == job_id(hashes(work / "statue.jpg"), hashes(work / "short.wav"), replace(options, overwrite=True))
    assert base != job_id(hashes(work / "statue.jpg"), hashes(work / "short.wav"), replace(options, width=128))
    assert base != job_id(hashes(work / "photo_woman.jpg"), hashes(work / "short.wav"), options)
    voice = work / "short.wav"
    data = bytearray(voice.read_bytes())
    data[-1] ^= 1  # one bit of the audio, same size
    stat = voice.stat()
    voice.write_bytes(bytes(data))
    os.utime(voice, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert base != job_id(hashes(work / "statue.jpg"), hashes(voice), options)
    monkeypatch.setattr(identity, "pack_version", lambda: "99.0")
    assert base != job_id(hashes(work / "statue.jpg"), hashes(work / "short.wav"), options)
