"""Attention helpers on top of diffusers' ``Attention`` parameter layout (to_q/to_k/to_v/to_out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C/heads)."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, D) -> (B, N, heads*D)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def project_kv(attn: Attention, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Key and value projections of ``context``, split into heads."""
    return split_heads(attn.to_k(context), attn.heads), split_heads(attn.to_v(context), attn.heads)


def attend(
    attn: Attention,
    hidden: torch.Tensor,
    context: torch.Tensor | None = None,
    kv: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Multi-head attention with SDPA; ``kv`` (already projected, split) overrides ``context``."""
    q = split_heads(attn.to_q(hidden), attn.heads)
    if kv is None:
        kv = project_kv(attn, hidden if context is None else context)
    k, v = kv
    out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    out = attn.to_out[0](merge_heads(out))
    return attn.to_out[1](out)


def output_projection(attn: Attention, heads_out: torch.Tensor) -> torch.Tensor:
    """Apply ``to_out`` to a (B, heads, N, D) attention result."""
    return attn.to_out[1](attn.to_out[0](merge_heads(heads_out)))
