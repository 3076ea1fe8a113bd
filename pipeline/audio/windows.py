"""wav2vec2 over a normalised 16 kHz wave of any length: ``(S,)`` samples -> ``(seq_len, 12, C)`` frame states.

Short audio takes the encoder's own forward in one pass. Long audio keeps every step exact: the CNN runs
in chunks with whole-file GroupNorm statistics (its output equals the single-pass output), and the
transformer encoder runs over the whole sequence in one pass as the original does, with SDPA attention
whose memory grows linearly. Only audio longer than ``max_window_seconds`` (its compute grows
quadratically) runs the encoder in overlapping windows that are cross-faded in the middle of each
overlap, an approximation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .decode import TARGET_SAMPLE_RATE as SR
from .wav2vec import Wav2VecEncoder, interpolate_frames

logger = logging.getLogger(__name__)

CNN_CHUNK_SECONDS = 20.0
MIN_WINDOW_FRAMES = 16
MIN_OVERLAP_FRAMES = 4

ProgressFn = Callable[[int, int], None]


def _conv_out_len(encoder: Wav2VecEncoder, samples: int) -> int:
    n = samples
    for layer in encoder.model.feature_extractor.conv_layers:
        n = (n - layer.conv.kernel_size[0]) // layer.conv.stride[0] + 1
    return n


def _first_layer_stats(encoder: Wav2VecEncoder, wave: torch.Tensor, chunk_frames: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and ``1 / std`` of the first conv's output over the whole wave, streamed in chunks.

    With ``feat_extract_norm == "group"`` the first layer's GroupNorm (one group per channel) normalises
    over the whole sequence, so a chunked CNN needs these whole-file statistics.
    """
    first = encoder.model.feature_extractor.conv_layers[0]
    conv0 = first.conv
    k0, s0 = conv0.kernel_size[0], conv0.stride[0]
    n0 = (wave.shape[1] - k0) // s0 + 1
    acc = torch.zeros(conv0.out_channels, dtype=torch.float64, device=wave.device)
    acc2 = torch.zeros_like(acc)
    step0 = chunk_frames * encoder.cnn_hop // s0
    for a in range(0, n0, step0):
        b = min(n0, a + step0)
        y = conv0(wave[:, a * s0 : (b - 1) * s0 + k0].view(1, 1, -1))[0].double()
        acc += y.sum(dim=1)
        acc2 += y.pow(2).sum(dim=1)
    mean = acc / n0
    var = (acc2 / n0 - mean.pow(2)).clamp_min(0.0)
    return mean, torch.rsqrt(var + first.layer_norm.eps)


