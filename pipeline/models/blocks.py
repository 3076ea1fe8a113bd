"""Hallo's UNet blocks: diffusers' SD-1.5 blocks that declare their audio and motion modules.

Each block keeps the parameter names of its diffusers base class (``resnets``, ``attentions``,
``downsamplers``/``upsamplers``) and adds ``audio_modules`` and ``motion_modules`` beside them, so the
state-dict keys are those of the released ``net.pth``. One layer of a cross-attention block runs
resnet -> spatial transformer -> audio module -> motion module. The ReferenceNet uses the same classes
without audio or motion modules; the denoising UNet creates them with ``build_added_modules``.

The 2-D blocks at the bottom of the UNet (``down_blocks.3``, ``up_blocks.0``) hold motion modules in the
released checkpoint, but the code path the weights were trained on never runs them; they are declared so
the checkpoint loads and can then be dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

with warnings.catch_warnings():
    # diffusers 0.29-0.3x warn at this module's import about a name we do not use (Transformer2DModelOutput);
    # a CLI's one-line error would otherwise come with two lines of someone else's deprecation notice
    warnings.filterwarnings("ignore", message=".*Transformer2DModelOutput.*", category=FutureWarning)
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.unets.unet_2d_blocks import (
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    DownBlock2D,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
)
from torch import nn

from .attention_ops import attend, from_tokens, to_tokens
from .audio_attention import AudioTransformer
from .motion_module import MotionModule
from .unet_inputs import BlockInputs, SelfAttention

# (attn2, transformer path) -> keys and values of the cross-attention context, or None to project it here
CrossKV = Callable[[nn.Module, str], "tuple[torch.Tensor, torch.Tensor] | None"]


@dataclass(frozen=True)
class AddedModules:
    """Sizes of the audio and motion modules that the denoising UNet's blocks declare."""

    audio_heads: int
    audio_dim: int
    motion_heads: int
    motion_max_len: int
    groups: int

    def audio(self, channels: int, inner_widths: Sequence[int]) -> nn.ModuleList:
        """One audio module per layer; ``inner_widths`` are their attention widths."""
        return nn.ModuleList(
            [AudioTransformer(channels, inner, self.audio_heads, self.audio_dim, self.groups) for inner in inner_widths]
        )

    def motion(self, channels: int, layers: int) -> nn.ModuleList:
        return nn.ModuleList(
            [MotionModule(channels, self.motion_heads, self.motion_max_len, self.groups) for _ in range(layers)]
        )


def spatial_transformer(
    transformer: Transformer2DModel, x: torch.Tensor, context: torch.Tensor, self_attention: SelfAttention, path: str,
    cross_kv: CrossKV | None = None,
) -> torch.Tensor:
    """diffusers' ``Transformer2DModel`` (SD-1.5 layout) on (rows, C, H, W), with ``self_attention`` as attn1.

    ``cross_kv(attn2, path)``: the cross-attention's keys and values of ``context`` made once per clip.
    """
    h, w = x.shape[-2:]
    y = to_tokens(transformer.proj_in(transformer.norm(x)))
    for block in transformer.transformer_blocks:
        y = self_attention(block.attn1, block.norm1(y), path) + y
        kv = cross_kv(block.attn2, path) if cross_kv is not None else None
        y = attend(block.attn2, block.norm2(y), context=context, kv=kv) + y
        y = block.ff(block.norm3(y)) + y
    y = from_tokens(y, h, w).contiguous()  # as diffusers does before proj_out
    return transformer.proj_out(y) + x


