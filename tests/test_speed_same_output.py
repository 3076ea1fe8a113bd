"""Same-output speedups: the optimised fp32 path against a straightforward one written here, on latents.

The straightforward path is how the original computes the reference attention (its reference-attention processor): every
row attends to [own tokens, tiled reference tokens] with the keys/values projected from that concatenation
at every step (nothing cached), the bank tiled with the original's interleaving ``repeat``, and then the
unconditional rows overwritten with plain self-attention. It uses the same SDPA kernel, so the comparison
isolates the restructuring; a separate test checks SDPA against an explicit softmax on one call.

Float rounding and the tiny random network: with random weights and CFG 3.5 the sampler is not
contractive, it amplifies rounding by ~20x per step (fp32 latents differ by 2e-6 after 1 step, 4e-5 after
2, 1e-2 after 40; in float64 by 2e-13 after 3 steps), and the decode -> re-encode of the motion frames
amplifies it again. So the fp32 comparison (<= 1e-4, as required) runs one denoising step per clip, and
the multi-step comparisons run in float64 (<= 1e-9; 1e-7 where clip 2 re-encodes clip 1's frames), which
shows the restructured math is the same. In the reference-attention test clip 2 starts on both paths from
the same motion frames, handed over as a ``MotionState``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from generator_helpers import prepare
from hallo_nodes.pipeline.models.audio_attention import AudioBlock
from hallo_nodes.pipeline.models.motion_module import MotionModule
from hallo_nodes.pipeline.models.unet_inputs import BlockInputs
from hallo_nodes.pipeline.models.unets import DenoisingUNet
from hallo_nodes.pipeline.sampling.sampler import SamplerSettings

CLIP = 16
BASE = SamplerSettings(steps=3)


@pytest.fixture(scope="module")
def prepared(tiny_model_dir: Path, assets: Path):
    return prepare(tiny_model_dir, assets)


@pytest.fixture(scope="module")
def prepared64(tiny_model_dir: Path, assets: Path):
    return prepare(tiny_model_dir, assets, dtype=torch.float64)


def _attention(attn, query_in: torch.Tensor, context: torch.Tensor, explicit: bool = False) -> torch.Tensor:
    b, n, _ = query_in.shape
    heads = attn.heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(b, x.shape[1], heads, -1).transpose(1, 2)

    q, k, v = split(attn.to_q(query_in)), split(attn.to_k(context)), split(attn.to_v(context))
    if explicit:
        out = torch.softmax((q @ k.transpose(-1, -2)) * attn.scale, dim=-1) @ v
    else:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    out = out.transpose(1, 2).reshape(b, n, -1)
    return attn.to_out[1](attn.to_out[0](out))


def _straightforward_reference_attention(attn, n: torch.Tensor, bank, path: str) -> torch.Tensor:
    if bank is None or path not in bank.reference:
        return _attention(attn, n, n)
    ref = bank.reference[path]  # (copies, HW, C): [uncond copy, cond copy] in faithful mode
    rows = n.shape[0]
    tiled = ref.repeat(rows // ref.shape[0], 1, 1)  # the original's interleaving: x0, x1, x0, x1, ...
    out = _attention(attn, n, torch.cat([n, tiled], dim=1))
    if rows == 2 * CLIP:  # CFG batch: the first half is unconditional -> plain self-attention
        half = rows // 2
        out[:half] = _attention(attn, n[:half], n[:half])
    return out


def _latents(prepared, settings: SamplerSettings, end_frame: int = 32, **kwargs) -> list[torch.Tensor]:
    captured: list[torch.Tensor] = []
    sampler = prepared.sampler
    original = sampler.decode

    def recording(latents: torch.Tensor, batch: int) -> torch.Tensor:
        captured.append(latents.clone())
        return original(latents, batch)

    sampler.decode = recording
    try:
        sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames, settings,
                         end_frame=end_frame, collect=False, **kwargs)
    finally:
        del sampler.decode
    return captured


@pytest.mark.parametrize(("precision", "faithful"), [("fp32", True), ("fp32", False), ("fp64", True)])
def test_optimised_reference_attention_matches_the_straightforward_path(prepared, prepared64, monkeypatch,
                                                                        precision, faithful) -> None:
    prepared = prepared if precision == "fp32" else prepared64
    settings = replace(BASE, faithful=faithful, steps=1 if precision == "fp32" else 2)
    tolerance = 1e-4 if precision == "fp32" else 1e-9
    sampler, features = prepared.sampler, prepared.features
    first = sampler.generate(prepared.reference, features.features, features.num_frames, settings, end_frame=16)
    motion = first.motion  # clip 2 starts from the same re-encoded motion frames on both paths

    def both_clips() -> list[torch.Tensor]:
        return _latents(prepared, settings, 16) + _latents(prepared, settings, 32, start_frame=16, motion=motion)

    fast = both_clips()
    monkeypatch.setattr(DenoisingUNet, "_reference_self_attention",
                        staticmethod(_straightforward_reference_attention))
    slow = both_clips()
    assert len(fast) == len(slow) == 2
    for a, b in zip(fast, slow, strict=True):
        assert float(a.abs().max()) > 0.1
        assert float((a - b).abs().max()) < tolerance


def _straightforward_audio_block(self, x, audio, masks, weights, silent_rows=0, consts=None):
    """The original's audio block: every row attends to its audio tokens, zero or not, at every step."""
    x = _attention(self.attn1, self.norm1(x), self.norm1(x)) + x
    n = self.norm2(x)
    out = x
    branches = ((self.attn2_0, self.zero_conv_full), (self.attn2_1, self.zero_conv_face),
                (self.attn2_2, self.zero_conv_lip))
    for (attn, conv), mask, weight in zip(branches, masks, weights, strict=True):
        branch = _attention(attn, n, audio) * mask.to(x.dtype).unsqueeze(-1)
        out = out + float(weight) * self._pointwise(conv, branch)
    return self.ff(self.norm3(out)) + out


