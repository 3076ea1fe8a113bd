"""hallo-batch renders: here and on a real local Ray cluster, the frames of each job are those ``hallo-render``
renders for it alone; a bad row fails alone; a killed worker's job runs again; a rerun renders only what
changed.

Frames are compared as the renderer hands them to the encoder (the results table's ``frames_sha256``):
libx264's threaded encode of tiny frames is not reproducible run to run even for identical frames. The Ray
tests share one cluster of 2 CPUs (one renderer per CPU, one thread each, as the test process renders).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_helpers import (
    FAST,
    decoded_frames,
    identity,
    partials,
    results,
    run_batch,
    solo_digest,
    workspace,
    write_csv,
)
from cli_helpers import short_speech

ray = pytest.importorskip("ray", reason="hallo-batch --ray needs Ray: pip install -e '.[test]' installs it")

GOOD = [
    {"image": "statue.jpg", "audio": "short.wav", "seed": 1},
    {"image": "photo_woman.jpg", "audio": "longer.wav", "seed": 2, "lip_weight": "0:1.0, 10:1.6"},
    {"image": "statue.jpg", "audio": "longer.wav", "seed": 3, "preset": "fast"},
]
BAD = [
    {"image": "grey.png", "audio": "short.wav", "seed": 4},  # no face
    {"image": "photo_woman.jpg", "audio": "broken.wav", "seed": 5},  # audio that does not decode
]


def _argv(row: dict) -> list[str]:
    """The row as hallo-render options."""
    return [f"--{k.replace('_', '-')}={v}" for k, v in row.items() if k not in ("image", "audio", "out")]


def _rows(rows: list[dict], folder: str) -> list[dict]:
    return [{**row, "out": f"{folder}/{i}.mp4"} for i, row in enumerate(rows, start=1)]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> Path:
    return workspace(tmp_path_factory.mktemp("batch"), assets)


@pytest.fixture(scope="module")
def solo(work: Path, tiny_model_dir: Path) -> dict[str, str]:
    """Each good job's frames rendered alone, the hallo-render way (networks loaded for that one job)."""
    return {str(i): solo_digest(work / row["image"], work / row["audio"], tiny_model_dir,
                                work / f"solo_{i}.mp4", *FAST, *_argv(row))
            for i, row in enumerate(GOOD, start=1)}


@pytest.fixture(scope="module")
def cluster() -> str:
    """A real Ray cluster on this machine (2 CPUs) for this module's tests; its address."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             object_store_memory=128 * 1024 * 1024)  # "local": a new cluster, not one already on this machine
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _check_run(table: dict[int, dict], solo: dict[str, str], *, bad: bool = True) -> None:
    for i in (1, 2, 3):
        assert table[i]["status"] == "done", table[i]
        assert table[i]["frames_sha256"] == solo[str(i)], i
        assert decoded_frames(Path(table[i]["output"])) == table[i]["frames"] == (10 if i == 1 else 20)
    if bad:
        assert table[4]["status"] == "failed" and "no face" in table[4]["error"] and "grey.png" in table[4]["error"]
        assert table[5]["status"] == "failed" and "broken.wav" in table[5]["error"]
        assert not Path(table[4]["output"]).exists() and not Path(table[5]["output"]).exists()


def test_local_batch_renders_each_job_as_alone_and_a_bad_row_fails_alone(
        work: Path, tiny_model_dir: Path, solo: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    jobs = write_csv(work / "local.csv", _rows(GOOD + BAD, "local"))
    code, err = run_batch([str(jobs), "--models", str(tiny_model_dir), "--evaluate", *FAST], capsys)
    assert code == 1
    table = results(work / "local")
    _check_run(table, solo)
    # --evaluate: hallo-eval's own measures of the finished video
    from hallo_nodes.pipeline.eval_cli import main as hallo_eval

    assert hallo_eval([table[1]["output"], "--reference", str(work / "statue.jpg"), "--audio",
                       str(work / "short.wav"), "--models", str(tiny_model_dir), "--json",
                       str(work / "eval.json"), "-q"]) == 0
    measures = json.loads((work / "eval.json").read_text())["reports"][0]["measures"]
    assert {f"eval_{k}": m["value"] for k, m in measures.items()} == \
        {k: v for k, v in table[1].items() if k.startswith("eval_")}
    assert table[1]["eval_identity_mean"] is not None
    assert len({r["worker"] for r in table.values()}) == 1  # one process, networks loaded once
    assert "5 jobs: 3 done, 0 skipped, 2 failed" in err
    assert "failed: row 4 (line 5)" in err and "failed: row 5 (line 6)" in err
    assert (work / "local" / "results.parquet").is_file()
    assert partials(work) == []


def test_ray_batch_same_videos_rerun_renders_only_what_changed(
        work: Path, tiny_model_dir: Path, solo: dict[str, str], cluster: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    jobs = write_csv(work / "ray.csv", _rows(GOOD + BAD, "ray"))
    code, err = run_batch([str(jobs), "--models", str(tiny_model_dir), "--ray", *FAST], capsys)
    assert code == 1, err
    table = results(work / "ray")
    _check_run(table, solo)
    assert all(r["worker"].split(":")[1] != str(os.getpid()) for r in table.values())  # rendered by actors
    assert partials(work) == []

    jobs = write_csv(work / "ray.csv", _rows(GOOD, "ray"))
    videos = {i: identity(Path(table[i]["output"])) for i in (1, 2, 3)}
    code, err = run_batch([str(jobs), "--models", str(tiny_model_dir), "--ray", *FAST], capsys)
    assert code == 0, err
    assert [r["status"] for r in results(work / "ray").values()] == ["skipped"] * 3
    assert {i: identity(Path(table[i]["output"])) for i in (1, 2, 3)} == videos  # not touched

    changed = [dict(row) for row in GOOD]
    changed[1]["seed"] = 9
    jobs = write_csv(work / "ray.csv", _rows(changed, "ray"))
    code, err = run_batch([str(jobs), "--models", str(tiny_model_dir), "--ray", *FAST], capsys)
    assert code == 0, err
    again = results(work / "ray")
    assert [again[i]["status"] for i in (1, 2, 3)] == ["skipped", "done", "skipped"]
    assert again[2]["frames_sha256"] == solo_digest(work / "photo_woman.jpg", work / "longer.wav", tiny_model_dir,
                                                    work / "solo_changed.mp4", *FAST, *_argv(changed[1]))
    assert identity(Path(table[1]["output"])) == videos[1] and identity(Path(table[3]["output"])) == videos[3]


def _wait_for(find, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _partial_pids(folder: Path, stem: str) -> list[int]:
    """The worker pids in the names of ``stem``'s temporary files (``.<stem>.<pid>-<random>.partial.mp4``)."""
    return [int(p.name.split(".")[2].split("-")[0]) for p in folder.glob(f".{stem}.*.partial.mp4")]


