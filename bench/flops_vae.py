"""Analytic FLOPs of the Stable Diffusion VAE (``AutoencoderKL``) decode and encode of one frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .flop_ops import FlopCount, attention, conv, linear, resnet

# stabilityai/sd-vae-ft-mse (AutoencoderKL) as far as FLOPs are concerned.
SD_VAE_CONFIG: dict[str, Any] = {
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "in_channels": 3,
    "out_channels": 3,
}


def _vae_mid(acc: FlopCount, n: float, c: int, h: int, w: int) -> None:
    resnet(acc, n, c, c, h, w, 0, 0, part="vae")
    acc.add("vae", 4 * linear(n * h * w, c, c) + attention(n, h * w, h * w, c))
    resnet(acc, n, c, c, h, w, 0, 0, part="vae")


def vae_decode_flops(height: int, width: int, config: Mapping[str, Any] | None = None) -> float:
    """One frame through ``AutoencoderKL.decode`` (post_quant_conv included)."""
    cfg = {**SD_VAE_CONFIG, **(dict(config) if config else {})}
    widths = list(cfg["block_out_channels"])
    layers = int(cfg["layers_per_block"]) + 1
    lat = int(cfg["latent_channels"])
    n_up = len(widths) - 1
    h, w = height >> n_up, width >> n_up
    acc = FlopCount()
    acc.add("vae", conv(1, lat, lat, h, w, k=1) + conv(1, lat, widths[-1], h, w))
    _vae_mid(acc, 1, widths[-1], h, w)
    prev = widths[-1]
    for i, out in enumerate(reversed(widths)):
        for j in range(layers):
            resnet(acc, 1, prev if j == 0 else out, out, h, w, 0, 0, part="vae")
        prev = out
        if i < n_up:
            h, w = 2 * h, 2 * w
            acc.add("vae", conv(1, out, out, h, w))
    acc.add("vae", conv(1, widths[0], int(cfg["out_channels"]), h, w))
    return acc.total


def vae_encode_flops(height: int, width: int, config: Mapping[str, Any] | None = None) -> float:
    """One frame through ``AutoencoderKL.encode`` (quant_conv included)."""
    cfg = {**SD_VAE_CONFIG, **(dict(config) if config else {})}
    widths = list(cfg["block_out_channels"])
    layers = int(cfg["layers_per_block"])
    lat = int(cfg["latent_channels"])
    h, w = height, width
    acc = FlopCount()
    acc.add("vae", conv(1, int(cfg["in_channels"]), widths[0], h, w))
    prev = widths[0]
    for i, out in enumerate(widths):
        for j in range(layers):
            resnet(acc, 1, prev if j == 0 else out, out, h, w, 0, 0, part="vae")
        prev = out
        if i < len(widths) - 1:
            h, w = h // 2, w // 2
            acc.add("vae", conv(1, out, out, h, w))
    _vae_mid(acc, 1, widths[-1], h, w)
    acc.add("vae", conv(1, widths[-1], 2 * lat, h, w) + conv(1, 2 * lat, 2 * lat, h, w, k=1))
    return acc.total
