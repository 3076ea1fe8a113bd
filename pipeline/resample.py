"""Band-limited resampling to 16 kHz (Kaiser-windowed sinc, polyphase) and mono downmix.

Pure torch, no torchaudio/scipy. The filter is designed for the exact rational ratio
``target/source`` (reduced by their gcd), so every output sample lies on the exact time grid
``n * source/target`` input samples, and every polyphase branch has unit DC gain.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import torch

logger = logging.getLogger(__name__)

TARGET_SAMPLE_RATE = 16000
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 96000

# Filter design: passband edge as a fraction of the lower Nyquist, zero crossings per side and the
# Kaiser window shape. 0.94 * 8 kHz = 7.52 kHz passband for 16 kHz output; beta 8.6 ~ -80 dB.
_ROLLOFF = 0.94
_ZERO_CROSSINGS = 32
_KAISER_BETA = 8.6
# Output samples per phase processed in one convolution call (bounds temporary memory).
_CHUNK = 1 << 15


def downmix_mono(waveform: torch.Tensor) -> torch.Tensor:
    """Average the channels of a ``[C, T]`` waveform into a ``[T]`` mono signal (float32)."""
    if waveform.ndim == 1:
        return waveform.to(torch.float32)
    if waveform.ndim != 2:
        raise ValueError(f"downmix_mono expects a [C, T] waveform, got shape {tuple(waveform.shape)}")
    return waveform.to(torch.float32).mean(dim=0)


@lru_cache(maxsize=16)
def _polyphase_kernel(up: int, down: int) -> tuple[torch.Tensor, int]:
    """Return the (up, 1, K) float32 kernel bank and the left padding for ratio ``up/down``.

    Phase ``p`` produces outputs ``n = p + up*k`` whose input-time position is ``n*down/up``;
    its taps are placed at offset ``floor(p*down/up)`` inside the shared kernel width so that one
    strided ``conv1d`` (stride ``down``) evaluates all phases at once.
    """
    cutoff = 0.5 * min(1.0, up / down) * _ROLLOFF  # cycles per input sample
    half_width = _ZERO_CROSSINGS / (2.0 * cutoff)  # input samples each side
    half = int(math.ceil(half_width))
    taps = 2 * half + 2
    phases = torch.arange(up, dtype=torch.float64)
    pos = phases * down / up
    base = torch.floor(pos)
    frac = pos - base
    j = torch.arange(-half, half + 2, dtype=torch.float64)  # relative input index
    t = frac[:, None] - j[None, :]  # time from tap to output instant, in input samples
    h = 2.0 * cutoff * torch.special.sinc(2.0 * cutoff * t)
    ratio = (t / half_width).clamp(-1.0, 1.0)
    window = torch.special.i0(_KAISER_BETA * torch.sqrt(1.0 - ratio**2)) / torch.special.i0(
        torch.tensor(_KAISER_BETA, dtype=torch.float64)
    )
    window = torch.where(t.abs() <= half_width, window, torch.zeros_like(window))
    h = h * window
    h = h / h.sum(dim=1, keepdim=True)  # exact unit DC gain per phase
    max_base = int(base.max().item())
    bank = torch.zeros(up, taps + max_base, dtype=torch.float64)
    for p in range(up):
        b = int(base[p].item())
        bank[p, b : b + taps] = h[p]
    return bank.to(torch.float32).unsqueeze(1).contiguous(), half


def resample(signal: torch.Tensor, orig_rate: int, new_rate: int = TARGET_SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling of a 1-D float signal from ``orig_rate`` to ``new_rate``.

    Output length is ``ceil(len * new_rate / orig_rate)``; the signal is zero-extended at both ends
    (as soxr/scipy do), so the first/last few milliseconds see a filter edge.
    """
    if signal.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {tuple(signal.shape)}")
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    x = signal.to(torch.float32)
    if orig_rate == new_rate:
        return x.clone()
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    kernel, half = _polyphase_kernel(up, down)
    kernel = kernel.to(x.device)
    n_in = x.shape[0]
    n_out = -(-n_in * up // down)
    per_phase = -(-n_out // up)  # outputs per phase (k index), last phase may overshoot
    width = kernel.shape[-1]
    # x_pad[m] = x[m - half]; the conv reads x_pad[k*down : k*down + width].
    need = (per_phase - 1) * down + width
    x_pad = torch.nn.functional.pad(x, (half, max(0, need - half - n_in)))
    out = torch.empty(up, per_phase, dtype=torch.float32, device=x.device)
    for k0 in range(0, per_phase, _CHUNK):
        k1 = min(per_phase, k0 + _CHUNK)
        seg = x_pad[k0 * down : (k1 - 1) * down + width]
        out[:, k0:k1] = torch.nn.functional.conv1d(seg.view(1, 1, -1), kernel, stride=down)[0]
    # out[p, k] is output sample n = p + up*k: interleave phases.
    return out.t().reshape(-1)[:n_out].contiguous()


def to_mono_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Downmix a ``[C, T]`` waveform to mono and resample it to 16 kHz; returns ``[T']`` float32."""
    sample_rate = check_sample_rate(sample_rate)
    return resample(downmix_mono(waveform), sample_rate, TARGET_SAMPLE_RATE)


def check_sample_rate(sample_rate: int | float) -> int:
    """Validate that a sample rate is an integer in 8-96 kHz and return it as ``int``."""
    try:
        rate_f = float(sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"audio sample_rate must be a number, got {sample_rate!r}") from None
    if not math.isfinite(rate_f) or rate_f != int(rate_f):
        raise ValueError(f"audio sample_rate must be a whole number of Hz, got {sample_rate!r}")
    rate = int(rate_f)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"audio sample_rate {rate} Hz is not supported: use audio sampled at "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (resample it first, e.g. with ffmpeg -ar 16000)"
        )
    return rate
