"""hallo-batch without Ray (the embedded default): it runs where ``import ray`` fails, refuses ``--ray`` there
with the install command, and stops cleanly on Ctrl-C (finished videos stay, nothing temporary is left, a rerun
resumes)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_helpers import decoded_frames, identity, partials, results, run_batch, workspace, write_csv
from cli_helpers import short_speech


@pytest.fixture()
def work(tmp_path: Path, assets: Path) -> Path:
    return workspace(tmp_path / "work", assets)


def test_without_ray_the_jobs_render_here_and_ray_is_refused_with_the_install_command(
        work: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # every `import ray` now fails, as without the package
    jobs = write_csv(work / "jobs.csv", [{"image": "statue.jpg", "audio": "short.wav", "out": "out/a.mp4"}])
    argv = [str(jobs), "--models", str(tiny_model_dir), "--size", "64", "--steps", "1", "-q"]
    code, err = run_batch([*argv, "--ray"], capsys)
    assert code == 2
    assert err == ("hallo-batch: error: --ray needs Ray, which is not installed: pip install 'hallo-nodes[ray]' (or "
                   "run without --ray: the jobs then render in this process)\n")
    assert not (work / "out").exists()
    code, err = run_batch(argv, capsys)
    assert code == 0, err
    assert results(work / "out")[1]["status"] == "done"
    assert decoded_frames(work / "out" / "a.mp4") == 10


def test_ctrl_c_keeps_finished_videos_leaves_no_temporary_file_and_a_rerun_resumes(
        work: Path, tiny_model_dir: Path, assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short_speech(assets, work / "two_seconds.wav", seconds=2.0)
    jobs = write_csv(work / "jobs.csv", [
        {"image": "statue.jpg", "audio": "short.wav", "out": "out/first.mp4", "steps": 1},
        {"image": "photo_woman.jpg", "audio": "two_seconds.wav", "out": "out/second.mp4", "steps": 3},
    ])
    argv = [str(jobs), "--models", str(tiny_model_dir), "--size", "64", "-q"]
    batch = subprocess.Popen([sys.executable, "-m", "hallo_nodes.pipeline.batch.cli", *argv],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list((work / "out").glob(".second.*.partial.mp4")):  # the first is done, the second started
            assert time.monotonic() < deadline and batch.poll() is None, batch.stderr.read() if batch.stderr else ""
            time.sleep(0.05)
        time.sleep(0.1)
        batch.send_signal(signal.SIGINT)
        _, err = batch.communicate(timeout=120)
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 130, err
    assert "cancelled; finished videos are kept" in err and "Traceback" not in err
    assert sorted(p.name for p in (work / "out").iterdir()) == ["first.mp4", "results.jsonl", "results.parquet"]
    table = results(work / "out")
    assert (table[1]["status"], table[2]["status"]) == ("done", "cancelled")
    first = identity(work / "out" / "first.mp4")

    code, err = run_batch(argv, capsys)
    assert code == 0, err
    table = results(work / "out")
    assert (table[1]["status"], table[2]["status"]) == ("skipped", "done")
    assert identity(work / "out" / "first.mp4") == first
    assert decoded_frames(work / "out" / "second.mp4") == 50
    assert partials(work) == []
