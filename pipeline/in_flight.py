"""What this process has in flight: the temporary files renders are writing, and where descriptor 2 really goes
while a native library's logging is captured (:mod:`.native_logs`).

A Ctrl-C that arrives while a library is being imported must end ``hallo-render`` at once (C code that imports
may print the KeyboardInterrupt as a traceback of its own), so the entry point removes these files itself
before it exits. Standard library only: the entry point reads it from its signal handler.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_LOCK = threading.Lock()
_PATHS: set[Path] = set()
#: A duplicate of the real descriptor 2 while :func:`.native_logs.quiet_native_logs` sends 2 to a capture file
#: (None otherwise): a message written just before the process ends must reach the terminal, not the capture.
terminal_stderr: int | None = None


def track(path: Path) -> None:
    """``path`` is being written and is to be removed if the process ends before it is published."""
    with _LOCK:
        _PATHS.add(Path(path))


def untrack(path: Path) -> None:
    """``path`` was published or removed."""
    with _LOCK:
        _PATHS.discard(Path(path))


def remove_all() -> list[Path]:
    """Delete every tracked file (those already gone are skipped); returns what was removed."""
    with _LOCK:
        paths, removed = sorted(_PATHS), []
        _PATHS.clear()
    for path in paths:
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def write_to_terminal(text: str) -> None:
    """Write ``text`` to the real standard error, even while descriptor 2 is captured."""
    fd = terminal_stderr if terminal_stderr is not None else 2
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    except OSError:
        pass
