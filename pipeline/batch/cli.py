"""``hallo-batch JOBS``: render every row of a jobs file, here (default) or on a Ray cluster (``--ray``).

Exit status: 0 when every job is done or skipped, 1 when any failed (the summary names the rows), 2 when the
jobs file or the command line is refused (nothing rendered), 130 / 143 after Ctrl-C / SIGTERM (finished videos
stay, no temporary file is left; run the same command again to resume).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import cli as render_cli
from ..errors import HalloInputError
from ..paths import HF_REPO, ModelFolder
from .jobs import Job, JobsChecker, Problem
from .options import RowParser, add_job_options
from .results import JobsProgress, ResultsTable, summary
from .worker import remove_stale_partials, result_row

logger = logging.getLogger("hallo_nodes")

PROG = "hallo-batch"
LOCAL_RAY = ""  # --ray without an address: a Ray cluster on this machine, started for this run


def retries_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more (0 = a job whose worker dies fails)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = render_cli.Parser(
        prog=PROG,
        description="Render many talking-portrait videos from a jobs file, loading the networks once. JOBS is a "
        "JSONL or CSV file with one video per row: image, audio, out and any hallo-render option as a column "
        "(preset, seed, size, lip_weight with keyframes, ...). Relative paths are relative to JOBS. The whole "
        "file is checked before anything renders. Without --ray, jobs run in this process one after the other; "
        "with --ray, on a Ray cluster with one renderer per GPU.",
        epilog="Every hallo-render option above sets the default for every row; a row's own column wins. A rerun "
        "renders only what is missing or changed (inputs, options or the pack's version); --force renders all. "
        "Results: results.jsonl (and results.parquet with pyarrow) beside the outputs.",
    )
    p.add_argument("jobs", type=Path, metavar="JOBS", help="the jobs file (.jsonl or .csv)")
    p.add_argument("--models", type=Path, required=True, metavar="DIR", help=f"model folder laid out like {HF_REPO}")
    p.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                   help="run on a Ray cluster: auto (the cluster this machine belongs to), ray://host:10001, "
                   "host:6379; --ray alone starts a local one for this run. Needs pip install 'hallo-nodes[ray]'")
    p.add_argument("--gpus-per-worker", type=render_cli.positive_float, default=1.0,
                   help="with --ray: GPUs per renderer (default 1: one renderer per GPU)")
    p.add_argument("--cpus-per-worker", type=render_cli.positive_float, default=1.0,
                   help="with --ray on a cluster without GPUs: CPUs per renderer (default 1)")
    p.add_argument("--workers", type=render_cli.positive_int, default=None,
                   help="with --ray: at most this many renderers (default: as many as the cluster fits)")
    p.add_argument("--retries", type=retries_int, default=2,
                   help="with --ray: how many times a job whose worker died (killed, out of memory, node lost) "
                   "runs again on another worker (default 2); a job failing on its own is never retried")
    p.add_argument("--force", action="store_true", help="render every job, also those already finished")
    p.add_argument("--evaluate", action="store_true",
                   help="add hallo-eval's measures (identity, lip sync, seams, colour drift) of each video to the "
                   "results")
    p.add_argument("--results", type=Path, metavar="DIR",
                   help="folder for results.jsonl / results.parquet (default: the folder of the outputs)")
    p.add_argument("--from-workflow", type=Path, metavar="WORKFLOW_API_JSON",
                   help="take the sampler, face and audio settings from a ComfyUI workflow saved in API format "
                   "(command-line options and columns override them)")
    p.add_argument("--workflow-node", metavar="ID",
                   help="with --from-workflow: the sampler node to take the settings of, when there are several")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no info messages")
    p.add_argument("-v", "--verbose", action="store_true", help="also every job's own messages (as hallo-render's)")
    group = p.add_argument_group("hallo-render options (defaults for every row)")
    add_job_options(group)
    for action in group._group_actions:  # noqa: SLF001 - only what the command line sets lands in the namespace
        action.default = argparse.SUPPRESS
    return p


def report(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    sys.stderr.flush()


def _defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Built-in defaults, then the workflow's settings, then the options given on this command line."""
    from .workflow import workflow_settings

    rows = RowParser()
    defaults = rows.defaults()
    if args.from_workflow is not None:
        defaults = rows.parse(workflow_settings(args.from_workflow, args.workflow_node), base=defaults)
    elif args.workflow_node is not None:
        parser.error("--workflow-node needs --from-workflow")
    given = {dest: getattr(args, dest) for dest in rows.actions if hasattr(args, dest)}
    if "size" in given and not {"width", "height"} & set(given):
        defaults.width = defaults.height = None  # --size replaces the workflow's width and height
    for dest, value in given.items():
        setattr(defaults, dest, value)
    return defaults


def _results_folder(args: argparse.Namespace, jobs: list[Job]) -> Path:
    if args.results is not None:
        return args.results
    parents = {str(job.out.parent.resolve()) for job in jobs}
    try:
        common = Path(os.path.commonpath(sorted(parents)))
    except ValueError:  # different drives
        common = None
    return common if common is not None and common != Path(common.anchor) else args.jobs.resolve().parent


def _check_ray(args: argparse.Namespace) -> None:
    if args.ray is None:
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise HalloInputError("--ray needs Ray, which is not installed: pip install 'hallo-nodes[ray]' (or run "
                              "without --ray: the jobs then render in this process)") from None


