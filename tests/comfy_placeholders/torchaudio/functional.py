"""Placeholder ``torchaudio.functional``: ``resample`` with torchaudio's signature and output length."""

from __future__ import annotations

import math

import numpy as np
import torch


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, *args: object, **kwargs: object) -> torch.Tensor:
    """Resample the last axis from ``orig_freq`` to ``new_freq`` Hz with a polyphase low-pass filter.

    The input comes back unchanged when the rates are equal; otherwise the result has
    ``ceil(new_freq * length / orig_freq)`` samples, as torchaudio's has, and the input's dtype and device.
    """
    from scipy.signal import resample_poly

    orig, new = int(orig_freq), int(new_freq)
    if orig <= 0 or new <= 0:
        raise ValueError(f"resample: rates must be positive, got {orig_freq} -> {new_freq}")
    if orig == new:
        return waveform
    g = math.gcd(orig, new)
    x = waveform.detach().to("cpu", torch.float64).numpy()
    y = resample_poly(x, new // g, orig // g, axis=-1)
    y = y[..., : math.ceil(new * waveform.shape[-1] / orig)]
    return torch.from_numpy(np.ascontiguousarray(y)).to(waveform.device, waveform.dtype)
