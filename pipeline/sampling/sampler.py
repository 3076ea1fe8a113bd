"""The Hallo generator: per 16-frame clip a ReferenceNet pass, DDIM with CFG, VAE decode, motion-frame chaining.

Defaults reproduce ``scripts/inference.py`` of the original (hallo.md §1.5, §1.6, §2): 40 DDIM steps,
CFG 3.5, seed 42 on one CPU generator that is reused across clips, 16+2 frames, the reference image as
the first clip's motion frames and the last two decoded frames (re-encoded) for every later clip.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import public_name
from ..models.net import HalloNet
from ..models.reference_bank import ReferenceBank
from ..models.unets import LevelMasks, UNetConditions
from .offload import on_device
from .scheduling import make_scheduler

logger = logging.getLogger(__name__)

LATENT_SCALE = 0.18215


@public_name
class RenderCancelled(InterruptedError):
    """Raised when the cancellation hook asks to stop; no partial clip is emitted."""


@public_name
class NonFiniteError(FloatingPointError):
    """The denoised latents of a clip hold NaN or Inf: stopped before a black video is written."""


def non_finite_message(clip: int, dtype: torch.dtype) -> str:
    """What to do when a clip's latents are not finite (the three causes seen in practice)."""
    fp16 = " (the model runs in fp16 now)" if dtype == torch.float16 else ""
    return (f"clip {clip + 1}: the denoised latents contain NaN or Inf, which would give a black video. Likely "
            f"causes: non-finite weights in the checkpoint (re-download or re-convert it); an fp16 overflow{fp16}: "
            "load the model with dtype bf16 or fp32; or a non-finite input (cfg, pose/face/lip weight, the "
            "portrait or the audio features).")


@dataclass
class SamplerSettings:
    steps: int = 40
    guidance_scale: float = 3.5
    seed: int = 42
    pose_weight: float = 1.0
    face_weight: float = 1.0
    lip_weight: float = 1.0
    clip_length: int = 16
    motion_frames: int = 2
    solver: str = "ddim"
    # Steps (from the first) that use CFG; None = every step as the original.
    cfg_steps: int | None = None
    # Reproduce the two reference-attention batch quirks of the original (hallo.md §2.5).
    faithful: bool = True
    # Hallo2: fraction of motion-frame pixels dropped outside the face box (None: 0.25 for hallo2, else 0).
    motion_frame_drop: float | None = None
    # VAE decode batch (frames per decoder call).
    decode_batch: int = 8
    # Low-VRAM mode: CFG halves run one after the other; on CUDA the ReferenceNet and the VAE sit on the
    # CPU and visit the GPU only while used (same output up to float rounding).
    low_vram: bool = False
    # Keep the scheduler's latents in float32 while the network runs in half precision.
    # None = on for bfloat16 (8-bit mantissa), off otherwise (the original keeps fp16 latents).
    upcast_latents: bool | None = None

    def validate(self) -> None:
        for name in ("guidance_scale", "pose_weight", "face_weight", "lip_weight", "motion_frame_drop"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.clip_length < 1 or self.clip_length + self.motion_frames > 32:
            raise ValueError("clip_length + motion_frames must be at most 32 (the motion modules' position table)")
        if self.motion_frames != 2:
            raise ValueError("motion_frames must be 2: the released weights were trained with 2 motion frames")
        if self.motion_frame_drop is not None and not 0.0 <= self.motion_frame_drop < 1.0:
            raise ValueError(f"motion_frame_drop must be in [0, 1), got {self.motion_frame_drop}")

    @property
    def motion_scale(self) -> tuple[float, float, float]:
        return (float(self.pose_weight), float(self.face_weight), float(self.lip_weight))


@dataclass
class HalloReference:
    """The portrait, prepared once: pixels, VAE latent, ArcFace embedding, face-locator box and masks."""

    pixels: torch.Tensor  # (3, H, W) in [-1, 1]
    latent: torch.Tensor  # (1, 4, H/8, W/8): VAE mean * 0.18215
    face_embedding: torch.Tensor  # (512,) raw ArcFace
    face_locator_image: torch.Tensor  # (3, H, W) hard face box in 0..1
    full_masks: list[torch.Tensor]  # per level (HW_l,)
    face_masks: list[torch.Tensor]
    lip_masks: list[torch.Tensor]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])


