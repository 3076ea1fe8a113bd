"""HalloSampler (frames in memory, chainable) and HalloRenderToVideoFile (streams clips into an mp4)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..pipeline.audio.features import SILENCE_PEAK, AudioFeatures
from ..pipeline.face.crop import CropBox
from ..pipeline.notices import collect_notices, notice
from ..pipeline.sampling.options import SamplerOptions, recipe_summary, resolve_sampler
from ..pipeline.sampling.settings import CLIP_LENGTH
from ..pipeline.video.output_path import filename_prefix_problem
from ..pipeline.video.writer import VideoWriter
from . import comfy_adapter as comfy
from .common import (
    CATEGORY,
    HALLO_AUDIO,
    HALLO_CROP,
    HALLO_MODEL,
    HALLO_MOTION,
    HALLO_REFERENCE,
    FiniteMin,
    HalloInputError,
    HalloModel,
    check_audio,
    check_finite,
    expect,
    with_notes,
)
from .face import paste_compositor
from .sampler_options import make_options, option_inputs, option_notes, prepare_model, validate_options
from .schedule_inputs import frame_weights, schedule_inputs

if TYPE_CHECKING:  # the generator pulls in diffusers: imported when a node runs, not when ComfyUI starts
    from ..pipeline.sampling.sampler import ClipOutput, GenerationResult, HalloReference, MotionState, SamplerSettings
    from ..pipeline.sampling.schedules import Weight

logger = logging.getLogger(__name__)

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def settings_inputs() -> dict:
    weight = {"default": 1.0, "min": FiniteMin(0.0), "max": 3.0, "step": 0.05}  # FiniteMin: NaN is refused
    return {
        "steps": ("INT", {"default": 0, "min": 0, "max": 200,
                          "tooltip": "Denoising steps per 16-frame clip. 0 = the preset's (faithful: 40 as the "
                                     "original, balanced 25, fast 20, custom 40); another number replaces the "
                                     "preset's count (workflows saved before presets keep theirs)."}),
        "cfg": ("FLOAT", {"default": 3.5, "min": FiniteMin(0.0), "max": 20.0, "step": 0.1, "round": 0.01,
                          "tooltip": "Classifier-free guidance scale (original: 3.5; 1 or less turns it off and "
                                     "halves the work)."}),
        "seed": ("INT", {"default": 42, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                         "tooltip": "Noise seed (original: 42). Chained segments must use the same seed."}),
        "pose_weight": ("FLOAT", dict(weight, tooltip="Strength of the audio on head pose (full/background mask).")),
        "face_weight": ("FLOAT", dict(weight, tooltip="Strength of the audio on expression (face mask).")),
        "lip_weight": ("FLOAT", dict(weight, tooltip="Strength of the audio on the lips (lip mask).")),
    }


def segment_inputs() -> dict:
    return {
        # step 16: the arrows give -1, 0, 16, 32, ... (js/hallo.js keeps -1 off ComfyUI's -1 + 16k grid)
        "start_frame": ("INT", {"default": -1, "min": -1, "max": 1 << 24, "step": CLIP_LENGTH,
                                "tooltip": "First frame to render; a multiple of 16. -1 = where the incoming "
                                           "motion ends (0 without motion)."}),
        "num_frames": ("INT", {"default": 0, "min": 0, "max": 1 << 24, "step": CLIP_LENGTH,
                               "tooltip": "Frames to render from start_frame; a multiple of 16. 0 = up to the end "
                                          "of the audio."}),
    }


def advanced_inputs() -> dict:
    return {
        "faithful": ("BOOLEAN", {"default": True,
                                 "tooltip": "Reproduce the original's reference-attention batch quirks exactly "
                                            "(the weights were trained with them)."}),
        "motion_frame_drop": ("FLOAT", {"default": -1.0, "min": FiniteMin(-1.0), "max": 0.95, "step": 0.05,
                                        "tooltip": "Hallo2: share of motion-frame pixels dropped outside the face. "
                                                   "-1 = automatic (0.25 for Hallo2, 0 for Hallo)."}),
    }


def common_required() -> dict:
    return {
        "model": (HALLO_MODEL, {"tooltip": "From HalloModelLoader."}),
        "reference": (HALLO_REFERENCE, {"tooltip": "From HalloReference."}),
        "audio_features": (HALLO_AUDIO, {"tooltip": "From HalloAudioEncode."}),
    }


@dataclass
class Segment:
    start: int
    end: int


def resolve_segment(features: AudioFeatures, start_frame: int, num_frames: int, motion: MotionState | None,
                    node: str) -> Segment:
    total = int(features.num_frames)
    start = (motion.next_frame if motion is not None else 0) if start_frame < 0 else int(start_frame)
    if start % CLIP_LENGTH:
        raise ValueError(f"{node}: start_frame must be a multiple of {CLIP_LENGTH} (clips are {CLIP_LENGTH} frames), "
                         f"got {start}")
    if start >= total:
        raise ValueError(f"{node}: start_frame {start} is at or past the end of the audio ({total} frames, "
                         f"{total / features.fps:.2f} s)")
    if num_frames and num_frames % CLIP_LENGTH:
        raise ValueError(f"{node}: num_frames must be a multiple of {CLIP_LENGTH} or 0 (to the end), got {num_frames}")
    end = total if not num_frames else min(total, start + int(num_frames))
    if start > 0 and motion is None:
        raise ValueError(f"{node}: start_frame {start} > 0 needs the motion output of the sampler that rendered "
                         "the frames before it; connect it to the 'motion' input")
    return Segment(start, end)


def build_settings(node: str, steps: int, cfg: float, seed: int, pose_weight: Weight, face_weight: Weight,
                   lip_weight: Weight, faithful: bool, motion_frame_drop: float, options: SamplerOptions | None = None,
                   *, low_vram: bool = False, dtype: str = "auto") -> SamplerSettings:
    """The widgets as ``SamplerSettings``; the recipe (preset, steps, solver, cfg_steps) from ``options``.

    The weights come checked from ``frame_weights`` (numbers or per-frame schedules).
    """
    from ..pipeline.sampling.sampler import SamplerSettings

    check_finite(node, cfg=cfg, motion_frame_drop=motion_frame_drop)
    base = SamplerSettings(
        guidance_scale=float(cfg), seed=int(seed) % (1 << 63), pose_weight=pose_weight,
        face_weight=face_weight, lip_weight=lip_weight, faithful=bool(faithful),
        motion_frame_drop=None if motion_frame_drop < 0 else float(motion_frame_drop), low_vram=bool(low_vram),
        compute_dtype=str(dtype),
    )
    options = options or make_options("faithful", steps, "ddim", 0)
    problem = validate_options(node, {**settings_inputs(), **option_inputs()},
                               {"steps": int(steps), "preset": options.preset, "solver": options.solver,
                                "cfg_steps": options.cfg_steps, "cache_interval": options.cache_interval,
                                "dtype": str(dtype)})
    if problem is not True:
        raise ValueError(problem)
    return resolve_sampler(options, base)


def widget_settings(node: str, fps: float, w: dict[str, Any]) -> tuple[SamplerOptions, SamplerSettings]:
    """Both sampler nodes' widget values (``w``, by name) as the recipe options and ``SamplerSettings``."""
    weights = frame_weights(node, fps, (w["pose_weight"], w["face_weight"], w["lip_weight"]),
                            (w["pose_schedule"], w["face_schedule"], w["lip_schedule"]))
    options = make_options(w["preset"], w["steps"], w["solver"], w["cfg_steps"], w["cache_interval"])
    settings = build_settings(node, w["steps"], w["cfg"], w["seed"], *weights, w["faithful"], w["motion_frame_drop"],
                              options, low_vram=w["low_vram"], dtype=w["dtype"])
    settings.still = bool(w["still"])
    return options, settings


