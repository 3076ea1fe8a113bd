"""DeepCache (``SamplerSettings.cache_interval``, the ``cache`` preset) on the tiny model with real inputs.

A plumbing check, not a quality claim: the tiny network has random weights.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from generator_helpers import prepare
from hallo_nodes.pipeline.models.unets import DenoisingUNet
from hallo_nodes.pipeline.sampling.presets import preset_settings
from hallo_nodes.pipeline.sampling.sampler import SamplerSettings

CLIP = 16
DEEP = ("down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2")
OUTER = ("down_blocks.0", "up_blocks.3")


@pytest.fixture(scope="module")
def prepared(tiny_model_dir: Path, assets: Path):
    return prepare(tiny_model_dir, assets)


def _render(p, settings: SamplerSettings, end_frame: int = CLIP) -> torch.Tensor:
    return p.sampler.generate(p.reference, p.features.features, p.features.num_frames, settings,
                              end_frame=end_frame).frames


def _calls(p, settings: SamplerSettings, monkeypatch) -> tuple[Counter, list[set[str]]]:
    """Calls of every top-level block, and the bank paths each UNet call read (reference attention)."""
    unet = p.sampler.net.denoising_unet
    calls: Counter = Counter()
    paths: list[set[str]] = []
    hooks = [unet.get_submodule(name).register_forward_pre_hook(lambda *_, name=name: calls.update([name]))
             for name in DEEP + OUTER]
    hooks.append(unet.register_forward_pre_hook(lambda *_: paths.append(set())))
    attend = DenoisingUNet._reference_self_attention

    def recording(attn, tokens, bank, path):
        paths[-1].add(path)
        return attend(attn, tokens, bank, path)

    monkeypatch.setattr(DenoisingUNet, "_reference_self_attention", staticmethod(recording))
    try:
        _render(p, settings)
    finally:
        for hook in hooks:
            hook.remove()
    return calls, paths


def test_interval_one_is_bit_identical_to_no_cache(prepared) -> None:
    settings = SamplerSettings(steps=2)
    assert settings.cache_interval == 1
    assert torch.equal(_render(prepared, settings), _render(prepared, replace(settings, cache_interval=1)))


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_bad_interval_is_refused_by_name(prepared, bad) -> None:
    with pytest.raises(ValueError, match="cache_interval"):
        _render(prepared, SamplerSettings(steps=2, cache_interval=bad))


@pytest.mark.parametrize(("recipe", "calls_per_step"), [
    ({"solver": "ddim", "steps": 7}, 1),  # CFG every step, batched
    ({"solver": "dpmpp", "steps": 7, "cfg_steps": 4}, 1),  # CFG stops after step 4: the cond half goes on
    ({"solver": "ddim", "steps": 7, "low_vram": True}, 2),  # the halves one after the other
])
def test_deep_blocks_run_only_on_full_steps(prepared, monkeypatch, recipe: dict, calls_per_step: int) -> None:
    settings = SamplerSettings(cache_interval=3, **recipe)
    calls, paths = _calls(prepared, settings, monkeypatch)
    full = 3  # steps 0, 3, 6 of 7
    for name in DEEP:
        assert calls[name] == full * calls_per_step, name
    for name in OUTER:
        assert calls[name] == 7 * calls_per_step, name
    # shallow calls read the bank of the outer blocks only (it is looked up by path, nothing is consumed)
    shallow = [p for p in paths if not any(path.startswith(DEEP) for path in p)]
    assert len(shallow) == 4 * calls_per_step
    outer = {p for p in paths[0] if p.startswith(OUTER)}
    assert all(p == outer for p in shallow) and outer


def test_without_cache_every_call_runs_the_deep_blocks(prepared, monkeypatch) -> None:
    calls, _ = _calls(prepared, SamplerSettings(steps=3), monkeypatch)
    assert calls["mid_block"] == calls["down_blocks.0"] == 3


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def test_cache_preset_differs_but_stays_close(prepared) -> None:
    """The ``cache`` preset against the same solver and steps without the cache, two clips."""
    cached = preset_settings("cache")
    assert cached.cache_interval == 3
    a = _render(prepared, cached, 2 * CLIP)
    b = _render(prepared, replace(cached, cache_interval=1), 2 * CLIP)
    assert bool(torch.isfinite(a).all())
    assert not torch.equal(a, b)
    # Measured on the tiny random model: 60.9 dB (clip 1 60.6, clip 2 61.1); a different seed: below 20 dB.
    assert psnr(a, b) > 45.0
    assert psnr(a, _render(prepared, replace(cached, seed=7), 2 * CLIP)) < 20.0
