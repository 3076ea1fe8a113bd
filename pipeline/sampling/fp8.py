"""Opt-in FP8 matmuls for the denoising UNet's Linear layers on Hopper / Ada GPUs, through ``torchao``.

torchao's float8 dynamic quantization (activations and weights scaled per row, ``torch._scaled_mm``) replaces
the weights of the attention, feed-forward and projection Linear layers of the denoising UNet; the convolutions,
the ReferenceNet (once per clip) and the VAE stay in the network's precision. This changes the numbers (8-bit
mantissa of 3 bits): it is never on by default, and the faithful output is not expected. ``torchao`` is an
optional extra (``pip install "hallo-nodes[fp8]"``), imported only when FP8 is asked for.
"""

from __future__ import annotations

import importlib.util
import logging

import torch
from torch import nn

from ..errors import HalloInputError

logger = logging.getLogger(__name__)

MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (8.9) and Hopper (9.0) onwards
INSTALL_HINT = 'install the optional extra: pip install "hallo-nodes[fp8]" (or pip install torchao)'


def fp8_refusal(device_type: str, capability: tuple[int, int] | None, dtype: torch.dtype,
                torchao_found: bool) -> str | None:
    """Why FP8 cannot run here (one sentence naming the fix), or None when it can."""
    if device_type != "cuda":
        return (f"fp8 needs an NVIDIA GPU with FP8 tensor cores (compute capability 8.9 or newer: Ada, Hopper); "
                f"this render runs on {device_type}. Turn fp8 off.")
    if capability is None or tuple(capability) < MIN_CAPABILITY:
        found = "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
        return (f"fp8 needs compute capability 8.9 or newer (Ada, Hopper); this GPU has {found}. Turn fp8 off "
                "(bf16 or fp16 are the fast paths there).")
    if dtype != torch.bfloat16:
        name = str(dtype).replace("torch.", "")
        return (f"fp8 needs the model in bf16 (row-scaled FP8 matmuls return bf16); it is loaded in {name}. "
                "Use dtype bf16.")
    if not torchao_found:
        return f"fp8 needs the torchao package, which is not installed; {INSTALL_HINT}."
    return None


def fp8_linear_filter(module: nn.Module, fqn: str) -> bool:
    """The Linear layers FP8 takes: both sizes multiples of 16 (what the FP8 matmul kernels accept)."""
    return isinstance(module, nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0


def check_fp8(net: nn.Module, device: torch.device | str) -> None:
    """Raise :class:`HalloInputError` when FP8 cannot run for ``net`` on ``device``."""
    dev = torch.device(device)
    capability = torch.cuda.get_device_capability(dev) if dev.type == "cuda" else None
    dtype = next(net.denoising_unet.parameters()).dtype
    found = importlib.util.find_spec("torchao") is not None
    reason = fp8_refusal(dev.type, capability, dtype, found)
    if reason is not None:
        raise HalloInputError(reason)


def enable_fp8(net: nn.Module, device: torch.device | str) -> int:
    """Quantize the denoising UNet's Linear layers to FP8 (dynamic, per row) in place; returns how many."""
    check_fp8(net, device)
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    unet = net.denoising_unet
    count = sum(1 for name, m in unet.named_modules() if fp8_linear_filter(m, name))
    quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=fp8_linear_filter)
    logger.info("fp8: %d Linear layers of the denoising UNet quantized (torchao, per-row dynamic)", count)
    return count