def cnn_chunked(encoder: Wav2VecEncoder, wave: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """CNN features ``(1, T50, C)`` of a ``(1, S)`` wave computed chunk-wise, equal to one pass."""
    layers = list(encoder.model.feature_extractor.conv_layers)
    hop, field = encoder.cnn_hop, encoder.cnn_field
    n_frames = _conv_out_len(encoder, wave.shape[1])
    first = layers[0]
    group = isinstance(getattr(first, "layer_norm", None), torch.nn.GroupNorm)
    if group:
        mean, inv_std = _first_layer_stats(encoder, wave, chunk_frames)
    outs: list[torch.Tensor] = []
    for t0 in range(0, n_frames, chunk_frames):
        t1 = min(n_frames, t0 + chunk_frames)
        h = wave[:, t0 * hop : (t1 - 1) * hop + field][:, None]
        rest = layers
        if group:  # the first layer with the whole-file GroupNorm statistics
            gn = first.layer_norm
            y = first.conv(h)
            y = ((y.double() - mean[None, :, None]) * inv_std[None, :, None]).to(y.dtype)
            h = first.activation(y * gn.weight[None, :, None] + gn.bias[None, :, None])
            rest = layers[1:]
        for layer in rest:
            h = layer(h)
        outs.append(h[..., : t1 - t0])
    return torch.cat(outs, dim=2).transpose(1, 2)


def _crossfade_weights(start: int, end: int, prev_end: int | None, next_start: int | None) -> torch.Tensor:
    """Weights over ``[start, end)``: 1 inside, linear ramps over the middle half of each overlap."""
    idx = torch.arange(start, end, dtype=torch.float64)
    w = torch.ones(end - start, dtype=torch.float64)
    if prev_end is not None:  # overlap [start, prev_end) with the previous window
        ov = prev_end - start
        lo, span = start + ov / 4.0, max(ov / 2.0, 1.0)
        w = torch.minimum(w, ((idx - lo + 0.5) / span).clamp(0.0, 1.0))
    if next_start is not None:  # overlap [next_start, end) with the next window
        ov = end - next_start
        lo, span = next_start + ov / 4.0, max(ov / 2.0, 1.0)
        w = torch.minimum(w, 1.0 - ((idx - lo + 0.5) / span).clamp(0.0, 1.0))
    return w


def plan_windows(n: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Evenly spaced encoder windows ``[(start, end), ...]`` covering ``[0, n)``.

    Every window is ``window`` frames long (the last ends at ``n``) and consecutive windows
    overlap by at least ``overlap`` frames.
    """
    if n <= window:
        return [(0, n)]
    count = math.ceil((n - overlap) / (window - overlap))
    starts = [round(i * (n - window) / (count - 1)) for i in range(count)]
    return [(s, s + window) for s in starts]


def _encode_windows(encoder: Wav2VecEncoder, hidden: torch.Tensor, window: int, overlap: int,
                    progress: ProgressFn | None) -> torch.Tensor:
    """The transformer over overlapping windows of the projected ``(1, N, C)`` features, cross-faded."""
    seq_len = hidden.shape[1]
    spans = plan_windows(seq_len, window, overlap)
    out = torch.zeros(seq_len, encoder.num_layers, encoder.hidden_size, dtype=torch.float32)
    for i, (s, e) in enumerate(spans):
        states = encoder.encode_hidden(hidden[:, s:e]).float().cpu()
        prev_end = spans[i - 1][1] if i > 0 else None
        next_start = spans[i + 1][0] if i + 1 < len(spans) else None
        w = _crossfade_weights(s, e, prev_end, next_start).to(torch.float32)
        out[s:e] += states * w[:, None, None]
        if progress is not None:
            progress(i + 1, len(spans))
    logger.info("encoded %d frames in %d windows of %d frames (overlap %d)", seq_len, len(spans), window, overlap)
    return out


def _done(out: torch.Tensor, progress: ProgressFn | None) -> torch.Tensor:
    if progress is not None:
        progress(1, 1)
    return out


@torch.no_grad()
def encode_wave(
    encoder: Wav2VecEncoder,
    wave: torch.Tensor,
    seq_len: int,
    fps: float,
    max_window_seconds: float,
    overlap_seconds: float,
    progress: ProgressFn | None,
    single_pass: bool = True,
) -> torch.Tensor:
    """Normalised, padded 16 kHz wave -> ``(seq_len, 12, C)`` float32 CPU.

    ``single_pass``: one encoder pass over the whole sequence (as the original); otherwise overlapping windows
    of ``max_window_seconds``.
    """
    dev, dt = encoder.device, encoder.dtype
    if wave.shape[0] < encoder.cnn_field:  # too short for one CNN frame: zero-extend (post-normalisation)
        wave = F.pad(wave, (0, encoder.cnn_field - wave.shape[0]))
    window = max(MIN_WINDOW_FRAMES, int(round(max_window_seconds * fps)))
    chunk_frames = max(64, int(CNN_CHUNK_SECONDS * SR / encoder.cnn_hop))
    if wave.shape[0] <= chunk_frames * encoder.cnn_hop and single_pass:
        return _done(encoder(wave.to(dev, dt), seq_len).cpu(), progress)
    # Long audio: the CNN runs in chunks (exact: whole-file GroupNorm statistics), so its activations stay
    # bounded; the transformer then runs over the whole sequence in one pass, as the original does, as long as
    # it is not longer than ``max_window_seconds`` (SDPA keeps its attention memory linear in length).
    cnn = cnn_chunked(encoder, wave.to(dev, dt)[None], chunk_frames)
    hidden = encoder.project(interpolate_frames(cnn, seq_len))
    del cnn
    if single_pass or seq_len <= window:
        return _done(encoder.encode_hidden(hidden).float().cpu(), progress)
    overlap = max(MIN_OVERLAP_FRAMES, min(int(round(overlap_seconds * fps)), window // 3))
    return _encode_windows(encoder, hidden, window, overlap, progress)