def generate(model: HalloModel, reference: HalloReference, features: AudioFeatures, settings: SamplerSettings,
             segment: Segment, motion: MotionState | None, *, collect: bool,
             on_clip: Callable[[ClipOutput], None] | None = None) -> GenerationResult:
    """Run the sampler with ComfyUI's model management, progress bar, interrupt and previews: ComfyUI's latent
    preview (its ``--preview-method``) of the middle frame of the clip at every step, the clip's last decoded
    frame after every clip."""
    n_clips = math.ceil(segment.end / CLIP_LENGTH) - segment.start // CLIP_LENGTH
    progress = comfy.Progress(n_clips * settings.steps)
    done = {"steps": 0}
    previewer = comfy.latent_previewer()

    def on_step(step: int, total: int) -> None:
        done["steps"] = step
        if previewer is None:  # else on_latent reports the step, with its preview
            progress.update_absolute(step, total)

    def on_latent(step: int, total: int, latent: torch.Tensor) -> None:
        progress.update_absolute(step, total, previewer(latent))

    def clip_cb(clip: ClipOutput) -> None:
        if on_clip is not None:
            on_clip(clip)
        if clip.frames.shape[0]:
            progress.update_absolute(done["steps"], None, clip.frames[-1])

    from ..pipeline.sampling.sampler import HalloSampler as ClipSampler

    sampler = ClipSampler(model.net, model.vae, device=model.device, dtype=model.dtype, is_hallo2=model.is_hallo2,
                          residency=model.residency)
    started = time.perf_counter()
    try:
        result = sampler.generate(reference, features.features, features.num_frames, settings,
                                  start_frame=segment.start, end_frame=segment.end, motion=motion,
                                  on_clip=clip_cb, on_step=on_step, should_cancel=comfy.check_interrupt,
                                  collect=collect, on_latent=None if previewer is None else on_latent)
    finally:
        comfy.soft_empty_cache()
    logger.info("rendered frames %d-%d (%d clips) in %.1f s", segment.start, segment.end, n_clips,
                time.perf_counter() - started)
    return result


