"""The sampler options a user sets (preset, custom recipe), checked and resolved into ``SamplerSettings``.

One definition for the sampler nodes and ``hallo-render``:

* ``preset``: one of ``PRESETS`` (faithful, the default, reproduces the original) or ``custom``.
* ``steps``: 0 = the preset's step count; any other number replaces it, under every preset. This is what
  ``steps`` meant before presets existed (a workflow that rendered 25 DDIM steps still does: its preset is
  faithful) and what ``hallo-render --preset fast --steps 25`` does.
* ``cache_interval``: 0 = the preset's DeepCache interval (off except for ``cache``); any other number replaces
  it under every preset (1 = off).
* ``solver`` and ``cfg_steps`` (0 = CFG on every step): the recipe of ``custom``. A named preset brings its own,
  so setting them under a named preset is refused with the fix, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..budgets import steps_problem
from .presets import PRESETS, preset_settings
from .scheduling import SOLVERS
from .settings import SamplerSettings

CUSTOM = "custom"
DEFAULT_PRESET = "faithful"
DEFAULT_SOLVER = "ddim"
CUSTOM_STEPS = 40  # custom with steps 0: the original's count


def preset_names() -> list[str]:
    """Every preset a user can pick: those of ``PRESETS`` in their order, then ``custom``."""
    return [*PRESETS, CUSTOM]


@dataclass(frozen=True)
class SamplerOptions:
    preset: str = DEFAULT_PRESET
    steps: int = 0  # 0: the preset's
    solver: str = DEFAULT_SOLVER  # custom only
    cfg_steps: int = 0  # custom only; 0: CFG on every step
    cache_interval: int = 0  # DeepCache interval; 0: the preset's (1 = off; custom: off)

    def effective_steps(self) -> int:
        """The number of denoising steps per clip these options run."""
        if self.steps:
            return int(self.steps)
        return CUSTOM_STEPS if self.preset == CUSTOM else PRESETS[self.preset].steps


def _same(name: str) -> str:
    return name


def options_problem(opts: SamplerOptions, name: Callable[[str], str] = _same) -> str | None:
    """What is wrong with ``opts`` and how to fix it (``None`` when they are valid).

    ``name`` turns an option name into the one the user sees (a widget name, or a command-line flag).
    """
    if opts.preset not in preset_names():
        return f"{name('preset')} {opts.preset!r} is not a preset; use one of {', '.join(preset_names())}"
    if opts.solver not in SOLVERS:
        return f"{name('solver')} {opts.solver!r} is not a solver; use one of {', '.join(SOLVERS)}"
    if opts.steps < 0:
        return f"{name('steps')} is {opts.steps}; use 0 (the preset's count) or a positive number of steps"
    for option in ("steps", "cfg_steps"):
        problem = steps_problem(getattr(opts, option))
        if problem:
            return f"{name(option)} {problem}"
    if opts.cache_interval < 0:
        return (f"{name('cache_interval')} is {opts.cache_interval}; use 0 (the preset's), 1 (no cache) or N "
                "(the whole UNet every N-th step)")
    if opts.cfg_steps < 0:
        return f"{name('cfg_steps')} is {opts.cfg_steps}; use 0 (CFG on every step) or a positive number"
    if opts.preset != CUSTOM:
        return _custom_only_problem(opts, name)
    steps = opts.effective_steps()
    if opts.cfg_steps > steps:
        return (f"{name('cfg_steps')} is {opts.cfg_steps}, more than the {steps} steps: set it to {steps} or less "
                f"(0 = CFG on every step), or raise {name('steps')}")
    return None


def _custom_only_problem(opts: SamplerOptions, name: Callable[[str], str]) -> str | None:
    preset = PRESETS[opts.preset]
    if opts.solver != DEFAULT_SOLVER:
        return (f"{name('solver')} is {opts.solver!r}, but only preset '{CUSTOM}' uses it (preset '{opts.preset}' "
                f"runs {preset.solver}): choose preset {CUSTOM} to pick the solver, or set {name('solver')} back "
                f"to {DEFAULT_SOLVER}")
    if opts.cfg_steps:
        cfg = "every step" if preset.cfg_steps is None else f"the first {preset.cfg_steps} steps"
        return (f"{name('cfg_steps')} is {opts.cfg_steps}, but only preset '{CUSTOM}' uses it (preset "
                f"'{opts.preset}' uses CFG on {cfg}): choose preset {CUSTOM}, or set {name('cfg_steps')} back to 0")
    return None


def check_options(opts: SamplerOptions, name: Callable[[str], str] = _same) -> None:
    problem = options_problem(opts, name)
    if problem:
        raise ValueError(problem)


def resolve_sampler(opts: SamplerOptions, base: SamplerSettings | None = None) -> SamplerSettings:
    """``base`` (seed, CFG scale, weights, precision, ...) with the recipe ``opts`` selects."""
    check_options(opts)
    base = base or SamplerSettings()
    if opts.preset == CUSTOM:
        settings = replace(base, solver=opts.solver, steps=opts.effective_steps(), cfg_steps=opts.cfg_steps or None,
                           cache_interval=1)
    else:
        settings = preset_settings(opts.preset, base)
        settings = replace(settings, steps=int(opts.steps)) if opts.steps else settings
    return replace(settings, cache_interval=int(opts.cache_interval)) if opts.cache_interval else settings


def steps_override_note(opts: SamplerOptions) -> str | None:
    """A note when ``steps`` replaces a speed preset's step count (say, a workflow saved before presets, with
    steps 40, switched to fast). Under faithful, steps keeps the meaning it had before presets: no note."""
    if opts.preset in (CUSTOM, DEFAULT_PRESET) or not opts.steps or opts.steps == PRESETS[opts.preset].steps:
        return None
    count = PRESETS[opts.preset].steps
    return f"steps {opts.steps} replaces the {count} steps of preset '{opts.preset}' (set steps to {count} for the " \
           "preset's own count)"


def recipe_summary(settings: SamplerSettings, preset: str) -> dict:
    """What a render ran, for the node's report: preset, solver, steps, CFG steps, precision."""
    steps = int(settings.steps)
    cfg_steps = steps if settings.cfg_steps is None else min(int(settings.cfg_steps), steps)
    return {"preset": preset, "solver": settings.solver, "steps": steps,
            "cfg_steps": cfg_steps if settings.guidance_scale > 1.0 else 0,
            "cache_interval": int(settings.cache_interval), "compute_dtype": settings.compute_dtype,
            "low_vram": bool(settings.low_vram)}
