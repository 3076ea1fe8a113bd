"""``bench/gpu_check.sh --dry-run``: the GPU check's own code path on the CPU (tiny network, 64², 2 steps).

The script is what a session with a GPU runs in its one call, so a break in it must show up here first. The
compile configurations are left out (``--skip compile``: tracing the whole UNet takes minutes on a loaded
CPU; tests/test_acceleration.py traces it), FP8 is refused on the CPU with its message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"


def test_dry_run_prints_one_json_line_per_configuration() -> None:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH="")
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--presets", "fast", "--dtypes", "bf16",
                           "--skip", "compile"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "header" and kinds[-1] == "summary", kinds
    assert lines[0]["dry_run"] and lines[0]["device"] == "cpu" and lines[0]["size"] == 64
    runs = [line for line in lines if line["kind"] == "run"]
    assert [(r["preset"], r["options"]["low_vram"], r["options"]["channels_last"]) for r in runs] == [
        ("fast", False, False), ("faithful", True, False), ("faithful", False, True)]
    for run in runs:
        assert run["dtype"] == "bf16" and run["frames"] == 16 and run["steps"] == 2
        assert run["s_per_video_s"] > 0 and run["tflop"] > 0 and run["achieved_tflops"] > 0
        assert run["peak_vram_allocated_gb"] is None and run["peak_vram_reserved_gb"] is None  # no GPU here
        assert set(run["stages_s"]) == {"encode", "reference", "denoise", "decode"}
    assert runs[0]["s_per_video_s_max"] == 2.5 and isinstance(runs[0]["meets_speed"], bool)
    assert runs[1]["s_per_video_s_max"] == 6.0
    assert runs[0]["cfg_steps"] == 1  # the fast preset's CFG steps, capped: both input shapes run
    skipped = [line for line in lines if line["kind"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["options"]["fp8"]
    assert "compute capability 8.9" in skipped[0]["reason"]
    assert lines[-1] == {**lines[-1], "runs": 3, "skipped": 1, "errors": 0}
