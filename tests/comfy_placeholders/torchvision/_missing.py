"""Names of the torchvision placeholder that exist but raise when called."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def raising(module: str, name: str) -> Callable[..., Any]:
    """A stand-in for ``module.name`` that raises when called."""

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{module}.{name} is a test-only placeholder: no torchvision build is installed")

    missing.__name__ = missing.__qualname__ = name
    missing.__module__ = module
    return missing


def module_getattr(module: str) -> Callable[[str], Any]:
    """A PEP 562 ``__getattr__`` giving :func:`raising` stand-ins for public names."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return raising(module, name)

    return __getattr__
