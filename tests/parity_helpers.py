"""Weights, inputs and comparisons for ``test_original_parity.py`` (numbers recorded from the original Hallo code).

The weight rule depends only on a tensor's key and shape, never on module construction order or on a diffusers
version's initialisation, so the recording harness (original code on diffusers 0.27.2) and this test (our code on
the current diffusers) load bit-identical weights. This module therefore imports nothing from ``hallo_nodes`` at
import time: the harness imports :func:`rule_state_dict` from it in a process where our package cannot load.

Rule, for each key of the state dict:

* keys ending in ``pos_encoder.pe`` (the motion modules' sinusoidal table, not learned) keep their built value;
* 1-D ``*.bias``: ``0.02 * z``;
* 1-D ``*.weight`` of a normalisation layer (``norm`` in the key): ``1 + 0.1 * z``;
* every other ``*.weight`` (Linear / Conv, >= 2-D): ``z / sqrt(fan_in)`` with ``fan_in = numel / shape[0]``;

where ``z`` is ``numpy.random.RandomState(zlib.crc32(key)).standard_normal(numel)`` (float64, cast to float32 after
scaling). NumPy's legacy ``RandomState`` stream is frozen (NEP 19), so the weights cannot drift with a torch or
NumPy upgrade; ``test_rule_weights_are_the_recorded_ones`` pins them anyway. Zero-initialised layers of the
original (the audio modules' zero convs, the motion modules' ``proj_out``, FaceLocator ``conv_out``) get non-zero
values this way, so the audio, motion and face-locator paths all reach the output.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "original_parity"
INPUTS_FILE = FIXTURES / "inputs.npz"
GOLDENS_FILE = FIXTURES / "goldens.npz"

KEPT_BUFFERS = ("pos_encoder.pe",)
NORM_GAIN = 0.1
BIAS_SCALE = 0.02
LEVELS = 4


# -- the weight rule ---------------------------------------------------------------------------------------
def key_seed(key: str) -> int:
    return zlib.crc32(key.encode("utf-8"))


def rule_tensor(key: str, shape: Sequence[int]) -> torch.Tensor:
    """The rule's value for ``key`` (see the module docstring); float32."""
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    z = np.random.RandomState(key_seed(key)).standard_normal(numel)
    leaf = key.rsplit(".", 1)[-1]
    if len(shape) == 1 and leaf == "bias":
        values = BIAS_SCALE * z
    elif len(shape) == 1 and leaf == "weight" and "norm" in key:
        values = 1.0 + NORM_GAIN * z
    elif len(shape) >= 2 and leaf == "weight":
        values = z / math.sqrt(numel // shape[0])
    else:
        raise ValueError(f"the parity weight rule has no case for {key} {shape}")
    return torch.from_numpy(values.astype(np.float32).reshape(shape))


def is_kept(key: str) -> bool:
    return key.endswith(KEPT_BUFFERS)


def rule_state_dict(template: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same keys as ``template``; kept buffers copied (as float32), everything else from :func:`rule_tensor`."""
    return {key: value.detach().float().clone() if is_kept(key) else rule_tensor(key, value.shape)
            for key, value in template.items()}


def key_digest(keys: Sequence[str]) -> int:
    """CRC32 of the sorted key list (shapes not included); recorded with the goldens."""
    return zlib.crc32("\n".join(sorted(keys)).encode("utf-8"))


def shape_digest(template: Mapping[str, torch.Tensor]) -> int:
    text = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sorted(template.items()))
    return zlib.crc32(text.encode("utf-8"))


# -- our templates and model folder ------------------------------------------------------------------------
def net_template() -> dict[str, torch.Tensor]:
    """State dict of our tiny Hallo net (keys, shapes and the built ``pos_encoder.pe`` tables)."""
    from hallo_nodes.pipeline.models.net import build_net
    from hallo_nodes.testing.tiny_models import tiny_architecture

    return build_net(tiny_architecture(), "cpu").state_dict()


def vae_config() -> dict:
    from hallo_nodes.testing.tiny_models import TINY_VAE_CONFIG

    return dict(TINY_VAE_CONFIG)


def vae_template() -> dict[str, torch.Tensor]:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{k: v for k, v in vae_config().items() if not k.startswith("_")}).state_dict()


def write_parity_model_folder(root: Path) -> Path:
    """``root`` laid out like the released download, holding the rule's weights (fp32) for hallo and hallo2."""
    from hallo_nodes.testing.tiny_models import tiny_architecture
    from safetensors.torch import save_file

    root = Path(root)
    unet_dir = root / "stable-diffusion-v1-5" / "unet"
    unet_dir.mkdir(parents=True, exist_ok=True)
    (unet_dir / "config.json").write_text(json.dumps(tiny_architecture().unet, indent=2))
    first = root / "hallo" / "net.pth"
    first.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rule_state_dict(net_template()), first)
    second = root / "hallo2" / "net.pth"
    second.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(first, second)
    except OSError:
        shutil.copyfile(first, second)
    vae_dir = root / "sd-vae-ft-mse"
    vae_dir.mkdir(parents=True, exist_ok=True)
    (vae_dir / "config.json").write_text(json.dumps(vae_config(), indent=2))
    save_file({k: v.contiguous() for k, v in rule_state_dict(vae_template()).items()},
              str(vae_dir / "diffusion_pytorch_model.safetensors"))
    return root


# -- recorded inputs ---------------------------------------------------------------------------------------
@dataclass
class ParityInputs:
    rgb: np.ndarray  # (H, W, 3) uint8 portrait, already at the output size
    face_embedding: np.ndarray  # (512,) float32, raw ArcFace-like
    face_locator: np.ndarray  # (3, H, W) float32 0/1 hard face box
    full_masks: list[np.ndarray]  # per level (h_l * w_l,) float32
    face_masks: list[np.ndarray]
    lip_masks: list[np.ndarray]
    audio_states: np.ndarray  # (N_padded, 12, C) float32 un-windowed per-frame wav2vec states
    num_frames: int  # true frame count (the render is trimmed to it)
    steps: int
    guidance_scale: float
    seed: int
    motion_scale: tuple[float, float, float]  # pose, face, lip

    @property
    def size(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def load_inputs(path: Path = INPUTS_FILE) -> ParityInputs:
    with np.load(path) as d:
        return ParityInputs(
            rgb=d["rgb"],
            face_embedding=d["face_embedding"],
            face_locator=d["face_locator"],
            full_masks=[d[f"full_mask_{i}"] for i in range(LEVELS)],
            face_masks=[d[f"face_mask_{i}"] for i in range(LEVELS)],
            lip_masks=[d[f"lip_mask_{i}"] for i in range(LEVELS)],
            audio_states=d["audio_states"],
            num_frames=int(d["num_frames"]),
            steps=int(d["steps"]),
            guidance_scale=float(d["guidance_scale"]),
            seed=int(d["seed"]),
            motion_scale=tuple(float(x) for x in d["motion_scale"]),
        )


def load_goldens(path: Path = GOLDENS_FILE) -> dict[str, np.ndarray]:
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def decode_frames(quantised: np.ndarray) -> np.ndarray:
    """Frames are stored as ``round(x * 65535)`` in uint16 (x in [0, 1]; error <= 7.7e-6)."""
    return quantised.astype(np.float64) / 65535.0


def encode_frames(frames: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(np.asarray(frames, np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)


# -- our side through the public API -----------------------------------------------------------------------
def make_parity_reference(vae: torch.nn.Module, inputs: ParityInputs, *, swap_face_lip: bool = False):
    """A ``HalloReference`` made by ``make_reference`` from the recorded face data (no face models involved)."""
    from hallo_nodes.pipeline.face.analysis import FaceAnalysisResult
    from hallo_nodes.pipeline.face.masks import HalloMasks
    from hallo_nodes.pipeline.reference import make_reference

    h, w = inputs.size
    shapes = [(max(h // 8 >> i, 1), max(w // 8 >> i, 1)) for i in range(LEVELS)]
    face, lip = inputs.face_masks, inputs.lip_masks
    if swap_face_lip:
        face, lip = lip, face
    masks = HalloMasks(
        full=[torch.from_numpy(m.copy()) for m in inputs.full_masks],
        face=[torch.from_numpy(m.copy()) for m in face],
        lip=[torch.from_numpy(m.copy()) for m in lip],
        level_shapes=shapes,
        face_locator=torch.from_numpy(inputs.face_locator.copy()),
        image_size=(h, w),
        sources={name: np.zeros((64, 64), np.uint8) for name in ("full", "face", "lip")},
    )
    face_result = FaceAnalysisResult(
        embedding=inputs.face_embedding.copy(),
        bbox=(0.0, 0.0, float(w), float(h)),
        num_faces=1,
        face_index=0,
        landmarks=np.zeros((478, 2)),
        landmark_model="recorded",
        masks=masks,
        image_size=(h, w),
    )
    return make_reference(vae, inputs.rgb, face_result, size=(h, w))


def windowed_audio(inputs: ParityInputs) -> torch.Tensor:
    """``(N_padded, 5, 12, C)``: our edge-clamped +-2 window over the recorded per-frame states."""
    from hallo_nodes.pipeline.audio.features import stack_window

    return stack_window(torch.from_numpy(inputs.audio_states.copy()))


def max_abs(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a = a.detach().double().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, np.float64)
    b = b.detach().double().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())