def prefix_problem(node: str, prefix: str | None) -> str | None:
    """The error for an unusable ``filename_prefix`` widget (None when usable or connected)."""
    problem = None if prefix is None else filename_prefix_problem(prefix)
    return None if problem is None else f"{node}: widget 'filename_prefix' {problem}"


def trim_audio(audio: dict | None, features: AudioFeatures, segment: Segment, node: str) -> dict:
    """The AUDIO of frames [start, end) (silence at 16 kHz when no audio is connected)."""
    fps = float(features.fps)
    if audio is None:
        n = int(round((segment.end - segment.start) / fps * 16000))
        return {"waveform": torch.zeros(1, 1, n), "sample_rate": 16000}
    wave, rate = check_audio(audio, node)
    lo = min(wave.shape[-1], int(round(segment.start / fps * rate)))
    hi = min(wave.shape[-1], int(round(segment.end / fps * rate)))
    return {"waveform": wave[..., lo:hi].contiguous(), "sample_rate": rate}


def silent_audio_notice(node: str, wave: torch.Tensor) -> None:
    """Tell the user (on the node) when the voice track is silent: the face would not speak."""
    if wave.numel() and float(wave.abs().max()) < SILENCE_PEAK:
        notice(logger, f"{node}: the audio is silent (peak below {SILENCE_PEAK:.0e}): the face will not speak; "
                       "check the audio input")


def check_payloads(node: str, model: Any, reference: Any, audio_features: Any, motion: Any) -> None:
    from ..pipeline.sampling.sampler import HalloReference, MotionState

    expect(model, HalloModel, node, "model", HALLO_MODEL)
    expect(reference, HalloReference, node, "reference", HALLO_REFERENCE)
    expect(audio_features, AudioFeatures, node, "audio_features", HALLO_AUDIO)
    if motion is not None:
        expect(motion, MotionState, node, "motion", HALLO_MOTION)
        if tuple(motion.frames.shape[-2:]) != reference.size:
            raise ValueError(f"{node}: the incoming motion frames are {tuple(motion.frames.shape[-2:])} but the "
                             f"reference is {reference.size}; chain samplers of the same size")


def render_summary(features: AudioFeatures, segment: Segment, seconds: float | None = None) -> dict:
    frames = segment.end - segment.start
    info = {"start_frame": segment.start, "end_frame": segment.end, "frames": frames,
            "clips": math.ceil(segment.end / CLIP_LENGTH) - segment.start // CLIP_LENGTH, "fps": float(features.fps),
            "duration": frames / float(features.fps), "total_frames": int(features.num_frames),
            "attention": comfy.attention_name()}
    if seconds is not None:
        info["render_seconds"] = round(seconds, 2)
    return info