def _straightforward_motion_module(self, x, frames, motion=None, consts=None):
    """The original's motion module: motion frames prepended, all M+F frames computed, the first M cut off."""
    if motion is None:
        return self.temporal_transformer(x, frames)
    bf, c, h, w = x.shape
    b, m = bf // frames, motion.shape[1]
    joined = torch.cat([motion.to(x.dtype), x.view(b, frames, c, h, w)], dim=1)
    out = self.temporal_transformer(joined.reshape(b * (m + frames), c, h, w), m + frames)
    return out.view(b, m + frames, c, h, w)[:, m:].reshape(bf, c, h, w)


@pytest.mark.parametrize("precision", ["fp32", "fp64"])
def test_per_clip_constants_match_the_straightforward_path(prepared, prepared64, monkeypatch, precision) -> None:
    """Face/audio K/V and the silent audio branches once per clip, the motion modules without the outputs they
    discard, against the original's per-step computation; with CFG truncation, so both row layouts run."""
    prepared = prepared if precision == "fp32" else prepared64
    settings = replace(BASE, steps=1) if precision == "fp32" else replace(BASE, solver="dpmpp", steps=3, cfg_steps=2)
    tolerance = 1e-4 if precision == "fp32" else 1e-9
    made: list[str] = []
    prepare_audio, prepare_motion = AudioBlock.prepare, MotionModule.prepare
    monkeypatch.setattr(AudioBlock, "prepare", lambda *a: made.append("audio") or prepare_audio(*a))
    monkeypatch.setattr(MotionModule, "prepare", lambda *a: made.append("motion") or prepare_motion(*a))
    motion = prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                       settings, end_frame=16).motion  # clip 2 starts from the same motion frames

    def both_clips() -> list[torch.Tensor]:
        return _latents(prepared, settings, 16) + _latents(prepared, settings, 32, start_frame=16, motion=motion)

    made.clear()
    fast = both_clips()
    layouts = 1 if precision == "fp32" else 2  # CFG batch, then the conditional half alone
    assert made.count("audio") == made.count("motion") == 2 * 16 * layouts  # per clip, not per step
    monkeypatch.setattr(AudioBlock, "forward", _straightforward_audio_block)
    monkeypatch.setattr(MotionModule, "forward", _straightforward_motion_module)
    monkeypatch.setattr(BlockInputs, "cross_kv", lambda self, attn, path: None)
    slow = both_clips()
    assert len(fast) == len(slow) == 2
    for a, b in zip(fast, slow, strict=True):
        assert float(a.abs().max()) > 0.1
        assert float((a - b).abs().max()) < tolerance


def test_silent_audio_branches_equal_attention_over_zero_tokens(prepared64) -> None:
    """One real audio block in float64: the unconditional rows' branches are per-clip constants."""
    module = prepared64.sampler.net.denoising_unet.down_blocks[0].audio_modules[0]
    block = module.transformer_blocks[0]
    assert block.attn2_0.to_k.bias is None and block.attn2_0.to_v.bias is None  # as in the released net.pth
    torch.manual_seed(0)
    dim, width = block.attn2_0.to_q.in_features, block.attn2_0.to_k.in_features
    x = torch.randn(6, 64, dim, dtype=torch.float64)
    audio = torch.randn(6, 8, width, dtype=torch.float64)
    audio[:2] = 0
    masks = tuple(torch.rand(1, 64, dtype=torch.float64).expand(6, -1) for _ in range(3))
    weights = (1.0, 0.8, 1.3)
    with torch.no_grad():
        consts = block.prepare(audio, masks, 2)
        assert all(s.shape[0] == 1 for s in consts.silent)  # one row: the rows share one mask
        ours = block(x, audio, masks, weights, 2, consts)
        full = _straightforward_audio_block(block, x, audio, masks, weights)
        assert float((ours - full).abs().max()) < 1e-12
        assert float((block(x, audio, masks, weights, 0) - full).abs().max()) < 1e-12  # no silent rows
        own_masks = tuple(m.contiguous() for m in masks)  # not one shared row: the constants hold every row
        assert block.prepare(audio, own_masks, 2).silent[0].shape[0] == 2