def test_a_killed_worker_leaves_no_partial_file_and_its_job_runs_again_up_to_retries(
        work: Path, tiny_model_dir: Path, assets: Path, cluster: str) -> None:
    """One worker; ``slow`` loses it once (then renders), ``doomed`` loses it every time: after --retries 1
    it is recorded as failed. Each kill is a SIGKILL of the worker process while it writes the job's video."""
    speech = short_speech(assets, work / "two_seconds.wav", seconds=2.0)  # 4 clips: the job lasts seconds
    jobs = write_csv(work / "kill.csv", [
        {"image": "statue.jpg", "audio": speech.name, "out": "kill/slow.mp4", "steps": 3},
        {"image": "photo_woman.jpg", "audio": speech.name, "out": "kill/doomed.mp4", "steps": 3},
    ])
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    batch = subprocess.Popen([sys.executable, "-m", "hallo_nodes.pipeline.batch.cli", str(jobs), "--models",
                              str(tiny_model_dir), "--ray", cluster, "--workers", "1", "--retries", "1",
                              "--size", "64", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed: dict[str, list[int]] = {"slow": [], "doomed": []}
    try:
        deadline = time.monotonic() + 400
        while batch.poll() is None and time.monotonic() < deadline:
            for stem, times in (("slow", 1), ("doomed", 3)):
                for pid in _partial_pids(work / "kill", stem):
                    if pid not in killed[stem] and len(killed[stem]) < times:
                        time.sleep(0.3)  # inside the job: the networks and 4 clips of 3 steps are still to come
                        assert not (work / "kill" / f"{stem}.mp4").exists()
                        os.kill(pid, signal.SIGKILL)
                        killed[stem].append(pid)
            time.sleep(0.05)
        _, err = batch.communicate(timeout=60)
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 1, err
    assert len(killed["slow"]) == 1 and len(killed["doomed"]) == 2, killed
    table = results(work / "kill")
    slow, doomed = table[1], table[2]
    assert slow["status"] == "done" and slow["attempt"] == 2, slow
    assert int(slow["worker"].split(":")[1]) not in killed["slow"]  # a new worker process rendered it
    assert decoded_frames(work / "kill" / "slow.mp4") == slow["frames"] == 50
    assert slow["frames_sha256"] == solo_digest(work / "statue.jpg", speech, tiny_model_dir, work / "solo_slow.mp4",
                                                "--size", "64", "--steps", "3")
    assert doomed["status"] == "failed" and doomed["attempt"] == 2, doomed
    assert "lost 2 times (killed, out of memory or node lost); not tried again (--retries 1)" in doomed["error"]
    assert "failed: row 2 (line 3)" in err
    assert not (work / "kill" / "doomed.mp4").exists()
    assert partials(work / "kill") == []


def test_jobs_file_checks_reject_every_bad_row_before_ray_renders_anything(
        work: Path, tiny_model_dir: Path, cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = write_csv(work / "bad.csv", [
        {"image": "statue.jpg", "audio": "short.wav", "out": "checked/a.mp4", "seed": "x"},
        {"image": "statue.jpg", "audio": "gone.wav", "out": "checked/b.mp4", "seed": "1"},
        {"image": "statue.jpg", "audio": "short.wav", "out": "checked/a.mp4", "seed": "2"},
        {"image": "statue.jpg", "audio": "short.wav", "out": "checked/c.mp4", "seed": "3"},  # fine alone
    ])
    code, err = run_batch([str(jobs), "--models", str(tiny_model_dir), "--ray", *FAST], capsys)
    assert code == 2
    assert "3 problem(s) in 3 row(s); nothing was rendered" in err
    assert "row 1, column seed" in err and "row 2, column audio" in err and "row 3, column out" in err
    assert not (work / "checked").exists()
