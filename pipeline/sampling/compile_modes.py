"""The ``torch.compile`` modes a user can pick, importable without torch (hallo-render's parser lists them)."""

from __future__ import annotations

#: ``off`` and the three ways to compile; ``default`` is what ``--compile`` alone means.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")
#: The modes that compile the whole denoising UNet forward (torch.compile's mode of the same name).
WHOLE_UNET_MODES = ("reduce-overhead", "max-autotune-no-cudagraphs")
