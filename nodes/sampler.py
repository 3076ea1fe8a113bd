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
from ..pipeline.errors import HalloInputError
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
    HalloModel,
    check_audio,
    check_finite,
    expect,
    node_messages,
    with_notes,
)
from .face import paste_compositor
from .legacy_widgets import changed_options, legacy_inputs, legacy_values
from .sampler_options import (
    HALLO_SAMPLER_OPTIONS,
    SamplerChoices,
    make_options,
    option_notes,
    prepare_model,
    recipe_problem,
)
from .schedule_inputs import BRANCHES, frame_weights, still_input

if TYPE_CHECKING:  # the generator pulls in diffusers: imported when a node runs, not when ComfyUI starts
    from ..pipeline.sampling.sampler import ClipOutput, GenerationResult, HalloReference, MotionState, SamplerSettings
    from ..pipeline.sampling.schedules import Weight

logger = logging.getLogger(__name__)

MAX_SEED = 0xFFFFFFFFFFFFFFFF
HALLO_SEGMENT = "HALLO_SEGMENT"


class StepsMin(int):
    """The ``steps`` widget's ``min`` (1) that lets 0 through ComfyUI's own range check.

    API prompts saved before the option nodes used ``steps: 0`` for "the preset's count"; they must still run.
    ComfyUI checks ``value < min`` per widget, which asks ``StepsMin.__gt__`` first (the reflected method of a
    subclass wins); the frontend gets a plain 1, so the widget itself never shows 0.
    """

    def __gt__(self, other: object) -> bool:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return False
        return int.__gt__(self, other)


def settings_inputs() -> dict:
    weight = {"default": 1.0, "min": FiniteMin(0.0), "max": 3.0, "step": 0.05}  # FiniteMin: NaN is refused
    branch = {"pose": "head pose (full/background mask)", "face": "expression (face mask)",
              "lip": "the lips (lip mask)"}
    weights = {f"{b}_weight": ("FLOAT", dict(weight, tooltip=f"Strength of the audio on {branch[b]} (original: 1). "
                                                            "Connect a Hallo Weight Schedule (or a list of floats, "
                                                            "one per frame) to change it over the video."))
               for b in BRANCHES}
    return {
        "steps": ("INT", {"default": 40, "min": StepsMin(1), "max": 200,
                          "tooltip": "Denoising steps per 16-frame clip (the original: 40). The speed presets of "
                                     "Hallo Sampler Options run fewer: balanced and cache 25, fast 20."}),
        "cfg": ("FLOAT", {"default": 3.5, "min": FiniteMin(0.0), "max": 20.0, "step": 0.1, "round": 0.01,
                          "tooltip": "Classifier-free guidance scale (original: 3.5; 1 or less turns it off and "
                                     "halves the work)."}),
        "seed": ("INT", {"default": 42, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                         "tooltip": "Noise seed (original: 42). Chained segments must use the same seed."}),
        **weights,
    }


def options_input() -> dict:
    return {"options": (HALLO_SAMPLER_OPTIONS, {
        "tooltip": "From Hallo Sampler Options: speed preset, precision, low VRAM, compile and the other engineering "
                   "settings. Not connected: the original recipe (faithful)."})}


def common_required() -> dict:
    return {
        "model": (HALLO_MODEL, {"tooltip": "From HalloModelLoader."}),
        "reference": (HALLO_REFERENCE, {"tooltip": "From HalloReference."}),
        "audio_features": (HALLO_AUDIO, {"tooltip": "From HalloAudioEncode."}),
    }


@dataclass(frozen=True)
class SegmentLength:
    """HALLO_SEGMENT: how many frames a sampler renders (from where its motion input ends)."""

    frames: int


def frames_problem(frames: int) -> str | None:
    if frames < CLIP_LENGTH or frames % CLIP_LENGTH:
        low = max(CLIP_LENGTH, frames - frames % CLIP_LENGTH)
        high = low + CLIP_LENGTH if frames > low else low
        fix = f"use {low}" if low == high else f"use {low} or {high}"
        return (f"HalloSegment: widget 'frames' is {frames}, not a multiple of {CLIP_LENGTH} (clips are "
                f"{CLIP_LENGTH} frames): {fix}")
    return None


