"""The embedded runner: every job in this process, one after the other, with the networks loaded once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .jobs import Job
from .worker import JobRunner


def load_order(job: Job) -> tuple:
    """Jobs that share networks (variant, precision, device, speed switches) run next to each other."""
    o = job.options
    return (o.variant, o.device, o.dtype, str(o.vae_dtype), o.channels_last, str(o.compile), o.fp8)


def run_local(jobs: list[Job], models: Path, *, evaluate: bool, on_result: Callable[[dict[str, Any]], None]) -> None:
    """Render ``jobs`` here; ``on_result`` gets each job's result row as it finishes. Ctrl-C propagates (the job
    being rendered leaves no file)."""
    runner = JobRunner(models, evaluate=evaluate)
    for job in sorted(jobs, key=load_order):
        on_result(runner.run(job.spec()))
