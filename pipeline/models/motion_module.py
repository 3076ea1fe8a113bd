"""AnimateDiff-style temporal ("Vanilla") motion module, with Hallo's parameter names.

Keys: ``temporal_transformer.{norm, proj_in, transformer_blocks.0.{attention_blocks.{0,1}.{to_q,to_k,to_v,
to_out.0, pos_encoder.pe}, norms.{0,1}, ff.net.{0.proj,2}, ff_norm}, proj_out}``.
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .attention_ops import attend


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim) sine/cosine table as AnimateDiff's PositionalEncoding builds it."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(nn.Module):
    """Holds the persistent ``pe`` buffer that ships in ``net.pth``."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(
                f"motion module: {x.shape[1]} frames exceed the temporal position table ({self.pe.shape[1]}); "
                "use a shorter clip length"
            )
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(Attention):
    """Self-attention across frames for every spatial position, with the position table added first."""

    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def temporal_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (positions, frames, C)."""
        return attend(self, self.pos_encoder(x))


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            x = attention.temporal_forward(norm(x)) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``x``: (B*frames, C, H, W), batch-major; returns the same shape."""
        bf, c, h, w = x.shape
        b = bf // frames
        residual = x
        y = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        y = self.proj_in(y)
        # (b f) d c -> (b d) f c
        y = y.view(b, frames, h * w, c).transpose(1, 2).reshape(b * h * w, frames, c)
        for block in self.transformer_blocks:
            y = block(y)
        y = y.view(b, h * w, frames, c).transpose(1, 2).reshape(bf, h * w, c)
        y = self.proj_out(y)
        return y.view(bf, h, w, c).permute(0, 3, 1, 2) + residual


class MotionModule(nn.Module):
    """``VanillaTemporalModule``: one temporal transformer with two self-attentions over frames."""

    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, groups: int = 32) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, groups)

    def forward(self, x: torch.Tensor, frames: int, motion: torch.Tensor | None = None) -> torch.Tensor:
        """Run over ``frames`` frames with ``motion`` features (B, M, C, H, W) prepended.

        As in Hallo's trained code path the motion frames are concatenated in front of the clip along
        time, the module runs over M+F frames, and the first M outputs are discarded.
        """
        if motion is None:
            return self.temporal_transformer(x, frames)
        bf, c, h, w = x.shape
        b = bf // frames
        m = motion.shape[1]
        joined = torch.cat([motion.to(x.dtype), x.view(b, frames, c, h, w)], dim=1)
        out = self.temporal_transformer(joined.reshape(b * (m + frames), c, h, w), m + frames)
        return out.view(b, m + frames, c, h, w)[:, m:].reshape(bf, c, h, w)
