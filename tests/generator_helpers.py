"""Shared set-up for generator tests: tiny model, real portrait and real speech, prepared once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SIZE = (64, 64)  # smallest output the UNet accepts: fast on CPU, same code paths as 512


@dataclass
class Prepared:
    sampler: object
    reference: object
    features: object  # AudioFeatures
    rgb: np.ndarray


def prepare(models: Path, assets: Path, *, variant: str = "hallo", audio: str = "speech_7s_44k.wav",
            size: tuple[int, int] = SIZE, dtype: torch.dtype = torch.float32) -> Prepared:
    from hallo_nodes.pipeline.audio.features import encode_audio
    from hallo_nodes.pipeline.audio.wav2vec import load_wav2vec
    from hallo_nodes.pipeline.face.analysis import analyze_face
    from hallo_nodes.pipeline.models.loading import load_net, load_vae
    from hallo_nodes.pipeline.reference import make_reference
    from hallo_nodes.pipeline.render import load_image_rgb
    from hallo_nodes.pipeline.sampling.sampler import HalloSampler
    from hallo_nodes.pipeline.video.writer import load_audio_file

    net = load_net(models, variant, dtype=dtype)
    vae = load_vae(models, dtype=dtype)
    rgb = load_image_rgb(assets / "portraits" / "photo_woman.jpg")
    face = analyze_face(rgb, models, output_size=size)
    reference = make_reference(vae, rgb, face, size=size)
    wave, rate = load_audio_file(assets / "audio" / audio)
    features = encode_audio(wave, rate, load_wav2vec(models))
    sampler = HalloSampler(net, vae, dtype=dtype, is_hallo2=variant == "hallo2")
    return Prepared(sampler, reference, features, rgb)
