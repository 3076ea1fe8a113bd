"""Placeholder ``torchaudio.transforms``: every public name raises when called."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"torchaudio.transforms.{name} is a test-only placeholder: no torchaudio is installed")

    return missing
