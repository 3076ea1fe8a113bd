"""Sampling presets and the bf16-vs-fp32 fidelity of the whole generator (tiny model, real inputs).

bf16 on the tiny random model: one DDIM step from t=999 is x0 = -v, the raw network output, where bf16
rounding shows fully (~28 dB); every further step contracts the error (2 steps ~37 dB, 40 steps ~55 dB
with an fp32 VAE, ~50 dB with a bf16 VAE). The tests therefore run the real presets (40 DDIM steps,
20 DPM-Solver++ steps), compare decoded frames of one clip, and include a guard that the same
PSNR measure flags a different seed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from generator_helpers import prepare
from hallo_nodes.bench.flops import preset_table, render_flops
from hallo_nodes.pipeline.models.architecture import HalloArchitecture
from hallo_nodes.pipeline.models.loading import load_net, load_vae
from hallo_nodes.pipeline.sampling.presets import PRESETS, preset_settings
from hallo_nodes.pipeline.sampling.sampler import HalloSampler, SamplerSettings


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def test_faithful_preset_is_the_default() -> None:
    assert preset_settings("faithful") == SamplerSettings()
    custom = SamplerSettings(seed=7, lip_weight=2.0, steps=12, solver="dpmpp", cfg_steps=3)
    faithful = preset_settings("faithful", custom)
    assert (faithful.steps, faithful.solver, faithful.cfg_steps) == (40, "ddim", None)
    assert (faithful.seed, faithful.lip_weight) == (7, 2.0)


def test_speed_presets_use_fewer_steps_and_truncated_cfg() -> None:
    base = SamplerSettings(seed=3, guidance_scale=4.0, low_vram=True)
    for name in ("balanced", "fast", "cache"):
        s = preset_settings(name, base)
        assert s.solver == "dpmpp"
        assert s.steps < 40 and s.cfg_steps is not None and 0 < s.cfg_steps < s.steps
        assert (s.seed, s.guidance_scale, s.low_vram) == (3, 4.0, True)
        assert s.cache_interval == (3 if name == "cache" else 1)
        s.validate()
    assert preset_settings("faithful", preset_settings("cache")) == SamplerSettings()
    with pytest.raises(ValueError, match="unknown preset"):
        preset_settings("turbo")


def test_preset_flop_reductions() -> None:
    rows = {r["preset"]: r for r in preset_table(512)}
    # no thrown-away reference attention, no audio attention for the unconditional rows, per-clip constants,
    # no discarded motion-frame outputs
    assert rows["faithful"]["vs_original"] == pytest.approx(0.859, abs=0.005)
    assert rows["fast"]["tflop_per_video_s"] < rows["balanced"]["tflop_per_video_s"] < rows["faithful"][
        "tflop_per_video_s"] < rows["original code (faithful)"]["tflop_per_video_s"]
    # DeepCache every 3rd step: about balanced's FLOPs x (9 full + 16 shallow steps at 45 %) / 25
    assert rows["cache"]["vs_original"] == pytest.approx(0.33, abs=0.005)
    assert rows["cache"]["tflop_per_video_s"] < 0.7 * rows["balanced"]["tflop_per_video_s"]
    arch = HalloArchitecture()
    fast = PRESETS["fast"]
    direct = render_flops(arch, 512, 512, 1600, steps=fast.steps, cfg_steps=fast.cfg_steps).per_video_second
    assert rows["fast"]["tflop_per_video_s"] == pytest.approx(direct / 1e12)


@pytest.fixture(scope="module")
def pair(tiny_model_dir: Path, assets: Path):
    p32 = prepare(tiny_model_dir, assets)
    net16 = load_net(tiny_model_dir, "hallo", dtype=torch.bfloat16)
    bf16 = HalloSampler(net16, p32.sampler.vae, dtype=torch.bfloat16)  # VAE decode in fp32
    bf16_vae16 = HalloSampler(net16, load_vae(tiny_model_dir, dtype=torch.bfloat16), dtype=torch.bfloat16)
    return p32, bf16, bf16_vae16


def _frames(p, sampler: HalloSampler, settings: SamplerSettings) -> torch.Tensor:
    # 8-frame clips (+2 motion frames) halve the test time; the math per frame is the same
    return sampler.generate(p.reference, p.features.features, p.features.num_frames,
                            replace(settings, clip_length=8), end_frame=8).frames


@pytest.mark.parametrize("preset", ["faithful", "fast"])
def test_bf16_output_against_fp32_psnr_at_least_35_db(pair, preset: str) -> None:
    p32, bf16, bf16_vae16 = pair
    settings = preset_settings(preset)
    reference = _frames(p32, p32.sampler, settings)
    assert float(reference.std()) > 0.02  # frames carry structure, not a flat image
    assert psnr(_frames(p32, bf16, settings), reference) >= 35.0
    if preset == "fast":  # the VAE in bf16 too (the faithful run checked it at ~50 dB; kept short here)
        assert psnr(_frames(p32, bf16_vae16, settings), reference) >= 35.0
        # guard: the measure is able to fail
        assert psnr(_frames(p32, p32.sampler, replace(settings, seed=1)), reference) < 25.0


def test_upcast_latents_draw_the_initial_noise_in_fp32(pair) -> None:
    """bf16 upcasts its latents: the noise is drawn in fp32, the same numbers as an fp32 run's."""
    p32, bf16, _ = pair
    seen: list[torch.Tensor] = []
    denoise = bf16._denoise

    def recording(noise: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        seen.append(noise.clone())
        return denoise(noise, *args, **kwargs)

    bf16._denoise = recording
    try:
        _frames(p32, bf16, SamplerSettings(steps=1))
    finally:
        del bf16._denoise
    expected = torch.randn(seen[0].shape, generator=torch.Generator().manual_seed(42), dtype=torch.float32)
    assert seen[0].dtype == torch.float32
    assert torch.equal(seen[0], expected)
