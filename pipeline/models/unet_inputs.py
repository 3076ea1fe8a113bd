"""What one call of the UNets receives: the per-call conditions and the inputs every block reads."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.models.attention_processor import Attention

from .attention_ops import attend, project_kv
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


class ClipConstants:
    """Tensors that depend only on a clip's conditions (projections of its face tokens, audio tokens and
    motion frames), made on first use and reused by every later denoising step of the clip.

    A CFG half run on its own (:meth:`half`) keeps its own set, shared by all its calls.
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._halves: dict[int, ClipConstants] = {}

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        if key not in self._values:
            self._values[key] = make()
        return self._values[key]

    def half(self, index: int) -> ClipConstants:
        return self._halves.setdefault(index, ClipConstants())


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
    # Filled during the first call; belongs to these conditions (a copy with other tokens needs a new one).
    constants: ClipConstants = field(default_factory=ClipConstants)


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
    face_tokens: torch.Tensor | None = None  # (B, T, D): ``context`` before it is repeated for every frame
    constants: ClipConstants | None = None  # per-clip projections; None: computed in every call

    def _constant(self, key: tuple, make: Callable[[], Any]) -> Any:
        return make() if self.constants is None else self.constants.get(key, make)

    def cross_kv(self, attn: Attention, path: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys and values of the face tokens for the spatial cross-attention ``path``, one row per frame."""
        tokens = self.face_tokens
        if tokens is None:
            return None

        def make() -> tuple[torch.Tensor, torch.Tensor]:
            return tuple(t.repeat_interleave(self.frames, dim=0) for t in project_kv(attn, tokens.to(self.temb.dtype)))

        return self._constant((path, "face_kv", self.temb.dtype), make)

    def audio_constants(self, module: Any, path: str, level: int) -> Any:
        """The per-clip part of the audio module after transformer ``path`` (see ``AudioBlock.prepare``)."""
        audio, masks, _, silent = self.audio_inputs(level)
        return self._constant((path, "audio", audio.dtype), lambda: module.prepare(audio, masks, silent))

    def motion_constants(self, module: Any, path: str, motion: torch.Tensor | None) -> Any:
        """The per-clip part of the motion module after ``path`` (see ``MotionModule.prepare``)."""
        if motion is None:
            return None
        return self._constant((path, "motion", self.temb.dtype), lambda: module.prepare(motion.to(self.temb.dtype)))

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
