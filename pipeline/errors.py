"""The pack's own error types and how they are named.

:class:`HalloInputError` is the one error type for bad user input: the message names the input at fault
and the fix. ComfyUI shows a failed node's error as ``<module>.<class>``. It imports a custom node pack
under a module name made from its install path (``/opt/ComfyUI/custom_nodes/hallo-nodes`` with ``.``
written as ``_x_``), so without care the user sees that path in front of every error name.
:func:`public_name` gives a class the module name it has when the pack is installed as ``hallo_nodes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

PIPELINE_DIR = Path(__file__).resolve().parent
PACKAGE = "hallo_nodes"

E = TypeVar("E", bound=type)


def public_module(module: str) -> str:
    """``<anything without dots>.pipeline.sampling.sampler`` -> ``hallo_nodes.pipeline.sampling.sampler``.

    The pack's root name never holds a dot (ComfyUI replaces them), so everything after the first dot is
    the module's path inside the pack.
    """
    _, sep, rest = module.partition(".")
    return f"{PACKAGE}.{rest}" if sep else PACKAGE


def public_name(cls: E) -> E:
    """Class decorator: report ``cls`` as ``hallo_nodes.<module>.<Class>`` wherever the pack is loaded from."""
    cls.__module__ = public_module(cls.__module__)
    return cls


@public_name
class HalloInputError(ValueError, TypeError):
    """An input (file, folder, option, a node's socket) cannot be used; the message says which and what to do.

    The pack's one input error: a ``ValueError`` (a bad value) and a ``TypeError`` (a node input of the wrong
    type), so either ``except`` clause catches it."""


def raised_in_pipeline(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is code of ``pipeline/`` (a check of ours, not a library bug)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PIPELINE_DIR)
