"""The sampler options on the nodes and the CLI: presets, the custom recipe, precision, low VRAM, compile.

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
from hallo_nodes.nodes.sampler import build_settings
from hallo_nodes.pipeline import cli
from hallo_nodes.pipeline.sampling.acceleration import ensure_compiled
from hallo_nodes.pipeline.sampling.options import SamplerOptions, preset_names, resolve_sampler
from hallo_nodes.pipeline.sampling.precision import compute_precision
from hallo_nodes.pipeline.sampling.presets import PRESETS
from hallo_nodes.pipeline.sampling.settings import SamplerSettings
from node_helpers import comfy_audio, comfy_image, load_tiny_model

pytest.importorskip("mediapipe")

SAMPLERS = ("HalloSampler", "HalloRenderToVideoFile")
FLOATS = ("cfg", "pose_weight", "face_weight", "lip_weight", "motion_frame_drop")
WIDGETS = {"cfg": 3.5, "seed": 42, "pose_weight": 1.0, "face_weight": 1.0, "lip_weight": 1.0, "faithful": True,
           "motion_frame_drop": -1.0}


def node_settings(steps: int = 0, preset: str = "faithful", solver: str = "ddim", cfg_steps: int = 0,
                  **kw: object) -> SamplerSettings:
    from hallo_nodes.nodes.sampler_options import make_options

    values = {**WIDGETS, **{k: v for k, v in kw.items() if k in WIDGETS}}
    extra = {k: v for k, v in kw.items() if k not in WIDGETS}
    return build_settings("HalloSampler", steps, values["cfg"], values["seed"], values["pose_weight"],
                          values["face_weight"], values["lip_weight"], values["faithful"],
                          values["motion_frame_drop"], make_options(preset, steps, solver, cfg_steps), **extra)


# ------------------------------------------------------------------------------------------------
# resolution
# ------------------------------------------------------------------------------------------------
def test_the_preset_combo_is_every_preset_plus_custom_and_follows_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    for node_id in SAMPLERS:
        combo = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["optional"]["preset"]
        assert combo[0] == [*PRESETS, "custom"] and combo[1]["default"] == "faithful"
    # a preset added to PRESETS (say, a cache preset) shows up without touching the nodes or the CLI
    monkeypatch.setitem(PRESETS, "cache", replace(PRESETS["fast"], name="cache"))
    assert preset_names() == ["faithful", "balanced", "fast", "cache", "custom"]
    for node_id in SAMPLERS:
        assert "cache" in NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["optional"]["preset"][0]
    assert "cache" in cli.build_parser().parse_args(["--preset", "cache"]).preset


def test_faithful_default_is_the_original_and_old_steps_keep_their_meaning() -> None:
    assert node_settings() == SamplerSettings()  # steps 0 under faithful: the original's 40 DDIM steps
    assert node_settings(steps=40) == SamplerSettings()  # workflows saved before presets had steps 40
    # a workflow saved before presets with steps 25: the settings the sampler got then (25 DDIM, CFG every step)
    assert node_settings(steps=25) == SamplerSettings(steps=25)
    assert node_settings(steps=25, preset="custom") == SamplerSettings(steps=25)


def test_presets_and_custom_resolve_to_their_recipe() -> None:
    for name, p in PRESETS.items():
        s = node_settings(preset=name)
        assert (s.solver, s.steps, s.cfg_steps) == (p.solver, p.steps, p.cfg_steps)
    fast = node_settings(steps=25, preset="fast")  # steps replaces the preset's count, as hallo-render --steps
    assert (fast.solver, fast.steps, fast.cfg_steps) == ("dpmpp", 25, PRESETS["fast"].cfg_steps)
    custom = node_settings(steps=12, preset="custom", solver="dpmpp", cfg_steps=4, seed=7)
    assert (custom.solver, custom.steps, custom.cfg_steps, custom.seed) == ("dpmpp", 12, 4, 7)
    assert node_settings(preset="custom", solver="dpmpp").steps == 40  # steps 0: the original's count
    s = node_settings(low_vram=True, dtype="bf16")
    assert s.low_vram and s.compute_dtype == "bf16"
    assert resolve_sampler(SamplerOptions("fast"), SamplerSettings(seed=3)).seed == 3


# ------------------------------------------------------------------------------------------------
# VALIDATE_INPUTS
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("node_id", SAMPLERS)
def test_validation_names_the_widget_and_the_fix(node_id: str) -> None:
    check = NODE_CLASS_MAPPINGS[node_id].VALIDATE_INPUTS
    assert check(steps=40) is True  # a prompt saved before the option widgets
    assert check(steps=0, preset="faithful", solver="ddim", cfg_steps=0, dtype="auto", compile=False) is True
    assert check(steps=6, preset="custom", solver="dpmpp", cfg_steps=6) is True
    cases = {
        "widget 'solver' is 'dpmpp', but only preset 'custom' uses it": dict(preset="fast", solver="dpmpp"),
        "widget 'cfg_steps' is 5, but only preset 'custom' uses it": dict(preset="balanced", cfg_steps=5),
        "widget 'cfg_steps' is 30, more than the 25 steps: set it to 25 or less": dict(steps=25, preset="custom",
                                                                                       cfg_steps=30),
        "more than the 40 steps": dict(preset="custom", cfg_steps=41),
        "widget 'preset' is 'turbo', not one of": dict(preset="turbo"),
        "widget 'steps' is 201, outside 0..200": dict(steps=201),
    }
    for expected, values in cases.items():
        msg = check(**{"steps": 0, **values})
        assert isinstance(msg, str) and msg.startswith(f"{node_id}: ") and expected in msg, (values, msg)
        assert "set" in msg or "use" in msg or "one of" in msg  # says what to do
    # only the widgets valid in some combinations: ComfyUI marks every input VALIDATE_INPUTS takes
    args = set(inspect.getfullargspec(check).args) - {"cls"}
    assert not args & set(FLOATS) and "seed" not in args


def test_segment_widgets_are_multiples_of_16() -> None:
    check = NODE_CLASS_MAPPINGS["HalloSampler"].VALIDATE_INPUTS
    for ok in (-1, 0, 16, 32, 4096):
        assert check(steps=0, start_frame=ok, num_frames=ok if ok >= 0 else 0) is True
    msg = check(steps=0, start_frame=20)
    assert "widget 'start_frame' is 20, not a multiple of 16" in msg and "use 16 or 32, or -1" in msg
    msg = check(steps=0, num_frames=40)
    assert "widget 'num_frames' is 40, not a multiple of 16" in msg and "use 32 or 48, or 0" in msg
    spec = NODE_CLASS_MAPPINGS["HalloSampler"].INPUT_TYPES()["required"]
    assert spec["start_frame"][1]["step"] == spec["num_frames"][1]["step"] == 16
    assert spec["start_frame"][1]["min"] == -1  # workflows saved with the old default still load


def test_dtype_and_compile_are_checked_against_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    check = NODE_CLASS_MAPPINGS["HalloSampler"].VALIDATE_INPUTS
    assert check(steps=0, dtype="bf16") is True and check(steps=0, dtype="fp16") is True  # CPU autocast
    if torch.cuda.is_available():
        pytest.skip("the failing device below is a CUDA device on a CPU-only torch")
    # ComfyUI computing on a CUDA device this torch cannot drive: both are refused before the run
    monkeypatch.setattr(adapter, "torch_device", lambda: torch.device("cuda"))
    msg = check(steps=0, dtype="bf16")
    assert msg.startswith("HalloSampler: widget 'dtype' is bf16, but cuda cannot compute in bf16")
    assert msg.endswith("use dtype auto")
    msg = check(steps=0, compile=True)
    assert "widget 'compile' is on, but torch.compile on CUDA needs Triton" in msg and "turn compile off" in msg


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


def sample(run_inputs, **kw) -> dict:
    model, reference, features = run_inputs
    return NODE_CLASS_MAPPINGS["HalloSampler"]().sample(model, reference, features, num_frames=16, **kw)


def test_the_recipe_reaches_the_sampler(run_inputs) -> None:
    out = sample(run_inputs, preset="custom", solver="dpmpp", steps=3, cfg_steps=1)
    info = out["ui"]["hallo_render"][0]
    assert (info["preset"], info["solver"], info["steps"], info["cfg_steps"]) == ("custom", "dpmpp", 3, 1)
    ddim = sample(run_inputs, preset="custom", solver="ddim", steps=3, cfg_steps=1)
    assert not torch.equal(out["result"][0], ddim["result"][0])  # the solver changed the frames
    fast = sample(run_inputs, preset="fast", steps=2)
    assert fast["ui"]["hallo_render"][0]["solver"] == "dpmpp"
    assert any("steps 2 replaces the 20 steps of preset 'fast'" in t for t in fast["ui"]["text"])
    with pytest.raises(ValueError, match="HalloSampler: widget 'solver' is 'dpmpp', but only preset 'custom'"):
        sample(run_inputs, preset="fast", solver="dpmpp")


def test_low_vram_and_mixed_precision_give_the_same_video(run_inputs) -> None:
    def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        mse = float(((a - b) ** 2).mean())
        return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)

    # the random tiny network amplifies rounding (the batch of 16 instead of 32 changes the CPU kernels'
    # blocking); test_speed_same_output.py checks low VRAM exactly in float64
    base = sample(run_inputs, steps=2)["result"][0]
    low = sample(run_inputs, steps=2, low_vram=True)
    assert low["ui"]["hallo_render"][0]["low_vram"] is True
    assert psnr(low["result"][0], base) > 45.0  # 68 dB measured
    mixed = sample(run_inputs, steps=2, dtype="bf16")
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


def test_cache_interval_widget_follows_the_preset_unless_set() -> None:
    """0 = the preset's DeepCache interval (3 for cache, off elsewhere); any other value replaces it; the faithful
    default stays the original (no cache)."""
    from hallo_nodes.nodes.sampler_options import make_options, option_inputs

    assert option_inputs()["cache_interval"][1]["default"] == 0
    assert node_settings().cache_interval == 1 and node_settings() == SamplerSettings()
    assert node_settings(preset="cache").cache_interval == PRESETS["cache"].cache_interval == 3

    def settings(preset: str, interval: int) -> SamplerSettings:
        return build_settings("HalloSampler", 0, 3.5, 42, 1.0, 1.0, 1.0, True, -1.0,
                              make_options(preset, 0, "ddim", 0, interval))

    assert settings("cache", 1).cache_interval == 1  # the cache preset with DeepCache off
    assert settings("fast", 2).cache_interval == 2
    assert settings("custom", 0).cache_interval == 1 and settings("custom", 4).cache_interval == 4
    assert settings("faithful", 2).steps == 40  # only the interval changes
    with pytest.raises(ValueError, match="cache_interval.* is -1; use 0"):
        resolve_sampler(SamplerOptions("fast", cache_interval=-1))
    args = cli.build_parser().parse_args(["--preset", "fast", "--cache-interval", "2"])
    assert args.cache_interval == 2
