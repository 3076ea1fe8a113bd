"""AnimateDiff-style temporal ("Vanilla") motion module, with Hallo's parameter names.

Keys: ``temporal_transformer.{norm, proj_in, transformer_blocks.0.{attention_blocks.{0,1}.{to_q,to_k,to_v,
to_out.0, pos_encoder.pe}, norms.{0,1}, ff.net.{0.proj,2}, ff_norm}, proj_out}``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from .attention_dispatch import attention
from .attention_ops import attend, output_projection, project_kv, split_heads


class MotionConstants(NamedTuple):
    """The motion frames' part of a motion module, fixed for a clip: their tokens after ``proj_in`` and the
    first attention's queries, keys and values (heads split)."""

    tokens: torch.Tensor  # (B*H*W, M, C)
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor


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

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Add the table's rows ``offset ...`` to the frames of ``x`` (positions, frames, C)."""
        if offset + x.shape[1] > self.pe.shape[1]:
            raise ValueError(
                f"motion module: {offset + x.shape[1]} frames exceed the temporal position table "
                f"({self.pe.shape[1]}); use a shorter clip length"
            )
        return x + self.pe[:, offset:offset + x.shape[1]].to(x.dtype)


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
        for attn, norm in zip(self.attention_blocks, self.norms, strict=True):
            x = attn.temporal_forward(norm(x)) + x
        return self.ff(self.ff_norm(x)) + x

    def prepare(self, prefix: torch.Tensor) -> MotionConstants:
        """The per-clip part for prefix frames ``prefix`` (positions, M, C) that come first along time."""
        first = self.attention_blocks[0]
        n = first.pos_encoder(self.norms[0](prefix))
        q = split_heads(first.to_q(n), first.heads)
        return MotionConstants(prefix, q, *project_kv(first, n))

    def forward_after(self, x: torch.Tensor, consts: MotionConstants) -> torch.Tensor:
        """:meth:`forward` over [prefix, ``x``] along time, returning the ``x`` positions only.

        Every position queries the first attention (the prefix's outputs are keys of the second one); the
        second attention, the feed-forward and the residuals run for the ``x`` positions alone.
        """
        first, second = self.attention_blocks
        m = consts.tokens.shape[1]
        n = first.pos_encoder(self.norms[0](x), offset=m)
        k, v = project_kv(first, n)
        q = torch.cat([consts.q, split_heads(first.to_q(n), first.heads)], dim=2)
        k, v = torch.cat([consts.k, k], dim=2), torch.cat([consts.v, v], dim=2)
        y = torch.cat([consts.tokens, x], dim=1) + output_projection(first, attention(q, k, v, first.scale))
        n = second.pos_encoder(self.norms[1](y))
        k, v = project_kv(second, n)
        q = split_heads(second.to_q(n[:, m:]), second.heads)
        y = y[:, m:] + output_projection(second, attention(q, k, v, second.scale))
        return self.ff(self.ff_norm(y)) + y


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, max_len: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len)])
        self.proj_out = nn.Linear(channels, channels)

    def _tokens(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """(B*frames, C, H, W) -> GroupNorm, proj_in -> (B*H*W, frames, C)."""
        bf, c, h, w = x.shape
        y = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c))
        return y.view(bf // frames, frames, h * w, c).transpose(1, 2).reshape(bf // frames * h * w, frames, c)

    def _output(self, y: torch.Tensor, residual: torch.Tensor, frames: int) -> torch.Tensor:
        bf, c, h, w = residual.shape
        y = y.view(bf // frames, h * w, frames, c).transpose(1, 2).reshape(bf, h * w, c)
        return self.proj_out(y).view(bf, h, w, c).permute(0, 3, 1, 2) + residual

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``x``: (B*frames, C, H, W), batch-major; returns the same shape."""
        y = self._tokens(x, frames)
        for block in self.transformer_blocks:
            y = block(y)
        return self._output(y, x, frames)

    def prepare(self, prefix: torch.Tensor) -> MotionConstants:
        """The per-clip part for prefix frames (B, M, C, H, W): normed and projected, first queries/keys/values."""
        b, m, c, h, w = prefix.shape
        (block,) = self.transformer_blocks
        # contiguous: the bank's features are a channels-last view (see forward_after)
        return block.prepare(self._tokens(prefix.reshape(b * m, c, h, w).contiguous(), m))

    def forward_after(self, x: torch.Tensor, frames: int, consts: MotionConstants) -> torch.Tensor:
        """:meth:`forward` over the prefix of ``consts`` followed by ``x``, returning the ``x`` frames only."""
        (block,) = self.transformer_blocks
        # Contiguous in and out, as the full-length run's input (a concatenation) and its output after the motion
        # frames are cut off: GroupNorm rounds differently on the channels-last views the audio module returns.
        x = x.contiguous()
        return self._output(block.forward_after(self._tokens(x, frames), consts), x, frames).contiguous()


class MotionModule(nn.Module):
    """``VanillaTemporalModule``: one temporal transformer with two self-attentions over frames."""

    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, groups: int = 32) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, groups)

    def prepare(self, motion: torch.Tensor) -> MotionConstants:
        """What depends on the clip's motion-frame features (B, M, C, H, W) alone; made once per clip."""
        return self.temporal_transformer.prepare(motion)

    def forward(self, x: torch.Tensor, frames: int, motion: torch.Tensor | None = None,
                consts: MotionConstants | None = None) -> torch.Tensor:
        """Run over ``frames`` frames with ``motion`` features (B, M, C, H, W) prepended.

        As in Hallo's trained code path the motion frames are concatenated in front of the clip along
        time, the module runs over M+F frames, and the first M outputs are discarded. The outputs that are
        discarded are not computed, and the motion frames' own projections come from ``consts``
        (:meth:`prepare`, made once per clip; None: made here).
        """
        if motion is None:
            return self.temporal_transformer(x, frames)
        consts = consts if consts is not None else self.prepare(motion.to(x.dtype))
        return self.temporal_transformer.forward_after(x, frames, consts)
