"""The two UNets of Hallo, built from the declared SD-1.5 blocks of :mod:`.blocks`.

* ``ReferenceUNet``: the SD-1.5 2-D UNet without ``conv_norm_out``/``conv_out``; run once per clip at t=0,
  it returns the attn1 inputs (``norm1`` outputs) of its 16 spatial transformer blocks.
* ``DenoisingUNet``: the same spatial UNet (identical key names) plus ``audio_modules`` and
  ``motion_modules`` in every block. Its forward follows the code path the released weights were trained
  on: motion-frame features prepended before every active motion module, pose/face/lip weights in all audio
  modules, and the motion modules of ``down_blocks.3`` / ``up_blocks.0`` never run.

Tensors inside the UNets are kept frames-flattened, batch-major: (B*F, C, H, W). Every attention goes
through :func:`.attention_dispatch.attention`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.activations import get_activation
from torch import nn

from .architecture import HalloArchitecture
from .attention_ops import attend, use_dispatch_processor
from .layout import added_modules, down_blocks, mid_block, time_modules, up_blocks
from .reference_bank import reference_self_attention
from .unet_inputs import BlockInputs, LevelMasks, UNetConditions

__all__ = ["UNUSED_MOTION_BLOCKS", "DeepCache", "DenoisingUNet", "LevelMasks", "ReferenceUNet", "UNetConditions",
           "spatial_paths"]

# Blocks whose motion modules exist in net.pth but are not on the trained code path.
UNUSED_MOTION_BLOCKS = ("down_blocks.3", "up_blocks.0")


def spatial_paths(n_up_layers: int = 3) -> list[str]:
    """Paths of the 16 spatial transformers, in execution order."""
    paths = [f"down_blocks.{i}.attentions.{j}" for i in range(3) for j in range(2)]
    paths.append("mid_block.attentions.0")
    paths += [f"up_blocks.{i}.attentions.{j}" for i in range(1, 4) for j in range(n_up_layers)]
    return paths


def _output_head(arch: HalloArchitecture) -> tuple[nn.GroupNorm, nn.Module, nn.Conv2d]:
    """SD-1.5's ``conv_norm_out``, ``conv_act``, ``conv_out``."""
    width, groups = arch.block_out_channels[0], int(arch.unet.get("norm_num_groups", 32))
    norm = nn.GroupNorm(groups, width, eps=float(arch.unet.get("norm_eps", 1e-5)))
    conv = nn.Conv2d(width, int(arch.unet.get("out_channels", 4)), 3, padding=1)
    return norm, get_activation(arch.unet.get("act_fn", "silu")), conv


