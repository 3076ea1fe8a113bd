"""The Hallo generator: the clip loop.

For each 16-frame clip: the ReferenceNet runs once (at t=0) on [reference, motion frame 1, motion frame 2] and
fills the reference bank; DDIM (v-prediction) with classifier-free guidance drives the denoising UNet, which
reads the bank, the audio tokens (cross-attention weighted by pose, face and lip masks) and the motion frames;
the VAE decodes the clip; its last two frames become the next clip's motion frames.

Defaults reproduce the original's ``scripts/inference.py``: 40 DDIM steps, CFG 3.5, seed 42 on one CPU generator
reused across clips, 16+2 frames, the reference image as the first clip's motion frames and the last two decoded
frames (re-encoded by the VAE) for every later clip.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence

import torch

from ..errors import public_name
from ..models.net import HalloNet
from ..models.reference_bank import ReferenceBank
from ..models.unets import LevelMasks, UNetConditions
from .guidance import DeepCacheSteps, cfg_half, run_unet
from .hooks import LatentCallback, RenderCancelled, StepHooks
from .precision import compute_precision
from .residency import NET, REFERENCE_NET, VAE, Residency, low_vram_residency
from .scheduling import make_scheduler
from .settings import (
    CLIP_LENGTH,
    LATENT_SCALE,
    ClipOutput,
    ClipPlan,
    GenerationResult,
    HalloReference,
    MotionState,
    SamplerSettings,
    check_segment,
)
from .still import StillAnchor

__all__ = ["CLIP_LENGTH", "LATENT_SCALE", "ClipOutput", "GenerationResult", "HalloReference", "HalloSampler",
           "MotionState", "NonFiniteError", "RenderCancelled", "SamplerSettings", "clip_noise_generator"]

logger = logging.getLogger(__name__)


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
    """Runs the clip loop for one model; stateless between ``generate`` calls.

    ``residency`` brings the networks to the compute device while they run (ComfyUI's model manager inside
    ComfyUI); without one, a plain-torch residency follows ``SamplerSettings.low_vram``.
    """

    def __init__(self, net: HalloNet, vae: torch.nn.Module, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, is_hallo2: bool = False,
                 residency: Residency | None = None) -> None:
        self.net = net
        self.vae = vae
        self.device = torch.device(device) if device is not None else net.device
        self.dtype = dtype or net.dtype
        self.is_hallo2 = is_hallo2
        self.residency = residency
        self._resident: Residency = residency or low_vram_residency(net, vae, self.device, False)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def _timed(self, timings: dict[str, float], stage: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self._sync()
        timings[stage] += time.perf_counter() - started

    # -- VAE ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> latent means * 0.18215."""
        with self._resident.use(VAE):
            vae_dtype = next(self.vae.parameters()).dtype
            dist = self.vae.encode(pixels.to(self.device, vae_dtype)).latent_dist
            return dist.mean * LATENT_SCALE

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch: int) -> torch.Tensor:
        """(N, 4, h, w) -> (N, 3, H, W) in 0..1, float32 on CPU, decoded ``batch`` frames at a time."""
        out = []
        with self._resident.use(VAE):
            vae_dtype = next(self.vae.parameters()).dtype
            for i in range(0, latents.shape[0], max(1, batch)):
                chunk = latents[i:i + batch].to(self.device, vae_dtype) / LATENT_SCALE
                image = self.vae.decode(chunk).sample
                out.append((image / 2 + 0.5).clamp(0, 1).float().cpu())
        return torch.cat(out)

    # -- ReferenceNet -----------------------------------------------------------------------------
    @torch.no_grad()
    def reference_bank(self, reference: HalloReference, motion_latents: torch.Tensor, frames: int,
                       cfg: bool, faithful: bool, fp16_bank: bool = False) -> tuple[ReferenceBank, torch.Tensor]:
        """Run the ReferenceNet once for a clip; return the bank and the face tokens ([uncond, cond] with CFG).

        ``fp16_bank``: round the bank's features to fp16 as the original does.
        """
        with self._resident.use(REFERENCE_NET):
            net = self.net
            emb = reference.face_embedding.to(self.device, self.dtype).reshape(1, -1)
            cond = net.imageproj(emb)
            triple = torch.cat([reference.latent.to(self.device, self.dtype),
                                motion_latents.to(self.device, self.dtype)])  # [r, m1, m2]
            if not cfg:
                bank, tokens = self._bank_without_cfg(triple, cond, frames), cond
            else:
                uncond = net.imageproj(torch.zeros_like(emb))  # = the LayerNorm bias, not zeros
                bank = self._bank_with_cfg(triple, uncond, cond, frames, faithful)
                tokens = torch.cat([uncond, cond])
            return (bank.rounded(torch.float16) if fp16_bank else bank), tokens

    def rounds_bank(self, settings: SamplerSettings) -> bool:
        """Whether the bank is rounded to fp16: ``settings.fp16_bank``, by default faithful fp32 runs."""
        if settings.fp16_bank is not None:
            return bool(settings.fp16_bank) and self.dtype != torch.float16
        return settings.faithful and self.dtype == torch.float32

    def _bank_without_cfg(self, triple: torch.Tensor, cond: torch.Tensor, frames: int) -> ReferenceBank:
        bank = self.net.reference_unet(triple, cond.expand(triple.shape[0], -1, -1))
        reference_feats = {p: f[:1] for p, f in bank.items()}
        motion_feats = {p: f[1:].unsqueeze(0) for p, f in bank.items()}
        return ReferenceBank(reference_feats, motion_feats, torch.zeros(frames, dtype=torch.long))

    def _bank_with_cfg(self, triple: torch.Tensor, uncond: torch.Tensor, cond: torch.Tensor, frames: int,
                       faithful: bool) -> ReferenceBank:
        n_views = triple.shape[0]
        if faithful:
            # Quirk A: latents [r,m1,m2,r,m1,m2] against face tokens tiled [u,c,u,c,u,c].
            tokens = torch.cat([uncond, cond]).repeat(n_views, 1, 1)
        else:
            tokens = torch.cat([uncond.expand(n_views, -1, -1), cond.expand(n_views, -1, -1)])
        bank = self.net.reference_unet(triple.repeat(2, 1, 1, 1), tokens)
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
        return ReferenceBank(reference_feats, motion_feats, row_source)

    # -- per-render and per-clip conditions -------------------------------------------------------
    def _plan(self, settings: SamplerSettings, reference: HalloReference, start_frame: int,
              end_frame: int) -> ClipPlan:
        clip_len = settings.clip_length
        height, width = reference.size
        first_clip = start_frame // clip_len
        drop = settings.motion_frame_drop
        if drop is None:
            drop = 0.25 if self.is_hallo2 else 0.0
        upcast = settings.upcast_latents if settings.upcast_latents is not None else self.dtype == torch.bfloat16
        scheduler = make_scheduler(settings.solver)
        scheduler.set_timesteps(settings.steps, device=self.device)
        n_steps = len(scheduler.timesteps)
        cfg_steps = n_steps if settings.cfg_steps is None else max(0, min(settings.cfg_steps, n_steps))
        return ClipPlan(settings, start_frame, end_frame, first_clip, math.ceil(end_frame / clip_len) - first_clip,
                        (1, 4, clip_len, height // 8, width // 8), torch.float32 if upcast else self.dtype,
                        settings.guidance_scale > 1.0, drop, scheduler, cfg_steps,
                        StillAnchor.build(reference, scheduler, self.device) if settings.still else None)

    def level_masks(self, reference: HalloReference, rows: int) -> LevelMasks:
        """The full/face/lip masks of every resolution level, one row per UNet row."""
        def rep(masks: list[torch.Tensor]) -> list[torch.Tensor]:
            return [m.reshape(1, -1).to(self.device, self.dtype).expand(rows, -1) for m in masks]

        return LevelMasks(rep(reference.full_masks), rep(reference.face_masks), rep(reference.lip_masks))

    def _render_conditions(self, reference: HalloReference, plan: ClipPlan) -> tuple[LevelMasks, torch.Tensor]:
        """What every clip shares: the level masks and the face-locator features, CFG-doubled when needed."""
        masks = self.level_masks(reference, (2 if plan.cfg else 1) * plan.clip_len)
        face_locator = self.net.face_locator(reference.face_locator_image[None].to(self.device, self.dtype))
        face_locator = face_locator.repeat_interleave(plan.clip_len, dim=0)
        if plan.cfg:
            face_locator = torch.cat([torch.zeros_like(face_locator), face_locator])
        return masks, face_locator

    def _motion_pixels(self, reference: HalloReference, motion: torch.Tensor, drop: float,
                       gen: torch.Generator) -> torch.Tensor:
        """Hallo2's pixel drop: keep pixels with rand > rate, always keep the face box (every clip)."""
        if drop <= 0:
            return motion
        h, w = motion.shape[-2:]
        keep = torch.rand((h, w), generator=gen) > drop
        keep = keep[None, None] | (reference.face_locator_image[None] > 0)
        return motion * keep

    def _motion_latents(self, reference: HalloReference, pixels: torch.Tensor, clip: int, chained: bool,
                        drop: float) -> torch.Tensor:
        """The motion frames as latents: the reference latent itself for a fresh first clip, else VAE-encoded."""
        if clip == 0 and not chained and drop <= 0:
            return reference.latent.repeat(2, 1, 1, 1)
        return self.encode(pixels)

    def _clip_conditions(self, plan: ClipPlan, bank: ReferenceBank, face_tokens: torch.Tensor, audio: torch.Tensor,
                         start: int, shared: tuple[LevelMasks, torch.Tensor]) -> UNetConditions:
        """The UNet's conditions for the clip at frame ``start``: bank, tokens, masks, face locator, weights."""
        audio_tokens = self.net.audioproj(audio[start:start + plan.clip_len].to(self.device, self.dtype)[None])
        if plan.cfg:
            audio_tokens = torch.cat([torch.zeros_like(audio_tokens), audio_tokens])
        masks, locator = shared
        return UNetConditions(face_tokens=face_tokens, audio_tokens=audio_tokens, masks=masks, face_locator=locator,
                              bank=bank.to(self.device, self.dtype), silent_audio=1 if plan.cfg else 0,
                              motion_scale=plan.settings.clip_weights(start, plan.clip_len, self.device))

    # -- denoising ---------------------------------------------------------------------------------
    def _velocity(self, model_in: torch.Tensor, t: torch.Tensor, ctx: UNetConditions, plan: ClipPlan,
                  guided: bool, latent_dtype: torch.dtype, deep: DeepCacheSteps, step: int) -> torch.Tensor:
        """The UNet's v-prediction for one step, guided (CFG) or from the conditional rows alone."""
        unet, frames, settings = self.net.denoising_unet, plan.clip_len, plan.settings
        if not guided:
            cond = cfg_half(ctx, 1, frames) if plan.cfg else ctx
            return run_unet(unet, model_in, t, cond, deep.slot(step, "cond")).to(latent_dtype)
        if settings.low_vram:  # the two halves one after the other: half the activation memory
            uncond = run_unet(unet, model_in, t, cfg_half(ctx, 0, frames), deep.slot(step, "uncond"))
            v_uncond = uncond.to(latent_dtype)
            v_cond = run_unet(unet, model_in, t, cfg_half(ctx, 1, frames), deep.slot(step, "cond")).to(latent_dtype)
        else:
            both = run_unet(unet, torch.cat([model_in, model_in]), t, ctx, deep.slot(step, "cfg"))
            v_uncond, v_cond = both.to(latent_dtype).chunk(2)
        return v_uncond + settings.guidance_scale * (v_cond - v_uncond)

    def _denoise(self, noise: torch.Tensor, ctx: UNetConditions, plan: ClipPlan, clip: int,
                 hooks: StepHooks) -> torch.Tensor:
        """DDIM (or the preset's solver) from pure noise to the clip's latents (1, 4, F, h, w)."""
        scheduler, settings = plan.scheduler, plan.settings
        latents = noise * scheduler.init_noise_sigma
        scheduler.set_timesteps(settings.steps, device=self.device)
        deep = DeepCacheSteps(settings.cache_interval, plan.clip_len)
        for i, t in enumerate(scheduler.timesteps):
            hooks.before_step(clip, i)
            model_in = scheduler.scale_model_input(latents, t).to(self.dtype)
            v = self._velocity(model_in, t, ctx, plan, plan.cfg and i < plan.cfg_steps, latents.dtype, deep, i)
            ddim = settings.solver == "ddim"
            out = scheduler.step(v, t, latents, eta=0.0) if ddim else scheduler.step(v, t, latents)
            latents = out.prev_sample
            latents = plan.still.pin(latents, noise, scheduler.timesteps, i) if plan.still else latents
            hooks.after_step(out)
        if not bool(torch.isfinite(latents).all()):  # one check (and sync) per clip
            raise NonFiniteError(non_finite_message(clip, self.dtype))
        return latents

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
        on_latent: LatentCallback | None = None,
    ) -> GenerationResult:
        """Render frames [start_frame, end_frame) of a video driven by ``audio_features``.

        ``audio_features``: (N_padded, 5, 12, C) windowed wav2vec features; ``num_frames``: the true frame
        count (output is trimmed to it). ``motion``: the state returned by the previous segment (required
        when ``start_frame`` > 0 for a seamless continuation). ``on_step(done, total)`` and
        ``should_cancel()`` are called at every denoising step, and ``on_latent(done, total, latent)`` (when
        given) with the middle frame of the clip's current x0 prediction, (1, 4, h, w), for a live preview.
        """
        settings = settings or SamplerSettings()
        settings.validate()
        end_frame = check_segment(settings, audio_features.shape[0], num_frames, start_frame, end_frame, motion)
        self._resident = self.residency or low_vram_residency(self.net, self.vae, self.device, settings.low_vram)
        plan = self._plan(settings, reference, start_frame, end_frame)
        with self._resident.use(NET), compute_precision(settings.compute_dtype, self.device, self.dtype):
            return self._clip_loop(reference, audio_features, plan, motion, StepHooks(
                plan.total_steps, on_step, should_cancel, on_latent), on_clip, collect)

    def _clip_loop(self, reference: HalloReference, audio_features: torch.Tensor, plan: ClipPlan,
                   motion: MotionState | None, hooks: StepHooks, on_clip: Callable[[ClipOutput], None] | None,
                   collect: bool) -> GenerationResult:
        settings, clip_len = plan.settings, plan.clip_len
        timings = {"encode": 0.0, "reference": 0.0, "denoise": 0.0, "decode": 0.0}
        height, width = reference.size
        # the initial noise is drawn in the latents' dtype: fp32 when they are upcast
        gen = clip_noise_generator(settings.seed, plan.first_clip, plan.latent_shape, plan.latent_dtype,
                                   (height, width) if plan.drop > 0 else None)
        shared = self._render_conditions(reference, plan)
        motion_pixels = motion.frames if motion is not None else reference.pixels[None].repeat(2, 1, 1, 1)
        collected: list[torch.Tensor] = []
        for clip in plan.clips():
            clip_start = clip * clip_len
            pixels = self._motion_pixels(reference, motion_pixels, plan.drop, gen)
            noise = torch.randn(plan.latent_shape, generator=gen, dtype=plan.latent_dtype).to(self.device)
            with self._timed(timings, "encode"):
                motion_latents = self._motion_latents(reference, pixels, clip, motion is not None, plan.drop)
            with self._timed(timings, "reference"):  # ReferenceNet once at t=0 -> the bank
                bank, face_tokens = self.reference_bank(reference, motion_latents, clip_len, plan.cfg,
                                                        settings.faithful, self.rounds_bank(settings))
                ctx = self._clip_conditions(plan, bank, face_tokens, audio_features, clip_start, shared)
            with self._timed(timings, "denoise"):
                latents = self._denoise(noise, ctx, plan, clip, hooks)
            with self._timed(timings, "decode"):
                decoded = self.decode(latents[0].permute(1, 0, 2, 3), settings.decode_batch)  # (F, 3, H, W) 0..1
            motion_pixels = decoded[-settings.motion_frames:] * 2.0 - 1.0  # the next clip's motion frames
            frames = self._emit(decoded, clip_start, plan, on_clip)
            if collect:
                collected.append(frames)
        state = MotionState(frames=motion_pixels, next_frame=(plan.first_clip + plan.n_clips) * clip_len,
                            seed=settings.seed)
        return GenerationResult(frames=torch.cat(collected) if collect else None, motion=state,
                                num_frames=plan.end_frame - plan.start_frame, timings=timings)

    @staticmethod
    def _emit(decoded: torch.Tensor, clip_start: int, plan: ClipPlan,
              on_clip: Callable[[ClipOutput], None] | None) -> torch.Tensor:
        """The clip's frames inside [start_frame, end_frame) as (n, H, W, 3), handed to ``on_clip``."""
        lo = max(clip_start, plan.start_frame)
        hi = min(clip_start + plan.clip_len, plan.end_frame)
        frames = decoded[lo - clip_start:hi - clip_start].permute(0, 2, 3, 1).contiguous()
        if on_clip is not None:
            on_clip(ClipOutput(index=clip_start // plan.clip_len, start_frame=lo, frames=frames))
        return frames
