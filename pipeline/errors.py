"""Readable names for the pack's own exception classes.

ComfyUI shows a failed node's error as ``<module>.<class>``. It imports a custom node pack under a
module name made from its install path (``/opt/ComfyUI/custom_nodes/hallo-nodes`` with ``.`` written
as ``_x_``), so without care the user sees that path in front of every error name. :func:`public_name`
gives a class the module name it has when the pack is installed as the package ``hallo_nodes``.
"""

from __future__ import annotations

from typing import TypeVar

PACKAGE = "hallo_nodes"

E = TypeVar("E", bound=type)


def public_module(module: str) -> str:
    """``<anything without dots>.pipeline.sampler`` -> ``hallo_nodes.pipeline.sampler``.

    The pack's root name never holds a dot (ComfyUI replaces them), so everything after the first dot is
    the module's path inside the pack.
    """
    _, sep, rest = module.partition(".")
    return f"{PACKAGE}.{rest}" if sep else PACKAGE


def public_name(cls: E) -> E:
    """Class decorator: report ``cls`` as ``hallo_nodes.<module>.<Class>`` wherever the pack is loaded from."""
    cls.__module__ = public_module(cls.__module__)
    return cls
