"""Networks of the released architecture with random weights, built in memory (no 5 GB file needed).

``random_net(HalloArchitecture())`` is the full-size network (SD-1.5 sized UNets with audio and motion
modules); ``random_net(tiny_architecture())`` the tiny test one. Used by the benchmarks and the GPU check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..pipeline.models.architecture import HalloArchitecture
from ..pipeline.models.motion_module import PositionalEncoding, sinusoidal_table
from ..pipeline.models.net import HalloNet, build_net

#: The SD VAE (sd-vae-ft-mse) layout: what the released model folder's VAE is.
FULL_VAE_CONFIG = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
                   "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 2, "latent_channels": 4}


@torch.no_grad()
def random_net(arch: HalloArchitecture, device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> HalloNet:
    """HalloNet of ``arch`` with random weights, allocated once in ``dtype`` (fan-in scaled normal init)."""
    torch.manual_seed(seed)
    net = build_net(arch, "meta")
    net.denoising_unet.drop_unused_motion_modules()
    net = net.to(dtype=dtype).to_empty(device=device)
    for name, p in net.named_parameters():
        if p.ndim >= 2:
            p.normal_(0.0, 0.5 / math.sqrt(p[0].numel()))
        elif name.endswith("weight"):
            p.fill_(1.0)
        else:
            p.zero_()
    for module in net.modules():
        if isinstance(module, PositionalEncoding):
            module.pe.copy_(sinusoidal_table(module.pe.shape[1], module.pe.shape[2]))
    return net.eval().requires_grad_(False)


def random_full_net(device: torch.device | str, dtype: torch.dtype, seed: int = 0) -> HalloNet:
    """The full-size network (the released architecture) with random weights."""
    return random_net(HalloArchitecture(), device, dtype, seed)


def random_vae(config: Mapping[str, Any], device: torch.device | str, dtype: torch.dtype) -> torch.nn.Module:
    """diffusers' AutoencoderKL of ``config`` (keys starting with ``_`` ignored) with its default init."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**{k: v for k, v in config.items() if not k.startswith("_")})
    return vae.to(device=device, dtype=dtype).eval().requires_grad_(False)


def full_vae(device: torch.device | str, dtype: torch.dtype) -> torch.nn.Module:
    """The full-size SD VAE with random weights."""
    return random_vae(FULL_VAE_CONFIG, device, dtype)