@dataclass
class MotionState:
    """What a render hands to the next segment: the last two frames and where to continue."""

    frames: torch.Tensor  # (2, 3, H, W) in [-1, 1]
    next_frame: int
    seed: int


@dataclass
class ClipOutput:
    index: int  # clip number within the whole render
    start_frame: int  # index of the first frame of this clip in the whole video
    frames: torch.Tensor  # (n, H, W, 3) float32 0..1 on CPU, already trimmed to the audio length


@dataclass
class GenerationResult:
    frames: torch.Tensor | None  # (N, H, W, 3) when collected
    motion: MotionState
    num_frames: int
    timings: dict[str, float] = field(default_factory=dict)


def clip_noise_generator(seed: int, clips_before: int, latent_shape: Sequence[int], dtype: torch.dtype,
                         drop_shape: tuple[int, int] | None) -> torch.Generator:
    """The original's global CPU generator, fast-forwarded past ``clips_before`` clips.

    Every clip draws (optionally) one pixel-drop mask and one latent noise tensor from the same generator,
    so replaying those draws reproduces the exact state a single uninterrupted run would have.
    """
    gen = torch.Generator("cpu").manual_seed(int(seed))
    for _ in range(clips_before):
        if drop_shape is not None:
            torch.rand(drop_shape, generator=gen)
        torch.randn(tuple(latent_shape), generator=gen, dtype=dtype)
    return gen


