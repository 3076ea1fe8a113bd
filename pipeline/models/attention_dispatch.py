"""The one function every attention of the Hallo networks goes through.

``attention(q, k, v, scale)`` takes heads-split tensors (B, heads, N, D) and returns (B, N, heads*D). By default
it runs ``torch.nn.functional.scaled_dot_product_attention``. A host application can register its own kernel
with :func:`set_attention_backend`; inside ComfyUI the nodes layer registers core's
``comfy.ldm.modules.attention.optimized_attention`` so that the pack uses the kernel ComfyUI selected
(xformers, flash, sage, split, sub-quadratic, PyTorch). This package never imports ComfyUI itself.

A backend follows the contract of ComfyUI's ``optimized_attention``::

    backend(q, k, v, heads, mask=None, attn_precision=None, skip_reshape=False, skip_output_reshape=False)

It is called with ``skip_reshape=True`` (inputs (B, heads, N, D)) and the default output layout
(B, N, heads*D). Such a backend always scales the logits by ``D ** -0.5``; a call with any other scale uses SDPA.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

AttentionBackend = Callable[..., torch.Tensor]

_backend: AttentionBackend | None = None


def set_attention_backend(backend: AttentionBackend | None) -> None:
    """Route every attention through ``backend`` (ComfyUI's ``optimized_attention`` contract); None = SDPA."""
    global _backend
    if backend is not None and not callable(backend):
        raise TypeError(f"set_attention_backend: expected a callable or None, got {type(backend).__name__}")
    _backend = backend
    name = "SDPA" if backend is None else getattr(backend, "__name__", repr(backend))
    logger.info("attention backend: %s", name)


def attention_backend() -> AttentionBackend | None:
    """The registered backend, or None when SDPA is used."""
    return _backend


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """PyTorch's fused attention on (B, heads, N, D) inputs; returns (B, N, heads*D)."""
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v for (B, heads, N, D) inputs (``scale`` None = D**-0.5); returns (B, N, heads*D)."""
    backend = _backend
    default_scale = q.shape[-1] ** -0.5
    if backend is None or (scale is not None and not math.isclose(scale, default_scale, rel_tol=1e-6)):
        return sdpa(q, k, v, scale)
    b, heads, n, d = q.shape
    out = backend(q, k, v, heads, skip_reshape=True)
    if out.shape != (b, n, heads * d):
        raise RuntimeError(
            f"attention backend {getattr(backend, '__name__', backend)!r} returned shape {tuple(out.shape)}, "
            f"expected {(b, n, heads * d)} (the optimized_attention contract with skip_reshape=True)"
        )
    return out
