"""The sampler nodes' option widgets (preset, custom recipe, precision, low VRAM, compile) and their checks.

The widgets are optional inputs placed after every older widget, so workflows saved before them load with the
same values in the same places (the UI format stores widget values by position) and API prompts without them
run with the defaults. What they mean is resolved in ``pipeline/sampling/options.py``, shared with
``hallo-render``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..pipeline.notices import notice
from ..pipeline.sampling.options import (
    CUSTOM,
    DEFAULT_PRESET,
    DEFAULT_SOLVER,
    SamplerOptions,
    options_problem,
    preset_names,
    steps_override_note,
)
from ..pipeline.sampling.precision import COMPUTE_DTYPES, dtype_problem
from ..pipeline.sampling.presets import PRESETS
from ..pipeline.sampling.scheduling import SOLVERS
from ..pipeline.sampling.settings import CLIP_LENGTH
from . import comfy_adapter as comfy

logger = logging.getLogger(__name__)


def _preset_tooltip() -> str:
    lines = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    return (f"Sampling recipe. {lines}; {CUSTOM}: the solver, steps and cfg_steps widgets. Faithful reproduces "
            "the original; the others trade fidelity for speed.")


def option_inputs() -> dict:
    """The optional option widgets of both sampler nodes, in their saved order (append new ones at the end)."""
    return {
        "preset": (preset_names(), {"default": DEFAULT_PRESET, "tooltip": _preset_tooltip()}),
        "solver": (list(SOLVERS), {"default": DEFAULT_SOLVER,
                                   "tooltip": f"Preset '{CUSTOM}' only: ddim (the original's) or dpmpp "
                                              "(DPM-Solver++ 2M, good in fewer steps)."}),
        "cfg_steps": ("INT", {"default": 0, "min": 0, "max": 200,
                              "tooltip": f"Preset '{CUSTOM}' only: guidance (CFG) on the first N steps, the rest "
                                         "run the conditional half alone (faster). 0 = CFG on every step."}),
        "low_vram": ("BOOLEAN", {"default": False,
                                 "tooltip": "Run the two CFG halves one after the other: half the activation "
                                            "memory per step, a little slower, same frames up to float rounding. "
                                            "ComfyUI's model management moves the networks between GPU and CPU "
                                            "(start ComfyUI with --lowvram to make it eager)."}),
        "dtype": (list(COMPUTE_DTYPES), {"default": "auto",
                                         "tooltip": "Compute precision. auto: the weights' own (HalloModelLoader's "
                                                    "dtype). fp16/bf16 on weights loaded in another dtype: mixed "
                                                    "precision (torch.autocast), weights as loaded. fp32 needs "
                                                    "weights loaded in fp32."}),
        "compile": ("BOOLEAN", {"default": False,
                                "tooltip": "torch.compile the denoising UNet (same math, faster steps after a slow "
                                           "first step). Done once per loaded model; it stays compiled until "
                                           "the model is reloaded. Needs Triton on CUDA, a C++ compiler on CPU."}),
        "cache_interval": ("INT", {"default": 0, "min": 0, "max": 10,
                                   "tooltip": "DeepCache: the whole UNet runs every N-th step, only its outer "
                                              "blocks in between, on the deep features of the last full step "
                                              "(faster, approximate). 0 = the preset's (3 for cache, off for the "
                                              "others), 1 = off."}),
    }


def make_options(preset: str, steps: int, solver: str, cfg_steps: int, cache_interval: int = 0) -> SamplerOptions:
    return SamplerOptions(str(preset), int(steps), str(solver), int(cfg_steps), int(cache_interval))


def widget_problem(node: str, spec: dict[str, tuple], name: str, value: Any) -> str | None:
    """ComfyUI's own type/range/list check, which it skips for the inputs ``VALIDATE_INPUTS`` takes."""
    kind, opts = spec[name][0], spec[name][1]
    if isinstance(kind, list):
        return None if value in kind else f"{node}: widget '{name}' is {value!r}, not one of {', '.join(kind)}"
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{node}: widget '{name}' must be a whole number, got {value!r}"
        if not opts.get("min", value) <= value <= opts.get("max", value):
            return (f"{node}: widget '{name}' is {value}, outside {opts.get('min')}..{opts.get('max')}: use a value "
                    "in that range")
    return None


def segment_problem(node: str, start_frame: int | None, num_frames: int | None) -> str | None:
    if start_frame is not None and start_frame >= 0 and start_frame % CLIP_LENGTH:
        low = start_frame - start_frame % CLIP_LENGTH
        return (f"{node}: widget 'start_frame' is {start_frame}, not a multiple of {CLIP_LENGTH} (clips are "
                f"{CLIP_LENGTH} frames): use {low} or {low + CLIP_LENGTH}, or -1 to continue from 'motion'")
    if num_frames is not None and num_frames % CLIP_LENGTH:
        low = num_frames - num_frames % CLIP_LENGTH
        return (f"{node}: widget 'num_frames' is {num_frames}, not a multiple of {CLIP_LENGTH}: use "
                f"{low or CLIP_LENGTH} or {low + CLIP_LENGTH}, or 0 for the rest of the audio")
    return None


def validate_options(node: str, spec: dict[str, tuple], values: dict[str, Any]) -> bool | str:
    """``VALIDATE_INPUTS`` of the sampler nodes. ``None`` = linked (checked when the node runs) or absent.

    ComfyUI marks every input ``VALIDATE_INPUTS`` takes when it fails, so it takes only the widgets that are
    valid in some combinations; the message names the one at fault and the fix.
    """
    values = {k: v for k, v in values.items() if k in spec and v is not None}
    for name, value in values.items():
        problem = widget_problem(node, spec, name, value)
        if problem:
            return problem
    problem = segment_problem(node, values.get("start_frame"), values.get("num_frames"))
    if problem:
        return problem
    if "steps" in values:  # the other recipe widgets: absent (an older prompt) = their defaults
        recipe = {"preset": DEFAULT_PRESET, "solver": DEFAULT_SOLVER, "cfg_steps": 0, "cache_interval": 0}
        known = {k: values.get(k, default) for k, default in recipe.items()}
        problem = options_problem(make_options(steps=values["steps"], **known), lambda n: f"widget '{n}'")
        if problem:
            return f"{node}: {problem}"
    return device_problem(node, values.get("dtype"), values.get("compile")) or True


def device_problem(node: str, dtype: str | None, compile_: bool | None) -> str | None:
    """dtype and compile against the device ComfyUI computes on."""
    if dtype not in (None, "auto"):
        problem = dtype_problem(dtype, comfy.torch_device())
        if problem:
            return f"{node}: widget 'dtype' is {dtype}, but {problem}; use dtype auto"
    if compile_:
        from ..pipeline.sampling.acceleration import compile_problem

        problem = compile_problem(comfy.torch_device())
        if problem:
            return f"{node}: widget 'compile' is on, but {problem}; or turn compile off"
    return None


def prepare_model(node: str, model: Any, compile_: bool) -> bool:
    """Compile the model's denoiser when asked (once per model); returns whether it is compiled."""
    if not compile_:
        return False
    from ..pipeline.sampling.acceleration import compile_problem, ensure_compiled

    problem = compile_problem(model.device)
    if problem:
        raise ValueError(f"{node}: widget 'compile' is on, but {problem}; or turn compile off")
    ensure_compiled(model.net)
    return True


def option_notes(node: str, opts: SamplerOptions) -> None:
    """Tell the user, on the node, when 'steps' replaces a named preset's count."""
    note = steps_override_note(opts)
    if note:
        notice(logger, f"{node}: {note}")
