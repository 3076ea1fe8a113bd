"""Architecture description of the Hallo networks.

The released ``net.pth`` is built from the Stable Diffusion 1.5 UNet ``config.json`` plus a handful of
constants fixed in Hallo's ``configs/inference/default.yaml`` (``unet_additional_kwargs``) and in
``scripts/inference.py`` (AudioProj / ImageProj sizes). Those constants live here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import HF_REPO, UNET_CONFIG

# Values of the SD-1.5 ``unet/config.json`` (shipped with the Hallo weights) that the network depends on.
SD15_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

# Keys of config.json that are passed on to diffusers' UNet2DConditionModel.
_UNET_KWARGS = (
    "act_fn",
    "attention_head_dim",
    "block_out_channels",
    "center_input_sample",
    "cross_attention_dim",
    "down_block_types",
    "downsample_padding",
    "flip_sin_to_cos",
    "freq_shift",
    "in_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "norm_eps",
    "norm_num_groups",
    "out_channels",
    "sample_size",
    "up_block_types",
)


@dataclass(frozen=True)
class HalloArchitecture:
    """Everything needed to build the five networks of ``net.pth`` on any device."""

    unet: dict[str, Any] = field(default_factory=lambda: dict(SD15_UNET_CONFIG))
    # unet_additional_kwargs of the original (identical for Hallo and Hallo2).
    motion_heads: int = 8
    motion_max_len: int = 32
    audio_heads: int = 8
    audio_cross_dim: int | None = None  # defaults to the UNet cross_attention_dim (768)
    # FaceLocator(conditioning_embedding_channels=320) uses these block widths.
    face_locator_channels: tuple[int, ...] = (16, 32, 64, 128)
    # ImageProjModel(cross_attention_dim=768, clip_embeddings_dim=512, clip_extra_context_tokens=4)
    face_embedding_dim: int = 512
    face_tokens: int = 4
    # AudioProjModel(seq_len=5, blocks=12, channels=768, intermediate_dim=512, output_dim=768, context_tokens=32)
    audio_window: int = 5
    audio_layers: int = 12
    audio_channels: int = 768
    audio_intermediate: int = 512
    audio_tokens: int = 32

    @property
    def block_out_channels(self) -> list[int]:
        return list(self.unet["block_out_channels"])

    @property
    def cross_attention_dim(self) -> int:
        return int(self.unet["cross_attention_dim"])

    @property
    def audio_dim(self) -> int:
        return int(self.audio_cross_dim or self.cross_attention_dim)

    def unet_kwargs(self) -> dict[str, Any]:
        """Arguments for diffusers' ``UNet2DConditionModel`` (unknown config keys are dropped)."""
        return {k: self.unet[k] for k in _UNET_KWARGS if k in self.unet}

    def validate(self) -> None:
        """Refuse configurations that do not describe an SD-1.5-shaped UNet."""
        down = list(self.unet.get("down_block_types", []))
        up = list(self.unet.get("up_block_types", []))
        if len(down) != 4 or down[-1] != "DownBlock2D" or any(t != "CrossAttnDownBlock2D" for t in down[:3]):
            raise ValueError(f"unet config: down_block_types must be 3x CrossAttnDownBlock2D + DownBlock2D, got {down}")
        if len(up) != 4 or up[0] != "UpBlock2D" or any(t != "CrossAttnUpBlock2D" for t in up[1:]):
            raise ValueError(f"unet config: up_block_types must be UpBlock2D + 3x CrossAttnUpBlock2D, got {up}")
        if int(self.unet.get("layers_per_block", 2)) != 2:
            raise ValueError("unet config: layers_per_block must be 2 (the SD-1.5 layout Hallo was trained on)")


def read_unet_config(path: Path) -> dict[str, Any]:
    """Read an SD-1.5 style ``unet/config.json`` with a clear error when it is missing or invalid."""
    if not path.is_file():
        raise FileNotFoundError(
            f"UNet architecture config not found: expected {path}. It ships in the Hugging Face repo "
            f"'{HF_REPO}' as {UNET_CONFIG} (only config.json is needed, not the UNet weights)."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); download it again.") from exc
    missing = [k for k in ("block_out_channels", "cross_attention_dim", "down_block_types", "up_block_types")
               if k not in config]
    if missing:
        raise ValueError(f"{path} lacks the UNet keys {missing}; is it the SD-1.5 unet/config.json?")
    return config
