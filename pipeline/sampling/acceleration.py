"""Opt-in speed switches that do not change the math: channels-last memory format and ``torch.compile``.

Compile modes (``COMPILE_MODES``; none is on by default):

* ``default``: the pure-tensor pieces of the denoising UNet compiled one by one (works on any device).
* ``reduce-overhead``: the whole denoising UNet forward compiled into one graph per input shape and replayed
  as CUDA graphs (CUDA only). The shapes are fixed for a render (one for the CFG batch, one for the
  conditional rows alone), so each compiles once; the per-clip reference bank is prepared outside the graph.
* ``max-autotune-no-cudagraphs``: the whole forward, with autotuned kernels and no CUDA graphs.

The FP8 matmul path for Hopper and Ada lives in :mod:`.fp8`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import weakref

import torch
from torch import nn

from ..errors import HalloInputError
from ..models.reference_bank import ReferenceBank
from ..models.unet_inputs import UNetConditions
from .compile_modes import COMPILE_MODES, WHOLE_UNET_MODES

logger = logging.getLogger(__name__)

_COMPILED: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # nets whose denoiser is compiled already
CXX_COMPILERS = ("g++", "c++", "clang++", "cl")


def use_channels_last(*modules: nn.Module) -> None:
    """Store the 4-D conv weights channels-last; conv outputs (and the token reshapes after them) follow."""
    for module in modules:
        module.to(memory_format=torch.channels_last)


def compile_mode(value: str | bool | None, device: torch.device | str, *, option: str = "compile") -> str:
    """Normalise a compile option (False/None = ``off``, True = ``default``) and check it fits ``device``.

    Raises :class:`HalloInputError` naming ``option`` for an unknown mode, or for CUDA graphs off CUDA.
    """
    if value is None or value is False:
        return "off"
    mode = "default" if value is True else str(value)
    if mode not in COMPILE_MODES:
        raise HalloInputError(f"{option} {mode!r} is not a compile mode; use one of {', '.join(COMPILE_MODES)}")
    device_type = torch.device(device).type
    if mode == "reduce-overhead" and device_type != "cuda":
        raise HalloInputError(
            f"{option} 'reduce-overhead' replays CUDA graphs and needs a CUDA device; this render runs on "
            f"{device_type}. Use {option} 'default' or 'max-autotune-no-cudagraphs' there, or 'off'.")
    return mode


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


def prepare_bank(unet: nn.Module, bank: ReferenceBank, dtype: torch.dtype, device: torch.device) -> None:
    """Fill the bank's per-clip caches (reference keys/values, row routing) outside any compiled graph.

    The same projections the attention would compute at its first call, so the output does not change.
    """
    bank.routing(device)
    for path in bank.reference:
        bank.reference_kv(path, unet.get_submodule(path).transformer_blocks[0].attn1, dtype)


class StaticStep:
    """The denoising UNet's forward, compiled whole; Python-side per-clip state is prepared before the graph.

    With CUDA graphs every call starts a new graph step and its output is copied out of the graph's
    memory pool (the next replay overwrites it, and multistep solvers keep earlier outputs).
    """

    def __init__(self, unet: nn.Module, compiled, cudagraphs: bool) -> None:
        self.unet, self.compiled, self.cudagraphs = unet, compiled, cudagraphs

    def __call__(self, latents: torch.Tensor, timestep: torch.Tensor | float, ctx: UNetConditions) -> torch.Tensor:
        if ctx.bank is not None:
            prepare_bank(self.unet, ctx.bank, latents.dtype, latents.device)
        if not torch.is_tensor(timestep):
            timestep = torch.tensor(timestep, device=latents.device)
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
            return self.compiled(latents, timestep, ctx).clone()
        return self.compiled(latents, timestep, ctx)


def compile_denoising_unet(net: nn.Module, *, mode: str | None, backend="inductor",
                           fullgraph: bool = False) -> StaticStep:
    """Compile the whole denoising UNet forward in place (``unet.forward`` becomes a :class:`StaticStep`).

    ``dynamic=False``: each input shape (the CFG batch, the conditional rows alone) gets its own graph.
    """
    unet = net.denoising_unet
    forward = unet.forward
    if isinstance(forward, StaticStep):
        raise ValueError("the denoising UNet is compiled already")
    kwargs = {} if mode is None else {"mode": mode}
    compiled = torch.compile(forward, backend=backend, dynamic=False, fullgraph=fullgraph, **kwargs)
    step = StaticStep(unet, compiled, cudagraphs=mode == "reduce-overhead" and backend == "inductor")
    unet.forward = step
    logger.info("torch.compile: the whole denoising UNet (backend %s, mode %s)", backend, mode)
    return step


def apply_speedups(net: nn.Module, vae: nn.Module | None, device: torch.device | str, *,
                   channels_last: bool = False, compile: str | bool | None = "off", fp8: bool = False,
                   backend="inductor") -> dict[str, object]:
    """Apply the opt-in switches (each refused with a clear message where it cannot work); returns what ran.

    Order: FP8 first (it swaps the Linear weights), then the memory format, then the compile that traces both.
    """
    mode = compile_mode(compile, device)
    applied: dict[str, object] = {"channels_last": bool(channels_last), "compile": mode, "fp8": False}
    if fp8:
        from .fp8 import enable_fp8

        applied["fp8"] = enable_fp8(net, device) > 0
    if channels_last:
        use_channels_last(*(m for m in (net, vae) if m is not None))
    if mode == "default":
        compile_denoiser(net, backend=backend)
    elif mode in WHOLE_UNET_MODES:
        compile_denoising_unet(net, mode=mode, backend=backend)
    return applied
