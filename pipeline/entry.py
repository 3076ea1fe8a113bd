"""Console entry points of ``hallo-render``, ``hallo-eval`` and ``hallo-batch``: Ctrl-C at any moment, imports
included, exits with status 130 and one line.

This module imports only the standard library (and :mod:`.in_flight`, which does too); the command's own module
(torch, diffusers, onnxruntime ...) is imported inside the guard. While it is imported, a C extension may turn
the KeyboardInterrupt into an error of its own (an ImportError, a SystemError): a flag set by the SIGINT handler
tells those apart from real errors. A Ctrl-C inside any import ends the process from the handler (C code that
imports may print the interrupt as a traceback first), after removing the temporary files of renders in flight.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from . import in_flight

CANCELLED = "cancelled; no output was written"

_state = {"prog": "hallo-render", "guarded": False, "interrupted": False}


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _state["interrupted"] = True
    if not _state["guarded"]:  # between this module's import and the guard: nothing to clean up yet
        _exit_now()
    if _importing(frame):
        # C code that imports (torch's, for one) may print a KeyboardInterrupt raised here as a traceback before
        # handing it on: end now, removing the temporary files of renders in flight (imports write nothing)
        in_flight.remove_all()
        _exit_now()
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    """Whether the interrupted code runs inside Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _exit_now() -> None:
    try:
        sys.stderr.flush()  # what was written before the goodbye goes first
    except (OSError, ValueError):
        pass
    in_flight.write_to_terminal(f"{_state['prog']}: {CANCELLED}\n")  # the terminal even while 2 is captured
    os._exit(130)


def _install() -> None:
    try:
        signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # pragma: no cover - not the main thread (imported by a test or a tool)
        pass


_install()  # at import: the console script calls a function of this module right after importing it


def guarded(prog: str, module: str, argv: list[str] | None = None) -> int:
    """Import ``hallo_nodes.pipeline.<module>`` and run its ``main(argv)``; Ctrl-C -> 130 with one line."""
    _state["prog"] = prog  # a Ctrl-C before the next line exits from the handler: nothing to clean up yet
    try:
        _state["guarded"] = True  # from here a Ctrl-C raises KeyboardInterrupt, caught below
        main: Callable[[list[str] | None], int] = importlib.import_module(f"{__package__}.{module}").main
        return main(argv)
    except KeyboardInterrupt:
        return _cancelled(prog)
    except SystemExit:
        raise
    except BaseException:
        if _state["interrupted"]:  # Ctrl-C inside an import or a library call that re-raised it as its own error
            return _cancelled(prog)
        raise
    finally:
        _state["guarded"] = False


def _cancelled(prog: str) -> int:
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the goodbye
    except ValueError:  # pragma: no cover - not the main thread
        pass
    sys.stderr.write(f"{prog}: {CANCELLED}\n")
    sys.stderr.flush()
    return 130


def render(argv: list[str] | None = None) -> int:
    """``hallo-render``."""
    return guarded("hallo-render", "cli", argv)


def evaluate(argv: list[str] | None = None) -> int:
    """``hallo-eval``."""
    return guarded("hallo-eval", "eval_cli", argv)


def batch(argv: list[str] | None = None) -> int:
    """``hallo-batch``."""
    return guarded("hallo-batch", "batch.cli", argv)
