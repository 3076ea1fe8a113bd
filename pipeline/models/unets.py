"""The two UNets of Hallo, assembled from diffusers' SD-1.5 building blocks.

* ``ReferenceUNet``: the SD-1.5 2-D UNet without ``conv_norm_out``/``conv_out``; run once per clip at t=0,
  it returns the attn1 inputs (``norm1`` outputs) of its 16 spatial transformer blocks.
* ``DenoisingUNet``: the same spatial UNet (identical key names) plus ``audio_modules`` and
  ``motion_modules`` in every block. Its forward follows the code path the released weights were trained
  on (hallo.md §0): motion-frame features prepended before every active motion module, pose/face/lip
  weights in all audio modules, and no motion modules in ``down_blocks.3`` / ``up_blocks.0``.

Tensors inside the denoising UNet are kept frames-flattened, batch-major: (B*F, C, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from .architecture import HalloArchitecture
from .attention_ops import attend, output_projection, split_heads
from .audio_attention import AudioTransformer
from .motion_module import MotionModule
from .reference_bank import ReferenceBank

# Blocks whose motion modules exist in net.pth but are not on the trained code path (hallo.md §0).
UNUSED_MOTION_BLOCKS = ("down_blocks.3", "up_blocks.0")


_BODY = ("conv_in", "time_proj", "time_embedding", "down_blocks", "up_blocks", "mid_block")
_HEAD = ("conv_norm_out", "conv_act", "conv_out")


def _adopt_sd_unet(target: nn.Module, arch: HalloArchitecture, parts: tuple[str, ...]) -> None:
    """Build diffusers' SD-1.5 UNet and take over ``parts`` under their original names (same state-dict keys)."""
    arch.validate()
    sd = UNet2DConditionModel(**arch.unet_kwargs())
    for name in parts:
        setattr(target, name, getattr(sd, name))


def spatial_paths(n_up_layers: int = 3) -> list[str]:
    """Paths of the 16 spatial transformers, in execution order."""
    paths = [f"down_blocks.{i}.attentions.{j}" for i in range(3) for j in range(2)]
    paths.append("mid_block.attentions.0")
    paths += [f"up_blocks.{i}.attentions.{j}" for i in range(1, 4) for j in range(n_up_layers)]
    return paths


