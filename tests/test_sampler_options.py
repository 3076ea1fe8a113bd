"""The sampler options on Hallo Sampler Options and the CLI: presets, the custom recipe, precision, low VRAM, compile.

Option resolution (pipeline/sampling/options.py) is shared by HalloSampler, HalloRenderToVideoFile and
hallo-render; the node runs use the tiny model with real speech and a real portrait.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import replace

import pytest
import torch
from hallo_nodes.nodes import NODE_CLASS_MAPPINGS
from hallo_nodes.nodes import comfy_adapter as adapter
from hallo_nodes.nodes.legacy_widgets import legacy_values
from hallo_nodes.nodes.sampler import sampler_settings
from hallo_nodes.nodes.sampler_options import AS_TRAINED, SamplerChoices, option_widgets
from hallo_nodes.pipeline import cli
from hallo_nodes.pipeline.sampling.acceleration import ensure_compiled
from hallo_nodes.pipeline.sampling.options import SamplerOptions, preset_names, resolve_sampler
from hallo_nodes.pipeline.sampling.precision import compute_precision
from hallo_nodes.pipeline.sampling.presets import PRESETS
from hallo_nodes.pipeline.sampling.settings import SamplerSettings
from node_helpers import comfy_audio, comfy_image, load_tiny_model

pytest.importorskip("mediapipe")

SAMPLERS = ("HalloSampler", "HalloRenderToVideoFile")
OPTIONS = NODE_CLASS_MAPPINGS["HalloSamplerOptions"]
FLOATS = ("cfg", "pose_weight", "face_weight", "lip_weight")
WIDGETS = {"steps": 40, "cfg": 3.5, "seed": 42, "pose_weight": 1.0, "face_weight": 1.0, "lip_weight": 1.0,
           "still": False}


def choices(**widgets: object) -> SamplerChoices:
    return OPTIONS().options(**widgets)[0]


def node_settings(steps: int = 40, options: SamplerChoices | None = None, **widgets: object) -> SamplerSettings:
    """What a sampler with these widgets and (optionally) an options node runs."""
    old = legacy_values("HalloSampler", {}, True)
    return sampler_settings("HalloSampler", 25.0, {**WIDGETS, "steps": steps, **widgets}, options, old)[2]


# ------------------------------------------------------------------------------------------------
# resolution
# ------------------------------------------------------------------------------------------------
def test_the_preset_combo_is_every_preset_plus_custom_and_follows_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    combo = OPTIONS.INPUT_TYPES()["required"]["preset"]
    assert combo[0] == [*PRESETS, "custom"] and combo[1]["default"] == "faithful"
    assert combo[1]["recipes"]["fast"] == {"steps": 20, "solver": "dpmpp", "cfg_steps": 10}
    # a preset added to PRESETS shows up without touching the nodes or the CLI
    monkeypatch.setitem(PRESETS, "turbo", replace(PRESETS["fast"], name="turbo"))
    assert preset_names() == ["faithful", "balanced", "fast", "cache", "turbo", "custom"]
    assert "turbo" in OPTIONS.INPUT_TYPES()["required"]["preset"][0]
    assert "turbo" in cli.build_parser().parse_args(["--preset", "turbo"]).preset


def test_no_options_and_default_options_are_the_original() -> None:
    assert node_settings() == SamplerSettings()
    assert node_settings(options=choices()) == SamplerSettings()
    assert node_settings(steps=25) == SamplerSettings(steps=25)  # steps runs as shown


def test_presets_and_custom_resolve_to_their_recipe() -> None:
    for name, p in PRESETS.items():
        s = node_settings(steps=p.steps, options=choices(preset=name))
        assert (s.solver, s.steps, s.cfg_steps, s.cache_interval) == (p.solver, p.steps, p.cfg_steps,
                                                                       p.cache_interval)
    fast = node_settings(steps=25, options=choices(preset="fast"))  # the sampler's steps, fast's recipe
    assert (fast.solver, fast.steps, fast.cfg_steps) == ("dpmpp", 25, PRESETS["fast"].cfg_steps)
    custom = node_settings(steps=12, seed=7, options=choices(preset="custom", solver="dpmpp", cfg_steps=4,
                                                             cache_interval=2))
    assert (custom.solver, custom.steps, custom.cfg_steps, custom.seed, custom.cache_interval) == (
        "dpmpp", 12, 4, 7, 2)
    every = node_settings(steps=12, options=choices(preset="custom", cfg_steps=40))  # N >= steps: every step
    assert every.cfg_steps is None
    # under a named preset the custom recipe's widgets (greyed out in the frontend) are not used
    assert node_settings(options=choices(preset="faithful", solver="dpmpp", cfg_steps=3, cache_interval=4)) == \
        SamplerSettings()
    s = node_settings(options=choices(low_vram=True, dtype="bf16", reference_quirks=False, motion_frame_drop="0.3"))
    assert s.low_vram and s.compute_dtype == "bf16" and s.faithful is False and s.motion_frame_drop == 0.3
    assert resolve_sampler(SamplerOptions("fast"), SamplerSettings(seed=3)).seed == 3


def test_options_widgets_show_real_numbers_and_name_nothing_twice() -> None:
    widgets = option_widgets()
    assert list(widgets) == ["preset", "solver", "cfg_steps", "cache_interval", "dtype", "low_vram", "compile",
                             "motion_frame_drop", "reference_quirks"]
    assert widgets["cfg_steps"][1]["default"] == 40 and widgets["cfg_steps"][1]["min"] == 1
    assert widgets["cache_interval"][1]["default"] == 1 and widgets["cache_interval"][1]["min"] == 1
    assert widgets["motion_frame_drop"][1]["default"] == AS_TRAINED == "as trained (Hallo2 0.25, Hallo 0)"
    assert widgets["motion_frame_drop"][0][1:] == [f"{i * 0.05:.2f}".rstrip("0").rstrip(".") for i in range(20)]
    for node_id in SAMPLERS:
        spec = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
        shown = {**spec["required"], **spec["optional"]}
        assert "faithful" not in shown and "preset" not in shown
        for name, (kind, opts) in shown.items():
            if kind in ("INT", "FLOAT") and "default" in opts:
                assert opts["default"] >= opts["min"] >= 0, name  # no -1 / 0 standing for a default
        assert spec["required"]["steps"][1]["default"] == 40 and spec["required"]["steps"][1]["min"] == 1


# ------------------------------------------------------------------------------------------------
# queue-time checks
# ------------------------------------------------------------------------------------------------
def test_steps_refuses_zero_from_the_frontend_but_takes_it_from_a_saved_prompt() -> None:
    low = NODE_CLASS_MAPPINGS["HalloSampler"].INPUT_TYPES()["required"]["steps"][1]["min"]
    # ComfyUI 0.3.64 (execution.validate_inputs): `if val < min` -> refused
    assert int(low) == 1 and not 0 < low and -1 < low and not 1 < low
    assert node_settings(steps=0) == SamplerSettings()  # an old prompt's steps 0: the preset's count
    old = legacy_values("HalloSampler", {"preset": "fast"}, True)
    widgets = {**WIDGETS, "steps": 0}
    assert sampler_settings("HalloSampler", 25.0, widgets, None, old)[2].steps == 20


def test_the_options_node_checks_compile_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(inspect.signature(OPTIONS.VALIDATE_INPUTS).parameters) == ["compile"]
    assert OPTIONS.VALIDATE_INPUTS(compile=False) is True
    if torch.cuda.is_available():
        pytest.skip("the failing device below is a CUDA device on a CPU-only torch")
    monkeypatch.setattr(adapter, "torch_device", lambda: torch.device("cuda"))
    msg = OPTIONS.VALIDATE_INPUTS(compile=True)
    assert msg.startswith("HalloSamplerOptions: widget 'compile' is on, but torch.compile on CUDA needs Triton")
    assert msg.endswith("turn compile off")
    # precisions the device cannot compute in are not offered; ComfyUI refuses them on the dtype widget itself
    assert OPTIONS.INPUT_TYPES()["required"]["dtype"][0] == ["auto", "fp32"]
    monkeypatch.setattr(adapter, "torch_device", lambda: torch.device("cpu"))
    assert OPTIONS.INPUT_TYPES()["required"]["dtype"][0] == ["auto", "fp32", "fp16", "bf16"]


def test_samplers_validate_no_widget_themselves() -> None:
    """Their widgets are checked by ComfyUI's own per-widget range checks (steps, NaN through the mins); the one
    input a sampler checks itself is the file name (HalloRenderToVideoFile's filename_prefix), which has none."""
    import inspect

    for node_id in SAMPLERS:
        cls = NODE_CLASS_MAPPINGS[node_id]
        taken = inspect.getfullargspec(cls.VALIDATE_INPUTS).args[1:] if hasattr(cls, "VALIDATE_INPUTS") else []
        assert taken == (["filename_prefix"] if node_id == "HalloRenderToVideoFile" else []), (node_id, taken)


def test_float_widgets_refuse_nan_through_comfyuis_own_range_check() -> None:
    for node_id in SAMPLERS:
        spec = {**NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"]}
        for name in FLOATS:
            low, high = spec[name][1]["min"], spec[name][1]["max"]
            # ComfyUI 0.3.64 (execution.validate_inputs): `if val < min` ... `if val > max` per widget
            assert float("nan") < low and float("inf") > high and float("-inf") < low
            assert not low < low and not (low + high) / 2 < low and not math.isnan(float(low))


def test_compute_precision() -> None:
    with compute_precision("auto", "cpu", torch.float32):
        assert not torch.is_autocast_enabled("cpu")
    with compute_precision("bf16", "cpu", torch.float32):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with compute_precision("fp16", "cpu", torch.float16):  # the weights' own dtype: nothing to do
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="dtype fp32 needs weights loaded in fp32, these are fp16: set the model"):
        compute_precision("fp32", "cpu", torch.float16)


# ------------------------------------------------------------------------------------------------
# node runs (tiny model)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_inputs(tiny_model_dir):
    model = load_tiny_model(tiny_model_dir)
    audio = comfy_audio(0.6)
    (features, _, _) = NODE_CLASS_MAPPINGS["HalloAudioEncode"]().encode(model, audio, 25.0)["result"]
    face = NODE_CLASS_MAPPINGS["HalloFaceAnalysis"]().analyze(model, comfy_image(), 64, 64)["result"][0]
    reference = NODE_CLASS_MAPPINGS["HalloReference"]().prepare(model, comfy_image(), face)["result"][0]
    return model, reference, features


def sample(run_inputs, options: dict | None = None, **kw) -> dict:
    model, reference, features = run_inputs
    opts = None if options is None else choices(**options)
    segment = NODE_CLASS_MAPPINGS["HalloSegment"]().segment(16)[0]
    return NODE_CLASS_MAPPINGS["HalloSampler"]().sample(model, reference, features, segment=segment, options=opts,
                                                        **kw)


def test_the_recipe_reaches_the_sampler(run_inputs) -> None:
    out = sample(run_inputs, {"preset": "custom", "solver": "dpmpp", "cfg_steps": 1}, steps=3)
    info = out["ui"]["hallo_render"][0]
    assert (info["preset"], info["solver"], info["steps"], info["cfg_steps"]) == ("custom", "dpmpp", 3, 1)
    ddim = sample(run_inputs, {"preset": "custom", "solver": "ddim", "cfg_steps": 1}, steps=3)
    assert not torch.equal(out["result"][0], ddim["result"][0])  # the solver changed the frames
    fast = sample(run_inputs, {"preset": "fast"}, steps=2)
    assert fast["ui"]["hallo_render"][0]["solver"] == "dpmpp"
    assert fast["ui"]["text"] == ["HalloSampler: steps 2 replaces the 20 steps of preset 'fast' (set steps to 20 "
                                  "for the preset's own count)"]
    # a saved API prompt: the old names, with their old checks
    with pytest.raises(ValueError, match="HalloSampler: widget 'solver' is 'dpmpp', but only preset 'custom'"):
        sample(run_inputs, preset="fast", solver="dpmpp")
    with pytest.raises(ValueError, match="input 'options' is connected and the old input.s. low_vram are set too"):
        sample(run_inputs, {"preset": "fast"}, low_vram=True)


def test_low_vram_and_mixed_precision_give_the_same_video(run_inputs) -> None:
    def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        mse = float(((a - b) ** 2).mean())
        return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)

    # the random tiny network amplifies rounding (the batch of 16 instead of 32 changes the CPU kernels'
    # blocking); test_speed_same_output.py checks low VRAM exactly in float64
    base = sample(run_inputs, steps=2)["result"][0]
    low = sample(run_inputs, {"low_vram": True}, steps=2)
    assert low["ui"]["hallo_render"][0]["low_vram"] is True
    assert psnr(low["result"][0], base) > 45.0  # 68 dB measured
    mixed = sample(run_inputs, {"dtype": "bf16"}, steps=2)
    frames = mixed["result"][0]
    assert mixed["ui"]["hallo_render"][0]["compute_dtype"] == "bf16"
    assert torch.isfinite(frames).all() and not torch.equal(frames, base)  # bf16 really ran
    assert psnr(frames, base) > 28.0  # 37 dB measured


