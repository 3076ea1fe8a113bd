"""The results table (``results.jsonl``, and ``results.parquet`` when pyarrow is installed), the progress bar
over jobs and the summary.

The JSONL file is rewritten atomically after every finished job, so an interrupted run still leaves a table of
what it finished. One row per job, in the jobs file's order.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATUSES = ("done", "skipped", "failed", "cancelled")


def _temporary(path: Path) -> Path:
    """A new empty file beside ``path``, unique to this call, with the umask's permissions."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _publish(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then move it there in one step."""
    tmp = _temporary(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ResultsTable:
    """Rows by job (row number), written to ``folder/results.jsonl`` (and Parquet on :meth:`close`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "results.jsonl"
        self.rows: dict[int, dict[str, Any]] = {}

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["row"]] = row
        self.write_jsonl()

    def ordered(self) -> list[dict[str, Any]]:
        return [self.rows[k] for k in sorted(self.rows)]

    def write_jsonl(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(row) + "\n" for row in self.ordered())
        _publish(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def close(self) -> Path | None:
        """Write both tables; the Parquet path, or None without pyarrow."""
        self.write_jsonl()
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:  # not installed, or built for another NumPy
            logger.info("results.parquet not written: pyarrow cannot be imported (%s)", exc)
            return None
        rows = self.ordered()
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
        path = self.folder / "results.parquet"
        _publish(path, lambda tmp: pq.write_table(table, tmp))
        return path

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.rows.values():
            counts[row["status"]] += 1
        return counts


class JobsProgress:
    """A progress bar over jobs on stderr: done, failed and skipped counts and an ETA from the rendered jobs."""

    def __init__(self, total: int, to_render: int, enabled: bool) -> None:
        self.total, self.to_render, self.enabled = total, to_render, enabled
        self.started = time.perf_counter()
        self.counts = dict.fromkeys(STATUSES, 0)
        self.rendered = 0

    def update(self, status: str) -> None:
        self.counts[status] += 1
        if status != "skipped":
            self.rendered += 1
        self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        finished = sum(self.counts.values())
        elapsed = time.perf_counter() - self.started
        left = self.to_render - self.rendered
        eta = f"ETA {elapsed / self.rendered * left:6.0f}s" if self.rendered and left > 0 else "ETA      -"
        width = 30
        filled = int(width * finished / max(self.total, 1))
        c = self.counts
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total} jobs: "
                         f"{c['done']} done, {c['failed']} failed, {c['skipped']} skipped; "
                         f"{elapsed:6.0f}s elapsed, {eta}")
        if finished == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def summary(table: ResultsTable) -> str:
    """One line of counts, then one line per failed row."""
    counts = table.counts()
    text = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s] or s != "cancelled")
    lines = [f"{len(table.rows)} jobs: {text}; results in {table.path}"]
    for row in table.ordered():
        if row["status"] == "failed":
            lines.append(f"failed: row {row['row']} (line {row['line']}) {row['output']}: {row['error']}")
    return "\n".join(lines)
