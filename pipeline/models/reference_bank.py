"""The ReferenceNet feature bank read by the denoising UNet's spatial attention and motion modules."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_processor import Attention

from .attention_dispatch import attention
from .attention_ops import attend, output_projection, project_kv, split_heads


@dataclass(frozen=True)
class Routing:
    """Which denoising rows read the reference (``with_ref``, each from copy ``source``) and which do not."""

    with_ref: torch.Tensor
    without: torch.Tensor
    source: torch.Tensor


@dataclass
class ReferenceBank:
    """Per-clip reference features, keyed by spatial-transformer path (``down_blocks.0.attentions.1``...).

    ``reference[path]``: (R, HW, C) appearance features that rows may attend to.
    ``motion[path]``: (B, M, HW, C) motion-frame features prepended before the motion module.
    ``row_source``: (B*F,) index into ``reference`` for every denoising row, -1 = plain self-attention; it stays
    on the host, where :meth:`routing` turns it into index tensors once per bank (no device sync per call).
    """

    reference: dict[str, torch.Tensor]
    motion: dict[str, torch.Tensor]
    row_source: torch.Tensor
    _kv_cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _routing: dict[str, Routing] = field(default_factory=dict)

    def rows_with_reference(self) -> torch.Tensor:
        return torch.nonzero(self.row_source >= 0).flatten()

    def rows_without_reference(self) -> torch.Tensor:
        return torch.nonzero(self.row_source < 0).flatten()

    def routing(self, device: torch.device | str) -> Routing:
        """The rows with and without a reference source and each one's source, as index tensors on ``device``.

        Computed once per bank on the host and cached, so the attention calls hold no data-dependent op
        (``torch.compile`` traces them into one graph, CUDA graphs can capture them).
        """
        key = str(device)
        if key not in self._routing:
            source = self.row_source.cpu()
            with_ref = torch.nonzero(source >= 0).flatten()
            self._routing[key] = Routing(with_ref.to(device), torch.nonzero(source < 0).flatten().to(device),
                                         source[with_ref].to(device))
        return self._routing[key]

    def reference_kv(self, path: str, attn: Attention, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Key/value projections of the reference features, computed once per clip and cached."""
        key = (path, dtype)
        if key not in self._kv_cache:
            self._kv_cache[key] = project_kv(attn, self.reference[path].to(dtype))
        return self._kv_cache[key]

    def cfg_half(self, index: int, frames: int) -> ReferenceBank:
        """Half ``index`` (0 = unconditional, 1 = conditional) of a bank built for a CFG-doubled batch.

        The rows of the half are ``index * frames ...``; the reference features and their projected keys and
        values are shared with this bank, so both halves project them once per clip.
        """
        rows = slice(index * frames, (index + 1) * frames)
        motion = {path: feats[index:index + 1] for path, feats in self.motion.items()}
        return ReferenceBank(self.reference, motion, self.row_source[rows], self._kv_cache)

    def rounded(self, dtype: torch.dtype) -> ReferenceBank:
        """The bank with every feature rounded to ``dtype`` and back (the original keeps its bank in fp16)."""
        def rnd(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype).to(t.dtype)

        return ReferenceBank(reference={k: rnd(v) for k, v in self.reference.items()},
                             motion={k: rnd(v) for k, v in self.motion.items()}, row_source=self.row_source)

    def motion_frames(self, path: str, height: int, width: int) -> torch.Tensor:
        """Motion features of ``path`` as (B, M, C, H, W)."""
        feats = self.motion[path]
        b, m, hw, c = feats.shape
        if hw != height * width:
            raise ValueError(f"reference bank {path}: {hw} tokens do not match a {height}x{width} feature map")
        return feats.view(b, m, height, width, c).permute(0, 1, 4, 2, 3)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ReferenceBank:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)

        return ReferenceBank(
            reference={k: move(v) for k, v in self.reference.items()},
            motion={k: move(v) for k, v in self.motion.items()},
            row_source=self.row_source,
        )


def reference_self_attention(attn: Attention, tokens: torch.Tensor, bank: ReferenceBank | None,
                             path: str) -> torch.Tensor:
    """attn1 of the denoiser: rows with a reference source attend to [own tokens, reference tokens].

    Rows without one (the unconditional CFG half) attend to their own tokens only. The reference keys and
    values are projected once per clip (:meth:`ReferenceBank.reference_kv`).
    """
    if bank is None or path not in bank.reference:
        return attend(attn, tokens)
    routing = bank.routing(tokens.device)
    with_ref, without, idx = routing.with_ref, routing.without, routing.source
    if with_ref.numel() == 0:
        return attend(attn, tokens)
    q = split_heads(attn.to_q(tokens), attn.heads)
    k, v = project_kv(attn, tokens)
    k_ref, v_ref = bank.reference_kv(path, attn, tokens.dtype)
    out = tokens.new_empty(q.shape[0], q.shape[2], q.shape[1] * q.shape[3])  # (rows, HW, heads*D)
    k_joined = torch.cat([k[with_ref], k_ref[idx]], dim=2)
    v_joined = torch.cat([v[with_ref], v_ref[idx]], dim=2)
    out[with_ref] = attention(q[with_ref], k_joined, v_joined, attn.scale)
    if without.numel():
        out[without] = attention(q[without], k[without], v[without], attn.scale)
    return output_projection(attn, out)
