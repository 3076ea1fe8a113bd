"""Numerics that define fidelity to the original Hallo, each recomputed independently here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from generator_helpers import prepare
from hallo_nodes.pipeline.models.loading import load_net
from hallo_nodes.pipeline.models.motion_module import MotionModule
from hallo_nodes.pipeline.sampling.sampler import SamplerSettings, clip_noise_generator
from hallo_nodes.pipeline.sampling.scheduling import make_scheduler


def independent_alphas_cumprod() -> torch.Tensor:
    """linear betas 0.00085..0.012 over 1000 steps, rescaled to zero terminal SNR (Lin et al. 2023, Alg. 1)."""
    betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float32)
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return torch.cumprod(alphas, dim=0)


def test_scheduler_timesteps_and_alphas_for_40_steps() -> None:
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(40)
    assert scheduler.timesteps.tolist() == list(range(999, 0, -25))  # trailing spacing: 999, 974, ..., 24
    expected = independent_alphas_cumprod()
    torch.testing.assert_close(scheduler.alphas_cumprod, expected, rtol=1e-5, atol=1e-7)
    assert float(scheduler.alphas_cumprod[999]) == 0.0  # true zero terminal SNR
    assert float(scheduler.final_alpha_cumprod) == 1.0
    assert scheduler.config.prediction_type == "v_prediction"
    # not SD's scaled_linear betas
    assert abs(float(scheduler.betas[500]) - float(torch.linspace(0.00085, 0.012, 1000)[500])) < 0.01


def test_ddim_step_is_the_v_prediction_update() -> None:
    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(40)
    a = independent_alphas_cumprod()
    gen = torch.Generator().manual_seed(0)
    x, v = torch.randn(1, 4, 2, 8, 8, generator=gen), torch.randn(1, 4, 2, 8, 8, generator=gen)
    for t, prev in ((974, 949), (24, None)):
        a_t = a[t]
        a_prev = a[prev] if prev is not None else torch.tensor(1.0)
        x0 = a_t.sqrt() * x - (1 - a_t).sqrt() * v
        eps = a_t.sqrt() * v + (1 - a_t).sqrt() * x
        expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        torch.testing.assert_close(scheduler.step(v, t, x, eta=0.0).prev_sample, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def prepared(tiny_model_dir: Path, assets: Path):
    return prepare(tiny_model_dir, assets)


class Recorder:
    """Wraps the denoising UNet: records every call's inputs and outputs."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet
        self.calls: list[dict] = []
        self.forward = unet.forward

    def __enter__(self) -> Recorder:
        def forward(latents, timestep, ctx):
            out = self.forward(latents, timestep, ctx)
            self.calls.append({"latents": latents.clone(), "t": int(timestep), "ctx": ctx, "out": out.clone()})
            return out

        self.unet.forward = forward
        return self

    def __exit__(self, *exc: object) -> None:
        del self.unet.forward


def test_cfg_combination_and_result(prepared) -> None:
    settings = SamplerSettings(steps=1, guidance_scale=3.5)
    net = prepared.sampler.net
    with Recorder(net.denoising_unet) as rec:
        result = prepared.sampler.generate(prepared.reference, prepared.features.features,
                                           prepared.features.num_frames, settings, end_frame=16)
    (call,) = rec.calls
    assert call["t"] == 999
    lat = call["latents"]
    assert lat.shape[0] == 2 and torch.equal(lat[0], lat[1])  # [uncond, cond] share the same noisy latents
    # the latents are the first draw of the original's seeded CPU generator
    gen = clip_noise_generator(42, 0, (1, 4, 16, 8, 8), torch.float32, None)
    torch.testing.assert_close(lat[:1], torch.randn((1, 4, 16, 8, 8), generator=gen), rtol=0, atol=0)
    v_uncond, v_cond = call["out"][:1], call["out"][1:]
    v = v_uncond + 3.5 * (v_cond - v_uncond)
    a_t = independent_alphas_cumprod()[999]
    x0 = a_t.sqrt() * lat[:1] - (1 - a_t).sqrt() * v  # last step: alpha_prev = 1 -> the x0 estimate
    frames = prepared.sampler.decode(x0[0].permute(1, 0, 2, 3), 16).permute(0, 2, 3, 1)
    torch.testing.assert_close(result.frames, frames, rtol=1e-4, atol=1e-4)