def test_sdpa_matches_an_explicit_softmax(prepared) -> None:
    attn = prepared.sampler.net.denoising_unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    torch.manual_seed(0)
    x = torch.randn(4, 64, attn.to_q.in_features)
    ctx = torch.randn(4, 128, attn.to_q.in_features)
    with torch.no_grad():
        assert float((_attention(attn, x, ctx) - _attention(attn, x, ctx, explicit=True)).abs().max()) < 1e-5


def test_straightforward_path_is_sensitive_to_the_reference(prepared, monkeypatch) -> None:
    """Guard: the comparison above can fail (dropping the reference tokens changes the latents)."""
    fast = _latents(prepared, BASE, end_frame=16)

    def no_reference(attn, n, bank, path):
        return _attention(attn, n, n)

    monkeypatch.setattr(DenoisingUNet, "_reference_self_attention", staticmethod(no_reference))
    other = _latents(prepared, BASE, end_frame=16)
    assert float((fast[0] - other[0]).abs().max()) > 1e-3


def test_low_vram_sequential_cfg_matches_batched_cfg(prepared, prepared64) -> None:
    # fp32, one step: batch 16 instead of 32 changes the CPU kernels' blocking, so the two differ by
    # rounding only, amplified by the random network (module docstring): 1e-4 here, more or less on other
    # CPUs. The bound only catches gross mistakes; the float64 comparison below is the exact check.
    one_step = replace(BASE, steps=1)
    a, b = _latents(prepared, one_step, 16)[0], _latents(prepared, replace(one_step, low_vram=True), 16)[0]
    assert float(a.abs().max()) > 0.1
    assert float((a - b).abs().max()) < 1e-3
    # several steps, CFG only on the first two, the multistep solver, two clips: float64
    mixed = replace(BASE, solver="dpmpp", steps=3, cfg_steps=2)
    batched = _latents(prepared64, mixed)
    sequential = _latents(prepared64, replace(mixed, low_vram=True))
    for a, b in zip(batched, sequential, strict=True):  # clip 2 re-encodes clip 1's frames: ~1e-9 in fp64
        assert float((a - b).abs().max()) < 1e-7


def test_batched_vae_decode_matches_frame_by_frame(prepared) -> None:
    latents = _latents(prepared, BASE, end_frame=16)[0]
    one = prepared.sampler.decode(latents, 1)  # the original decodes one frame at a time
    for batch in (4, 16):
        assert float((prepared.sampler.decode(latents, batch) - one).abs().max()) < 1e-5


def test_fp32_latent_upcast_is_a_no_op_in_fp32(prepared) -> None:
    a = _latents(prepared, BASE, end_frame=16)
    b = _latents(prepared, replace(BASE, upcast_latents=True), end_frame=16)
    assert torch.equal(a[0], b[0])


def test_faithful_fp32_rounds_the_bank_to_fp16_as_the_original(prepared, prepared64) -> None:
    sampler = prepared.sampler
    assert sampler.rounds_bank(SamplerSettings())
    assert not sampler.rounds_bank(SamplerSettings(faithful=False))
    assert not sampler.rounds_bank(SamplerSettings(fp16_bank=False))
    assert not prepared64.sampler.rounds_bank(SamplerSettings())  # float64: the exact-math checks
    ref = prepared.reference
    motion = ref.latent.repeat(2, 1, 1, 1)
    with torch.no_grad():
        plain, _ = sampler.reference_bank(ref, motion, CLIP, True, True)
        rounded, _ = sampler.reference_bank(ref, motion, CLIP, True, True, fp16_bank=True)
    for path, feats in rounded.reference.items():
        assert feats.dtype == torch.float32 and torch.equal(feats, plain.reference[path].half().float())
        assert torch.equal(rounded.motion[path], plain.motion[path].half().float())
    assert not torch.equal(rounded.reference[path], plain.reference[path])


def test_channels_last_matches(tiny_model_dir: Path, assets: Path) -> None:
    """Different conv kernels, same math: float64 (fp32 rounding is amplified as explained above)."""
    from hallo_nodes.pipeline.sampling.acceleration import use_channels_last

    p = prepare(tiny_model_dir, assets, dtype=torch.float64)
    before = _latents(p, BASE, end_frame=16)[0]
    use_channels_last(p.sampler.net, p.sampler.vae)
    after = _latents(p, BASE, end_frame=16)[0]
    assert float((before - after).abs().max()) < 1e-9


def test_compile_flag_wires_up(tiny_model_dir: Path, assets: Path) -> None:
    """The opt-in compile wraps the denoiser pieces; with the eager backend the output is unchanged."""
    from hallo_nodes.pipeline.sampling.acceleration import compile_denoiser

    p = prepare(tiny_model_dir, assets)
    before = _latents(p, replace(BASE, steps=1), end_frame=16)[0]
    assert compile_denoiser(p.sampler.net, backend="eager") > 10
    after = _latents(p, replace(BASE, steps=1), end_frame=16)[0]
    assert float((before - after).abs().max()) < 1e-5