class HalloSampler:
    DESCRIPTION = (
        "Generates the talking video clip by clip (16 frames each): per clip one ReferenceNet pass on the "
        "portrait and the two motion frames, DDIM denoising with three audio cross-attentions weighted by pose, "
        "face and lip, then VAE decode. Outputs the frames, the audio of the rendered segment, the frame rate and "
        "the motion frames for chaining a next sampler (long audio in segments, or resuming)."
    )
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", HALLO_MOTION)
    RETURN_NAMES = ("images", "audio", "fps", "motion")
    OUTPUT_TOOLTIPS = (
        "The video frames (for CreateVideo, upscalers, HalloPasteBack, ...).",
        "The audio of exactly the rendered frames.",
        "Frame rate of the video.",
        "The last two frames and the next frame index: connect to the 'motion' input of the next sampler.",
    )
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {**common_required(), **settings_inputs(), **segment_inputs(), **advanced_inputs()},
            "optional": {
                "audio": ("AUDIO", {"tooltip": "The voice track that went into HalloAudioEncode; passed through, "
                                               "trimmed to the rendered frames (silence if not connected)."}),
                "motion": (HALLO_MOTION, {"tooltip": "Motion output of the sampler that rendered the previous "
                                                     "segment; continues it seamlessly."}),
                **option_inputs(),
                **schedule_inputs(),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, steps: int | None = None, start_frame: int | None = None,
                        num_frames: int | None = None, preset: str | None = None, solver: str | None = None,
                        cfg_steps: int | None = None, dtype: str | None = None,
                        compile: bool | None = None) -> bool | str:  # noqa: A002 (the widget's name)
        """The widgets valid only in some combinations (FLOATs: ComfyUI's own check, see ``FiniteMin``)."""
        spec = {**settings_inputs(), **segment_inputs(), **option_inputs()}
        return validate_options("HalloSampler", spec, locals())

    def sample(self, model: HalloModel, reference: HalloReference, audio_features: AudioFeatures, steps: int = 0,
               cfg: float = 3.5, seed: int = 42, pose_weight: float = 1.0, face_weight: float = 1.0,
               lip_weight: float = 1.0, start_frame: int = -1, num_frames: int = 0, faithful: bool = True,
               motion_frame_drop: float = -1.0, audio: dict | None = None,
               motion: MotionState | None = None, preset: str = "faithful", solver: str = "ddim",
               cfg_steps: int = 0, low_vram: bool = False, dtype: str = "auto",
               compile: bool = False, cache_interval: int = 0, pose_schedule: str = "",  # noqa: A002
               face_schedule: str = "", lip_schedule: str = "", still: bool = False) -> dict:
        node = "HalloSampler"
        check_payloads(node, model, reference, audio_features, motion)
        segment = resolve_segment(audio_features, start_frame, num_frames, motion, node)
        options, settings = widget_settings(node, float(audio_features.fps), locals())
        started = time.perf_counter()
        with collect_notices() as notes:
            option_notes(node, options)
            compiled = prepare_model(node, model, compile)
            out_audio = trim_audio(audio, audio_features, segment, node)
            if audio is not None:
                silent_audio_notice(node, out_audio["waveform"])
            result = generate(model, reference, audio_features, settings, segment, motion, collect=True)
        info = render_summary(audio_features, segment, time.perf_counter() - started)
        info.update(recipe_summary(settings, options.preset), compiled=compiled)
        return {"ui": with_notes({"hallo_render": [info]}, notes),
                "result": (result.frames, out_audio, float(audio_features.fps), result.motion)}


