"""Hallo Sampler Options: the engineering settings of the sampler nodes, on a small node of their own.

The sampler nodes keep what an artist changes on most renders (steps, cfg, seed, the three weights, still);
everything else comes from an optional ``options`` input fed by ``HalloSamplerOptions``: the speed preset and
its custom recipe, precision, low VRAM, compile, Hallo2's motion-frame drop and the reference-attention
quirks. Unconnected, the samplers run the original recipe. Every widget shows the number it runs (no ``0`` or
``-1`` standing for "the default"). What they mean is resolved in ``pipeline/sampling/options.py``, shared
with ``hallo-render``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..pipeline.notices import notice
from ..pipeline.sampling.options import (
    CUSTOM,
    CUSTOM_STEPS,
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
from . import comfy_adapter as comfy
from .common import CATEGORY, node_messages

logger = logging.getLogger(__name__)

HALLO_SAMPLER_OPTIONS = "HALLO_SAMPLER_OPTIONS"
NODE = "HalloSamplerOptions"
#: The motion-frame drop Hallo2 was trained with (Hallo drops nothing).
HALLO2_DROP = 0.25
AS_TRAINED = f"as trained (Hallo2 {HALLO2_DROP:g}, Hallo 0)"
DROP_CHOICES = [AS_TRAINED, *(f"{i * 0.05:.2f}".rstrip("0").rstrip(".") for i in range(20))]


@dataclass(frozen=True)
class SamplerChoices:
    """HALLO_SAMPLER_OPTIONS: the widgets of a Hallo Sampler Options node (its defaults: the original)."""

    preset: str = DEFAULT_PRESET
    solver: str = DEFAULT_SOLVER
    cfg_steps: int = CUSTOM_STEPS
    cache_interval: int = 1
    dtype: str = "auto"
    low_vram: bool = False
    compile: bool = False
    motion_frame_drop: float | None = None  # None: as trained
    reference_quirks: bool = True

    def recipe(self, steps: int) -> SamplerOptions:
        """The shared resolver's options for ``steps`` (the sampler's): a named preset brings its own solver,
        CFG steps and cache interval; ``custom`` takes this node's (CFG on every step when cfg_steps >= steps)."""
        if self.preset != CUSTOM:
            return SamplerOptions(self.preset, int(steps))
        every = int(self.cfg_steps) >= int(steps)
        return SamplerOptions(CUSTOM, int(steps), self.solver, 0 if every else int(self.cfg_steps),
                              int(self.cache_interval))


def _preset_tooltip() -> str:
    lines = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    return (f"Sampling recipe. {lines}; {CUSTOM}: the solver, cfg_steps and cache_interval below. Faithful "
            "reproduces the original; the others trade fidelity for speed. The sampler's steps run under every "
            "preset: choosing a named preset here sets the connected samplers' steps to its count.")


def preset_recipes() -> dict[str, dict[str, Any]]:
    recipes = {name: {"steps": p.steps, "solver": p.solver, "cfg_steps": p.cfg_steps} for name, p in PRESETS.items()}
    return {**recipes, CUSTOM: {"steps": CUSTOM_STEPS, "solver": DEFAULT_SOLVER, "cfg_steps": None}}


def dtype_choices() -> list[str]:
    """The compute precisions ComfyUI's device can run (ComfyUI itself refuses any other one, on this widget)."""
    device = comfy.torch_device()
    return [name for name in COMPUTE_DTYPES if dtype_problem(name, device) is None]


def option_widgets() -> dict:
    """The widgets of HalloSamplerOptions, in their order on the node."""
    return {
        "preset": (preset_names(), {
            "default": DEFAULT_PRESET, "tooltip": _preset_tooltip(),
            # read by js/hallo.js: the steps it sets on the samplers when a preset is chosen, and the recipes it
            # spells out when it rewrites a workflow saved with the old widgets (js/hallo_migrate.js)
            "recipes": preset_recipes()}),
        "solver": (list(SOLVERS), {"default": DEFAULT_SOLVER,
                                   "tooltip": f"Preset {CUSTOM} only (greyed out under the others, which bring "
                                              "their own): ddim (the original's) or dpmpp (DPM-Solver++ 2M, good "
                                              "in fewer steps)."}),
        "cfg_steps": ("INT", {"default": CUSTOM_STEPS, "min": 1, "max": 200,
                              "tooltip": f"Preset {CUSTOM} only: guidance (CFG) on the first N steps; the rest run "
                                         "the conditional half alone (faster). N at or above the sampler's steps: "
                                         "CFG on every step, as the original."}),
        "cache_interval": ("INT", {"default": 1, "min": 1, "max": 10,
                                   "tooltip": f"Preset {CUSTOM} only: DeepCache. The whole UNet runs every N-th "
                                              "step, only its outer blocks in between, on the deep features of the "
                                              "last full step (faster, approximate). 1 = the whole UNet on every "
                                              "step (no cache); preset cache uses 3."}),
        "dtype": (dtype_choices(), {"default": "auto",
                                    "tooltip": "Compute precision. auto: the weights' own (Hallo Model Loader's "
                                               "dtype). fp16/bf16 on weights loaded in another dtype: mixed "
                                               "precision (torch.autocast), weights as loaded. fp32 needs weights "
                                               "loaded in fp32. Only what ComfyUI's device can compute is listed."}),
        "low_vram": ("BOOLEAN", {"default": False,
                                 "tooltip": "Run the two CFG halves one after the other: half the activation "
                                            "memory per step, a little slower, same frames up to float rounding. "
                                            "ComfyUI's model management moves the networks between GPU and CPU "
                                            "(start ComfyUI with --lowvram to make it eager)."}),
        "compile": ("BOOLEAN", {"default": False,
                                "tooltip": "torch.compile the denoising UNet (same math, faster steps after a slow "
                                           "first step). Done once per loaded model; it stays compiled until "
                                           "the model is reloaded. Needs Triton on CUDA, a C++ compiler on CPU."}),
        "motion_frame_drop": (DROP_CHOICES, {"default": AS_TRAINED,
                                             "tooltip": "Share of the motion frames' pixels outside the face box "
                                                        "dropped before they condition the next clip. Hallo2 was "
                                                        f"trained with {HALLO2_DROP:g}, Hallo with none."}),
        "reference_quirks": ("BOOLEAN", {"default": True,
                                         "tooltip": "Keep the two batch-layout quirks of the original's reference "
                                                    "attention: the released weights were trained with them, so "
                                                    "on = the original's frames. Off: a clean variant."}),
    }


