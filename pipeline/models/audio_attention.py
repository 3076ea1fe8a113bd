"""Hallo's hierarchical audio-attention module (three masked cross-attention branches).

Keys: ``{norm, proj_in, transformer_blocks.0.{attn1, norm1, attn2_0, attn2_1, attn2_2, norm2,
zero_conv_full, zero_conv_face, zero_conv_lip, ff, norm3}, proj_out}``. The inner width is the width of
the block's *input* (so ``proj_in`` may be non-square), 8 heads.

Rows whose audio tokens are all zero (the unconditional half under classifier-free guidance) skip the three
audio cross-attentions: their keys are all equal, so the softmax is uniform and the attention returns the value
of a zero token, ``to_v(0)``. The released ``to_k``/``to_v`` have no bias, so that value is 0 and the branch
is ``to_out(0)`` = the ``to_out`` bias, a per-channel constant: the same numbers without the attention.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn
from torch.nn import functional as F

from .attention_ops import attend, from_tokens, output_projection, to_tokens

#: The full, face and lip masks, each (B*F, N).
Masks = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: A branch weight: a number for every frame, or one per frame of the clip, (F,).
BranchWeight = float | torch.Tensor


class AudioBlock(nn.Module):
    """Self-attention, then three audio cross-attentions weighted by the full/face/lip masks."""

    def __init__(self, dim: int, heads: int, cross_dim: int) -> None:
        super().__init__()
        self.zero_conv_full = nn.Conv2d(dim, dim, kernel_size=1)
        self.zero_conv_face = nn.Conv2d(dim, dim, kernel_size=1)
        self.zero_conv_lip = nn.Conv2d(dim, dim, kernel_size=1)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2_0 = Attention(query_dim=dim, cross_attention_dim=cross_dim, heads=heads, dim_head=dim // heads)
        self.attn2_1 = Attention(query_dim=dim, cross_attention_dim=cross_dim, heads=heads, dim_head=dim // heads)
        self.attn2_2 = Attention(query_dim=dim, cross_attention_dim=cross_dim, heads=heads, dim_head=dim // heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    @staticmethod
    def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 convolution is a per-token linear map; this lifts the original's square-only reshape."""
        return F.linear(x, conv.weight.view(conv.out_channels, conv.in_channels), conv.bias)

    @staticmethod
    def _cross_attention(attn: Attention, n: torch.Tensor, audio: torch.Tensor, silent_rows: int) -> torch.Tensor:
        """Attention of ``n`` over ``audio``; the first ``silent_rows`` rows have all-zero audio tokens.

        Zero tokens give equal keys, a uniform softmax and the value ``to_v(0)`` for every query, so those rows
        get ``to_out(to_v(0))`` without computing the attention.
        """
        if silent_rows <= 0:
            return attend(attn, n, context=audio)
        silent = output_projection(attn, attn.to_v(audio.new_zeros(1, 1, audio.shape[-1])))  # (1, 1, C)
        silent = silent.expand(min(silent_rows, n.shape[0]), n.shape[1], -1)
        if silent_rows >= n.shape[0]:
            return silent
        heard = attend(attn, n[silent_rows:], context=audio[silent_rows:])
        return torch.cat([silent, heard])

    @staticmethod
    def _scaled(weight: BranchWeight, y: torch.Tensor) -> torch.Tensor:
        """``weight * y``: a number scales every row; a per-frame tensor (F,) scales row ``b * F + f`` by ``[f]``."""
        if not isinstance(weight, torch.Tensor):
            return float(weight) * y
        rows = y.shape[0]
        per_row = weight.to(y.device, y.dtype).repeat(rows // weight.numel())
        return y * per_row.view(rows, *([1] * (y.ndim - 1)))

    def weighted_branches(self, n: torch.Tensor, audio: torch.Tensor, masks: Masks, weights: Sequence[BranchWeight],
                          silent_rows: int = 0) -> Iterator[torch.Tensor]:
        """The full (pose), face and lip branches in turn, each masked, projected and scaled by its weight."""
        branches = (
            (self.attn2_0, self.zero_conv_full),
            (self.attn2_1, self.zero_conv_face),
            (self.attn2_2, self.zero_conv_lip),
        )
        for (attn, conv), mask, weight in zip(branches, masks, weights, strict=True):
            branch = self._cross_attention(attn, n, audio, silent_rows) * mask.to(n.dtype).unsqueeze(-1)
            yield self._scaled(weight, self._pointwise(conv, branch))

    def forward(self, x: torch.Tensor, audio: torch.Tensor, masks: Masks, weights: Sequence[BranchWeight],
                silent_rows: int = 0) -> torch.Tensor:
        """``x``: (B*F, N, C) tokens; ``audio``: (B*F, T, D); ``masks``: full/face/lip (B*F, N).

        ``weights``: pose, face, lip: numbers, or per-frame tensors (F,) (the same for every batch entry).
        ``silent_rows``: the leading rows whose audio tokens are all zero (CFG's unconditional half).
        """
        x = attend(self.attn1, self.norm1(x)) + x
        out = x
        for branch in self.weighted_branches(self.norm2(x), audio, masks, weights, silent_rows):
            out = out + branch
        return self.ff(self.norm3(out)) + out


class AudioTransformer(nn.Module):
    """GroupNorm -> 1x1 proj_in -> AudioBlock -> 1x1 proj_out -> residual, on (B*F, C, H, W)."""

    def __init__(self, in_channels: int, inner: int, heads: int, cross_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(in_channels, inner, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([AudioBlock(inner, heads, cross_dim)])
        self.proj_out = nn.Conv2d(inner, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, masks: Masks, weights: Sequence[BranchWeight],
                silent_rows: int = 0) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = to_tokens(self.proj_in(self.norm(x)))
        for block in self.transformer_blocks:
            y = block(y, audio, masks, weights, silent_rows)
        return self.proj_out(from_tokens(y, h, w)) + x
