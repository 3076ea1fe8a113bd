"""Analytic FLOP count of our Hallo networks (matmul and convolution FLOPs, 2 per multiply-add).

Counts what ``torch.utils.flop_counter.FlopCounterMode`` counts with SDPA on the MATH backend: every
convolution, every linear layer and the two attention matmuls (scores and values); norms, activations and
element-wise ops are not counted. ``tests/test_speed_flops.py`` checks the count against the counter on the
tiny model and on the full-size SD-1.5 UNet / VAE, and against the figures measured on the original code with
that counter at 512²: 53.57 TFLOP per CFG denoising step, 4.78 TFLOP ReferenceNet, 2.51 / 1.12 TFLOP VAE
decode / encode.

``mode="ours"`` counts this package's forward. Once per clip: the reference K/V; the face tokens' K/V of the
spatial cross-attentions; the audio tokens' K/V; the unconditional rows' three audio branches (zero tokens,
so each is the constant ``zero_conv(to_out(to_v(0)) * mask)``); and the motion frames' ``proj_in`` and first
temporal queries/keys/values. At every step: no reference attention and no audio cross-attention for the
unconditional rows, and nothing of a motion module that only feeds its discarded motion-frame outputs.
``mode="original"`` counts the original's forward: reference K/V projected for every row at every step,
reference attention computed for all rows and the unconditional rows then recomputed with plain
self-attention (its reference-attention processor discards the unconditional half and runs self-attention
for it instead), every cross-attention projected at every step, the motion modules over all M+F frames.

``shallow=True`` counts a DeepCache call (``SamplerSettings.cache_interval``): the first down block without
its downsampler and the last up block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..pipeline.models.architecture import HalloArchitecture
from ..pipeline.sampling.presets import PRESETS
from .flop_ops import TEMB_DIM_FACTOR, FlopCount, attention, conv, ff, level_size, linear, resnet
from .flops_vae import SD_VAE_CONFIG, vae_decode_flops, vae_encode_flops

__all__ = ["SD_VAE_CONFIG", "FlopCount", "RenderFlops", "clip_constant_flops", "denoiser_flops", "preset_table",
           "reference_flops", "render_flops", "sd_unet_flops", "vae_decode_flops", "vae_encode_flops"]

MODES = ("ours", "original")


def _sd_transformer(acc: FlopCount, n: float, c: int, hw: int, cross_dim: int, context_tokens: int) -> None:
    """diffusers Transformer2DModel (SD-1.5: conv proj_in/out, one block, self-attn, cross-attn, GEGLU)."""
    tokens = n * hw
    acc.add("spatial", 2 * conv(n, c, c, hw, 1, k=1))  # proj_in / proj_out
    acc.add("spatial", 4 * linear(tokens, c, c) + attention(n, hw, hw, c))  # attn1
    acc.add("spatial", 2 * linear(tokens, c, c) + 2 * linear(n * context_tokens, cross_dim, c)
            + attention(n, hw, context_tokens, c))  # attn2
    acc.add("spatial", ff(tokens, c))


def _unet_walk(acc: FlopCount, arch: HalloArchitecture, lh: int, lw: int, n: float, temb_rows: float,
               spatial_fn, extra_fn=None, with_head: bool = True, embed_rows: float | None = None,
               shallow: bool = False) -> None:
    """Walk an SD-1.5-shaped UNet at latent size ``lh`` x ``lw`` over ``n`` images.

    ``spatial_fn(level, c, hw)`` counts one spatial transformer; ``extra_fn(block, j, level, c, inner, hw)``
    the audio and motion modules after it (denoising UNet only). ``shallow``: only the first down block
    (without its downsampler) and the last up block run (a DeepCache call).
    """
    widths = arch.block_out_channels
    temb = TEMB_DIM_FACTOR * widths[0]
    rows = temb_rows if embed_rows is None else embed_rows
    acc.add("embedding", linear(rows, widths[0], temb) + linear(rows, temb, temb))
    acc.add("io", conv(n, 4, widths[0], lh, lw))
    skips = [widths[0]]
    prev = widths[0]
    for i, out in enumerate(widths[:1] if shallow else widths):
        h, w = level_size(lh, lw, i)
        for j in range(2):
            resnet(acc, n, prev if j == 0 else out, out, h, w, temb_rows, temb)
            if i < 3:
                spatial_fn(i, out, h * w)
                if extra_fn is not None:
                    extra_fn(f"down_blocks.{i}", j, i, out, prev if j == 0 else out, h * w)
            skips.append(out)
        if i < len(widths) - 1 and not shallow:
            acc.add("resample", conv(n, out, out, *level_size(lh, lw, i + 1)))
            skips.append(out)
        prev = out
    rev = list(reversed(widths))
    if shallow:
        prev = rev[-2]  # the cached input of the last up block
    else:
        _mid(acc, arch, lh, lw, n, temb_rows, spatial_fn, extra_fn)
        prev = widths[-1]
    for i, out in enumerate(rev):
        if shallow and i < len(rev) - 1:
            continue
        level = 3 - i
        h, w = level_size(lh, lw, level)
        for j in range(3):
            resnet(acc, n, (prev if j == 0 else out) + skips.pop(), out, h, w, temb_rows, temb)
            if i > 0:
                spatial_fn(level, out, h * w)
                if extra_fn is not None:
                    extra_fn(f"up_blocks.{i}", j, level, out, rev[min(i + 1, len(rev) - 1)], h * w)
        if i < len(rev) - 1:
            acc.add("resample", conv(n, out, out, *level_size(lh, lw, level - 1)))
        prev = out
    if with_head:
        acc.add("io", conv(n, widths[0], 4, lh, lw))


def _mid(acc: FlopCount, arch: HalloArchitecture, lh: int, lw: int, n: float, temb_rows: float, spatial_fn,
         extra_fn) -> None:
    c = arch.block_out_channels[-1]
    h, w = level_size(lh, lw, 3)
    temb = TEMB_DIM_FACTOR * arch.block_out_channels[0]
    resnet(acc, n, c, c, h, w, temb_rows, temb)
    spatial_fn(3, c, h * w)
    if extra_fn is not None:
        extra_fn("mid_block", 0, 3, c, c, h * w)
    resnet(acc, n, c, c, h, w, temb_rows, temb)


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
            h, w = level_size(lh, lw, level)
            acc.add("reference_kv", 2 * linear(copies * h * w, c, c))
    return acc


def _spatial_levels(arch: HalloArchitecture) -> list[tuple[int, int]]:
    """(level, channels) of the 16 spatial transformers."""
    widths = arch.block_out_channels
    rev = list(reversed(widths))
    out = [(i, widths[i]) for i in range(3) for _ in range(2)] + [(3, widths[-1])]
    out += [(3 - i, rev[i]) for i in range(1, 4) for _ in range(3)]
    return out


def _check_shallow(mode: str, shallow: bool) -> None:
    _check_mode(mode)
    if shallow and mode != "ours":
        raise ValueError("shallow (DeepCache) calls exist in our forward only")


def denoiser_flops(arch: HalloArchitecture, height: int, width: int, *, frames: int = 16, cfg: bool = True,
                   motion_frames: int = 2, mode: str = "ours", shallow: bool = False) -> FlopCount:
    """One denoising-UNet call over a clip: ``frames`` frames, doubled when ``cfg``; per-clip parts excluded
    (:func:`clip_constant_flops`)."""
    _check_shallow(mode, shallow)
    acc = FlopCount()
    b = 2 if cfg else 1
    rows = b * frames
    cond_rows = frames  # rows that read the reference bank
    ours = mode == "ours"
    face_t, cross = arch.face_tokens, arch.cross_attention_dim

    def spatial(level: int, c: int, hw: int) -> None:
        tokens = rows * hw
        acc.add("spatial", 2 * conv(rows, c, c, hw, 1, k=1))  # proj_in / proj_out
        # attn1 with the reference bank
        if ours:
            acc.add("spatial", 4 * linear(tokens, c, c))  # q, k, v, out for every row
            acc.add("reference_attention", attention(cond_rows, hw, 2 * hw, c))
            acc.add("spatial", attention(rows - cond_rows, hw, hw, c))
        else:
            acc.add("spatial", 2 * linear(tokens, c, c))  # q, out
            acc.add("reference_attention", 2 * linear(2 * tokens, c, c) + attention(rows, hw, 2 * hw, c))
            if cfg:  # uncond rows recomputed with plain self-attention
                acc.add("reference_attention", 4 * linear((rows - cond_rows) * hw, c, c)
                        + attention(rows - cond_rows, hw, hw, c))
        # attn2 over the face tokens (repeated per frame; ours projects their K/V once per clip)
        kv = 0 if ours else 2 * linear(rows * face_t, cross, c)
        acc.add("spatial", 2 * linear(tokens, c, c) + kv + attention(rows, hw, face_t, c))
        acc.add("spatial", ff(tokens, c))

    def extra(block: str, j: int, level: int, c: int, inner: int, hw: int) -> None:
        _audio_step(acc, arch, rows, cond_rows if (ours and cfg) else rows, c, inner, hw, ours)
        _motion_step(acc, b, frames, motion_frames, c, hw, ours)

    temb_rows = rows if ours else b
    # ours: time embedding on the B rows, each resnet's time projection on the B*F rows
    _unet_walk(acc, arch, height // 8, width // 8, rows, temb_rows, spatial, extra, embed_rows=b, shallow=shallow)
    return acc


def _audio_step(acc: FlopCount, arch: HalloArchitecture, rows: int, heard: int, c: int, inner: int, hw: int,
                ours: bool) -> None:
    """One audio module; ``heard`` rows attend to their audio tokens (ours: the others are per-clip constants)."""
    tokens = rows * hw
    audio_t, audio_d = arch.audio_tokens, arch.audio_dim
    acc.add("audio", 2 * conv(rows, c, inner, hw, 1, k=1))  # proj_in / proj_out
    acc.add("audio", 4 * linear(tokens, inner, inner) + attention(rows, hw, hw, inner) + ff(tokens, inner))
    for _ in range(3):
        kv = 0 if ours else 2 * linear(heard * audio_t, audio_d, inner)  # ours: once per clip
        zero_conv = linear((heard if ours else rows) * hw, inner, inner)
        acc.add("audio", 2 * linear(heard * hw, inner, inner) + kv + attention(heard, hw, audio_t, inner) + zero_conv)


def _motion_step(acc: FlopCount, b: int, frames: int, motion_frames: int, c: int, hw: int, ours: bool) -> None:
    """One motion module over ``motion_frames`` + ``frames`` frames; ours computes only what the clip frames'
    outputs need, with the motion frames' proj_in and first queries/keys/values made once per clip."""
    length = motion_frames + frames
    lt, ft = b * length * hw, b * frames * hw
    if not ours:
        acc.add("motion", 2 * linear(lt, c, c) + ff(lt, c))
        for _ in range(2):
            acc.add("motion", 4 * linear(lt, c, c) + attention(b * hw, length, length, c))
        return
    acc.add("motion", 2 * linear(ft, c, c) + ff(ft, c))  # proj_in, proj_out, feed-forward: clip frames
    acc.add("motion", 3 * linear(ft, c, c) + linear(lt, c, c) + attention(b * hw, length, length, c))  # 1st
    acc.add("motion", 2 * linear(lt, c, c) + 2 * linear(ft, c, c) + attention(b * hw, frames, length, c))  # 2nd


