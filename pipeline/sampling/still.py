"""``still``: keep the head pose of the portrait (presenter videos).

The released network has no input that holds the head: the motion modules move the whole frame, and a pose
weight of 0 only takes away the audio's share of that motion. What any denoiser allows is the inpainting
recipe: after every denoising step the latents outside the face are replaced by the reference latent, noised
to the noise level of the next step with the clip's own starting noise (after the last step: the clean
reference latent). Hair, neck, shoulders and background then stay those of the portrait in every frame, so
the head cannot turn or sway; the face inside them still moves: lips, jaw, eyes, expression.

The blend weight comes from the pose branch's own mask (``full``, at the latent resolution: 1 away from the
face, about 0.5 on the edge of the face box, 0 in its middle): 0 inside the face box, so the whole face stays
free, rising to 1 where the mask reaches 0.9. The mask alone would do: applied at every step, even a partial
weight holds the latents almost completely, and would freeze the face too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .settings import HalloReference

#: ``full`` mask values where the blend weight starts to rise (the face box edge) and where it reaches 1.
FREE_BELOW, PINNED_FROM = 0.5, 0.9


def keep_weight(full_mask: torch.Tensor) -> torch.Tensor:
    """Share of the reference in the latents: 0 inside the face box, 1 away from it, linear in between."""
    return ((full_mask - FREE_BELOW) / (PINNED_FROM - FREE_BELOW)).clamp(0.0, 1.0)


@dataclass
class StillAnchor:
    """The reference latent, where to keep it, and the noise levels of the scheduler."""

    reference: torch.Tensor  # (1, 4, 1, h, w)
    keep: torch.Tensor  # (1, 1, 1, h, w) in 0..1: share of the reference in the result
    alphas_cumprod: torch.Tensor  # (train timesteps,) on the CPU

    @classmethod
    def build(cls, reference: HalloReference, scheduler: Any, device: torch.device) -> StillAnchor:
        """From the portrait and the scheduler (one of scheduling.py: its ``alphas_cumprod``)."""
        latent = reference.latent.to(device, torch.float32)  # (1, 4, h, w)
        h, w = latent.shape[-2:]
        keep = keep_weight(reference.full_masks[0].reshape(1, 1, 1, h, w).to(device, torch.float32))
        return cls(latent.unsqueeze(2), keep, scheduler.alphas_cumprod.detach().cpu().double())

    def target(self, noise: torch.Tensor, timestep: int | torch.Tensor | None) -> torch.Tensor:
        """The reference at the noise level of ``timestep`` (None: clean), with ``noise`` (1, 4, F, h, w)."""
        if timestep is None:
            return self.reference.expand_as(noise)
        alpha = float(self.alphas_cumprod[int(timestep)])
        return math.sqrt(alpha) * self.reference + math.sqrt(1.0 - alpha) * noise.float()

    def pin(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, step: int) -> torch.Tensor:
        """The latents after denoising step ``step`` of ``timesteps``, set to the reference outside the face.

        ``noise``: the clip's starting noise (1, 4, F, h, w); after the last step the reference is clean.
        """
        next_timestep = timesteps[step + 1] if step + 1 < len(timesteps) else None
        target = self.target(noise, next_timestep).to(latents.dtype)
        return torch.lerp(latents, target, self.keep.to(latents.dtype))
