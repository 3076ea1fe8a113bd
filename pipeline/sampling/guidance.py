"""How the denoising steps of a clip call the UNet: the CFG halves, and DeepCache's full and shallow calls."""

from __future__ import annotations

import torch

from ..models.unets import DeepCache, DenoisingUNet, LevelMasks, UNetConditions


def cfg_half(ctx: UNetConditions, index: int, frames: int) -> UNetConditions:
    """Half ``index`` (0 = unconditional, 1 = conditional) of a CFG-doubled set of conditions.

    Used when the halves run one after the other (low-VRAM mode) and for steps that skip CFG. Each half keeps
    its own per-clip constants, shared by all its calls.
    """
    rows = slice(index * frames, (index + 1) * frames)
    groups = (ctx.masks.full, ctx.masks.face, ctx.masks.lip)
    return UNetConditions(
        face_tokens=ctx.face_tokens[index:index + 1],
        audio_tokens=ctx.audio_tokens[index:index + 1],
        masks=LevelMasks(*([m[rows] for m in group] for group in groups)),
        face_locator=None if ctx.face_locator is None else ctx.face_locator[rows],
        bank=None if ctx.bank is None else ctx.bank.cfg_half(index, frames),
        motion_scale=ctx.motion_scale,
        silent_audio=1 if ctx.silent_audio > index else 0,
        constants=ctx.constants.half(index),
    )


def run_unet(unet: DenoisingUNet, latents: torch.Tensor, t: torch.Tensor, ctx: UNetConditions,
             deep: DeepCache | None) -> torch.Tensor:
    """One denoiser call; without DeepCache exactly the plain ``unet(latents, t, ctx)`` call."""
    return unet(latents, t, ctx) if deep is None else unet(latents, t, ctx, deep)


class DeepCacheSteps:
    """DeepCache over one clip: every ``interval``-th step (from the first) runs the whole UNet and keeps the
    input of its last up block; the steps between run only the outer blocks on it.

    One cache per row layout: ``"cfg"`` (both halves batched), ``"uncond"`` / ``"cond"`` (one half). When CFG
    stops, the conditional half starts from the conditional rows of the batched cache.
    """

    def __init__(self, interval: int, frames: int) -> None:
        self.interval = int(interval)
        self.frames = frames
        self._slots: dict[str, DeepCache] = {}

    def slot(self, step: int, layout: str) -> DeepCache | None:
        """The cache for ``layout`` at ``step``, told whether to reuse; None when DeepCache is off."""
        if self.interval <= 1:
            return None
        slot = self._slots.setdefault(layout, DeepCache())
        batched = self._slots.get("cfg")
        if layout == "cond" and slot.features is None and batched is not None and batched.features is not None:
            slot.features = batched.features[self.frames:]
        slot.reuse = step % self.interval != 0 and slot.features is not None
        return slot