class HalloRenderToVideoFile:
    DESCRIPTION = (
        "Renders the whole talking video straight into an mp4 (H.264 + AAC) in ComfyUI's output folder, clip by "
        "clip, so long audio never needs all frames in memory (a minute of 512x512 frames is 4.4 GB as an "
        "IMAGE batch). Optionally pastes every frame back into the original photo (HalloFaceCrop)."
    )
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = ("INT", "VIDEO")
    RETURN_NAMES = ("frames", "video")
    OUTPUT_TOOLTIPS = ("Number of frames written.",
                       "The mp4 as a VIDEO (for Save Video, Get Video Components, ...); empty in a ComfyUI "
                       "without the VIDEO type.")
    OUTPUT_NODE = True
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                **common_required(),
                "audio": ("AUDIO", {"tooltip": "The voice track that went into HalloAudioEncode; muxed into the "
                                               "mp4."}),
                **settings_inputs(),
                **advanced_inputs(),
                "filename_prefix": ("STRING", {"default": "hallo/Hallo",
                                               "tooltip": "Name of the mp4 inside ComfyUI's output folder; a "
                                                          "counter is appended. 'a/b' = file b in folder a; "
                                                          "'a/' = file Hallo in folder a."}),
            },
            "optional": {
                "original": ("IMAGE", {"tooltip": "The photo that went into HalloFaceCrop: every frame is pasted "
                                                  "back into it."}),
                "crop": (HALLO_CROP, {"tooltip": "The crop output of HalloFaceCrop (needs 'original')."}),
                "feather": ("INT", {"default": 16, "min": 0, "max": 256,
                                    "tooltip": "Seam width for the paste-back, in original-image pixels."}),
                **option_inputs(),
                **schedule_inputs(),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},  # into the mp4, as core Save Video
        }

    @classmethod
    def VALIDATE_INPUTS(cls, steps: int | None = None, preset: str | None = None, solver: str | None = None,
                        cfg_steps: int | None = None, dtype: str | None = None,
                        compile: bool | None = None,  # noqa: A002 (the widget's name)
                        filename_prefix: str | None = None) -> bool | str:
        """The widgets valid only in some combinations (FLOATs: ComfyUI's own check, see ``FiniteMin``), and the
        file name, at queue time."""
        problem = prefix_problem("HalloRenderToVideoFile", filename_prefix)
        if problem:
            return problem
        spec = {**settings_inputs(), **option_inputs()}
        values = {k: v for k, v in locals().items() if k != "filename_prefix"}
        return validate_options("HalloRenderToVideoFile", spec, values)

    def render(self, model: HalloModel, reference: HalloReference, audio_features: AudioFeatures, audio: dict,
               steps: int = 0, cfg: float = 3.5, seed: int = 42, pose_weight: float = 1.0,
               face_weight: float = 1.0, lip_weight: float = 1.0, faithful: bool = True,
               motion_frame_drop: float = -1.0, filename_prefix: str = "hallo/Hallo",
               original: torch.Tensor | None = None, crop: CropBox | None = None, feather: int = 16,
               preset: str = "faithful", solver: str = "ddim", cfg_steps: int = 0, low_vram: bool = False,
               dtype: str = "auto", compile: bool = False, cache_interval: int = 0,  # noqa: A002
               pose_schedule: str = "", face_schedule: str = "", lip_schedule: str = "", still: bool = False,
               prompt: dict | None = None, extra_pnginfo: dict | None = None) -> dict:
        node = "HalloRenderToVideoFile"
        check_payloads(node, model, reference, audio_features, None)
        problem = prefix_problem(node, filename_prefix)  # a connected prefix is known only now
        if problem:
            raise HalloInputError(problem)
        wave, rate = check_audio(audio, node)
        options, settings = widget_settings(node, float(audio_features.fps), locals())
        segment = Segment(0, int(audio_features.num_frames))
        with collect_notices() as notes:
            option_notes(node, options)
            compiled = prepare_model(node, model, compile)
            silent_audio_notice(node, wave)
            compositor = paste_compositor(node, original, crop, int(feather))
            height, width = reference.size if compositor is None else (compositor.height, compositor.width)
            path, subfolder, filename = comfy.next_output_path(filename_prefix, "mp4", width, height)
            started = time.perf_counter()
            with VideoWriter(path, float(audio_features.fps), width, height, audio=(wave, rate),
                             metadata=comfy.video_metadata(prompt, extra_pnginfo)) as writer:
                def write(clip: ClipOutput) -> None:  # frame by frame: one photo-sized uint8 frame at a time
                    for frame in clip.frames:
                        writer.write(frame[None] if compositor is None else compositor.to_uint8(frame)[None])

                generate(model, reference, audio_features, settings, segment, None, collect=False, on_clip=write)
        info = render_summary(audio_features, segment, time.perf_counter() - started)
        info.update(recipe_summary(settings, options.preset), compiled=compiled)
        ui = {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}], "animated": [True],
              "hallo_render": [info]}
        return {"ui": with_notes(ui, notes), "result": (int(writer.frames_written), comfy.video_output(path))}