class HalloSegment:
    DESCRIPTION = (
        "How many frames a Hallo Sampler renders, for long audio in parts: the sampler renders this many frames "
        "from where its 'motion' input ends (from frame 0 without one); a next sampler, fed its 'motion' output, "
        "continues. Without a segment a sampler renders to the end of the audio."
    )
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = (HALLO_SEGMENT,)
    RETURN_NAMES = ("segment",)
    OUTPUT_TOOLTIPS = ("Connect to the 'segment' input of a Hallo Sampler.",)
    FUNCTION = "segment"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"frames": ("INT", {
            "default": 400, "min": CLIP_LENGTH, "max": 1 << 24, "step": CLIP_LENGTH,
            "tooltip": f"Frames to render, a multiple of {CLIP_LENGTH} (a clip); at 25 fps 400 frames are 16 s. "
                       "Fewer remain at the end of the audio: the sampler stops there."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, frames: int | None = None) -> bool | str:  # noqa: N802
        return True if frames is None else frames_problem(int(frames)) or True

    @node_messages("HalloSegment")
    def segment(self, frames: int) -> tuple[SegmentLength]:
        problem = frames_problem(int(frames))
        if problem:
            raise ValueError(problem)
        return (SegmentLength(int(frames)),)


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
        where = "the incoming motion ends" if start_frame < 0 else "start_frame"
        raise ValueError(f"{node}: the segment starts at frame {start} ({where}), at or past the end of the audio "
                         f"({total} frames, {total / features.fps:.2f} s)")
    if num_frames and num_frames % CLIP_LENGTH:
        raise ValueError(f"{node}: num_frames must be a multiple of {CLIP_LENGTH} or 0 (to the end), got {num_frames}")
    end = total if not num_frames else min(total, start + int(num_frames))
    if start > 0 and motion is None:
        raise ValueError(f"{node}: start_frame {start} > 0 needs the motion output of the sampler that rendered "
                         "the frames before it; connect it to the 'motion' input")
    return Segment(start, end)


def segment_frames(node: str, segment: Any, old: dict[str, Any]) -> int:
    """Frames to render (0: to the end): the segment input's, else a saved prompt's ``num_frames``."""
    if segment is None:
        return int(old["num_frames"])
    expect(segment, SegmentLength, node, "segment", HALLO_SEGMENT)
    if old["num_frames"]:
        raise HalloInputError(f"{node}: input 'segment' is connected and the old input 'num_frames' is set too; "
                              "remove 'num_frames' from the prompt")
    return int(segment.frames)


def build_settings(node: str, steps: int, cfg: float, seed: int, weights: tuple[Weight, Weight, Weight],
                   choices: SamplerChoices, recipe: SamplerOptions) -> SamplerSettings:
    """``SamplerSettings`` of the widgets, the options (``choices``) and the recipe they select.

    The weights come checked from ``frame_weights`` (numbers or per-frame schedules).
    """
    from ..pipeline.sampling.sampler import SamplerSettings

    check_finite(node, cfg=cfg, motion_frame_drop=choices.motion_frame_drop)
    drop = choices.motion_frame_drop
    if drop is not None and not 0.0 <= drop < 1.0:
        raise ValueError(f"{node}: motion_frame_drop is {drop}; use a share from 0 to 0.95")
    pose_weight, face_weight, lip_weight = weights
    base = SamplerSettings(
        guidance_scale=float(cfg), seed=int(seed) % (1 << 63), pose_weight=pose_weight,
        face_weight=face_weight, lip_weight=lip_weight, faithful=bool(choices.reference_quirks),
        motion_frame_drop=drop, low_vram=bool(choices.low_vram), compute_dtype=str(choices.dtype),
    )
    problem = recipe_problem(node, recipe, str(choices.dtype))
    if problem is not None:
        raise ValueError(problem)
    return resolve_sampler(recipe, base)


def legacy_choices(old: dict[str, Any]) -> tuple[SamplerChoices, Callable[[int], SamplerOptions]]:
    """The options of a prompt saved before the option nodes (old widget names), with their old meanings."""
    drop = float(old["motion_frame_drop"])
    choices = SamplerChoices(dtype=old["dtype"], low_vram=old["low_vram"], compile=old["compile"],
                             motion_frame_drop=None if drop < 0 else drop, reference_quirks=old["faithful"])
    return choices, lambda steps: make_options(old["preset"], steps, old["solver"], old["cfg_steps"],
                                               old["cache_interval"])


def sampler_settings(node: str, fps: float, w: dict[str, Any], options: Any, old: dict[str, Any]
                     ) -> tuple[SamplerOptions, SamplerChoices, SamplerSettings]:
    """Both sampler nodes: the widgets ``w`` (steps, cfg, seed, weights, still), the ``options`` input (or a saved
    prompt's old widgets ``old``) as the recipe, the options and ``SamplerSettings``."""
    if options is not None:
        choices = expect(options, SamplerChoices, node, "options", HALLO_SAMPLER_OPTIONS)
        changed = changed_options(old)
        if changed:
            raise HalloInputError(f"{node}: input 'options' is connected and the old input(s) {', '.join(changed)} "
                                  "are set too; give the options in one place (the Hallo Sampler Options node)")
        recipe = choices.recipe(int(w["steps"]))
    else:
        choices, old_recipe = legacy_choices(old)
        recipe = old_recipe(int(w["steps"]))
    weights = frame_weights(node, fps, (w["pose_weight"], w["face_weight"], w["lip_weight"]),
                            tuple(old[f"{b}_schedule"] for b in BRANCHES))
    settings = build_settings(node, w["steps"], w["cfg"], w["seed"], weights, choices, recipe)
    settings.still = bool(w["still"])
    return recipe, choices, settings


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
        "the motion frames for chaining a next sampler (long audio in segments, or resuming). Engineering "
        "settings come from Hallo Sampler Options, a frame range from Hallo Segment."
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
            "required": {**common_required(), **settings_inputs()},
            "optional": {
                **still_input(),
                "audio": ("AUDIO", {"tooltip": "The voice track that went into HalloAudioEncode; passed through, "
                                               "trimmed to the rendered frames (silence if not connected)."}),
                "motion": (HALLO_MOTION, {"tooltip": "Motion output of the sampler that rendered the previous "
                                                     "segment; this one continues where it ends, seamlessly."}),
                **options_input(),
                "segment": (HALLO_SEGMENT, {"tooltip": "From Hallo Segment: render only that many frames (from "
                                                       "where 'motion' ends). Not connected: to the end of the "
                                                       "audio."}),
            },
            "hidden": legacy_inputs(segment=True),  # the old widgets, by name, from saved API prompts
        }

    @node_messages("HalloSampler")
    def sample(self, model: HalloModel, reference: HalloReference, audio_features: AudioFeatures, steps: int = 40,
               cfg: float = 3.5, seed: int = 42, pose_weight: float = 1.0, face_weight: float = 1.0,
               lip_weight: float = 1.0, still: bool = False, audio: dict | None = None,
               motion: MotionState | None = None, options: SamplerChoices | None = None,
               segment: SegmentLength | None = None, **old_widgets: Any) -> dict:
        node = "HalloSampler"
        check_payloads(node, model, reference, audio_features, motion)
        old = legacy_values(node, old_widgets, segment=True)
        span = resolve_segment(audio_features, old["start_frame"], segment_frames(node, segment, old), motion, node)
        widgets = {"steps": steps, "cfg": cfg, "seed": seed, "pose_weight": pose_weight, "face_weight": face_weight,
                   "lip_weight": lip_weight, "still": still}
        recipe, choices, settings = sampler_settings(node, float(audio_features.fps), widgets, options, old)
        started = time.perf_counter()
        with collect_notices(node) as notes:
            option_notes(node, recipe)
            compiled = prepare_model(node, model, choices.compile)
            out_audio = trim_audio(audio, audio_features, span, node)
            if audio is not None:
                silent_audio_notice(node, out_audio["waveform"])
            result = generate(model, reference, audio_features, settings, span, motion, collect=True)
        info = render_summary(audio_features, span, time.perf_counter() - started)
        info.update(recipe_summary(settings, recipe.preset), compiled=compiled)
        return {"ui": with_notes({"hallo_render": [info]}, notes),
                "result": (result.frames, out_audio, float(audio_features.fps), result.motion)}