class _HalloLayers:
    """The layer after a resnet in the cross-attention blocks: spatial -> audio -> motion."""

    level: int  # resolution level of the block (0 = full latent size), selects the audio masks
    audio_widths: list[int]  # attention width of each layer's audio module
    attentions: nn.ModuleList
    resnets: nn.ModuleList
    audio_modules: nn.ModuleList | None
    motion_modules: nn.ModuleList | None

    def _declare(self, level: int, audio_widths: list[int]) -> None:
        self.level = level
        self.audio_widths = audio_widths
        self.audio_modules = None
        self.motion_modules = None

    def build_added_modules(self, added: AddedModules) -> None:
        """Create this block's audio and motion modules (one per spatial transformer)."""
        channels, layers = self.resnets[0].out_channels, len(self.attentions)
        self.audio_modules = added.audio(channels, self.audio_widths)
        self.motion_modules = added.motion(channels, layers)

    def _after_resnet(self, j: int, h: torch.Tensor, run: BlockInputs, path: str) -> torch.Tensor:
        name = f"{path}.attentions.{j}"
        h = spatial_transformer(self.attentions[j], h, run.context, run.self_attention, name, run.cross_kv)
        if self.audio_modules is not None:
            audio = self.audio_modules[j]
            h = audio(h, *run.audio_inputs(self.level), run.audio_constants(audio, name, self.level))
        if self.motion_modules is not None:
            # Motion-frame features are prepended along time before the module (the trained code path).
            motion, frames = self.motion_modules[j], run.motion_frames(name, h)
            h = motion(h, run.frames, frames, consts=run.motion_constants(motion, name, frames))
        return h


class _UnusedMotionModules:
    """2-D blocks whose motion modules are in the checkpoint but not on the trained path (never run)."""

    resnets: nn.ModuleList
    motion_modules: nn.ModuleList | None

    def build_added_modules(self, added: AddedModules) -> None:
        self.motion_modules = added.motion(self.resnets[0].out_channels, len(self.resnets))


class HalloCrossAttnDownBlock(_HalloLayers, CrossAttnDownBlock2D):
    """``CrossAttnDownBlock2D`` + audio modules (inner width: the layer's input width) + motion modules."""

    def __init__(self, level: int, **kwargs) -> None:
        super().__init__(**kwargs)
        c_in, c_out = kwargs["in_channels"], kwargs["out_channels"]
        self._declare(level, [c_in] + [c_out] * (len(self.attentions) - 1))

    def forward(self, h: torch.Tensor, run: BlockInputs, path: str,
                downsample: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``downsample=False``: stop before the downsampler (a DeepCache shallow call needs only the skips)."""
        skips = []
        for j, resnet in enumerate(self.resnets):
            h = self._after_resnet(j, resnet(h, run.temb), run, path)
            skips.append(h)
        if self.downsamplers is not None and downsample:
            h = self.downsamplers[0](h)
            skips.append(h)
        return h, skips


class HalloDownBlock(_UnusedMotionModules, DownBlock2D):
    """``DownBlock2D`` with (unused) motion modules."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.motion_modules = None

    def forward(self, h: torch.Tensor, run: BlockInputs, path: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for resnet in self.resnets:
            h = resnet(h, run.temb)
            skips.append(h)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h)
            skips.append(h)
        return h, skips


class HalloMidBlock(_HalloLayers, UNetMidBlock2DCrossAttn):
    """``UNetMidBlock2DCrossAttn`` + one audio module and one motion module."""

    def __init__(self, level: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._declare(level, [kwargs["in_channels"]] * len(self.attentions))

    def forward(self, h: torch.Tensor, run: BlockInputs, path: str) -> torch.Tensor:
        h = self.resnets[0](h, run.temb)
        for j, resnet in enumerate(self.resnets[1:]):
            h = resnet(self._after_resnet(j, h, run, path), run.temb)
        return h


class HalloCrossAttnUpBlock(_HalloLayers, CrossAttnUpBlock2D):
    """``CrossAttnUpBlock2D`` + audio modules (inner width: the block's skip width) + motion modules."""

    def __init__(self, level: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._declare(level, [kwargs["in_channels"]] * len(self.attentions))

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor], run: BlockInputs, path: str) -> torch.Tensor:
        """Consumes its skip connections from the end of ``skips``."""
        for j, resnet in enumerate(self.resnets):
            h = self._after_resnet(j, resnet(torch.cat([h, skips.pop()], dim=1), run.temb), run, path)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h)
        return h


class HalloUpBlock(_UnusedMotionModules, UpBlock2D):
    """``UpBlock2D`` with (unused) motion modules."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.motion_modules = None

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor], run: BlockInputs, path: str) -> torch.Tensor:
        """Consumes its skip connections from the end of ``skips``."""
        for resnet in self.resnets:
            h = resnet(torch.cat([h, skips.pop()], dim=1), run.temb)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h)
        return h