def test_compile_happens_once_per_model(run_inputs) -> None:
    net = run_inputs[0].net
    modules = [m for m in net.denoising_unet.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert not modules
    assert ensure_compiled(net) is True and ensure_compiled(net) is False
    compiled = [m for m in net.denoising_unet.modules() if getattr(m, "_compiled_call_impl", None) is not None]
    assert len(compiled) > 10
    for module in compiled:  # undo, so the other tests of this module run the eager model
        module._compiled_call_impl = None


# ------------------------------------------------------------------------------------------------
# hallo-render uses the same resolution
# ------------------------------------------------------------------------------------------------
def test_cli_uses_the_same_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["--preset", "custom", "--solver", "dpmpp", "--steps", "12",
                                          "--cfg-steps", "4", "--seed", "5"])
    settings = cli._options(args).sampler
    assert settings == replace(SamplerSettings(seed=5), solver="dpmpp", steps=12, cfg_steps=4)
    assert cli._options(cli.build_parser().parse_args([])).sampler == SamplerSettings()
    code = cli.main(["--preset", "fast", "--solver", "dpmpp", "--image", "x.png", "--audio", "x.wav",
                     "--models", "m"])
    err = capsys.readouterr().err
    assert code == 2 and "--solver is 'dpmpp', but only preset 'custom' uses it" in err, err


