"""What the clip loop takes and gives: settings, the prepared portrait, clip and motion outputs.

``CLIP_LENGTH`` is the one definition of the clip length: the released motion modules were trained on clips of
16 frames, so the sampler, the audio windowing and the nodes all take it from here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .schedules import Weight, WeightSchedule, clip_weight

if TYPE_CHECKING:  # imported where a tensor is made: hallo-render's parser reads these settings without torch
    import torch

logger = logging.getLogger(__name__)

CLIP_LENGTH = 16  # frames per clip: what the released motion modules were trained on
MOTION_FRAMES = 2  # frames of the previous clip that condition the next one
LATENT_SCALE = 0.18215  # Stable Diffusion VAE latent scaling
VIDEO_FPS = 25.0  # the frame rate Hallo renders at (the audio features are made per frame of it)


@dataclass
class SamplerSettings:
    steps: int = 40
    guidance_scale: float = 3.5
    seed: int = 42
    # Audio weights of the full (pose), face and lip branches: a number, or a per-frame WeightSchedule.
    pose_weight: Weight = 1.0
    face_weight: Weight = 1.0
    lip_weight: Weight = 1.0
    clip_length: int = CLIP_LENGTH
    motion_frames: int = MOTION_FRAMES
    solver: str = "ddim"
    # Steps (from the first) that use CFG; None = every step as the original.
    cfg_steps: int | None = None
    # Reproduce the original's two batch quirks of reference attention: the ReferenceNet sees its face
    # tokens tiled [u, c, u, c, u, c] against latents [r, m1, m2, r, m1, m2], and conditional row i reads
    # reference copy i % 2.
    faithful: bool = True
    # Round the reference bank to fp16 as the original does whatever the compute dtype (its reference-attention
    # control stores the bank in fp16). None = with ``faithful`` when the network runs in fp32; a no-op in fp16.
    fp16_bank: bool | None = None
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
    # Compute precision over the loaded weights (pipeline/sampling/precision.py): "auto" = the weights' dtype;
    # "fp16"/"bf16" on other weights = mixed precision (torch.autocast).
    compute_dtype: str = "auto"
    # DeepCache: every N-th denoising step runs the whole UNet, the steps between only its outer blocks (the
    # first down and the last up block) on the deep features kept from the last full step. 1 = off (the default).
    cache_interval: int = 1
    # Keep the head pose of the portrait: outside the face the latents are pinned to the reference at every
    # step (pipeline/sampling/still.py).
    still: bool = False

    def validate(self) -> None:
        for name in ("guidance_scale", "pose_weight", "face_weight", "lip_weight", "motion_frame_drop"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, WeightSchedule) and not math.isfinite(float(value)):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if isinstance(self.cache_interval, bool) or not isinstance(self.cache_interval, int) or self.cache_interval < 1:
            raise ValueError(f"cache_interval must be a whole number >= 1 (1 = off), got {self.cache_interval!r}")
        if self.guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.clip_length < 1 or self.clip_length + self.motion_frames > 32:
            raise ValueError("clip_length + motion_frames must be at most 32 (the motion modules' position table)")
        if self.motion_frames != MOTION_FRAMES:
            raise ValueError("motion_frames must be 2: the released weights were trained with 2 motion frames")
        if self.motion_frame_drop is not None and not 0.0 <= self.motion_frame_drop < 1.0:
            raise ValueError(f"motion_frame_drop must be in [0, 1), got {self.motion_frame_drop}")

    def clip_weights(self, start: int, count: int, device: torch.device | str = "cpu"
                     ) -> tuple[float | torch.Tensor, ...]:
        """Pose, face and lip weights of frames ``start .. start + count - 1``.

        A number where the weight is the same for all those frames (the computation is then exactly that of a
        constant weight), else a float32 tensor (count,) on ``device``, one weight per frame.
        """
        import torch

        weights = (clip_weight(w, start, count) for w in (self.pose_weight, self.face_weight, self.lip_weight))
        return tuple(w if isinstance(w, float) else torch.tensor(w, dtype=torch.float32, device=device)
                     for w in weights)


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


def check_segment(settings: SamplerSettings, audio_frames: int, num_frames: int, start_frame: int,
                  end_frame: int | None, motion: MotionState | None) -> int:
    """Validate the frame range [start_frame, end_frame) of a render; returns the resolved end frame."""
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
    if audio_frames < needed:
        raise ValueError(f"audio features cover {audio_frames} frames, {needed} are needed; "
                         "encode the audio with the same clip length")
    return end_frame


@dataclass
class ClipPlan:
    """The fixed quantities of one render: which clips, their latent shape, CFG and the denoising schedule."""

    settings: SamplerSettings
    start_frame: int
    end_frame: int
    first_clip: int
    n_clips: int
    latent_shape: tuple[int, int, int, int, int]  # (1, 4, F, h, w)
    latent_dtype: torch.dtype  # what the scheduler's latents are kept in
    cfg: bool  # guidance_scale > 1: the batch holds [uncond, cond] rows
    drop: float  # Hallo2's motion-frame pixel drop rate
    scheduler: object
    cfg_steps: int  # the first cfg_steps steps use CFG, the others the conditional half only
    still: object | None = None  # a still.StillAnchor when SamplerSettings.still is on

    @property
    def clip_len(self) -> int:
        return self.settings.clip_length

    @property
    def total_steps(self) -> int:
        return self.n_clips * len(self.scheduler.timesteps)

    def clips(self) -> range:
        return range(self.first_clip, self.first_clip + self.n_clips)
