"""Small conditioning networks of Hallo: FaceLocator, ImageProj (face-ID tokens), AudioProj (audio tokens)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class FaceLocator(nn.Module):
    """Hard face-box image (N, 3, H, W) -> features (N, 320, H/8, W/8) added after ``conv_in``."""

    def __init__(self, out_channels: int = 320, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], kernel_size=3, padding=1)
        blocks: list[nn.Module] = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class ImageProj(nn.Module):
    """ArcFace embedding (B, 512) -> face tokens (B, 4, 768)."""

    def __init__(self, cross_dim: int = 768, embedding_dim: int = 512, tokens: int = 4) -> None:
        super().__init__()
        self.tokens = tokens
        self.cross_dim = cross_dim
        self.proj = nn.Linear(embedding_dim, tokens * cross_dim)
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(embedding).reshape(-1, self.tokens, self.cross_dim))


class AudioProj(nn.Module):
    """Windowed wav2vec features (B, F, 5, 12, C) -> audio tokens (B, F, 32, 768)."""

    def __init__(
        self,
        window: int = 5,
        layers: int = 12,
        channels: int = 768,
        intermediate: int = 512,
        output_dim: int = 768,
        tokens: int = 32,
    ) -> None:
        super().__init__()
        self.input_dim = window * layers * channels
        self.tokens = tokens
        self.output_dim = output_dim
        self.proj1 = nn.Linear(self.input_dim, intermediate)
        self.proj2 = nn.Linear(intermediate, intermediate)
        self.proj3 = nn.Linear(intermediate, tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, f = features.shape[:2]
        x = features.reshape(b * f, self.input_dim)
        x = torch.relu(self.proj1(x))
        x = torch.relu(self.proj2(x))
        x = self.norm(self.proj3(x).reshape(b * f, self.tokens, self.output_dim))
        return x.reshape(b, f, self.tokens, self.output_dim)
