"""The opt-in GPU paths: compile modes (whole-UNet graphs for CUDA graphs) and FP8, their options and refusals.

CUDA graphs and FP8 cannot run on the CPU: here the options are parsed, refused with one clear line where they
cannot run, and the whole-UNet compile is traced in one graph (``fullgraph=True``: no data-dependent op and no
Python-side state left inside the forward, what CUDA-graph capture needs) and gives the same latents.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from cli_helpers import add_face_task, assert_one_line_error, run_main, short_speech
from generator_helpers import prepare
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.sampling.acceleration import (
    COMPILE_MODES,
    StaticStep,
    compile_denoising_unet,
    compile_mode,
)
from hallo_nodes.pipeline.sampling.fp8 import fp8_linear_filter, fp8_refusal
from hallo_nodes.pipeline.sampling.sampler import SamplerSettings


def test_compile_modes_parse_and_refuse_cuda_graphs_off_cuda() -> None:
    assert compile_mode(None, "cpu") == compile_mode(False, "cpu") == compile_mode("off", "cpu") == "off"
    assert compile_mode(True, "cpu") == "default"
    assert compile_mode("max-autotune-no-cudagraphs", "cpu") == "max-autotune-no-cudagraphs"
    assert compile_mode("reduce-overhead", "cuda") == "reduce-overhead"  # a device name; nothing is allocated
    with pytest.raises(HalloInputError, match="needs a CUDA device; this render runs on cpu"):
        compile_mode("reduce-overhead", "cpu")
    with pytest.raises(HalloInputError, match="'fastest' is not a compile mode; use one of off, default"):
        compile_mode("fastest", "cpu")


def test_fp8_refusals_name_the_fix() -> None:
    bf16 = torch.bfloat16
    assert "compute capability 8.9" in fp8_refusal("cpu", None, bf16, True)
    assert "this GPU has 8.6" in fp8_refusal("cuda", (8, 6), bf16, True)  # Ampere: no FP8 tensor cores
    assert "Use dtype bf16" in fp8_refusal("cuda", (9, 0), torch.float16, True)
    assert "pip install" in fp8_refusal("cuda", (9, 0), bf16, False) and "torchao" in fp8_refusal(
        "cuda", (8, 9), bf16, False)
    assert fp8_refusal("cuda", (9, 0), bf16, True) is None
    assert fp8_refusal("cuda", (8, 9), bf16, True) is None


def test_fp8_takes_the_linear_layers_the_fp8_matmul_accepts(tiny_model_dir: Path) -> None:
    from hallo_nodes.pipeline.models.loading import load_net

    unet = load_net(tiny_model_dir, "hallo").denoising_unet
    taken = [m for name, m in unet.named_modules() if fp8_linear_filter(m, name)]
    linears = [m for m in unet.modules() if isinstance(m, torch.nn.Linear)]
    assert taken and len(taken) <= len(linears)
    assert all(m.in_features % 16 == 0 and m.out_features % 16 == 0 for m in taken)
    assert not fp8_linear_filter(torch.nn.Linear(20, 32), "x")
    assert not fp8_linear_filter(torch.nn.Conv2d(16, 16, 1), "x")


@pytest.fixture()
def cli_inputs(tiny_model_dir: Path, assets: Path, tmp_path: Path) -> list[str]:
    models = tmp_path / "models"
    import shutil

    shutil.copytree(tiny_model_dir, models, ignore=shutil.ignore_patterns("hallo2"))
    add_face_task(models, assets)
    audio = short_speech(assets, tmp_path / "voice.wav")
    return ["--image", str(assets / "portraits" / "statue.jpg"), "--audio", str(audio), "--models", str(models),
            "--out", str(tmp_path / "o.mp4"), "--size", "64", "--steps", "1", "-q", "--device", "cpu"]


@pytest.mark.parametrize(("extra", "names"), [
    (["--compile", "reduce-overhead"], ["--compile", "reduce-overhead", "CUDA device", "max-autotune-no-cudagraphs"]),
    (["--fp8"], ["--fp8", "compute capability 8.9", "Turn fp8 off"]),
])
def test_cli_refuses_gpu_only_options_on_cpu_before_any_work(extra: list[str], names: list[str], cli_inputs,
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main([*cli_inputs, *extra], capsys)
    assert code == 2
    assert_one_line_error(err, *names)
    assert not (tmp_path / "o.mp4").exists()


def test_cli_compile_flag_takes_a_mode() -> None:
    from hallo_nodes.pipeline.cli import _options, build_parser

    parser = build_parser()
    assert parser.parse_args([]).compile == "off" and not parser.parse_args([]).fp8
    assert parser.parse_args(["--compile"]).compile == "default"  # the old spelling keeps its meaning
    for mode in COMPILE_MODES:
        assert _options(parser.parse_args(["--compile", mode])).compile == mode
    assert _options(parser.parse_args(["--fp8"])).fp8


def _first_clip_latents(prepared, settings: SamplerSettings) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    sampler, decode = prepared.sampler, prepared.sampler.decode

    def recording(latents: torch.Tensor, batch: int) -> torch.Tensor:
        captured.append(latents.clone())
        return decode(latents, batch)

    sampler.decode = recording
    try:
        sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames, settings,
                         end_frame=16)
    finally:
        del sampler.decode
    return captured[0]


def test_whole_unet_compile_is_one_graph_with_the_same_output(tiny_model_dir: Path, assets: Path) -> None:
    """The per-clip bank (routing, reference K/V) is prepared outside; the forward traces without a break."""
    prepared = prepare(tiny_model_dir, assets)
    settings = SamplerSettings(steps=1)  # one CFG step: one input shape
    before = _first_clip_latents(prepared, settings)
    graphs: list[torch.fx.GraphModule] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs):  # a real dynamo backend: runs the graph
        graphs.append(gm)
        return gm.forward

    step = compile_denoising_unet(prepared.sampler.net, mode=None, backend=counting_backend, fullgraph=True)
    assert isinstance(prepared.sampler.net.denoising_unet.forward, StaticStep) and not step.cudagraphs
    after = _first_clip_latents(prepared, settings)
    assert len(graphs) == 1
    assert float((before - after).abs().max()) < 1e-6
    again = _first_clip_latents(prepared, replace(settings, seed=7))  # next render, same shapes: no recompile
    assert len(graphs) == 1 and not torch.equal(again, after)
    with pytest.raises(ValueError, match="compiled already"):
        compile_denoising_unet(prepared.sampler.net, mode=None, backend=counting_backend)