class ReferenceUNet(nn.Module):
    """SD-1.5 UNet without the output head; ``forward`` returns the reference bank features."""

    def __init__(self, arch: HalloArchitecture) -> None:
        super().__init__()
        _adopt_sd_unet(self, arch, _BODY)  # no conv_norm_out / conv_out: its output image is never used

    def forward(self, latents: torch.Tensor, face_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run at timestep 0 on ``latents`` (N, 4, h, w); return {path: (N, HW, C)} attn1 inputs."""
        bank: dict[str, torch.Tensor] = {}
        hooks = []
        for path in spatial_paths():
            block = self.get_submodule(path).transformer_blocks[0]

            def capture(_module: nn.Module, _inp: tuple, out: torch.Tensor, path: str = path) -> None:
                bank[path] = out

            hooks.append(block.norm1.register_forward_hook(capture))
        try:
            t = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.long)
            temb = self.time_embedding(self.time_proj(t).to(latents.dtype))
            h = self.conv_in(latents)
            skips: tuple[torch.Tensor, ...] = (h,)
            for block in self.down_blocks:
                if getattr(block, "has_cross_attention", False):
                    h, res = block(h, temb, encoder_hidden_states=face_tokens)
                else:
                    h, res = block(h, temb)
                skips += res
            h = self.mid_block(h, temb, encoder_hidden_states=face_tokens)
            last = len(self.up_blocks) - 1
            for i, block in enumerate(self.up_blocks):
                n = len(block.resnets)
                res, skips = skips[-n:], skips[:-n]
                if getattr(block, "has_cross_attention", False):
                    h = block(h, res, temb, encoder_hidden_states=face_tokens)
                else:
                    h = block(h, res, temb)
                if i == last:
                    break  # no conv_norm_out/conv_out: the output image of the ReferenceNet is never used
        finally:
            for hook in hooks:
                hook.remove()
        return bank


@dataclass
class LevelMasks:
    """full/face/lip masks per resolution level, each (B*F, HW_level)."""

    full: Sequence[torch.Tensor]
    face: Sequence[torch.Tensor]
    lip: Sequence[torch.Tensor]

    def level(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.full[i], self.face[i], self.lip[i]


@dataclass
class UNetConditions:
    """Everything besides the noisy latents that one denoising UNet call needs (CFG rows included)."""

    face_tokens: torch.Tensor  # (B, T, D)
    audio_tokens: torch.Tensor  # (B, F, 32, D)
    masks: LevelMasks
    face_locator: torch.Tensor | None  # (B*F, 320, h, w) or None
    bank: ReferenceBank | None
    motion_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)


class DenoisingUNet(nn.Module):
    """The 3-D denoising UNet of Hallo with audio and motion modules."""

    def __init__(self, arch: HalloArchitecture) -> None:
        super().__init__()
        _adopt_sd_unet(self, arch, _BODY + _HEAD)
        groups = int(arch.unet.get("norm_num_groups", 32))
        widths = arch.block_out_channels
        motion = {"heads": arch.motion_heads, "max_len": arch.motion_max_len, "groups": groups}

        def audio(in_ch: int, inner: int) -> AudioTransformer:
            return AudioTransformer(in_ch, inner, arch.audio_heads, arch.audio_dim, groups)

        # Down blocks: audio inner width = width of the block's input (hallo.md §4).
        prev = widths[0]
        for i, block in enumerate(self.down_blocks):
            out = widths[i]
            if i < 3:
                block.audio_modules = nn.ModuleList([audio(out, prev), audio(out, out)])
            block.motion_modules = nn.ModuleList([MotionModule(out, **motion) for _ in range(2)])
            prev = out
        self.mid_block.audio_modules = nn.ModuleList([audio(widths[-1], widths[-1])])
        self.mid_block.motion_modules = nn.ModuleList([MotionModule(widths[-1], **motion)])
        rev = list(reversed(widths))
        for i, block in enumerate(self.up_blocks):
            out = rev[i]
            if i > 0:
                inner = rev[min(i + 1, len(rev) - 1)]
                block.audio_modules = nn.ModuleList([audio(out, inner) for _ in range(3)])
            block.motion_modules = nn.ModuleList([MotionModule(out, **motion) for _ in range(3)])

    # -- the unused motion modules -------------------------------------------------------------
    def drop_unused_motion_modules(self) -> None:
        """Free the motion modules of down_blocks.3 / up_blocks.0 that the trained path never runs."""
        for path in UNUSED_MOTION_BLOCKS:
            block = self.get_submodule(path)
            if hasattr(block, "motion_modules"):
                del block.motion_modules

    # -- pieces of the forward ---------------------------------------------------------------
    @staticmethod
    def _reference_self_attention(
        attn: nn.Module, n: torch.Tensor, bank: ReferenceBank | None, path: str
    ) -> torch.Tensor:
        """attn1: rows with a reference source attend to [own tokens, reference tokens]; the rest to themselves."""
        if bank is None or path not in bank.reference:
            return attend(attn, n)
        source = bank.row_source.to(n.device)
        with_ref = torch.nonzero(source >= 0).flatten()
        without = torch.nonzero(source < 0).flatten()
        if with_ref.numel() == 0:
            return attend(attn, n)
        q = split_heads(attn.to_q(n), attn.heads)
        k = split_heads(attn.to_k(n), attn.heads)
        v = split_heads(attn.to_v(n), attn.heads)
        k_ref, v_ref = bank.reference_kv(path, attn, n.dtype)
        idx = source[with_ref]
        out = torch.empty_like(q)
        kr = torch.cat([k[with_ref], k_ref[idx]], dim=2)
        vr = torch.cat([v[with_ref], v_ref[idx]], dim=2)
        out[with_ref] = nn.functional.scaled_dot_product_attention(q[with_ref], kr, vr, scale=attn.scale)
        if without.numel():
            out[without] = nn.functional.scaled_dot_product_attention(
                q[without], k[without], v[without], scale=attn.scale
            )
        return output_projection(attn, out)

    def _spatial(
        self, transformer: nn.Module, path: str, x: torch.Tensor, face_tokens: torch.Tensor, bank: ReferenceBank | None
    ) -> torch.Tensor:
        bf, c, h, w = x.shape
        residual = x
        y = transformer.proj_in(transformer.norm(x))
        inner = y.shape[1]
        y = y.permute(0, 2, 3, 1).reshape(bf, h * w, inner)
        blk = transformer.transformer_blocks[0]
        y = self._reference_self_attention(blk.attn1, blk.norm1(y), bank, path) + y
        y = attend(blk.attn2, blk.norm2(y), context=face_tokens) + y
        y = blk.ff(blk.norm3(y)) + y
        y = y.view(bf, h, w, inner).permute(0, 3, 1, 2)
        return transformer.proj_out(y) + residual

    def _layer(
        self,
        block: nn.Module,
        path: str,
        j: int,
        h: torch.Tensor,
        frames: int,
        level: int,
        ctx: UNetConditions,
        face_rows: torch.Tensor,
        audio_rows: torch.Tensor,
    ) -> torch.Tensor:
        """spatial attention -> audio attention -> motion module (with motion frames prepended)."""
        attn_path = f"{path}.attentions.{j}"
        h = self._spatial(block.attentions[j], attn_path, h, face_rows, ctx.bank)
        h = block.audio_modules[j](h, audio_rows, ctx.masks.level(level), ctx.motion_scale)
        motion = None
        if ctx.bank is not None and attn_path in ctx.bank.motion:
            motion = ctx.bank.motion_frames(attn_path, h.shape[-2], h.shape[-1])
        return block.motion_modules[j](h, frames, motion)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor | float, ctx: UNetConditions) -> torch.Tensor:
        """``latents``: (B, 4, F, h, w) -> model output (v-prediction) of the same shape."""
        b, c, frames, lh, lw = latents.shape
        x = latents.permute(0, 2, 1, 3, 4).reshape(b * frames, c, lh, lw)
        t = torch.as_tensor(timestep, device=latents.device)
        t = t.expand(b) if t.ndim == 0 else t
        temb = self.time_embedding(self.time_proj(t).to(x.dtype)).repeat_interleave(frames, dim=0)
        face_rows = ctx.face_tokens.to(x.dtype).repeat_interleave(frames, dim=0)
        audio_rows = ctx.audio_tokens.to(x.dtype).reshape(b * frames, *ctx.audio_tokens.shape[2:])

        h = self.conv_in(x)
        if ctx.face_locator is not None:
            h = h + ctx.face_locator.to(h.dtype)
        skips: list[torch.Tensor] = [h]
        for i, block in enumerate(self.down_blocks):
            path = f"down_blocks.{i}"
            for j, resnet in enumerate(block.resnets):
                h = resnet(h, temb)
                if hasattr(block, "attentions"):
                    h = self._layer(block, path, j, h, frames, i, ctx, face_rows, audio_rows)
                skips.append(h)
            if block.downsamplers is not None:
                h = block.downsamplers[0](h)
                skips.append(h)

        mid = self.mid_block
        h = mid.resnets[0](h, temb)
        h = self._layer(mid, "mid_block", 0, h, frames, 3, ctx, face_rows, audio_rows)
        h = mid.resnets[1](h, temb)

        for i, block in enumerate(self.up_blocks):
            path = f"up_blocks.{i}"
            for j, resnet in enumerate(block.resnets):
                h = resnet(torch.cat([h, skips.pop()], dim=1), temb)
                if hasattr(block, "attentions"):
                    h = self._layer(block, path, j, h, frames, 3 - i, ctx, face_rows, audio_rows)
            if block.upsamplers is not None:
                h = block.upsamplers[0](h)

        h = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        return h.view(b, frames, -1, lh, lw).permute(0, 2, 1, 3, 4)
