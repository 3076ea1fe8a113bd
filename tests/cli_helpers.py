"""Helpers for the hallo-render tests: a model folder whose face stage runs, short real audio, one-line errors."""

from __future__ import annotations

import os
import shutil
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from asset_paths import LANDMARKER_TASK
from hallo_nodes.pipeline.cli import main

TASK_NAME = "face_landmarker_v2_with_blendshapes.task"


def add_face_task(models: Path, assets: Path) -> Path:
    """Put the real MediaPipe ``.task`` into ``face_analysis/models`` (the tiny folder has no landmarker)."""
    dst = models / "face_analysis" / "models" / TASK_NAME
    if not dst.is_file():
        shutil.copyfile(LANDMARKER_TASK, dst)
    return models


def short_speech(assets: Path, dst: Path, seconds: float = 0.4) -> Path:
    """The first ``seconds`` of the real 44.1 kHz speech asset as a wav (renders one short clip)."""
    with wave.open(str(assets / "audio" / "speech_7s_44k.wav")) as src:
        params = src.getparams()
        frames = src.readframes(int(seconds * src.getframerate()))
    with wave.open(str(dst), "wb") as out:
        out.setparams(params)
        out.writeframes(frames)
    return dst


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str], entry=main) -> tuple[int, str]:
    """Run ``hallo-render`` (or another ``entry`` such as hallo-batch's main) in-process; (exit status, stderr).
    argparse's exits count as statuses."""
    capsys.readouterr()
    try:
        code = entry(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_one_line_error(err: str, *names: str) -> str:
    """The error is one ``hallo-render: error:`` line (no traceback) that names every one of ``names``."""
    lines = [line for line in err.splitlines() if line.startswith("hallo-render: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


#: Python that a child process runs last (an ``atexit`` hook registered first) to write its own peak RSS in MB to
#: the file named by ``HALLO_TEST_PEAK_FILE``. ``getrusage``'s ``ru_maxrss`` would not do: Linux carries the
#: parent's peak over ``fork``/``exec`` into the child's figure, so a child of a 4 GB pytest reports 4 GB.
#: VmHWM in ``/proc/self/status`` is the high-water mark of the process's own memory since ``exec``.
RECORD_OWN_PEAK = (
    "import atexit, os\n"
    "def _record_peak():\n"
    "    hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0].split()[1]\n"
    "    open(os.environ['HALLO_TEST_PEAK_FILE'], 'w').write(str(int(hwm) // 1024))\n"
    "atexit.register(_record_peak)\n"
)


def own_peak_mb(peak_file: Path) -> int:
    """The peak RSS (MB) a child that ran :data:`RECORD_OWN_PEAK` wrote; fails the test when it wrote none."""
    if not peak_file.is_file():
        pytest.fail(f"the child process recorded no peak memory in {peak_file} (it did not exit through atexit)")
    return int(peak_file.read_text())


@contextmanager
def as_nobody() -> Iterator[None]:
    """Root reads through permission bits: the unreadable cases run as user 'nobody' (CI runs as root)."""
    if os.name != "posix" or os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
