"""One job on a kept ``Renderer``: the same render as ``hallo-render``, a result row whatever happens.

A job that fails for its own reason (no face, broken audio, a NaN clip) gives a ``failed`` row with its one-line
error and the worker goes on with the next job; only the death of the worker process itself (killed, out of
memory, node lost) makes the job run again, elsewhere (Ray does that). Ctrl-C is not a job's failure: it
propagates, and the writer removes the job's temporary file on the way out.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..cli import is_input_error
from ..sampling.hooks import RenderCancelled
from .identity import JOB_TAG
from .options import render_options

logger = logging.getLogger(__name__)

STAGES = ("face", "audio", "load", "generate")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _partial_pattern(out: Path) -> re.Pattern[str]:
    """The temporary files ``VideoWriter`` makes for ``out``: ``.<stem>.<pid>-<8 hex>.partial<suffix>``."""
    return re.compile(rf"^\.{re.escape(out.stem)}\.(\d+)-[0-9a-f]{{8}}\.partial{re.escape(out.suffix)}$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Delete the temporary files of ``out`` left by a render whose process is gone (a killed worker); a
    render still running on this machine keeps its own."""
    pattern, removed = _partial_pattern(out), []
    try:
        names = os.listdir(out.parent)
    except OSError:
        return removed
    for name in names:
        found = pattern.match(name)
        if found and (int(found.group(1)) == os.getpid() or not _alive(int(found.group(1)))):
            path = out.parent / name
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def result_row(spec: dict[str, Any], status: str, **values: Any) -> dict[str, Any]:
    """A results-table row for ``spec`` (every column present, so the table has one schema)."""
    row = {"row": spec["row"], "line": spec["line"], "status": status, "output": spec["out"],
           "job_id": spec.get("job_id", ""), "error": None, "worker": None, "device": None, "attempt": None,
           "started_at": None, **{f"seconds_{s}": None for s in STAGES}, "seconds_total": None,
           "video_seconds": None, "frames": None, "frames_sha256": None}
    row.update(values)
    return row


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if is_input_error(exc) else f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JobRunner:
    """Renders job specs (``Job.spec()``) with networks loaded once; ``evaluate`` adds hallo-eval's measures."""

    def __init__(self, models: str | Path, *, evaluate: bool = False) -> None:
        from ..render import Renderer

        self.renderer = Renderer(models)
        self.evaluate = evaluate

    def run(self, spec: dict[str, Any], *, attempt: int = 1, should_cancel=None) -> dict[str, Any]:
        started = time.perf_counter()
        out = Path(spec["out"])
        for path in remove_stale_partials(out):
            logger.info("removed %s, left by an interrupted render of row %s", path.name, spec["row"])
        base = {"worker": worker_name(), "attempt": attempt, "started_at": time.time()}
        try:
            options = render_options(argparse.Namespace(**spec["args"]))
            if spec["replace"]:
                options.overwrite = True  # the batch's own older render of this job
            base["device"] = _device_label(options.device)
            digest = hashlib.sha256()
            timings = self.renderer.render(
                spec["image"], spec["audio"], out, options, should_cancel=should_cancel,
                on_frames=lambda frames: digest.update(np.ascontiguousarray(frames).tobytes()),
                metadata={JOB_TAG: spec["job_id"]})
        except (KeyboardInterrupt, RenderCancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - a job's failure is recorded; the batch goes on
            if not is_input_error(exc):
                logger.exception("row %s (%s) failed", spec["row"], out)
            return result_row(spec, "failed", error=one_line(exc), seconds_total=time.perf_counter() - started,
                              **base)
        row = result_row(spec, "done", **base, **{f"seconds_{s}": timings.get(s) for s in STAGES},
                         video_seconds=timings["video_seconds"], frames=int(timings["frames"]),
                         frames_sha256=digest.hexdigest())
        if self.evaluate:
            row.update(self._evaluate(spec, out))
        row["seconds_total"] = time.perf_counter() - started
        return row

    def _evaluate(self, spec: dict[str, Any], out: Path) -> dict[str, Any]:
        """hallo-eval's measures of the finished video, as ``eval_<measure>`` columns."""
        from ..audio.decode import load_audio_file
        from ..evaluation.report import evaluate
        from ..evaluation.video_file import read_video
        from ..images import load_image_rgb

        started = time.perf_counter()
        try:
            frames, fps = read_video(out, "output")
            wave, rate = load_audio_file(spec["audio"], mono=True)
            report = evaluate(frames, load_image_rgb(Path(spec["image"])), fps, self.renderer.folder.root,
                              audio=(wave[0].numpy(), rate), name=out.stem)  # face models on the CPU, as hallo-eval
        except Exception as exc:  # noqa: BLE001 - the video is done; a measure that fails is reported beside it
            logger.warning("row %s: evaluation failed: %s", spec["row"], one_line(exc))
            return {"eval_error": one_line(exc), "seconds_evaluate": time.perf_counter() - started}
        values = {f"eval_{key}": m.value for key, m in report.measures.items()}
        return {**values, "seconds_evaluate": time.perf_counter() - started}


def _device_label(device: str) -> str:
    """The device a job runs on, with the GPU's name (``cuda:0 NVIDIA H100``)."""
    import torch

    from ..render import pick_device

    dev = pick_device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return str(dev)
