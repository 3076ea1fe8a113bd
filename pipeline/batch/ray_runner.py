"""``--ray``: the jobs as a Ray Data pipeline, one renderer actor per GPU (or per N CPUs without GPUs).

The only module of the pack that imports Ray (``pip install "hallo-nodes[ray]"``). The jobs become a dataset
of one-job blocks; ``map_batches`` runs them on a fixed pool of stateful actors (``RenderActor``), each loading
the networks once. Ray restarts an actor whose process dies (killed, out of memory, node lost) and runs its job
again on a live one; an ``Attempts`` actor counts each job's starts, so after ``retries`` lost workers the job
is recorded as failed instead of tried forever. A job that fails for its own reason is a ``failed`` row returned
by the actor, never an exception: it is not retried and the other jobs go on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from ..errors import HalloInputError
from .worker import JobRunner, result_row

logger = logging.getLogger(__name__)
PIPELINE_LOGGER = __name__.rsplit(".", 2)[0]  # hallo_nodes.pipeline: the jobs' own messages


@ray.remote(num_cpus=0)
class Attempts:
    """How many times each job was started: a worker that dies mid-job leaves its count behind."""

    def __init__(self) -> None:
        self.started: dict[int, int] = {}

    def begin(self, row: int) -> int:
        self.started[row] = self.started.get(row, 0) + 1
        return self.started[row]


class RenderActor:
    """A Ray Data map worker: a ``JobRunner`` (networks loaded once) over batches of job specs."""

    def __init__(self, models: str, evaluate: bool, attempts: Any, retries: int, log_level: int,
                 threads: int | None = None) -> None:
        logging.basicConfig(level=log_level, format="%(levelname)s %(message)s")
        logging.getLogger(PIPELINE_LOGGER).setLevel(log_level)
        if threads is not None:  # a CPU worker computes on the CPUs it was given
            import torch

            torch.set_num_threads(threads)
        self.runner = JobRunner(models, evaluate=evaluate)
        self.attempts = attempts
        self.retries = retries

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"result": np.array([json.dumps(self._one(json.loads(str(text)))) for text in batch["job"]],
                                   dtype=object)}

    def _one(self, spec: dict[str, Any]) -> dict[str, Any]:
        attempt = ray.get(self.attempts.begin.remote(spec["row"]))
        if attempt > self.retries + 1:
            lost = attempt - 1
            return result_row(spec, "failed", attempt=lost, error=f"the worker rendering it was lost {lost} times "
                              "(killed, out of memory or node lost); not tried again (--retries "
                              f"{self.retries})")
        return self.runner.run(spec, attempt=attempt)


@contextmanager
def connected(address: str | None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Connected to the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or to a new local one
    started here (None) and shut down afterwards. An already connected driver is used as it is."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, **kwargs)  # a new cluster, never someone else's
    else:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise HalloInputError(f"--ray {address}: no Ray cluster answers there ({exc}); start one with `ray "
                                  "start --head`, give the head's address (ray://host:10001), or use --ray alone "
                                  "for a cluster on this machine") from None
    try:
        yield
    finally:
        ray.shutdown()


def pool(gpus_per_worker: float, cpus_per_worker: float, workers: int | None, jobs: int
         ) -> tuple[int, dict[str, float]]:
    """(actors, resources per actor): one per ``gpus_per_worker`` GPUs, or per ``cpus_per_worker`` CPUs on a
    cluster without GPUs; ``workers`` caps the count, and there are never more actors than jobs."""
    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    if gpus_per_worker > 0 and gpus >= gpus_per_worker:
        per, fits = {"num_gpus": gpus_per_worker}, int(gpus // gpus_per_worker)
    else:
        per, fits = {"num_cpus": cpus_per_worker}, int(cpus // cpus_per_worker)
    if fits < 1:
        raise HalloInputError(f"the Ray cluster has {gpus:g} GPUs and {cpus:g} CPUs, not enough for one worker "
                              f"(--gpus-per-worker {gpus_per_worker:g}, --cpus-per-worker {cpus_per_worker:g})")
    size = min(workers or fits, fits, jobs)
    logger.info("Ray cluster: %g GPUs, %g CPUs; %d render worker(s) with %s each", gpus, cpus, size,
                ", ".join(f"{v:g} {k[4:].upper()}" for k, v in per.items()))
    return size, per


def run_on_ray(specs: list[dict[str, Any]], models: Path, *, gpus_per_worker: float, cpus_per_worker: float,
               workers: int | None, retries: int, evaluate: bool,
               on_result: Callable[[dict[str, Any]], None]) -> None:
    """Render ``specs`` on the connected cluster; ``on_result`` gets each result row as it arrives."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # hallo-batch draws its own bar over jobs
    if logging.getLogger(PIPELINE_LOGGER).getEffectiveLevel() > logging.INFO:  # without -v: no execution log
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    size, per_worker = pool(gpus_per_worker, cpus_per_worker, workers, len(specs))
    attempts = Attempts.remote()
    dataset = ray.data.from_items([{"job": json.dumps(spec)} for spec in specs], override_num_blocks=len(specs))
    rendered = dataset.map_batches(
        RenderActor, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs={"models": str(models), "evaluate": evaluate, "attempts": attempts,
                               "retries": retries,
                               "log_level": logging.getLogger(PIPELINE_LOGGER).getEffectiveLevel(),
                               "threads": max(1, int(per_worker["num_cpus"])) if "num_cpus" in per_worker else None},
        compute=ray.data.ActorPoolStrategy(size=size), **per_worker)
    for row in rendered.iter_rows():
        on_result(json.loads(str(row["result"])))
