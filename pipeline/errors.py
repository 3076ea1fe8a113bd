"""The one error type for bad user input: the message names the input at fault and the fix."""

from __future__ import annotations

from pathlib import Path

PIPELINE_DIR = Path(__file__).resolve().parent


class HalloInputError(ValueError):
    """An input (file, folder, option) cannot be used; the message says which and what to do about it."""


def raised_in_pipeline(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is code of ``pipeline/`` (a check of ours, not a library bug)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PIPELINE_DIR)