def drop_value(choice: str) -> float | None:
    return None if choice == AS_TRAINED else float(choice)


def compile_problem_message(node: str, compile_: bool | None) -> str | None:
    """``compile`` against the device ComfyUI computes on."""
    if not compile_:
        return None
    from ..pipeline.sampling.acceleration import compile_problem

    problem = compile_problem(comfy.torch_device())
    return f"{node}: widget 'compile' is on, but {problem}; or turn compile off" if problem else None


class HalloSamplerOptions:
    DESCRIPTION = (
        "The sampler's engineering settings, for the optional 'options' input of Hallo Sampler and Hallo Render "
        "to Video File: speed preset (or a custom recipe), precision, low VRAM, torch.compile, Hallo2's "
        "motion-frame drop and the reference-attention quirks. Without it the samplers run the original recipe."
    )
    CATEGORY = f"{CATEGORY}/sampling"
    RETURN_TYPES = (HALLO_SAMPLER_OPTIONS,)
    RETURN_NAMES = ("options",)
    OUTPUT_TOOLTIPS = ("Connect to the 'options' input of Hallo Sampler or Hallo Render to Video File (one options "
                       "node can feed several samplers).",)
    FUNCTION = "options"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": option_widgets()}

    @classmethod
    def VALIDATE_INPUTS(cls, compile: bool | None = None) -> bool | str:  # noqa: A002, N802 (the widget's name)
        """Only ``compile`` (ComfyUI marks every widget this check reads; the others use ComfyUI's own checks)."""
        return compile_problem_message(NODE, compile) or True

    @node_messages("HalloSamplerOptions")
    def options(self, preset: str = DEFAULT_PRESET, solver: str = DEFAULT_SOLVER, cfg_steps: int = CUSTOM_STEPS,
                cache_interval: int = 1, dtype: str = "auto", low_vram: bool = False,
                compile: bool = False, motion_frame_drop: str = AS_TRAINED,  # noqa: A002
                reference_quirks: bool = True) -> tuple[SamplerChoices]:
        choices = SamplerChoices(str(preset), str(solver), int(cfg_steps), int(cache_interval), str(dtype),
                                 bool(low_vram), bool(compile), drop_value(str(motion_frame_drop)),
                                 bool(reference_quirks))
        problem = options_problem(choices.recipe(CUSTOM_STEPS), lambda n: f"widget '{n}'")
        if problem:
            raise ValueError(f"{NODE}: {problem}")
        return (choices,)


def make_options(preset: str, steps: int, solver: str, cfg_steps: int, cache_interval: int = 0) -> SamplerOptions:
    return SamplerOptions(str(preset), int(steps), str(solver), int(cfg_steps), int(cache_interval))


def widget_problem(node: str, spec: dict[str, tuple], name: str, value: Any) -> str | None:
    """ComfyUI's own type/range/list check, for values that reached a node without it."""
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


def recipe_problem(node: str, options: SamplerOptions, dtype: str) -> str | None:
    """The recipe ``options`` and the compute ``dtype`` checked together, naming the setting at fault."""
    spec = {"preset": (preset_names(), {}), "solver": (list(SOLVERS), {}), "dtype": (list(COMPUTE_DTYPES), {}),
            "steps": ("INT", {"min": 0, "max": 200}), "cfg_steps": ("INT", {"min": 0, "max": 200}),
            "cache_interval": ("INT", {"min": 0, "max": 10})}
    values = {"preset": options.preset, "solver": options.solver, "dtype": dtype, "steps": options.steps,
              "cfg_steps": options.cfg_steps, "cache_interval": options.cache_interval}
    for name, value in values.items():
        problem = widget_problem(node, spec, name, value)
        if problem:
            return problem
    problem = options_problem(options, lambda n: f"widget '{n}'")
    if problem:
        return f"{node}: {problem}"
    return device_problem(node, dtype)


def device_problem(node: str, dtype: str | None) -> str | None:
    """The compute dtype against the device ComfyUI computes on."""
    if dtype not in (None, "auto"):
        problem = dtype_problem(dtype, comfy.torch_device())
        if problem:
            return f"{node}: widget 'dtype' is {dtype}, but {problem}; use dtype auto"
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
