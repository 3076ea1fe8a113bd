"""HalloAudioEncode: AUDIO -> per-frame wav2vec2 features (HALLO_AUDIO)."""

from __future__ import annotations

import math

from ..pipeline.audio.features import LOUDNESS_MODES, AudioFeatures, encode_audio
from ..pipeline.audio.separation import SEPARATION_MODES
from ..pipeline.notices import collect_notices
from ..pipeline.paths import SEPARATOR_FILE, SEPARATOR_SUBDIR
from ..pipeline.sampling.settings import CLIP_LENGTH
from . import comfy_adapter as comfy
from .common import CATEGORY, HALLO_AUDIO, HALLO_MODEL, HalloModel, check_audio, expect, node_messages, with_notes

NODE = "HalloAudioEncode"
HALLO2_SEGMENT_SECONDS = 60.0


def audio_summary(features: AudioFeatures) -> dict:
    """What the frontend shows on the sampler once audio is connected."""
    return {
        "frames": int(features.num_frames),
        "clips": int(math.ceil(features.num_frames / features.clip_length)),
        "clip_length": int(features.clip_length),
        "fps": float(features.fps),
        "duration": float(features.num_frames / features.fps),
        "audio_seconds": float(features.duration_s),
    }


class HalloAudioEncode:
    DESCRIPTION = (
        "Turns a voice track into Hallo's audio conditioning: mono 16 kHz, optional vocal separation, wav2vec2 "
        "features interpolated to the video frame rate, all 12 layers, a +-2 frame window. Also outputs the "
        "number of video frames the audio covers and the frame rate."
    )
    CATEGORY = f"{CATEGORY}/audio"
    RETURN_TYPES = (HALLO_AUDIO, "INT", "FLOAT")
    RETURN_NAMES = ("audio_features", "frames", "fps")
    OUTPUT_TOOLTIPS = (
        "Per-frame audio features for HalloSampler.",
        "Number of video frames the audio covers (ceil(duration x fps)).",
        "Frame rate of the video (connect it to CreateVideo).",
    )
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (HALLO_MODEL, {"tooltip": "From HalloModelLoader; its wav2vec2 encoder is used."}),
                "audio": ("AUDIO", {"tooltip": "The voice track (any sample rate, mono or stereo), e.g. from "
                                               "LoadAudio."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 60.0, "step": 1.0,
                                  "tooltip": "Video frame rate. Hallo was trained at 25 fps."}),
                "separate_vocals": (list(SEPARATION_MODES), {
                    "default": "auto",
                    "tooltip": "Isolate the voice from music/noise before wav2vec2, as the original Hallo always "
                               "does. auto = when the optional audio-separator package and "
                               f"{SEPARATOR_SUBDIR}/{SEPARATOR_FILE} in the model folder are there (otherwise the raw "
                               "audio is used and the log says what is missing); on = required; off = never."}),
                "loudness": (list(LOUDNESS_MODES), {"default": "none",
                                                    "tooltip": "Gain before vocal separation. none = as the "
                                                               "original (the features are gain-invariant anyway)."}),
                "segment_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 600.0, "step": 1.0,
                                              "tooltip": "Encode the audio in independent segments of this many "
                                                         "seconds. 0 = automatic: 60 s for Hallo2 (its use_cut), "
                                                         "one pass for Hallo."}),
            }
        }

    @node_messages("HalloAudioEncode")
    def encode(self, model: HalloModel, audio: dict, fps: float = 25.0, separate_vocals: str = "auto",
               loudness: str = "none", segment_seconds: float = 0.0) -> dict:
        model = expect(model, HalloModel, NODE, "model", HALLO_MODEL)
        waveform, sample_rate = check_audio(audio, NODE)
        segment = segment_seconds if segment_seconds > 0 else (HALLO2_SEGMENT_SECONDS if model.is_hallo2 else None)
        progress = comfy.Progress(1000)
        with collect_notices(NODE) as notes, model.residency.use("wav2vec"):
            features = encode_audio(
                waveform, sample_rate, model.wav2vec, fps=float(fps), clip_length=CLIP_LENGTH,
                separate_vocals=separate_vocals, separator_model=model.folder.root,
                loudness=loudness, segment_seconds=segment,
                progress=lambda done, total: progress.update_absolute(done, total),
            )
        return {"ui": with_notes({"hallo_audio": [audio_summary(features)]}, notes),
                "result": (features, int(features.num_frames), float(features.fps))}
