"""Opt-in speed switches that do not change the math: channels-last memory format and ``torch.compile``."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import weakref

import torch
from torch import nn

logger = logging.getLogger(__name__)

_COMPILED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # nets whose denoiser is compiled already
CXX_COMPILERS = ("g++", "c++", "clang++", "cl")


def use_channels_last(*modules: nn.Module) -> None:
    """Store the 4-D conv weights channels-last; conv outputs (and the token reshapes after them) follow."""
    for module in modules:
        module.to(memory_format=torch.channels_last)


def compile_denoiser(net: nn.Module, *, mode: str | None = None, backend: str = "inductor",
                     dynamic: bool = False) -> int:
    """``torch.compile`` the pure-tensor pieces of the denoising UNet in place; returns how many.

    Resnets, audio modules, motion modules, resamplers and the spatial blocks' feed-forwards are compiled
    one by one (the reference-bank attention with its per-clip cache stays eager, which keeps the graphs
    free of Python-side state). The first step of a render pays the compile time.
    """
    unet = net.denoising_unet
    targets: list[nn.Module] = []
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        targets += list(block.resnets)
        for name in ("audio_modules", "motion_modules", "downsamplers", "upsamplers"):
            group = getattr(block, name, None)
            if group is not None:
                targets += list(group)
        for transformer in getattr(block, "attentions", []) or []:
            targets += [blk.ff for blk in transformer.transformer_blocks]
    for module in targets:
        module.compile(mode=mode, backend=backend, dynamic=dynamic)
    logger.info("torch.compile: %d denoiser modules (backend %s, mode %s)", len(targets), backend, mode)
    return len(targets)


def compile_problem(device: torch.device | str) -> str | None:
    """Why ``torch.compile`` (inductor) cannot run on ``device`` here (``None`` when it can)."""
    dev = torch.device(device)
    try:
        dynamo = importlib.import_module("torch._dynamo")
        supported = dynamo.is_dynamo_supported()
    except (ImportError, AttributeError, RuntimeError):
        supported = False
    if not supported:
        return f"torch {torch.__version__} has no torch.compile on this Python/platform"
    if dev.type == "cuda":
        return None if importlib.util.find_spec("triton") else "torch.compile on CUDA needs Triton (pip install triton)"
    if dev.type == "cpu":
        cxx = [os.environ["CXX"]] if os.environ.get("CXX") else CXX_COMPILERS
        if not any(shutil.which(c) for c in cxx):
            return "torch.compile on the CPU needs a C++ compiler (g++, clang++ or MSVC cl) on the PATH"
        return None
    return f"torch.compile is not supported on {dev.type} by this pack"


def ensure_compiled(net: nn.Module) -> bool:
    """``compile_denoiser`` once per loaded model; returns True when it compiled now, False if it already was.

    The compiled modules stay compiled for the model's lifetime (same math; reload the model to undo).
    """
    if net in _COMPILED:
        return False
    compile_denoiser(net)
    _COMPILED.add(net)
    return True