class Batch:
    """One run: the checked jobs, the results table, the progress bar."""

    def __init__(self, args: argparse.Namespace, jobs: list[Job]) -> None:
        self.args, self.jobs = args, jobs
        self.table = ResultsTable(_results_folder(args, jobs))
        self.to_render = [job for job in jobs if job.action != "skip"]
        self.progress = JobsProgress(len(jobs), len(self.to_render), enabled=not args.quiet)

    def record(self, row: dict[str, Any]) -> None:
        self.table.add(row)
        self.progress.update(row["status"])
        if row["status"] == "failed" and not self.args.quiet:
            sys.stderr.write(f"\nrow {row['row']} failed: {row['error']}\n")

    def run(self) -> int:
        for job in self.jobs:
            if job.action == "skip":
                self.record(result_row(job.spec(), "skipped"))
        self._clean_partials(wait=0.0)
        started = time.perf_counter()
        try:
            if self.to_render:
                self._render()
        except KeyboardInterrupt as exc:
            self._finish_unrendered("cancelled")
            logger.error("%s; finished videos are kept, no temporary file is left: run the same command to resume",
                         "terminated (SIGTERM)" if isinstance(exc, render_cli.Terminated) else "cancelled")
            return 143 if isinstance(exc, render_cli.Terminated) else 130
        except Exception as exc:  # the runner itself broke (a Ray cluster lost, workers that cannot start)
            self._finish_unrendered("failed", f"not rendered: the batch stopped ({type(exc).__name__}: {exc})")
            raise
        self._clean_partials(wait=10.0)
        self.table.close()
        logger.info("rendered %d job(s) in %.1f s", len(self.to_render), time.perf_counter() - started)
        sys.stderr.write(summary(self.table) + "\n")
        return 1 if self.table.counts()["failed"] else 0

    def _render(self) -> None:
        from .local import load_order, run_local

        args = self.args
        if args.ray is None:
            run_local(self.to_render, args.models, evaluate=args.evaluate, on_result=self.record)
            return
        from .ray_runner import connected, run_on_ray

        specs = [job.spec() for job in sorted(self.to_render, key=load_order)]  # jobs sharing networks together
        with connected(args.ray or None):
            run_on_ray(specs, args.models, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                       workers=args.workers, retries=args.retries, evaluate=args.evaluate, on_result=self.record)

    def _finish_unrendered(self, status: str, error: str | None = None) -> None:
        """Record the jobs that did not finish, remove what their workers left, write the table."""
        for job in self.to_render:
            if job.row not in self.table.rows:
                self.table.rows[job.row] = result_row(job.spec(), status, error=error and " ".join(error.split()))
        self._clean_partials(wait=10.0)
        self.table.close()
        sys.stderr.write("\n" + summary(self.table) + "\n")

    def _clean_partials(self, wait: float) -> None:
        """Remove temporary files of this batch's outputs left by workers that are gone (waiting up to ``wait``
        seconds for workers that are still shutting down)."""
        deadline = time.monotonic() + wait
        outputs = [job.out for job in self.to_render]
        while True:
            for out in outputs:
                remove_stale_partials(out)
            left = [out for out in outputs if any(out.parent.glob(f".{out.stem}.*.partial{out.suffix}"))]
            if not left or time.monotonic() >= deadline:
                if left:
                    logger.warning("temporary files of a still running render remain beside %s", left[0])
                return
            time.sleep(0.2)


def _problems_message(jobs_file: Path, problems: list[Problem]) -> None:
    rows = {p.row for p in problems}
    sys.stderr.write(f"{PROG}: error: {jobs_file}: {len(problems)} problem(s) in {len(rows)} row(s); nothing "
                     "was rendered:\n")
    for problem in problems:
        sys.stderr.write(f"  {problem}\n")
    sys.stderr.flush()


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_ray(args)
    folder = ModelFolder.at(args.models)
    defaults = _defaults(args, parser)
    checker = JobsChecker(args.jobs, defaults, folder.root, force=args.force,
                          overwrite=bool(getattr(defaults, "overwrite", False)))
    jobs = checker.check()
    if checker.problems:
        _problems_message(args.jobs, checker.problems)
        return 2
    logger.info("%s: %d job(s), %d to render", args.jobs, len(jobs), sum(j.action != "skip" for j in jobs))
    return Batch(args, jobs).run()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    with render_cli.sigterm_raises(), _job_messages(args):
        try:
            return _run(args, parser)
        except render_cli.INPUT_ERRORS as exc:
            if not render_cli.is_input_error(exc):
                raise
            report(str(exc))
            return 2


@contextmanager
def _job_messages(args: argparse.Namespace) -> Iterator[None]:
    """The bar and the summary tell the story: a job's own info messages only with -v (levels restored after)."""
    loggers = {logging.getLogger(render_cli.__name__.rsplit(".", 1)[0]): logging.WARNING,
               logging.getLogger(__name__.rsplit(".", 1)[0]): logging.WARNING if args.quiet else logging.INFO}
    before = {log: log.level for log in loggers}
    if not args.verbose:
        for log, level in loggers.items():
            log.setLevel(level)
    try:
        yield
    finally:
        for log, level in before.items():
            log.setLevel(level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
