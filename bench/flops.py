"""Analytic FLOP count of our Hallo networks (matmul and convolution FLOPs, 2 per multiply-add).

Counts what ``torch.utils.flop_counter.FlopCounterMode`` counts with SDPA on the MATH backend: every
convolution, every linear layer and the two attention matmuls (scores and values); norms, activations and
element-wise ops are not counted. ``tests/test_speed_flops.py`` checks the count against the counter on the
tiny model and on the full-size SD-1.5 UNet / VAE, and against the figures measured on the original code with
that counter at 512²: 53.57 TFLOP per CFG denoising step, 4.78 TFLOP ReferenceNet, 2.51 / 1.12 TFLOP VAE
decode / encode.

``mode="ours"`` counts this package's forward: reference K/V projected once per clip, no reference
attention and no audio cross-attention for the unconditional rows (their audio tokens are zero, so each
branch is the constant ``to_out(to_v(0))``). ``mode="original"`` counts the original's forward: reference K/V
projected for every row at every step, reference attention computed for all rows and the unconditional
rows then recomputed with plain self-attention (its reference-attention processor discards the
unconditional half and runs self-attention for it instead).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..pipeline.models.architecture import HalloArchitecture
from ..pipeline.sampling.presets import PRESETS

# stabilityai/sd-vae-ft-mse (AutoencoderKL) as far as FLOPs are concerned.
SD_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "in_channels": 3,
    "out_channels": 3,
}
TEMB_DIM_FACTOR = 4  # SD time embedding width = 4 x block_out_channels[0]
MODES = ("ours", "original")


@dataclass
class FlopCount:
    """FLOPs by part (``resnet``, ``spatial``, ``reference_attention``, ``audio``, ``motion``, ...)."""

    parts: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, part: str, flops: float) -> None:
        self.parts[part] += float(flops)

    def merge(self, other: FlopCount, times: float = 1.0) -> FlopCount:
        for k, v in other.parts.items():
            self.parts[k] += v * times
        return self

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def as_dict(self) -> dict[str, float]:
        return dict(self.parts)


def linear(tokens: float, cin: int, cout: int) -> float:
    return 2.0 * tokens * cin * cout


def conv(n: float, cin: int, cout: int, h: int, w: int, k: int = 3) -> float:
    """``n`` images, output ``h`` x ``w``."""
    return 2.0 * n * cout * h * w * cin * k * k


def attention(batch: float, lq: int, lk: int, dim: int) -> float:
    """Scores (q @ k^T) plus weighted values, summed over heads."""
    return 4.0 * batch * lq * lk * dim


def _ff(tokens: float, dim: int) -> float:
    """diffusers FeedForward(dim, mult=4, geglu): dim -> 8*dim (GEGLU) -> dim."""
    return linear(tokens, dim, 8 * dim) + linear(tokens, 4 * dim, dim)


def _resnet(acc: FlopCount, n: float, cin: int, cout: int, h: int, w: int, temb_rows: float, temb_dim: int,
            part: str = "resnet") -> None:
    acc.add(part, conv(n, cin, cout, h, w) + conv(n, cout, cout, h, w))
    if cin != cout:
        acc.add(part, conv(n, cin, cout, h, w, k=1))
    if temb_rows:
        acc.add(part, linear(temb_rows, temb_dim, cout))


def _level_size(h: int, w: int, level: int) -> tuple[int, int]:
    for _ in range(level):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def _sd_transformer(acc: FlopCount, n: float, c: int, hw: int, cross_dim: int, context_tokens: int) -> None:
    """diffusers Transformer2DModel (SD-1.5: conv proj_in/out, one block, self-attn, cross-attn, GEGLU)."""
    tokens = n * hw
    acc.add("spatial", 2 * conv(n, c, c, hw, 1, k=1))  # proj_in / proj_out
    acc.add("spatial", 4 * linear(tokens, c, c) + attention(n, hw, hw, c))  # attn1
    acc.add("spatial", 2 * linear(tokens, c, c) + 2 * linear(n * context_tokens, cross_dim, c)
            + attention(n, hw, context_tokens, c))  # attn2
    acc.add("spatial", _ff(tokens, c))


def _unet_walk(acc: FlopCount, arch: HalloArchitecture, lh: int, lw: int, n: float, temb_rows: float,
               spatial_fn, extra_fn=None, with_head: bool = True, embed_rows: float | None = None) -> None:
    """Walk an SD-1.5-shaped UNet at latent size ``lh`` x ``lw`` over ``n`` images.

    ``spatial_fn(level, c, hw)`` counts one spatial transformer; ``extra_fn(block, j, level, c, inner, hw)``
    the audio and motion modules after it (denoising UNet only).
    """
    widths = arch.block_out_channels
    temb = TEMB_DIM_FACTOR * widths[0]
    rows = temb_rows if embed_rows is None else embed_rows
    acc.add("embedding", linear(rows, widths[0], temb) + linear(rows, temb, temb))
    h, w = lh, lw
    acc.add("io", conv(n, 4, widths[0], h, w))
    skips = [widths[0]]
    prev = widths[0]
    for i, out in enumerate(widths):
        h, w = _level_size(lh, lw, i)
        for j in range(2):
            cin = prev if j == 0 else out
            _resnet(acc, n, cin, out, h, w, temb_rows, temb)
            if i < 3:
                spatial_fn(i, out, h * w)
                if extra_fn is not None:
                    extra_fn(f"down_blocks.{i}", j, i, out, prev if j == 0 else out, h * w)
            skips.append(out)
        if i < len(widths) - 1:
            h2, w2 = _level_size(lh, lw, i + 1)
            acc.add("resample", conv(n, out, out, h2, w2))
            skips.append(out)
        prev = out
    c = widths[-1]
    h, w = _level_size(lh, lw, 3)
    _resnet(acc, n, c, c, h, w, temb_rows, temb)
    spatial_fn(3, c, h * w)
    if extra_fn is not None:
        extra_fn("mid_block", 0, 3, c, c, h * w)
    _resnet(acc, n, c, c, h, w, temb_rows, temb)
    rev = list(reversed(widths))
    prev = c
    for i, out in enumerate(rev):
        level = 3 - i
        h, w = _level_size(lh, lw, level)
        inner = rev[min(i + 1, len(rev) - 1)]
        for j in range(3):
            cin = prev if j == 0 else out
            skip = skips.pop()
            _resnet(acc, n, cin + skip, out, h, w, temb_rows, temb)
            if i > 0:
                spatial_fn(level, out, h * w)
                if extra_fn is not None:
                    extra_fn(f"up_blocks.{i}", j, level, out, inner, h * w)
        if i < len(rev) - 1:
            h2, w2 = _level_size(lh, lw, level - 1)
            acc.add("resample", conv(n, out, out, h2, w2))
        prev = out
    if with_head:
        h, w = lh, lw
        acc.add("io", conv(n, widths[0], 4, h, w))


def sd_unet_flops(arch: HalloArchitecture, height: int, width: int, *, batch: int = 1,
                  context_tokens: int = 77) -> FlopCount:
    """A plain SD-1.5 ``UNet2DConditionModel`` forward (for validation: 803.3 GFLOP at 512², 77 tokens)."""
    acc = FlopCount()
    lh, lw = height // 8, width // 8

    def spatial(level: int, c: int, hw: int) -> None:
        _sd_transformer(acc, batch, c, hw, arch.cross_attention_dim, context_tokens)

    _unet_walk(acc, arch, lh, lw, batch, batch, spatial)
    return acc


def reference_flops(arch: HalloArchitecture, height: int, width: int, *, cfg: bool = True, views: int = 3,
                    mode: str = "ours", faithful: bool = True) -> FlopCount:
    """The ReferenceNet pass of one clip (``views`` images, doubled for CFG) and, in our mode, the one-off
    key/value projection of the reference tokens that every denoising step then reuses."""
    _check_mode(mode)
    acc = FlopCount()
    n = views * (2 if cfg else 1)
    lh, lw = height // 8, width // 8

    def spatial(level: int, c: int, hw: int) -> None:
        _sd_transformer(acc, n, c, hw, arch.cross_attention_dim, arch.face_tokens)

    # Ours stops after the last up block; the original also runs conv_norm_out/conv_out.
    _unet_walk(acc, arch, lh, lw, n, n, spatial, with_head=(mode == "original"))
    # Face tokens of the embedding; with CFG also of the zero embedding (the original always projects both).
    projections = 2 if (cfg or mode == "original") else 1
    acc.add("conditioning",
            projections * linear(1, arch.face_embedding_dim, arch.face_tokens * arch.cross_attention_dim))
    if mode == "ours":
        copies = (2 if faithful else 1) if cfg else 1
        for level, c in _spatial_levels(arch):
            h, w = _level_size(lh, lw, level)
            acc.add("reference_kv", 2 * linear(copies * h * w, c, c))
    return acc


def _spatial_levels(arch: HalloArchitecture) -> list[tuple[int, int]]:
    """(level, channels) of the 16 spatial transformers."""
    widths = arch.block_out_channels
    rev = list(reversed(widths))
    out = [(i, widths[i]) for i in range(3) for _ in range(2)] + [(3, widths[-1])]
    out += [(3 - i, rev[i]) for i in range(1, 4) for _ in range(3)]
    return out


def denoiser_flops(arch: HalloArchitecture, height: int, width: int, *, frames: int = 16, cfg: bool = True,
                   motion_frames: int = 2, mode: str = "ours") -> FlopCount:
    """One denoising-UNet call over a clip: ``frames`` frames, doubled when ``cfg``."""
    _check_mode(mode)
    acc = FlopCount()
    b = 2 if cfg else 1
    rows = b * frames
    cond_rows = frames  # rows that read the reference bank
    heard = cond_rows if mode == "ours" else rows  # rows that attend to their audio tokens
    lh, lw = height // 8, width // 8
    face_t, cross = arch.face_tokens, arch.cross_attention_dim
    audio_t, audio_d = arch.audio_tokens, arch.audio_dim

    def spatial(level: int, c: int, hw: int) -> None:
        tokens = rows * hw
        acc.add("spatial", 2 * conv(rows, c, c, hw, 1, k=1))  # proj_in / proj_out
        # attn1 with the reference bank
        if mode == "ours":
            acc.add("spatial", 4 * linear(tokens, c, c))  # q, k, v, out for every row
            acc.add("reference_attention", attention(cond_rows, hw, 2 * hw, c))
            acc.add("spatial", attention(rows - cond_rows, hw, hw, c))
        else:
            acc.add("spatial", 2 * linear(tokens, c, c))  # q, out
            acc.add("reference_attention", 2 * linear(2 * tokens, c, c) + attention(rows, hw, 2 * hw, c))
            if cfg:  # uncond rows recomputed with plain self-attention
                acc.add("reference_attention", 4 * linear((rows - cond_rows) * hw, c, c)
                        + attention(rows - cond_rows, hw, hw, c))
        acc.add("spatial", 2 * linear(tokens, c, c) + 2 * linear(rows * face_t, cross, c)
                + attention(rows, hw, face_t, c))  # attn2 (face tokens, repeated per frame)
        acc.add("spatial", _ff(tokens, c))

    def extra(block: str, j: int, level: int, c: int, inner: int, hw: int) -> None:
        tokens = rows * hw
        # audio module
        acc.add("audio", 2 * conv(rows, c, inner, hw, 1, k=1))
        acc.add("audio", 4 * linear(tokens, inner, inner) + attention(rows, hw, hw, inner))
        for _ in range(3):  # ours: the unconditional rows' zero audio tokens give the constant to_out(to_v(0))
            acc.add("audio", 2 * linear(heard * hw, inner, inner) + 2 * linear(heard * audio_t, audio_d, inner)
                    + attention(heard, hw, audio_t, inner) + linear(tokens, inner, inner))
            if heard < rows:
                acc.add("audio", linear(1, audio_d, inner) + linear(1, inner, inner))
        acc.add("audio", _ff(tokens, inner))
        # motion module over motion_frames + frames
        length = motion_frames + frames
        mt = b * length * hw
        acc.add("motion", 2 * linear(mt, c, c))
        for _ in range(2):
            acc.add("motion", 4 * linear(mt, c, c) + attention(b * hw, length, length, c))
        acc.add("motion", _ff(mt, c))

    temb_rows = rows if mode == "ours" else b
    # ours: time embedding on the B rows, each resnet's time projection on the B*F rows
    _unet_walk(acc, arch, lh, lw, rows, temb_rows, spatial, extra, embed_rows=b)
    return acc


def _vae_mid(acc: FlopCount, n: float, c: int, h: int, w: int) -> None:
    _resnet(acc, n, c, c, h, w, 0, 0, part="vae")
    acc.add("vae", 4 * linear(n * h * w, c, c) + attention(n, h * w, h * w, c))
    _resnet(acc, n, c, c, h, w, 0, 0, part="vae")


def vae_decode_flops(height: int, width: int, config: Mapping[str, Any] | None = None) -> float:
    """One frame through ``AutoencoderKL.decode`` (post_quant_conv included)."""
    cfg = {**SD_VAE_CONFIG, **(dict(config) if config else {})}
    widths = list(cfg["block_out_channels"])
    layers = int(cfg["layers_per_block"]) + 1
    lat = int(cfg["latent_channels"])
    n_up = len(widths) - 1
    h, w = height >> n_up, width >> n_up
    acc = FlopCount()
    acc.add("vae", conv(1, lat, lat, h, w, k=1) + conv(1, lat, widths[-1], h, w))
    _vae_mid(acc, 1, widths[-1], h, w)
    prev = widths[-1]
    for i, out in enumerate(reversed(widths)):
        for j in range(layers):
            _resnet(acc, 1, prev if j == 0 else out, out, h, w, 0, 0, part="vae")
        prev = out
        if i < n_up:
            h, w = 2 * h, 2 * w
            acc.add("vae", conv(1, out, out, h, w))
    acc.add("vae", conv(1, widths[0], int(cfg["out_channels"]), h, w))
    return acc.total


def vae_encode_flops(height: int, width: int, config: Mapping[str, Any] | None = None) -> float:
    """One frame through ``AutoencoderKL.encode`` (quant_conv included)."""
    cfg = {**SD_VAE_CONFIG, **(dict(config) if config else {})}
    widths = list(cfg["block_out_channels"])
    layers = int(cfg["layers_per_block"])
    lat = int(cfg["latent_channels"])
    h, w = height, width
    acc = FlopCount()
    acc.add("vae", conv(1, int(cfg["in_channels"]), widths[0], h, w))
    prev = widths[0]
    for i, out in enumerate(widths):
        for j in range(layers):
            _resnet(acc, 1, prev if j == 0 else out, out, h, w, 0, 0, part="vae")
        prev = out
        if i < len(widths) - 1:
            h, w = h // 2, w // 2
            acc.add("vae", conv(1, out, out, h, w))
    _vae_mid(acc, 1, widths[-1], h, w)
    acc.add("vae", conv(1, widths[-1], 2 * lat, h, w) + conv(1, 2 * lat, 2 * lat, h, w, k=1))
    return acc.total


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


@dataclass
class RenderFlops:
    """FLOPs of a whole render, by stage."""

    reference: float
    denoise: float
    decode: float
    encode: float
    num_frames: int
    fps: float

    @property
    def total(self) -> float:
        return self.reference + self.denoise + self.decode + self.encode

    @property
    def per_video_second(self) -> float:
        return self.total / (self.num_frames / self.fps)

    def as_dict(self) -> dict[str, float]:
        return {"reference": self.reference, "denoise": self.denoise, "decode": self.decode, "encode": self.encode,
                "total": self.total, "per_video_second": self.per_video_second}


def render_flops(arch: HalloArchitecture, height: int, width: int, num_frames: int, *, steps: int = 40,
                 cfg: bool = True, cfg_steps: int | None = None, clip_length: int = 16, fps: float = 25.0,
                 mode: str = "ours", faithful: bool = True, vae_config: Mapping[str, Any] | None = None,
                 motion_encode_first_clip: bool = False) -> RenderFlops:
    """FLOPs of rendering ``num_frames`` frames (whole clips are generated; the last one is trimmed).

    Steps with CFG run the doubled batch, the other steps the conditional half only. The first clip's
    motion frames are the reference latent (no VAE encode) unless ``motion_encode_first_clip``
    (Hallo2's pixel drop). One VAE encode of the reference image is included.
    """
    clips = math.ceil(num_frames / clip_length)
    n_cfg = steps if cfg_steps is None else max(0, min(cfg_steps, steps))
    if not cfg:
        n_cfg = 0
    with_cfg = denoiser_flops(arch, height, width, frames=clip_length, cfg=True, mode=mode).total
    without = denoiser_flops(arch, height, width, frames=clip_length, cfg=False, mode=mode).total
    per_clip_denoise = n_cfg * with_cfg + (steps - n_cfg) * without
    ref = reference_flops(arch, height, width, cfg=cfg, mode=mode, faithful=faithful).total
    encodes = 1 + 2 * (clips - 1) + (2 if motion_encode_first_clip else 0)
    return RenderFlops(
        reference=clips * ref,
        denoise=clips * per_clip_denoise,
        decode=clips * clip_length * vae_decode_flops(height, width, vae_config),
        encode=encodes * vae_encode_flops(height, width, vae_config),
        num_frames=num_frames,
        fps=fps,
    )


def preset_table(size: int = 512, arch: HalloArchitecture | None = None, fps: float = 25.0,
                 seconds: float = 64.0) -> list[dict[str, float | str]]:
    """TFLOP per video second of each preset (ours), with the original code's faithful figure as baseline."""
    arch = arch or HalloArchitecture()
    frames = int(round(seconds * fps))
    original = render_flops(arch, size, size, frames, fps=fps, mode="original").per_video_second
    ours_faithful = render_flops(arch, size, size, frames, fps=fps).per_video_second
    rows: list[dict[str, float | str]] = [{"preset": "original code (faithful)", "tflop_per_video_s": original / 1e12,
                                           "vs_original": 1.0, "vs_faithful": original / ours_faithful}]
    for p in PRESETS.values():
        f = render_flops(arch, size, size, frames, steps=p.steps, cfg_steps=p.cfg_steps, fps=fps).per_video_second
        rows.append({"preset": p.name, "tflop_per_video_s": f / 1e12, "vs_original": f / original,
                     "vs_faithful": f / ours_faithful})
    return rows
