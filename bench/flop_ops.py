"""Counting primitives of the analytic FLOP model (matmul and convolution FLOPs, 2 per multiply-add)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

TEMB_DIM_FACTOR = 4  # SD time embedding width = 4 x block_out_channels[0]


@dataclass
class FlopCount:
    """FLOPs by part (``resnet``, ``spatial``, ``reference_attention``, ``audio``, ``motion``, ...)."""

    parts: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, part: str, flops: float) -> None:
        self.parts[part] += float(flops)

    def merge(self, other: FlopCount, times: float = 1.0) -> FlopCount:
        for k, v in other.parts.items():
            self.parts[k] += v * times
        return self

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def as_dict(self) -> dict[str, float]:
        return dict(self.parts)


def linear(tokens: float, cin: int, cout: int) -> float:
    return 2.0 * tokens * cin * cout


def conv(n: float, cin: int, cout: int, h: int, w: int, k: int = 3) -> float:
    """``n`` images, output ``h`` x ``w``."""
    return 2.0 * n * cout * h * w * cin * k * k


def attention(batch: float, lq: int, lk: int, dim: int) -> float:
    """Scores (q @ k^T) plus weighted values, summed over heads."""
    return 4.0 * batch * lq * lk * dim


def ff(tokens: float, dim: int) -> float:
    """diffusers FeedForward(dim, mult=4, geglu): dim -> 8*dim (GEGLU) -> dim."""
    return linear(tokens, dim, 8 * dim) + linear(tokens, 4 * dim, dim)


def resnet(acc: FlopCount, n: float, cin: int, cout: int, h: int, w: int, temb_rows: float, temb_dim: int,
            part: str = "resnet") -> None:
    acc.add(part, conv(n, cin, cout, h, w) + conv(n, cout, cout, h, w))
    if cin != cout:
        acc.add(part, conv(n, cin, cout, h, w, k=1))
    if temb_rows:
        acc.add(part, linear(temb_rows, temb_dim, cout))


def level_size(h: int, w: int, level: int) -> tuple[int, int]:
    for _ in range(level):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w
