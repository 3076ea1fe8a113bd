"""``HalloNet``: the container whose ``state_dict`` is exactly the released ``net.pth``."""

from __future__ import annotations

import torch
from torch import nn

from .architecture import HalloArchitecture
from .conditioning import AudioProj, FaceLocator, ImageProj
from .unets import DenoisingUNet, ReferenceUNet


class HalloNet(nn.Module):
    """reference_unet + denoising_unet + face_locator + imageproj + audioproj (the original ``Net``)."""

    def __init__(self, arch: HalloArchitecture) -> None:
        super().__init__()
        self.arch = arch
        self.reference_unet = ReferenceUNet(arch)
        self.denoising_unet = DenoisingUNet(arch)
        self.face_locator = FaceLocator(arch.block_out_channels[0], arch.face_locator_channels)
        self.imageproj = ImageProj(arch.cross_attention_dim, arch.face_embedding_dim, arch.face_tokens)
        self.audioproj = AudioProj(
            window=arch.audio_window,
            layers=arch.audio_layers,
            channels=arch.audio_channels,
            intermediate=arch.audio_intermediate,
            output_dim=arch.audio_dim,
            tokens=arch.audio_tokens,
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.imageproj.proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.imageproj.proj.weight.device


def build_net(arch: HalloArchitecture, device: torch.device | str = "meta") -> HalloNet:
    """Build the network without allocating real memory (``meta``) or on ``device``."""
    with torch.device(device):
        return HalloNet(arch)
