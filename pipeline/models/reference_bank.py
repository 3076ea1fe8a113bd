"""The ReferenceNet feature bank read by the denoising UNet's spatial attention and motion modules."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers.models.attention_processor import Attention

from .attention_ops import project_kv


@dataclass
class ReferenceBank:
    """Per-clip reference features, keyed by spatial-transformer path (``down_blocks.0.attentions.1``...).

    ``reference[path]``: (R, HW, C) appearance features that rows may attend to.
    ``motion[path]``: (B, M, HW, C) motion-frame features prepended before the motion module.
    ``row_source``: (B*F,) index into ``reference`` for every denoising row, -1 = plain self-attention.
    """

    reference: dict[str, torch.Tensor]
    motion: dict[str, torch.Tensor]
    row_source: torch.Tensor
    _kv_cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def rows_with_reference(self) -> torch.Tensor:
        return torch.nonzero(self.row_source >= 0).flatten()

    def rows_without_reference(self) -> torch.Tensor:
        return torch.nonzero(self.row_source < 0).flatten()

    def reference_kv(self, path: str, attn: Attention, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Key/value projections of the reference features, computed once per clip and cached."""
        key = (path, dtype)
        if key not in self._kv_cache:
            self._kv_cache[key] = project_kv(attn, self.reference[path].to(dtype))
        return self._kv_cache[key]

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
            row_source=self.row_source.to(device),
        )
