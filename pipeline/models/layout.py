"""The SD-1.5 UNet layout, built from the Hallo block classes with diffusers' block arguments.

The arguments are the ones diffusers' ``UNet2DConditionModel`` passes to its blocks for an SD-1.5
``config.json``, so parameter names and shapes are those of that model.
"""

from __future__ import annotations

from typing import Any

from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .architecture import HalloArchitecture
from .blocks import (
    AddedModules,
    HalloCrossAttnDownBlock,
    HalloCrossAttnUpBlock,
    HalloDownBlock,
    HalloMidBlock,
    HalloUpBlock,
)


def added_modules(arch: HalloArchitecture) -> AddedModules:
    """The audio and motion modules of the denoising UNet (``unet_additional_kwargs`` of the original)."""
    return AddedModules(arch.audio_heads, arch.audio_dim, arch.motion_heads, arch.motion_max_len,
                        int(arch.unet.get("norm_num_groups", 32)))


def _heads(arch: HalloArchitecture) -> list[int]:
    """Heads per block: SD-1.5 configs name the head count ``attention_head_dim``."""
    value = arch.unet.get("attention_head_dim", 8)
    return [int(h) for h in value] if isinstance(value, list | tuple) else [int(value)] * 4


def _common(arch: HalloArchitecture) -> dict[str, Any]:
    widths = arch.block_out_channels
    return {
        "temb_channels": widths[0] * 4,
        "resnet_eps": float(arch.unet.get("norm_eps", 1e-5)),
        "resnet_act_fn": arch.unet.get("act_fn", "silu"),
        "resnet_groups": int(arch.unet.get("norm_num_groups", 32)),
    }


def time_modules(arch: HalloArchitecture) -> tuple[Timesteps, TimestepEmbedding]:
    """Sinusoidal timestep projection and its MLP (``time_proj``, ``time_embedding``)."""
    width = arch.block_out_channels[0]
    proj = Timesteps(width, bool(arch.unet.get("flip_sin_to_cos", True)), float(arch.unet.get("freq_shift", 0)))
    return proj, TimestepEmbedding(width, width * 4, act_fn=arch.unet.get("act_fn", "silu"))


def down_blocks(arch: HalloArchitecture) -> nn.ModuleList:
    """Three cross-attention down blocks and one plain one (``down_block_types`` of SD-1.5)."""
    widths, heads, common = arch.block_out_channels, _heads(arch), _common(arch)
    layers, padding = int(arch.unet.get("layers_per_block", 2)), int(arch.unet.get("downsample_padding", 1))
    blocks: list[nn.Module] = []
    for i, c_out in enumerate(widths):
        kwargs = dict(common, num_layers=layers, in_channels=widths[max(i - 1, 0)], out_channels=c_out,
                      add_downsample=i < len(widths) - 1, downsample_padding=padding)
        if i < len(widths) - 1:
            blocks.append(HalloCrossAttnDownBlock(i, cross_attention_dim=arch.cross_attention_dim,
                                                  num_attention_heads=heads[i], **kwargs))
        else:
            blocks.append(HalloDownBlock(**kwargs))
    return nn.ModuleList(blocks)


def mid_block(arch: HalloArchitecture) -> HalloMidBlock:
    widths = arch.block_out_channels
    return HalloMidBlock(len(widths) - 1, in_channels=widths[-1], cross_attention_dim=arch.cross_attention_dim,
                         num_attention_heads=_heads(arch)[-1],
                         output_scale_factor=float(arch.unet.get("mid_block_scale_factor", 1)), **_common(arch))


def up_blocks(arch: HalloArchitecture) -> nn.ModuleList:
    """One plain up block, then three cross-attention ones (``up_block_types`` of SD-1.5)."""
    rev, heads, common = list(reversed(arch.block_out_channels)), list(reversed(_heads(arch))), _common(arch)
    layers = int(arch.unet.get("layers_per_block", 2)) + 1
    blocks: list[nn.Module] = []
    for i, c_out in enumerate(rev):
        kwargs = dict(common, num_layers=layers, in_channels=rev[min(i + 1, len(rev) - 1)], out_channels=c_out,
                      prev_output_channel=rev[max(i - 1, 0)], add_upsample=i < len(rev) - 1, resolution_idx=i)
        if i == 0:
            blocks.append(HalloUpBlock(**kwargs))
        else:
            blocks.append(HalloCrossAttnUpBlock(len(rev) - 1 - i, cross_attention_dim=arch.cross_attention_dim,
                                                num_attention_heads=heads[i], **kwargs))
    return nn.ModuleList(blocks)