class _UNetBody(nn.Module):
    """conv_in, time embedding, down/mid/up blocks of the SD-1.5 UNet."""

    def __init__(self, arch: HalloArchitecture) -> None:
        super().__init__()
        arch.validate()
        self.conv_in = nn.Conv2d(int(arch.unet.get("in_channels", 4)), arch.block_out_channels[0], 3, padding=1)
        self.time_proj, self.time_embedding = time_modules(arch)
        self.down_blocks = down_blocks(arch)
        self.mid_block = mid_block(arch)
        self.up_blocks = up_blocks(arch)

    def embed_time(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.time_embedding(self.time_proj(t).to(dtype))

    def run_blocks(self, h: torch.Tensor, run: BlockInputs,
                   up_input: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Down blocks (collecting skips), mid block, up blocks (consuming them); ``up_input(i, h)`` sees the
        input of each up block."""
        skips = [h]
        for i, block in enumerate(self.down_blocks):
            h, block_skips = block(h, run, f"down_blocks.{i}")
            skips += block_skips
        h = self.mid_block(h, run, "mid_block")
        for i, block in enumerate(self.up_blocks):
            if up_input is not None:
                up_input(i, h)
            h = block(h, skips, run, f"up_blocks.{i}")
        return h


class ReferenceUNet(_UNetBody):
    """SD-1.5 UNet without the output head; ``forward`` returns the reference bank features."""

    def __init__(self, arch: HalloArchitecture) -> None:
        super().__init__(arch)
        # No conv_norm_out / conv_out: the ReferenceNet's output image is never used. The head is still
        # created and dropped so that a seeded build draws the same initial weights as a full SD-1.5 UNet
        # (the random test models in the released layout are made that way).
        _output_head(arch)
        use_dispatch_processor(self)

    def forward(self, latents: torch.Tensor, face_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run at timestep 0 on ``latents`` (N, 4, h, w); return {path: (N, HW, C)} attn1 inputs."""
        bank: dict[str, torch.Tensor] = {}

        def keep_and_attend(attn: nn.Module, tokens: torch.Tensor, path: str) -> torch.Tensor:
            bank[path] = tokens
            return attend(attn, tokens)

        t = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.long)
        run = BlockInputs(temb=self.embed_time(t, latents.dtype), context=face_tokens, self_attention=keep_and_attend)
        self.run_blocks(self.conv_in(latents), run)
        return bank


@dataclass
class DeepCache:
    """DeepCache for one row layout: the input of the last up block, kept by the last full call.

    The caller sets ``reuse`` before each call: True runs only the outer blocks on ``features``.
    """

    features: torch.Tensor | None = None
    reuse: bool = False


class DenoisingUNet(_UNetBody):
    """The 3-D denoising UNet of Hallo with audio and motion modules."""

    # attn1 of the spatial transformers: rows with a reference source also attend to the reference tokens.
    _reference_self_attention = staticmethod(reference_self_attention)

    def __init__(self, arch: HalloArchitecture) -> None:
        super().__init__(arch)
        self.conv_norm_out, self.conv_act, self.conv_out = _output_head(arch)
        # Each block declares its audio/motion modules; they are created after the 2-D UNet, block by block,
        # so that a seeded build draws the same initial weights as the checkpoint's module order.
        added = added_modules(arch)
        for block in [*self.down_blocks, self.mid_block, *self.up_blocks]:
            block.build_added_modules(added)
        use_dispatch_processor(self)

    def drop_unused_motion_modules(self) -> None:
        """Free the motion modules of down_blocks.3 / up_blocks.0 that the trained path never runs."""
        for path in UNUSED_MOTION_BLOCKS:
            self.get_submodule(path).motion_modules = None

    def _block_inputs(self, b: int, frames: int, t: torch.Tensor, dtype: torch.dtype,
                      ctx: UNetConditions) -> BlockInputs:
        def self_attention(attn: nn.Module, tokens: torch.Tensor, path: str) -> torch.Tensor:
            return self._reference_self_attention(attn, tokens, ctx.bank, path)

        return BlockInputs(
            temb=self.embed_time(t, dtype).repeat_interleave(frames, dim=0),
            context=ctx.face_tokens.to(dtype).repeat_interleave(frames, dim=0),
            self_attention=self_attention,
            frames=frames,
            audio=ctx.audio_tokens.to(dtype).reshape(b * frames, *ctx.audio_tokens.shape[2:]),
            masks=ctx.masks,
            audio_weights=ctx.motion_scale,
            bank=ctx.bank,
            silent_audio_rows=min(ctx.silent_audio, b) * frames,
            face_tokens=ctx.face_tokens,
            constants=ctx.constants,
        )

    def _blocks(self, h: torch.Tensor, run: BlockInputs, deep: DeepCache | None) -> torch.Tensor:
        """All blocks; with ``deep``, keep the last up block's input, or reuse it and run only the outer blocks
        (the first down block without its downsampler, then the last up block)."""
        if deep is None:
            return self.run_blocks(h, run)
        last = len(self.up_blocks) - 1
        if deep.reuse and deep.features is not None:
            if deep.features.shape[0] != h.shape[0]:
                raise ValueError(f"DeepCache: the cached features hold {deep.features.shape[0]} rows, "
                                 f"this call {h.shape[0]}")
            _, block_skips = self.down_blocks[0](h, run, "down_blocks.0", downsample=False)
            return self.up_blocks[last](deep.features, [h, *block_skips], run, f"up_blocks.{last}")

        def keep(i: int, features: torch.Tensor) -> None:
            if i == last:
                deep.features = features

        return self.run_blocks(h, run, keep)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor | float, ctx: UNetConditions,
                deep: DeepCache | None = None) -> torch.Tensor:
        """``latents``: (B, 4, F, h, w) -> model output (v-prediction) of the same shape.

        ``deep`` (DeepCache): with ``deep.reuse`` only the outer blocks run, on ``deep.features``; otherwise the
        whole UNet runs and ``deep.features`` keeps the input of its last up block.
        """
        b, c, frames, lh, lw = latents.shape
        x = latents.permute(0, 2, 1, 3, 4).reshape(b * frames, c, lh, lw)
        t = torch.as_tensor(timestep, device=latents.device)
        t = t.expand(b) if t.ndim == 0 else t
        h = self.conv_in(x)
        if ctx.face_locator is not None:
            h = h + ctx.face_locator.to(h.dtype)
        h = self._blocks(h, self._block_inputs(b, frames, t, x.dtype, ctx), deep)
        h = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        return h.view(b, frames, -1, lh, lw).permute(0, 2, 1, 3, 4)
