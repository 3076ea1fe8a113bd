"""Per-step hooks of the clip loop: progress, cancellation and the latent preview (no ComfyUI here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import public_name

if TYPE_CHECKING:  # hallo-render imports RenderCancelled before it loads torch
    import torch

__all__ = ["LatentCallback", "RenderCancelled", "StepHooks", "preview_latent"]

# ``on_latent(done, total, latent)``: ``latent`` is (1, 4, h, w), scaled like the UNet's latents (x 0.18215)
LatentCallback = Callable[[int, int, "torch.Tensor"], None]


@public_name
class RenderCancelled(InterruptedError):
    """Raised when the cancellation hook asks to stop; no partial clip is emitted."""


def preview_latent(step_output: Any) -> torch.Tensor:
    """The middle frame of the clip's current x0 prediction (the scheduler's ``pred_original_sample``; the
    noisy latents for solvers without one), as (1, 4, h, w)."""
    x0 = getattr(step_output, "pred_original_sample", None)
    if x0 is None:
        x0 = step_output.prev_sample
    return x0[:, :, x0.shape[2] // 2]


@dataclass
class StepHooks:
    """Per-step progress, cancellation and latent preview for the whole render."""

    total: int
    on_step: Callable[[int, int], None] | None = None
    should_cancel: Callable[[], bool] | None = None
    on_latent: LatentCallback | None = None
    done: int = 0

    def before_step(self, clip: int, step: int) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise RenderCancelled(f"render cancelled in clip {clip + 1} at step {step + 1}")

    def after_step(self, step_output: Any = None) -> None:
        """Count the step; hand the x0 preview of ``step_output`` (a scheduler output) to ``on_latent``."""
        self.done += 1
        if self.on_step is not None:
            self.on_step(self.done, self.total)
        if self.on_latent is not None and step_output is not None:
            self.on_latent(self.done, self.total, preview_latent(step_output))
