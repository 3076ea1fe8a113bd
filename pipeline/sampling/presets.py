"""Sampling presets: ``faithful`` (the original recipe, the default), ``balanced``, ``fast`` and ``cache``.

Only the sampling recipe changes (solver, steps, how many early steps use CFG, DeepCache's interval);
precision, low-VRAM mode and everything else stay as chosen. ``faithful`` leaves the settings exactly as
``SamplerSettings()``.
Their FLOPs per video second come from the analytic count in ``bench/flops.py`` (``preset_table``; figures in
bench/RESULTS.md). The speed presets have not been checked for quality on the released weights; they follow
the usual training-free recipes for video diffusion: a higher-order solver with fewer steps, guidance
only on the early steps, where it shapes the motion, and (``cache``) DeepCache: the deep UNet features
reused between adjacent steps, only the outer blocks recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .settings import SamplerSettings


@dataclass(frozen=True)
class Preset:
    name: str
    solver: str
    steps: int
    cfg_steps: int | None  # None: CFG at every step
    description: str
    cache_interval: int = 1  # DeepCache: the whole UNet every N-th step, its outer blocks in between


PRESETS: dict[str, Preset] = {
    "faithful": Preset("faithful", "ddim", 40, None, "the original: 40 DDIM steps, CFG at every step"),
    "balanced": Preset("balanced", "dpmpp", 25, 20, "25 DPM-Solver++ (2M) steps, CFG on the first 20"),
    "fast": Preset("fast", "dpmpp", 20, 10, "20 DPM-Solver++ (2M) steps, CFG on the first 10"),
    "cache": Preset("cache", "dpmpp", 25, 20, "balanced's 25 steps (CFG on 20), the whole UNet every 3rd step "
                    "and its outer blocks in between (DeepCache)", cache_interval=3),
}


def preset_settings(name: str, base: SamplerSettings | None = None) -> SamplerSettings:
    """``base`` (default ``SamplerSettings()``) with the preset's solver, steps, CFG steps and cache interval."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    base = base or SamplerSettings()
    if name == "faithful":
        return replace(base, solver="ddim", steps=40, cfg_steps=None, cache_interval=1)
    p = PRESETS[name]
    return replace(base, solver=p.solver, steps=p.steps, cfg_steps=p.cfg_steps, cache_interval=p.cache_interval)
