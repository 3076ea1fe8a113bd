"""Attention on top of diffusers' ``Attention`` parameter layout (to_q/to_k/to_v/to_out).

Every attention computed with these weights, by our own forward passes (:func:`attend`) or by diffusers'
(through :class:`DispatchAttnProcessor`), ends in :func:`.attention_dispatch.attention`.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_processor import Attention
from torch import nn

from .attention_dispatch import attention


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C/heads)."""
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def project_kv(attn: Attention, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Key and value projections of ``context``, split into heads."""
    return split_heads(attn.to_k(context), attn.heads), split_heads(attn.to_v(context), attn.heads)


def output_projection(attn: Attention, merged: torch.Tensor) -> torch.Tensor:
    """Apply ``to_out`` to a (B, N, heads*D) attention result."""
    return attn.to_out[1](attn.to_out[0](merged))


def attend(
    attn: Attention,
    hidden: torch.Tensor,
    context: torch.Tensor | None = None,
    kv: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Multi-head attention of ``hidden`` (B, N, C) over ``context`` (default: itself).

    ``kv`` (keys and values already projected and split into heads) overrides ``context``.
    """
    q = split_heads(attn.to_q(hidden), attn.heads)
    if kv is None:
        kv = project_kv(attn, hidden if context is None else context)
    return output_projection(attn, attention(q, kv[0], kv[1], attn.scale))


def _unsupported_features(attn: Attention) -> list[str]:
    """Options of diffusers' ``Attention`` that :class:`DispatchAttnProcessor` does not implement."""
    found = [name for name in ("spatial_norm", "group_norm", "norm_q", "norm_k", "norm_cross")
             if getattr(attn, name, None) is not None]
    if getattr(attn, "residual_connection", False):
        found.append("residual_connection")
    if getattr(attn, "rescale_output_factor", 1.0) != 1.0:
        found.append("rescale_output_factor")
    return found


class DispatchAttnProcessor:
    """diffusers attention processor that computes the attention with :func:`.attention_dispatch.attention`.

    Supports the plain layout the Hallo networks use: 3-D tokens, no mask, no extra norms.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if attention_mask is not None or hidden_states.ndim != 3:
            raise ValueError(
                "DispatchAttnProcessor supports (B, N, C) tokens without an attention mask; got "
                f"hidden_states of shape {tuple(hidden_states.shape)}, mask={attention_mask is not None}"
            )
        return attend(attn, hidden_states, context=encoder_hidden_states)


def use_dispatch_processor(module: nn.Module) -> int:
    """Install :class:`DispatchAttnProcessor` on every ``Attention`` inside ``module``; returns how many."""
    processor = DispatchAttnProcessor()
    count = 0
    for name, sub in module.named_modules():
        if isinstance(sub, Attention):
            unsupported = _unsupported_features(sub)
            if unsupported:
                raise ValueError(f"attention {name}: options {unsupported} are not supported by the dispatch")
            sub.set_processor(processor)
            count += 1
    return count


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(rows, C, H, W) feature map -> (rows, H*W, C) tokens."""
    rows, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(rows, h * w, c)


def from_tokens(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(rows, H*W, C) tokens -> (rows, C, H, W) feature map (a view: not contiguous)."""
    rows, _, c = y.shape
    return y.view(rows, h, w, c).permute(0, 3, 1, 2)