def clip_constant_flops(arch: HalloArchitecture, height: int, width: int, *, frames: int = 16, cfg: bool = True,
                        motion_frames: int = 2) -> FlopCount:
    """What our denoiser computes once per clip (and row layout: a CFG batch, or one half of it) on its first
    call: face-token and audio-token K/V, the silent rows' audio branches, the motion frames' projections."""
    acc, scratch = FlopCount(), FlopCount()
    b = 2 if cfg else 1
    face_t, cross = arch.face_tokens, arch.cross_attention_dim
    audio_t, audio_d = arch.audio_tokens, arch.audio_dim

    def spatial(level: int, c: int, hw: int) -> None:
        acc.add("clip_constants", 2 * linear(b * face_t, cross, c))

    def extra(block: str, j: int, level: int, c: int, inner: int, hw: int) -> None:
        for _ in range(3):
            acc.add("clip_constants", 2 * linear(frames * audio_t, audio_d, inner))
            if cfg:  # zero_conv(to_out(to_v(0)) * mask), one row
                acc.add("clip_constants",
                        linear(1, audio_d, inner) + linear(1, inner, inner) + linear(hw, inner, inner))
        acc.add("clip_constants", 4 * linear(b * motion_frames * hw, c, c))  # proj_in, q, k, v

    _unet_walk(scratch, arch, height // 8, width // 8, b * frames, b * frames, spatial, extra)
    return acc


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


def _clip_denoise(arch: HalloArchitecture, height: int, width: int, frames: int, steps: int, n_cfg: int,
                  mode: str, cache_interval: int) -> float:
    """Denoising FLOPs of one clip: ``n_cfg`` CFG steps first, DeepCache shallow calls between full ones."""
    def step(cfg: bool, shallow: bool) -> float:
        return denoiser_flops(arch, height, width, frames=frames, cfg=cfg, mode=mode, shallow=shallow).total

    total = 0.0
    for i in range(steps):
        total += step(i < n_cfg, cache_interval > 1 and i % cache_interval != 0)
    if mode == "ours":  # the per-clip constants of each row layout that runs
        for cfg in {i < n_cfg for i in range(steps)}:
            total += clip_constant_flops(arch, height, width, frames=frames, cfg=cfg).total
    return total


def render_flops(arch: HalloArchitecture, height: int, width: int, num_frames: int, *, steps: int = 40,
                 cfg: bool = True, cfg_steps: int | None = None, clip_length: int = 16, fps: float = 25.0,
                 mode: str = "ours", faithful: bool = True, vae_config: Mapping[str, Any] | None = None,
                 motion_encode_first_clip: bool = False, cache_interval: int = 1) -> RenderFlops:
    """FLOPs of rendering ``num_frames`` frames (whole clips are generated; the last one is trimmed).

    Steps with CFG run the doubled batch, the other steps the conditional half only; with ``cache_interval``
    N > 1 only every N-th step runs the whole UNet (DeepCache). The first clip's motion frames are the
    reference latent (no VAE encode) unless ``motion_encode_first_clip`` (Hallo2's pixel drop). One VAE encode
    of the reference image is included.
    """
    clips = math.ceil(num_frames / clip_length)
    n_cfg = steps if cfg_steps is None else max(0, min(cfg_steps, steps))
    if not cfg:
        n_cfg = 0
    if cache_interval > 1 and mode != "ours":
        raise ValueError("cache_interval (DeepCache) exists in our forward only")
    ref = reference_flops(arch, height, width, cfg=cfg, mode=mode, faithful=faithful).total
    encodes = 1 + 2 * (clips - 1) + (2 if motion_encode_first_clip else 0)
    return RenderFlops(
        reference=clips * ref,
        denoise=clips * _clip_denoise(arch, height, width, clip_length, steps, n_cfg, mode, cache_interval),
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
        f = render_flops(arch, size, size, frames, steps=p.steps, cfg_steps=p.cfg_steps, fps=fps,
                         cache_interval=p.cache_interval).per_video_second
        rows.append({"preset": p.name, "tflop_per_video_s": f / 1e12, "vs_original": f / original,
                     "vs_faithful": f / ours_faithful})
    return rows