class HalloSampler:
    """Runs the clip loop for one model; stateless between ``generate`` calls."""

    def __init__(self, net: HalloNet, vae: torch.nn.Module, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, is_hallo2: bool = False) -> None:
        self.net = net
        self.vae = vae
        self.device = torch.device(device) if device is not None else net.device
        self.dtype = dtype or net.dtype
        self.is_hallo2 = is_hallo2
        self._offload = False  # set per generate() call by SamplerSettings.low_vram

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- VAE ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> latent means * 0.18215."""
        with on_device(self.vae, self.device, self._offload):
            vae_dtype = next(self.vae.parameters()).dtype
            dist = self.vae.encode(pixels.to(self.device, vae_dtype)).latent_dist
            return dist.mean * LATENT_SCALE

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch: int) -> torch.Tensor:
        """(N, 4, h, w) -> (N, 3, H, W) in 0..1, float32 on CPU, decoded ``batch`` frames at a time."""
        out = []
        with on_device(self.vae, self.device, self._offload):
            vae_dtype = next(self.vae.parameters()).dtype
            for i in range(0, latents.shape[0], max(1, batch)):
                chunk = latents[i:i + batch].to(self.device, vae_dtype) / LATENT_SCALE
                image = self.vae.decode(chunk).sample
                out.append((image / 2 + 0.5).clamp(0, 1).float().cpu())
        return torch.cat(out)

    # -- per-clip preparation ----------------------------------------------------------------------
    def _motion_pixels(self, reference: HalloReference, motion: torch.Tensor, drop: float,
                       gen: torch.Generator) -> torch.Tensor:
        """Hallo2's pixel drop: keep pixels with rand > rate, always keep the face box (every clip)."""
        if drop <= 0:
            return motion
        h, w = motion.shape[-2:]
        keep = torch.rand((h, w), generator=gen) > drop
        keep = keep[None, None] | (reference.face_locator_image[None] > 0)
        return motion * keep

    @torch.no_grad()
    def reference_bank(self, reference: HalloReference, motion_latents: torch.Tensor, frames: int,
                       cfg: bool, faithful: bool) -> tuple[ReferenceBank, torch.Tensor]:
        """Run the ReferenceNet once for a clip; return the bank and the CFG face tokens [uncond, cond]."""
        with on_device(self.net.reference_unet, self.device, self._offload):
            return self._reference_bank(reference, motion_latents, frames, cfg, faithful)

    def _reference_bank(self, reference: HalloReference, motion_latents: torch.Tensor, frames: int,
                        cfg: bool, faithful: bool) -> tuple[ReferenceBank, torch.Tensor]:
        net = self.net
        emb = reference.face_embedding.to(self.device, self.dtype).reshape(1, -1)
        cond = net.imageproj(emb)
        uncond = net.imageproj(torch.zeros_like(emb))  # = LayerNorm bias, not zeros (hallo.md §1.6)
        ref_latent = reference.latent.to(self.device, self.dtype)
        triple = torch.cat([ref_latent, motion_latents.to(self.device, self.dtype)])  # [r, m1, m2]
        n_views = triple.shape[0]
        if not cfg:
            bank = net.reference_unet(triple, cond.expand(n_views, -1, -1))
            reference_feats = {p: f[:1] for p, f in bank.items()}
            motion_feats = {p: f[1:].unsqueeze(0) for p, f in bank.items()}
            row_source = torch.zeros(frames, dtype=torch.long)
            return ReferenceBank(reference_feats, motion_feats, row_source), cond
        if faithful:
            # Quirk A: latents [r,m1,m2,r,m1,m2] against face tokens tiled [u,c,u,c,u,c].
            tokens = torch.cat([uncond, cond]).repeat(n_views, 1, 1)
        else:
            tokens = torch.cat([uncond.expand(n_views, -1, -1), cond.expand(n_views, -1, -1)])
        bank = net.reference_unet(triple.repeat(2, 1, 1, 1), tokens)
        reference_feats, motion_feats = {}, {}
        for path, feats in bank.items():
            grouped = feats.view(2, n_views, *feats.shape[1:])  # (cfg, [r, m1, m2], HW, C)
            motion_feats[path] = grouped[:, 1:]
            reference_feats[path] = grouped[:, 0] if faithful else grouped[1:, 0]
        # Uncond rows (first half) use plain self-attention.
        row_source = torch.full((2 * frames,), -1, dtype=torch.long)
        if faithful:
            # Quirk B: the bank is tiled interleaved, so cond row i reads reference copy i % 2.
            row_source[frames:] = torch.arange(frames, 2 * frames) % 2
        else:
            row_source[frames:] = 0
        return ReferenceBank(reference_feats, motion_feats, row_source), torch.cat([uncond, cond])

    def _level_masks(self, reference: HalloReference, rows: int) -> LevelMasks:
        def rep(masks: list[torch.Tensor]) -> list[torch.Tensor]:
            return [m.reshape(1, -1).to(self.device, self.dtype).expand(rows, -1) for m in masks]

        return LevelMasks(rep(reference.full_masks), rep(reference.face_masks), rep(reference.lip_masks))

    # -- the clip loop ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        reference: HalloReference,
        audio_features: torch.Tensor,
        num_frames: int,
        settings: SamplerSettings | None = None,
        *,
        start_frame: int = 0,
        end_frame: int | None = None,
        motion: MotionState | None = None,
        on_clip: Callable[[ClipOutput], None] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        collect: bool = True,
    ) -> GenerationResult:
        """Render frames [start_frame, end_frame) of a video driven by ``audio_features``.

        ``audio_features``: (N_padded, 5, 12, C) windowed wav2vec features; ``num_frames``: the true frame
        count (output is trimmed to it). ``motion``: the state returned by the previous segment (required
        when ``start_frame`` > 0 for a seamless continuation). ``on_step(done, total)`` and
        ``should_cancel()`` are called at every denoising step.
        """
        settings = settings or SamplerSettings()
        settings.validate()
        self._offload = bool(settings.low_vram) and self.device.type == "cuda"
        upcast = settings.upcast_latents if settings.upcast_latents is not None else self.dtype == torch.bfloat16
        latent_dtype = torch.float32 if upcast else self.dtype
        timings = {"encode": 0.0, "reference": 0.0, "denoise": 0.0, "decode": 0.0}
        clip_len = settings.clip_length
        end_frame = num_frames if end_frame is None else min(int(end_frame), num_frames)
        if num_frames < 1:
            raise ValueError("num_frames must be >= 1 (the audio is shorter than one video frame)")
        if start_frame % clip_len:
            raise ValueError(f"start_frame must be a multiple of the clip length ({clip_len}), got {start_frame}")
        if not 0 <= start_frame < end_frame:
            raise ValueError(f"nothing to render: start_frame={start_frame}, end_frame={end_frame}, "
                             f"audio has {num_frames} frames")
        if end_frame != num_frames and end_frame % clip_len:
            raise ValueError(f"end_frame must be a multiple of the clip length ({clip_len}) or the last frame, "
                             f"got {end_frame}")
        if start_frame > 0 and motion is None:
            raise ValueError("start_frame > 0 needs the motion frames of the previous segment (motion=...)")
        if motion is not None and motion.next_frame != start_frame:
            logger.warning("motion frames were produced for frame %d but the render starts at %d",
                           motion.next_frame, start_frame)
        needed = math.ceil(end_frame / clip_len) * clip_len
        if audio_features.shape[0] < needed:
            raise ValueError(f"audio features cover {audio_features.shape[0]} frames, {needed} are needed; "
                             "encode the audio with the same clip length")

        height, width = reference.size
        lh, lw = height // 8, width // 8
        first_clip = start_frame // clip_len
        n_clips = math.ceil(end_frame / clip_len) - first_clip
        cfg = settings.guidance_scale > 1.0
        drop = settings.motion_frame_drop
        if drop is None:
            drop = 0.25 if self.is_hallo2 else 0.0
        latent_shape = (1, 4, clip_len, lh, lw)
        gen = clip_noise_generator(settings.seed, first_clip, latent_shape, self.dtype,
                                   (height, width) if drop > 0 else None)
        scheduler = make_scheduler(settings.solver)
        scheduler.set_timesteps(settings.steps, device=self.device)
        timesteps = scheduler.timesteps
        cfg_steps = len(timesteps) if settings.cfg_steps is None else max(0, min(settings.cfg_steps, len(timesteps)))
        total_steps = n_clips * len(timesteps)

        net = self.net
        rows = (2 if cfg else 1) * clip_len
        masks = self._level_masks(reference, rows)
        face_locator = net.face_locator(reference.face_locator_image[None].to(self.device, self.dtype))
        face_locator = face_locator.repeat_interleave(clip_len, dim=0)
        if cfg:
            face_locator = torch.cat([torch.zeros_like(face_locator), face_locator])

        motion_pixels = motion.frames if motion is not None else reference.pixels[None].repeat(2, 1, 1, 1)
        collected: list[torch.Tensor] = []
        step_counter = 0
        for k in range(n_clips):
            clip = first_clip + k
            clip_start = clip * clip_len
            pixels = self._motion_pixels(reference, motion_pixels, drop, gen)
            noise = torch.randn(latent_shape, generator=gen, dtype=self.dtype).to(self.device, latent_dtype)
            started = time.perf_counter()
            if clip == 0 and motion is None and drop <= 0:
                motion_latents = reference.latent.repeat(2, 1, 1, 1)
            else:
                motion_latents = self.encode(pixels)
            self._sync()
            timings["encode"] += time.perf_counter() - started
            started = time.perf_counter()
            bank, face_tokens = self.reference_bank(reference, motion_latents, clip_len, cfg, settings.faithful)
            bank = bank.to(self.device, self.dtype)

            feats = audio_features[clip_start:clip_start + clip_len].to(self.device, self.dtype)
            audio_tokens = net.audioproj(feats.unsqueeze(0))
            if cfg:
                audio_tokens = torch.cat([torch.zeros_like(audio_tokens), audio_tokens])
            ctx = UNetConditions(face_tokens=face_tokens, audio_tokens=audio_tokens, masks=masks,
                                 face_locator=face_locator, bank=bank, motion_scale=settings.motion_scale)
            self._sync()
            timings["reference"] += time.perf_counter() - started
            started = time.perf_counter()
            latents = noise * scheduler.init_noise_sigma
            scheduler.set_timesteps(settings.steps, device=self.device)
            for i, t in enumerate(timesteps):
                if should_cancel is not None and should_cancel():
                    raise RenderCancelled(f"render cancelled in clip {clip + 1} at step {i + 1}")
                model_in = scheduler.scale_model_input(latents, t).to(self.dtype)
                if cfg and i < cfg_steps and settings.low_vram:
                    v_uncond = net.denoising_unet(model_in, t, _uncond_only(ctx, clip_len)).to(latents.dtype)
                    v_cond = net.denoising_unet(model_in, t, _cond_only(ctx, clip_len)).to(latents.dtype)
                    v = v_uncond + settings.guidance_scale * (v_cond - v_uncond)
                elif cfg and i < cfg_steps:
                    v = net.denoising_unet(torch.cat([model_in, model_in]), t, ctx).to(latents.dtype)
                    v_uncond, v_cond = v.chunk(2)
                    v = v_uncond + settings.guidance_scale * (v_cond - v_uncond)
                else:
                    v = net.denoising_unet(model_in, t, _cond_only(ctx, clip_len) if cfg else ctx).to(latents.dtype)
                latents = scheduler.step(v, t, latents, eta=0.0).prev_sample \
                    if settings.solver == "ddim" else scheduler.step(v, t, latents).prev_sample
                step_counter += 1
                if on_step is not None:
                    on_step(step_counter, total_steps)

            if not bool(torch.isfinite(latents).all()):  # one check (and sync) per clip
                raise NonFiniteError(non_finite_message(clip, self.dtype))
            self._sync()
            timings["denoise"] += time.perf_counter() - started
            started = time.perf_counter()
            flat = latents[0].permute(1, 0, 2, 3)  # (F, 4, h, w)
            decoded = self.decode(flat, settings.decode_batch)  # (F, 3, H, W) 0..1 CPU
            timings["decode"] += time.perf_counter() - started
            motion_pixels = decoded[-settings.motion_frames:] * 2.0 - 1.0
            lo = max(clip_start, start_frame)
            hi = min(clip_start + clip_len, end_frame)
            frames = decoded[lo - clip_start:hi - clip_start].permute(0, 2, 3, 1).contiguous()
            if on_clip is not None:
                on_clip(ClipOutput(index=clip, start_frame=lo, frames=frames))
            if collect:
                collected.append(frames)

        next_frame = (first_clip + n_clips) * clip_len
        state = MotionState(frames=motion_pixels, next_frame=next_frame, seed=settings.seed)
        result = torch.cat(collected) if collect else None
        return GenerationResult(frames=result, motion=state, num_frames=end_frame - start_frame, timings=timings)


