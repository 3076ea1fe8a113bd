"""The one error type for bad user input: the message names the input at fault and the fix."""

from __future__ import annotations


class HalloInputError(ValueError):
    """An input (file, folder, option) cannot be used; the message says which and what to do about it."""
