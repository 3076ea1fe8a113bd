"""The jobs file: one video per row (JSONL or CSV), read and checked as a whole before anything renders.

Columns: ``image``, ``audio``, ``out`` and any ``hallo-render`` option under its own name (``lip_weight`` or
``lip-weight``; keyframe schedules as text). Relative paths are relative to the jobs file. Every problem of
every row is collected (row, line, column, one line each), so one run of the checks shows them all.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HalloInputError
from ..file_checks import DIRECTORY, MISSING, file_problem
from ..video.output_path import check_output_path
from .identity import ContentHashes, job_id, stored_job_id
from .options import PATH_COLUMNS, OptionError, RowParser, namespace_to_dict, render_options

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row (``row`` 0: the file itself)."""

    jobs_file: Path
    line: int
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.jobs_file}:{self.line}: row {self.row}" if self.row else f"{self.jobs_file}:{self.line}"
        column = f", column {self.column}" if self.column else ""
        return f"{where}{column}: {' '.join(self.message.split())}"


@dataclass
class Job:
    """One checked row: absolute paths, the options hallo-render makes of it, its id and what to do with it."""

    row: int
    line: int
    image: Path
    audio: Path
    out: Path
    args: dict[str, Any]  # the per-job options as plain values (a worker rebuilds the RenderOptions from them)
    options: Any  # RenderOptions
    job_id: str = ""
    # "render" (no output yet), "replace" (the batch's own older render: inputs or options changed),
    # "skip" (already rendered with this id)
    action: str = "render"
    extra: dict[str, Any] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        """What a worker needs, as JSON-able values."""
        return {"row": self.row, "line": self.line, "image": str(self.image), "audio": str(self.audio),
                "out": str(self.out), "args": self.args, "job_id": self.job_id,
                "replace": self.action == "replace"}


class JobsFileError(HalloInputError):
    """The jobs file as a whole cannot be read (not found, unknown format, not text)."""


def read_rows(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem], list[str] | None]:
    """(line, cells) of every row of a JSONL or CSV file, the rows that could not be read, and the CSV header
    (None for JSONL, where every row names its own columns)."""
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES + CSV_SUFFIXES:
        raise JobsFileError(f"jobs file {path}: name it .jsonl (one JSON object per line) or .csv (a header row "
                            "with image, audio, out and option columns)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a CSV saved by a spreadsheet may start with a BOM
    except FileNotFoundError:
        raise JobsFileError(f"jobs file {path} not found") from None
    except IsADirectoryError:
        raise JobsFileError(f"jobs file {path} is a folder; give the .jsonl or .csv file") from None
    except UnicodeDecodeError:
        raise JobsFileError(f"jobs file {path} is not UTF-8 text") from None
    if suffix in JSONL_SUFFIXES:
        return (*_read_jsonl(path, text), None)
    return _read_csv(path, text)


def _read_jsonl(path: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row = len(rows) + len(problems) + 1
        try:
            cells = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(path, number, row, "", f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(cells, dict):
            problems.append(Problem(path, number, row, "", "a row must be a JSON object such as "
                                    '{"image": "a.jpg", "audio": "a.wav", "out": "a.mp4"}'))
            continue
        rows.append((number, cells))
    return rows, problems


def _read_csv(path: Path, text: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem], list[str]]:
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None)
    if not header:
        return [], [], []
    header = [h.strip() for h in header]
    problems = [Problem(path, 1, 0, name, "the column appears twice in the header")
                for i, name in enumerate(header) if name and name in header[:i]]
    rows = []
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        row = len(rows) + 1
        if len(cells) > len(header):
            problems.append(Problem(path, line, row, "", f"{len(cells)} cells but the header names "
                                    f"{len(header)} columns"))
            rows.append((line, {}))  # keep the row count right; its other problems are moot
            continue
        rows.append((line, {name: value for name, value in zip(header, cells, strict=False) if name}))
    return rows, problems, header


def _resolve(base: Path, value: Any) -> Path:
    path = Path(str(value).strip()).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else base / path))  # '..' folded, links kept


