"""What one call of the UNets receives: the per-call conditions and the inputs every block reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention

from .attention_ops import attend
from .reference_bank import ReferenceBank

# attn1 of a spatial transformer: (attention, norm1 output (rows, HW, C), transformer path) -> attention output
SelfAttention = Callable[[Attention, torch.Tensor, str], torch.Tensor]


def plain_self_attention(attn: Attention, tokens: torch.Tensor, path: str) -> torch.Tensor:
    """Every row attends to its own tokens only."""
    return attend(attn, tokens)


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
    # pose (full), face, lip weights of the audio branches: numbers, or per-frame tensors (F,)
    motion_scale: tuple[float | torch.Tensor, ...] = (1.0, 1.0, 1.0)
    # The first ``silent_audio`` batch entries have all-zero audio tokens (CFG's unconditional half): their
    # audio cross-attentions are computed without attention (see audio_attention.py).
    silent_audio: int = 0


@dataclass
class BlockInputs:
    """The inputs every UNet block reads in one call; tensors are frames-flattened rows (B*F, ...)."""

    temb: torch.Tensor  # (rows, temb_channels)
    context: torch.Tensor  # (rows, T, D) face tokens for the spatial cross-attention
    self_attention: SelfAttention = plain_self_attention
    frames: int = 1
    audio: torch.Tensor | None = None  # (rows, tokens, D) audio tokens
    masks: LevelMasks | None = None
    audio_weights: Sequence[float | torch.Tensor] = (1.0, 1.0, 1.0)  # pose (full), face, lip; see UNetConditions
    bank: ReferenceBank | None = None  # source of the motion-frame features
    silent_audio_rows: int = 0  # leading rows whose audio tokens are all zero

    def audio_inputs(self, level: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], Sequence[float | torch.Tensor],
                                                int]:
        """Audio tokens, the masks of resolution ``level``, the branch weights and the silent rows."""
        if self.audio is None or self.masks is None:
            raise ValueError("a block with audio modules needs BlockInputs.audio and BlockInputs.masks")
        return self.audio, self.masks.level(level), self.audio_weights, self.silent_audio_rows

    def motion_frames(self, path: str, x: torch.Tensor) -> torch.Tensor | None:
        """Motion-frame features (B, M, C, H, W) for the motion module after transformer ``path``, if any."""
        if self.bank is None or path not in self.bank.motion:
            return None
        return self.bank.motion_frames(path, x.shape[-2], x.shape[-1])
