"""HalloEvaluate: the built-in measures of one to three rendered videos, as a JSON report and a plot."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch

from ..pipeline.images import comfy_image_to_rgb
from ..pipeline.notices import collect_notices
from .common import CATEGORY, HALLO_MODEL, HalloInputError, HalloModel, check_audio, check_image, expect, node_messages

logger = logging.getLogger(__name__)

NODE = "HalloEvaluate"
SLOTS = ("images", "images_b", "images_c")


def _frames(image: torch.Tensor, name: str) -> np.ndarray:
    from ..pipeline.video.writer import to_uint8_frames

    check_image(image, NODE, name)
    if image.shape[-1] != 3:
        raise HalloInputError(f"{NODE}: input '{name}' must be RGB frames (3 channels), got {image.shape[-1]}")
    if image.shape[0] < 2:
        raise HalloInputError(f"{NODE}: input '{name}' holds {image.shape[0]} frame; connect a video (2+ frames)")
    return to_uint8_frames(image)


class HalloEvaluate:
    DESCRIPTION = (
        "Measures a rendered talking video against its portrait and voice: ArcFace identity (mean, worst frame, "
        "drift), lip sync (mouth opening against speech activity: offset and confidence), lip motion in silence, "
        "the jump at 16-frame clip boundaries and the background colour drift; SyncNet LSE-C / LSE-D too when "
        "syncnet_v2.model is in the model folder. Connect up to three videos to compare settings side by side."
    )
    CATEGORY = f"{CATEGORY}/evaluation"
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("report", "plot")
    OUTPUT_TOOLTIPS = ("The measures and per-frame curves as JSON (schema hallo-eval/1).",
                       "The curves over time, with clip boundaries; the videos overlaid in colours.")
    FUNCTION = "evaluate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (HALLO_MODEL, {"tooltip": "From HalloModelLoader: its face detector, ArcFace and "
                                                   "MediaPipe model do the measuring."}),
                "images": ("IMAGE", {"tooltip": "The video frames to measure (e.g. HalloSampler's images)."}),
                "reference": ("IMAGE", {"tooltip": "The portrait the video should show."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 240.0, "step": 0.01,
                                  "tooltip": "Frame rate of the video(s) (HalloSampler's fps)."}),
                "clip_length": ("INT", {"default": 16, "min": 1, "max": 1024,
                                        "tooltip": "Frames per generated clip (Hallo: 16); sets the boundaries."}),
                "names": ("STRING", {"default": "a, b, c", "tooltip": "Comma-separated names of the videos."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "The voice, for the lip-sync measures (skipped without it)."}),
                "images_b": ("IMAGE", {"tooltip": "A second video to compare (same portrait and voice)."}),
                "images_c": ("IMAGE", {"tooltip": "A third video to compare."}),
            },
        }

    @node_messages("HalloEvaluate")
    def evaluate(self, model: HalloModel, images: torch.Tensor, reference: torch.Tensor, fps: float = 25.0,
                 clip_length: int = 16, names: str = "a, b, c", audio: dict | None = None,
                 images_b: torch.Tensor | None = None, images_c: torch.Tensor | None = None) -> dict:
        from ..pipeline.evaluation.plot import plot_reports
        from ..pipeline.evaluation.report import evaluate, format_report, reports_to_dict

        model = expect(model, HalloModel, NODE, "model", HALLO_MODEL)
        ref = comfy_image_to_rgb(check_image(reference, NODE, "reference"), name=f"{NODE} reference")
        sound = None
        if audio is not None:
            wave, rate = check_audio(audio, NODE)
            sound = (wave[0], rate)
        labels = [n.strip() for n in str(names).split(",") if n.strip()]
        videos = [(slot, v) for slot, v in zip(SLOTS, (images, images_b, images_c), strict=True) if v is not None]
        reports = []
        with collect_notices(NODE) as notes:
            for k, (slot, video) in enumerate(videos):
                name = labels[k] if k < len(labels) else slot
                reports.append(evaluate(_frames(video, slot), ref, float(fps), model.folder.root, audio=sound,
                                        clip_length=int(clip_length), name=name, device=str(model.device)))
        table = format_report(reports)
        logger.info("%s:\n%s", NODE, table)
        plot = torch.from_numpy(plot_reports(reports).astype(np.float32) / 255.0)[None]
        return {"ui": {"text": [table, *notes]},
                "result": (json.dumps(reports_to_dict(reports), indent=1), plot)}