class HalloRenderToVideoFile:
    DESCRIPTION = (
        "Renders the whole talking video straight into an mp4 (H.264 + AAC) in ComfyUI's output folder, clip by "
        "clip, so long audio never needs all frames in memory (a minute of 512x512 frames is 4.4 GB as an "
        "IMAGE batch). Optionally pastes every frame back into the original photo (HalloFaceCrop). Engineering "
        "settings come from Hallo Sampler Options."
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
            },
            "optional": {
                **still_input(),
                "filename_prefix": ("STRING", {"default": "hallo/Hallo",
                                               "tooltip": "Name of the mp4 inside ComfyUI's output folder; a "
                                                          "counter is appended. 'a/b' = file b in folder a; "
                                                          "'a/' = file Hallo in folder a."}),
                "feather": ("INT", {"default": 16, "min": 0, "max": 256,
                                    "tooltip": "Seam width for the paste-back, in original-image pixels."}),
                "original": ("IMAGE", {"tooltip": "The photo that went into HalloFaceCrop: every frame is pasted "
                                                  "back into it."}),
                "crop": (HALLO_CROP, {"tooltip": "The crop output of HalloFaceCrop (needs 'original')."}),
                **options_input(),
            },
            # into the mp4, as core Save Video; and the old widgets, by name, from saved API prompts
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", **legacy_inputs(segment=False)},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: str | None = None) -> bool | str:  # noqa: N802
        """The file name at queue time: its length, NUL and other control characters, a way out of the folder."""
        return prefix_problem("HalloRenderToVideoFile", filename_prefix) or True

    @node_messages("HalloRenderToVideoFile")
    def render(self, model: HalloModel, reference: HalloReference, audio_features: AudioFeatures, audio: dict,
               steps: int = 40, cfg: float = 3.5, seed: int = 42, pose_weight: float = 1.0,
               face_weight: float = 1.0, lip_weight: float = 1.0, still: bool = False,
               filename_prefix: str = "hallo/Hallo", feather: int = 16, original: torch.Tensor | None = None,
               crop: CropBox | None = None, options: SamplerChoices | None = None, prompt: dict | None = None,
               extra_pnginfo: dict | None = None, **old_widgets: Any) -> dict:
        node = "HalloRenderToVideoFile"
        check_payloads(node, model, reference, audio_features, None)
        problem = prefix_problem(node, filename_prefix)  # a connected prefix is known only now
        if problem:
            raise HalloInputError(problem)
        wave, rate = check_audio(audio, node)
        old = legacy_values(node, old_widgets, segment=False)
        widgets = {"steps": steps, "cfg": cfg, "seed": seed, "pose_weight": pose_weight, "face_weight": face_weight,
                   "lip_weight": lip_weight, "still": still}
        recipe, choices, settings = sampler_settings(node, float(audio_features.fps), widgets, options, old)
        segment = Segment(0, int(audio_features.num_frames))
        with collect_notices(node) as notes:
            option_notes(node, recipe)
            compiled = prepare_model(node, model, choices.compile)
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
        info.update(recipe_summary(settings, recipe.preset), compiled=compiled)
        ui = {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}], "animated": [True],
              "hallo_render": [info]}
        return {"ui": with_notes(ui, notes), "result": (int(writer.frames_written), comfy.video_output(path))}
