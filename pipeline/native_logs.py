"""The native libraries' own logging kept off the terminal: MediaPipe / TensorFlow Lite (absl, glog) and
onnxruntime write straight to file descriptor 2, around Python's ``logging``.

:func:`quiet_native_logs` runs a native call (a model load, an inference) with descriptor 2 sent to a temporary
file. What the libraries wrote there goes to this module's logger at debug level; any other line (another
thread's message that happened to be written meanwhile) is written back to the real descriptor 2 unchanged.
Descriptor 2 belongs to the whole process, so the redirection is held under one lock, only around the native
call, and always restored: inside ComfyUI its console and log keep working as before.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from . import in_flight

logger = logging.getLogger(__name__)

#: Lines the native libraries write: glog/absl records (``W0000 00:00:...`` or ``E20240101 ...``), absl's and
#: glog's start-up notes, TensorFlow Lite's ``INFO:``/``WARNING:``/``ERROR:`` lines and onnxruntime's
#: ``2024-01-01 00:00:00.000 [W:onnxruntime:...]`` records.
NATIVE_LINE = re.compile(
    r"^(?:[IWEF]\d{4,8} [\d:. ]+|"
    r"WARNING: (?:All log messages before absl::InitializeLog|Logging before InitGoogle)|"
    r"(?:INFO|WARNING|ERROR|VERBOSE): |"
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \[[VIWEF]:onnxruntime)"
)
#: Environment defaults that lower what glog and TensorFlow write before any of it reaches descriptor 2.
QUIET_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}

_LOCK = threading.RLock()
_depth = 0


def quiet_native_env() -> None:
    """Set :data:`QUIET_ENV` where the user has not set those variables (before a native library loads)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)


@contextmanager
def quiet_native_logs(what: str) -> Iterator[None]:
    """Run the body with descriptor 2 captured; re-emit the capture (``what`` names the call in the debug log).

    Nested uses capture once, in the outermost. Where descriptor 2 cannot be duplicated (closed, say) the body
    runs as it is."""
    global _depth
    with _LOCK:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        capture = tempfile.TemporaryFile()
        _flush_stderr()
        in_flight.terminal_stderr = saved
        os.dup2(capture.fileno(), 2)
        _depth = 1
        try:
            yield
        finally:
            _depth = 0
            _flush_stderr()
            os.dup2(saved, 2)
            in_flight.terminal_stderr = None
            os.close(saved)
            _replay(capture, saved_fd=2, what=what)


def _flush_stderr() -> None:
    """Flush what Python buffered for descriptor 2, so that it lands on the side it was written for."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or detached stream
            pass


def _replay(capture, saved_fd: int, what: str) -> None:
    """Native lines to the debug log, anything else back to ``saved_fd``; closes ``capture``."""
    with capture:
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
    others = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if NATIVE_LINE.match(line):
            logger.debug("%s: %s", what, line)
        else:
            others.append(line)
    if others:
        try:
            os.write(saved_fd, ("\n".join(others) + "\n").encode())
        except OSError:
            pass