def test_cache_interval_is_the_custom_recipes_and_old_prompts_keep_theirs() -> None:
    """The cache preset runs DeepCache every 3rd step; custom takes the widget (1 = off); a saved prompt's
    cache_interval (0 = the preset's) keeps its meaning."""
    assert node_settings().cache_interval == 1 and node_settings(options=choices()) == SamplerSettings()
    assert node_settings(25, choices(preset="cache")).cache_interval == PRESETS["cache"].cache_interval == 3
    assert node_settings(25, choices(preset="custom", solver="dpmpp", cache_interval=4)).cache_interval == 4

    def old(preset: str, interval: int) -> SamplerSettings:
        values = legacy_values("HalloSampler", {"preset": preset, "cache_interval": interval}, True)
        return sampler_settings("HalloSampler", 25.0, {**WIDGETS, "steps": 0}, None, values)[2]

    assert old("cache", 1).cache_interval == 1  # the cache preset with DeepCache off
    assert old("fast", 2).cache_interval == 2 and old("fast", 2).steps == 20
    assert old("custom", 0).cache_interval == 1 and old("custom", 4).cache_interval == 4
    assert old("faithful", 2).steps == 40  # only the interval changes
    with pytest.raises(ValueError, match="cache_interval.* is -1; use 0"):
        resolve_sampler(SamplerOptions("fast", cache_interval=-1))
    args = cli.build_parser().parse_args(["--preset", "fast", "--cache-interval", "2"])
    assert args.cache_interval == 2
