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
from typing import NamedTuple

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn
from torch.nn import functional as F

from .attention_ops import attend, from_tokens, output_projection, project_kv, to_tokens

#: The full, face and lip masks, each (B*F, N).
Masks = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: A branch weight: a number for every frame, or one per frame of the clip, (F,).
BranchWeight = float | torch.Tensor


class AudioConstants(NamedTuple):
    """The per-clip part of the three audio branches (:meth:`AudioBlock.prepare`)."""

    kv: tuple  # per branch: (keys, values) of the heard rows' audio tokens, or None when every row is silent
    silent: tuple  # per branch: the silent rows' branch output after its zero conv, (1 or rows, N, C); () if none


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

    def prepare(self, audio: torch.Tensor, masks: Masks, silent_rows: int = 0) -> AudioConstants:
        """What the three branches take from the clip's audio tokens and masks alone.

        The keys and values of the heard rows' tokens; for the first ``silent_rows`` rows (all-zero tokens) the
        whole branch after the attention, ``zero_conv(to_out(to_v(0)) * mask)``: one row when those rows share
        one mask (an expanded view, as the sampler builds them), else one per row.
        """
        kv, silent = [], []
        for attn, conv, mask in zip((self.attn2_0, self.attn2_1, self.attn2_2), self._convs(), masks, strict=True):
            kv.append(project_kv(attn, audio[silent_rows:]) if silent_rows < audio.shape[0] else None)
            if silent_rows > 0:
                value = output_projection(attn, attn.to_v(audio.new_zeros(1, 1, audio.shape[-1])))  # (1, 1, C)
                shared = mask.shape[0] == 1 or mask.stride(0) == 0
                rows = mask[:1] if shared else mask[:silent_rows]
                silent.append(self._pointwise(conv, value * rows.to(value.dtype).unsqueeze(-1)))
        return AudioConstants(tuple(kv), tuple(silent))

    def _convs(self) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
        return self.zero_conv_full, self.zero_conv_face, self.zero_conv_lip

    def _branch(self, k: int, n: torch.Tensor, mask: torch.Tensor, consts: AudioConstants,
                silent_rows: int) -> torch.Tensor:
        """Branch ``k`` (full, face, lip) after its zero conv, for every row."""
        attn = (self.attn2_0, self.attn2_1, self.attn2_2)[k]
        parts = []
        if silent_rows > 0:
            parts.append(consts.silent[k].expand(min(silent_rows, n.shape[0]), -1, -1))
        if silent_rows < n.shape[0]:
            heard = attend(attn, n[silent_rows:], kv=consts.kv[k]) * mask[silent_rows:].to(n.dtype).unsqueeze(-1)
            parts.append(self._pointwise(self._convs()[k], heard))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @staticmethod
    def _scaled(weight: BranchWeight, y: torch.Tensor) -> torch.Tensor:
        """``weight * y``: a number scales every row; a per-frame tensor (F,) scales row ``b * F + f`` by ``[f]``."""
        if not isinstance(weight, torch.Tensor):
            return float(weight) * y
        rows = y.shape[0]
        per_row = weight.to(y.device, y.dtype).repeat(rows // weight.numel())
        return y * per_row.view(rows, *([1] * (y.ndim - 1)))

    def weighted_branches(self, n: torch.Tensor, audio: torch.Tensor, masks: Masks, weights: Sequence[BranchWeight],
                          silent_rows: int = 0, consts: AudioConstants | None = None) -> Iterator[torch.Tensor]:
        """The full (pose), face and lip branches in turn, each masked, projected and scaled by its weight."""
        consts = consts if consts is not None else self.prepare(audio, masks, silent_rows)
        for k, (mask, weight) in enumerate(zip(masks, weights, strict=True)):
            yield self._scaled(weight, self._branch(k, n, mask, consts, silent_rows))

    def forward(self, x: torch.Tensor, audio: torch.Tensor, masks: Masks, weights: Sequence[BranchWeight],
                silent_rows: int = 0, consts: AudioConstants | None = None) -> torch.Tensor:
        """``x``: (B*F, N, C) tokens; ``audio``: (B*F, T, D); ``masks``: full/face/lip (B*F, N).

        ``weights``: pose, face, lip: numbers, or per-frame tensors (F,) (the same for every batch entry).
        ``silent_rows``: the leading rows whose audio tokens are all zero (CFG's unconditional half).
        ``consts``: :meth:`prepare` of these audio tokens and masks, made once per clip (None: made here).
        """
        x = attend(self.attn1, self.norm1(x)) + x
        out = x
        for branch in self.weighted_branches(self.norm2(x), audio, masks, weights, silent_rows, consts):
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

    def prepare(self, audio: torch.Tensor, masks: Masks, silent_rows: int = 0) -> AudioConstants:
        """The per-clip part of the (single) audio block: see :meth:`AudioBlock.prepare`."""
        return self.transformer_blocks[0].prepare(audio, masks, silent_rows)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, masks: Masks, weights: Sequence[BranchWeight],
                silent_rows: int = 0, consts: AudioConstants | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = to_tokens(self.proj_in(self.norm(x)))
        for block in self.transformer_blocks:
            y = block(y, audio, masks, weights, silent_rows, consts)
        return self.proj_out(from_tokens(y, h, w)) + x
