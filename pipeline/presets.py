"""Sampling presets: ``faithful`` (the original recipe, the default), ``balanced`` and ``fast``.

Only the sampling recipe changes (solver, steps, how many early steps use CFG); precision, low-VRAM mode
and everything else stay as chosen. ``faithful`` leaves the settings exactly as ``SamplerSettings()``.
FLOP reductions (our analytic count, ``pipeline/flops.py``, 512², per video second, vs faithful):
see :func:`preset_table` and bench/RESULTS.md. The speed presets have not been checked for quality on the
released weights (none are available here); they follow the training-free recipes of peers.md §5b.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .flops import render_flops
from .models.architecture import HalloArchitecture
from .sampler import SamplerSettings


@dataclass(frozen=True)
class Preset:
    name: str
    solver: str
    steps: int
    cfg_steps: int | None  # None: CFG at every step
    description: str


PRESETS: dict[str, Preset] = {
    "faithful": Preset("faithful", "ddim", 40, None, "the original: 40 DDIM steps, CFG at every step"),
    "balanced": Preset("balanced", "dpmpp", 25, 20, "25 DPM-Solver++ (2M) steps, CFG on the first 20"),
    "fast": Preset("fast", "dpmpp", 20, 10, "20 DPM-Solver++ (2M) steps, CFG on the first 10"),
}


def preset_settings(name: str, base: SamplerSettings | None = None) -> SamplerSettings:
    """``base`` (default ``SamplerSettings()``) with the preset's solver, steps and CFG steps."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    base = base or SamplerSettings()
    if name == "faithful":
        return replace(base, solver="ddim", steps=40, cfg_steps=None)
    p = PRESETS[name]
    return replace(base, solver=p.solver, steps=p.steps, cfg_steps=p.cfg_steps)


def preset_table(size: int = 512, arch: HalloArchitecture | None = None, fps: float = 25.0,
                 seconds: float = 64.0) -> list[dict[str, float | str]]:
    """TFLOP per video second of each preset (ours), with the original code's faithful figure as baseline."""
    arch = arch or HalloArchitecture()
    frames = int(round(seconds * fps))
    original = render_flops(arch, size, size, frames, fps=fps, mode="original").per_video_second
    ours_faithful = render_flops(arch, size, size, frames, fps=fps).per_video_second
    rows: list[dict[str, float | str]] = [{"preset": "original code (faithful)", "tflop_per_video_s": original / 1e12,
                                           "vs_original": 1.0, "vs_faithful": original / ours_faithful}]
    for p in PRESETS.values():
        f = render_flops(arch, size, size, frames, steps=p.steps, cfg_steps=p.cfg_steps, fps=fps).per_video_second
        rows.append({"preset": p.name, "tflop_per_video_s": f / 1e12, "vs_original": f / original,
                     "vs_faithful": f / ours_faithful})
    return rows