def _uncond_only(ctx: UNetConditions, frames: int) -> UNetConditions:
    """The unconditional half of a CFG-doubled set of conditions (low-VRAM mode: halves run in turn)."""
    bank = ctx.bank
    if bank is not None:
        bank = ReferenceBank(bank.reference, {p: m[:1] for p, m in bank.motion.items()}, bank.row_source[:frames])
        bank._kv_cache = ctx.bank._kv_cache
    masks = LevelMasks(*(list(m[:frames] for m in group) for group in (ctx.masks.full, ctx.masks.face, ctx.masks.lip)))
    return UNetConditions(
        face_tokens=ctx.face_tokens[:1],
        audio_tokens=ctx.audio_tokens[:1],
        masks=masks,
        face_locator=None if ctx.face_locator is None else ctx.face_locator[:frames],
        bank=bank,
        motion_scale=ctx.motion_scale,
    )


def _cond_only(ctx: UNetConditions, frames: int) -> UNetConditions:
    """The conditional half of a CFG-doubled set of conditions (for steps that skip CFG)."""
    bank = ctx.bank
    if bank is not None:
        bank = ReferenceBank(bank.reference, {p: m[1:] for p, m in bank.motion.items()}, bank.row_source[frames:])
        bank._kv_cache = ctx.bank._kv_cache
    masks = LevelMasks(*(list(m[frames:] for m in group) for group in (ctx.masks.full, ctx.masks.face, ctx.masks.lip)))
    return UNetConditions(
        face_tokens=ctx.face_tokens[1:],
        audio_tokens=ctx.audio_tokens[1:],
        masks=masks,
        face_locator=None if ctx.face_locator is None else ctx.face_locator[frames:],
        bank=bank,
        motion_scale=ctx.motion_scale,
    )
