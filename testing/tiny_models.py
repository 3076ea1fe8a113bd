"""Write a tiny random-weight model folder in the released layout and key naming.

Used by the tests, the benchmarks and the README's try-it-out command: every loader runs on it exactly as
on the released weights, only the channel counts are small. The output is noise, not a face.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..pipeline.errors import HalloInputError
from ..pipeline.models.architecture import SD15_UNET_CONFIG, HalloArchitecture
from ..pipeline.models.net import build_net
from ..pipeline.paths import CHECKPOINT_FILE, FACE_MODELS_SUBDIR, UNET_CONFIG, VAE_SUBDIR, WAV2VEC_SUBDIR

logger = logging.getLogger(__name__)

TINY_UNET_CONFIG = dict(
    SD15_UNET_CONFIG,
    block_out_channels=[32, 64, 64, 64],
    cross_attention_dim=32,
    sample_size=8,
)
TINY_WAV2VEC_HIDDEN = 32

TINY_VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [32, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}


def tiny_architecture() -> HalloArchitecture:
    return HalloArchitecture(
        unet=dict(TINY_UNET_CONFIG),
        audio_channels=TINY_WAV2VEC_HIDDEN,
        audio_intermediate=32,
        audio_tokens=8,
    )


def write_net(path: Path, arch: HalloArchitecture, seed: int, dtype: torch.dtype = torch.float16) -> Path:
    """Random ``net.pth`` for ``arch`` with the released key names, saved as a flat fp16 state dict."""
    torch.manual_seed(seed)
    net = build_net(arch, "cpu")
    with torch.no_grad():
        # Default inits leave the face locator's output and the zero convs meaningful; scale the
        # rest down a little so deep random stacks stay in a numerically friendly range.
        for name, p in net.named_parameters():
            if p.ndim >= 2 and "pos_encoder" not in name:
                p.mul_(0.5)
    state = {k: v.to(dtype).contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_vae(folder: Path, seed: int) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**{k: v for k, v in TINY_VAE_CONFIG.items() if not k.startswith("_")})
    vae.save_pretrained(str(folder), safe_serialization=True)
    return folder


def check_fresh_folder(root: Path) -> None:
    """Refuse to write random weights into a folder that holds anything (a real model folder, say)."""
    if root.exists() and not root.is_dir():
        raise HalloInputError(f"{root} is a file; give a new, empty folder for the tiny models")
    if root.is_dir() and any(root.iterdir()):
        raise HalloInputError(
            f"{root} is not empty; the tiny random models would replace what it holds (a real model folder's "
            "weights, say): give a new or empty folder")


def write_tiny_model_folder(root: str | Path, *, variants: tuple[str, ...] = ("hallo", "hallo2"),
                            seed: int = 0, with_face_models: bool = True, with_wav2vec: bool = True,
                            landmarker_task: Path | str | None = None, replace_contents: bool = False) -> Path:
    """Create ``root`` laid out like the Hugging Face ``fudan-generative-ai/hallo`` download.

    ``root`` must be new or empty unless ``replace_contents`` (then the files it writes replace any there).
    ``landmarker_task``: the real ``face_landmarker_v2_with_blendshapes.task`` (MediaPipe's model
    cannot be made up), copied into ``face_analysis/models``; without it the face masks stop with an
    error naming the missing file. Ignored when ``with_face_models`` is false."""
    root = Path(root).expanduser()
    if not replace_contents:
        check_fresh_folder(root)
    arch = tiny_architecture()
    unet_config = root / UNET_CONFIG
    unet_config.parent.mkdir(parents=True, exist_ok=True)
    unet_config.write_text(json.dumps(arch.unet, indent=2))
    for i, variant in enumerate(variants):
        write_net(root / variant / CHECKPOINT_FILE, arch, seed + i)
    write_vae(root / VAE_SUBDIR, seed)
    if with_wav2vec:
        from .tiny_wav2vec import write_wav2vec_folder

        write_wav2vec_folder(root / WAV2VEC_SUBDIR, tiny=True, seed=seed)
    if with_face_models:
        from .tiny_face_models import write_face_models

        write_face_models(root / FACE_MODELS_SUBDIR, seed=seed, landmarker_task=landmarker_task)
    as_downloaded(root)
    logger.info("wrote tiny model folder %s", root)
    return root


def as_downloaded(root: Path) -> None:
    """Give every file and folder under ``root`` the permissions a download gets (0644 / 0755 under the usual
    umask 022): safetensors writes its files 0600, which another user of a shared model folder cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
