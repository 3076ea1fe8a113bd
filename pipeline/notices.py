"""User-facing warnings that reach the console and the node that caused them.

A ComfyUI user watches the graph, not the console. :func:`notice` logs a warning and, while a node runs
inside :func:`collect_notices`, also hands the text to that node, which shows it on its face (the
``"text"`` entry of its ``ui`` output). ``once=True`` logs a message only the first time, but still shows
it on the node on every run. A node collecting with its name gets every message starting with that name (the
pipeline's own notices do not know which node runs them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ACTIVE: ContextVar[tuple[list[str], str] | None] = ContextVar("hallo_notices", default=None)
_LOGGED: set[str] = set()


def notice(logger: logging.Logger, message: str, *, once: bool = False, short: str = "") -> None:
    """Log ``message`` as a warning (only the first time with ``once``) and pass it to the running node.

    ``short``: what the node shows instead, one or two lines without paths (the log keeps ``message``).
    """
    active = _ACTIVE.get()
    shown = message
    if active is not None:
        notes, node = active
        text = short or message
        on_node = text if not node or text.startswith(f"{node}:") else f"{node}: {text}"
        if on_node not in notes:
            notes.append(on_node)
        shown = message if not node or message.startswith(f"{node}:") else f"{node}: {message}"
    if once:
        if message in _LOGGED:
            return
        _LOGGED.add(message)
    logger.warning(shown)


@contextmanager
def collect_notices(node: str = "") -> Iterator[list[str]]:
    """Collect the notices raised inside the block (nested blocks collect their own), each starting with
    ``node:`` when a node name is given."""
    notes: list[str] = []
    token = _ACTIVE.set((notes, node))
    try:
        yield notes
    finally:
        _ACTIVE.reset(token)