def _same(a: Path, b: Path) -> bool:
    if os.path.normcase(str(a.resolve())) == os.path.normcase(str(b.resolve())):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class JobsChecker:
    """Checks every row of a jobs file against hallo-render's rules and the other rows."""

    def __init__(self, jobs_file: Path, defaults: argparse.Namespace, models: Path, *, force: bool = False,
                 overwrite: bool = False) -> None:
        self.jobs_file = jobs_file
        self.base = jobs_file.resolve().parent
        self.defaults = defaults
        self.models = models
        self.force = force
        self.overwrite = overwrite
        self.parser = RowParser()
        self.hashes = ContentHashes()
        self.problems: list[Problem] = []

    def problem(self, line: int, row: int, column: str, message: str) -> None:
        self.problems.append(Problem(self.jobs_file, line, row, column, message))

    def check(self) -> list[Job]:
        rows, self.problems, header = read_rows(self.jobs_file)
        self.unknown: set[str] = set()
        if header is not None:  # a CSV names its columns once: an unknown one is reported once, on line 1
            for name in header:
                if name and name not in PATH_COLUMNS and self.parser.column(name) is None:
                    self.problem(1, 0, name, self._unknown(name))
                    self.unknown.add(name)
        if not rows and not self.problems:
            raise JobsFileError(f"jobs file {self.jobs_file} has no rows; write one video per row with image, "
                                "audio and out")
        self.paths: list[tuple[int, int, dict[str, Path]]] = []
        jobs = [job for row, (line, cells) in enumerate(rows, start=1)
                if (job := self._row(row, line, cells)) is not None]
        self._across_rows()
        if not self.problems:
            for job in jobs:
                self._identity(job)
        self.problems.sort(key=lambda p: (p.line, p.row))
        return jobs

    def _row(self, row: int, line: int, cells: dict[str, Any]) -> Job | None:
        before = len(self.problems)
        options_cells: dict[str, Any] = {}
        for name, value in cells.items():
            name = str(name).strip()
            if name in PATH_COLUMNS:
                continue
            dest = self.parser.column(name)
            if dest is not None:
                options_cells[dest] = value
            elif name not in self.unknown:
                self.problem(line, row, name, self._unknown(name))
        paths = {}
        for column in PATH_COLUMNS:
            value = cells.get(column)
            if value is None or not str(value).strip():
                self.problem(line, row, column, f"missing; every row needs {', '.join(PATH_COLUMNS)}")
            else:
                paths[column] = _resolve(self.base, value)
        self.paths.append((row, line, paths))
        for column in ("image", "audio"):  # a readable file up front; what it holds is checked when its row renders
            path = paths.get(column)
            problem = None if path is None else file_problem(path)
            if problem is not None:
                kind, text = problem
                what = {MISSING: "not found", DIRECTORY: "is a folder, not a file"}.get(kind, text)
                self.problem(line, row, column, f"{path} {what}")
        namespace = self._options(row, line, options_cells)
        options = None
        if namespace is not None:
            try:
                options = render_options(namespace)
            except (OptionError, ValueError) as exc:
                self.problem(line, row, *self._attribute(str(exc)))
        if "out" in paths:
            self._output(row, line, paths, options)
        if len(self.problems) > before or options is None:
            return None
        return Job(row, line, paths["image"], paths["audio"], paths["out"], namespace_to_dict(namespace), options)

    def _attribute(self, message: str) -> tuple[str, str]:
        """(column, message) for hallo-render's message about one option (``--lip-weight: ...``)."""
        found = re.match(r"--([a-z0-9-]+)(:\s*)?", message)
        if found and (dest := self.parser.column(found.group(1))) is not None:
            return dest, message[found.end():] if found.group(2) else message
        return "", message

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name.replace("-", "_"), self.parser.known_columns(), n=1)
        hint = f"did you mean {close[0]}?" if close else f"the columns are {', '.join(self.parser.known_columns())}"
        return f"not a hallo-render option; {hint}"

    def _options(self, row: int, line: int, cells: dict[str, Any]) -> argparse.Namespace | None:
        namespace, ok = self.defaults, True
        for dest, value in cells.items():  # one cell at a time: each problem names its column
            try:
                namespace = self.parser.parse({dest: value}, base=namespace)
            except OptionError as exc:
                self.problem(line, row, dest, str(exc))
                ok = False
        return namespace if ok else None

    def _output(self, row: int, line: int, paths: dict[str, Path], options: Any) -> None:
        out = paths["out"]
        try:
            check_output_path(out, inputs={k: v for k, v in paths.items() if k != "out"}, models=self.models,
                              overwrite=True)
        except HalloInputError as exc:
            self.problem(line, row, "out", str(exc))
            return
        if _same(out, self.jobs_file):
            self.problem(line, row, "out", f"{out} is the jobs file itself; choose another output name")

    def _across_rows(self) -> None:
        """Two rows writing one file, or a row writing another row's input (every row with paths counts)."""
        writers: dict[str, tuple[int, int]] = {}
        inputs = [(row, column, paths[column]) for row, _, paths in self.paths for column in ("image", "audio")
                  if column in paths]
        for row, line, paths in self.paths:
            out = paths.get("out")
            if out is None:
                continue
            key = os.path.normcase(str(out.resolve()))
            if key in writers:
                first_row, first_line = writers[key]
                self.problem(line, row, "out", f"{out} is also the output of row {first_row} (line {first_line}); "
                             "give every row its own output")
            else:
                writers[key] = (row, line)
            for other, column, path in inputs:
                if other != row and _same(out, path):  # its own inputs: checked with the row
                    self.problem(line, row, "out", f"{out} is row {other}'s {column} input; writing it would "
                                 "destroy that input: choose another output name")

    def _identity(self, job: Job) -> None:
        """The job's id; whether its output is finished, the batch's own older render, or someone else's file."""
        try:
            job.job_id = job_id(self.hashes(job.image), self.hashes(job.audio), job.options)
        except OSError as exc:
            self.problem(job.line, job.row, "", f"cannot read the inputs ({exc})")
            return
        if not job.out.exists():
            return
        stored = stored_job_id(job.out)
        if stored == job.job_id and not self.force:
            job.action = "skip"
        elif stored is not None or self.overwrite or job.options.overwrite:
            job.action = "replace"
        else:
            self.problem(job.line, job.row, "out", f"{job.out} already exists and was not written by hallo-batch; "
                         "pass --overwrite (or an overwrite column) to replace it, or choose another name")