def test_unconditional_inputs(prepared) -> None:
    net = prepared.sampler.net
    with Recorder(net.denoising_unet) as rec:
        prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                  SamplerSettings(steps=1), end_frame=16)
    ctx = rec.calls[0]["ctx"]
    with torch.no_grad():
        emb = prepared.reference.face_embedding.reshape(1, -1)
        # uncond face tokens are image_proj(0) = LayerNorm bias, not zeros
        torch.testing.assert_close(ctx.face_tokens[0], net.imageproj(torch.zeros_like(emb))[0])
        torch.testing.assert_close(ctx.face_tokens[1], net.imageproj(emb)[0])
        assert not torch.equal(ctx.face_tokens[0], torch.zeros_like(ctx.face_tokens[0]))
        # audio tokens: zeros after the projection for the uncond half
        assert torch.count_nonzero(ctx.audio_tokens[0]) == 0
        audio = net.audioproj(prepared.features.features[:16][None])
        torch.testing.assert_close(ctx.audio_tokens[1:], audio)
        # face locator: zeros for uncond, FaceLocator(box) for every cond frame
        assert torch.count_nonzero(ctx.face_locator[:16]) == 0
        locator = net.face_locator(prepared.reference.face_locator_image[None])
        torch.testing.assert_close(ctx.face_locator[16:], locator.expand(16, -1, -1, -1))
    # the same masks in both halves
    for group, ref in ((ctx.masks.full, prepared.reference.full_masks), (ctx.masks.face, prepared.reference.face_masks),
                       (ctx.masks.lip, prepared.reference.lip_masks)):
        for level, mask in enumerate(group):
            assert mask.shape[0] == 32
            torch.testing.assert_close(mask, ref[level].reshape(1, -1).expand(32, -1))
    # reference attention: none for the uncond rows; cond rows read copies x0, x1 interleaved (quirk B)
    assert ctx.bank.row_source.tolist() == [-1] * 16 + [0, 1] * 8
    # motion-frame features are kept for both halves
    assert all(m.shape[:2] == (2, 2) for m in ctx.bank.motion.values())


def test_reference_attention_only_on_the_conditional_half(prepared) -> None:
    net = prepared.sampler.net
    with Recorder(net.denoising_unet) as rec:
        prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                  SamplerSettings(steps=1), end_frame=16)
    call = rec.calls[0]
    ctx = call["ctx"]
    from hallo_nodes.pipeline.models.reference_bank import ReferenceBank

    perturbed = ReferenceBank({p: f + 1.0 for p, f in ctx.bank.reference.items()}, ctx.bank.motion,
                              ctx.bank.row_source)
    ctx2 = type(ctx)(**{**ctx.__dict__, "bank": perturbed})
    with torch.no_grad():
        out = net.denoising_unet(call["latents"], call["t"], ctx2)
    torch.testing.assert_close(out[:1], call["out"][:1], rtol=0, atol=0)  # uncond half unaffected
    assert (out[1:] - call["out"][1:]).abs().max() > 1e-4  # cond half reads the reference


def test_faithful_reference_batch_layout(prepared) -> None:
    """Quirk A: the ReferenceNet sees [r, m1, m2, r, m1, m2] with face tokens tiled [u, c, u, c, u, c]."""
    net = prepared.sampler.net
    seen = {}
    original = net.reference_unet.forward

    def record(latents, tokens):
        seen["latents"], seen["tokens"] = latents.clone(), tokens.clone()
        return original(latents, tokens)

    net.reference_unet.forward = record
    try:
        prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                  SamplerSettings(steps=1), end_frame=16)
    finally:
        del net.reference_unet.forward
    lat, tok = seen["latents"], seen["tokens"]
    assert lat.shape[0] == 6
    ref = prepared.reference.latent[0]
    for i in range(6):  # first clip: the motion frames are the reference itself
        torch.testing.assert_close(lat[i], ref)
    emb = prepared.reference.face_embedding.reshape(1, -1)
    with torch.no_grad():
        u, c = net.imageproj(torch.zeros_like(emb))[0], net.imageproj(emb)[0]
    for i in range(6):
        torch.testing.assert_close(tok[i], u if i % 2 == 0 else c)


def test_motion_modules_that_run_and_their_frame_count(prepared, tiny_model_dir: Path) -> None:
    def run_and_record(net) -> list[tuple[str, int]]:
        ran: list[tuple[str, int]] = []
        hooks = []
        for name, module in net.denoising_unet.named_modules():
            if isinstance(module, MotionModule):
                def hook(mod, args, name=name):
                    x, frames, motion = args
                    ran.append((name, frames + (0 if motion is None else motion.shape[1])))

                hooks.append(module.register_forward_pre_hook(hook))
        try:
            old_net = prepared.sampler.net
            prepared.sampler.net = net
            prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                      SamplerSettings(steps=1), end_frame=16)
        finally:
            prepared.sampler.net = old_net
            for h in hooks:
                h.remove()
        return ran

    ran = run_and_record(prepared.sampler.net)
    names = [n for n, _ in ran]
    expected = ([f"down_blocks.{i}.motion_modules.{j}" for i in range(3) for j in range(2)]
                + ["mid_block.motion_modules.0"]
                + [f"up_blocks.{i}.motion_modules.{j}" for i in range(1, 4) for j in range(3)])
    assert names == expected  # 16 modules, in this order
    assert {frames for _, frames in ran} == {18}  # 2 motion frames + 16
    # with the unused modules kept in memory, they still never run
    full = load_net(tiny_model_dir, "hallo", keep_unused_motion_modules=True)
    assert hasattr(full.denoising_unet.down_blocks[3], "motion_modules")
    assert [n for n, _ in run_and_record(full)] == expected


def test_clean_variant_differs_only_by_the_quirks(prepared) -> None:
    faithful = prepared.sampler.generate(prepared.reference, prepared.features.features,
                                         prepared.features.num_frames, SamplerSettings(steps=1), end_frame=16)
    clean = prepared.sampler.generate(prepared.reference, prepared.features.features,
                                      prepared.features.num_frames, SamplerSettings(steps=1, faithful=False),
                                      end_frame=16)
    diff = (faithful.frames - clean.frames).abs()
    assert 0 < float(diff.max())
