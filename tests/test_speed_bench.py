"""The render benchmark runs end to end on the tiny model and reports every figure it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_render.py"


def test_bench_render_prints_one_json_line(assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_render", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--steps", "1", "--preset", "fast", "--threads", "1"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1 and json.loads(lines[0]) == report
    assert report["frames"] == 16 and report["steps"] == 1 and report["solver"] == "dpmpp"
    assert set(report["stages_s"]) >= {"load", "audio", "face", "reference", "denoise", "decode", "write"}
    assert report["s_per_video_s"] > 0 and report["peak_rss_mb"] > 100 and report["peak_gpu_mb"] is None
    assert report["achieved_tflops"] > 0 and report["tflop"]["denoise"] > 0


def test_offload_context_is_a_no_op_without_offload() -> None:
    import torch
    from hallo_nodes.pipeline.sampling.offload import module_device, on_device

    layer = torch.nn.Linear(2, 2)
    with on_device(layer, "cpu", offload=False) as used:
        assert used is layer
    with on_device(layer, "cpu", offload=True):
        assert module_device(layer).type == "cpu"
    assert module_device(layer).type == "cpu"
