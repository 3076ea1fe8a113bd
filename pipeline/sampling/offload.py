"""The moves behind low-VRAM mode: a module on the GPU only while it runs, parked on the CPU otherwise.

:class:`.residency.TorchResidency` is built on these; the benchmark uses them directly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

logger = logging.getLogger(__name__)


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of the module's first parameter (CPU for a parameterless module)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device | str, offload: bool = True,
              home: torch.device | str = "cpu") -> Iterator[torch.nn.Module]:
    """Run a block with ``module`` on ``device``; when ``offload``, send it back to ``home`` afterwards.

    Without ``offload`` this is a no-op (the module is used wherever it is).
    """
    if not offload:
        yield module
        return
    device = torch.device(device)
    moved = module_device(module) != device
    if moved:
        module.to(device)
    try:
        yield module
    finally:
        if moved or module_device(module) != torch.device(home):
            module.to(home)
            if device.type == "cuda":
                torch.cuda.empty_cache()


def offload_to_cpu(*modules: torch.nn.Module, home: torch.device | str = "cpu") -> None:
    """Park modules on the CPU (the start of a low-VRAM render)."""
    for module in modules:
        module.to(home)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_gpu_memory(device: torch.device | str) -> int | None:
    """Peak allocated CUDA memory in bytes since the last reset, or None off CUDA."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))
