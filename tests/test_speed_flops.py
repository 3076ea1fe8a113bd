"""The analytic FLOP count (bench/flops.py) against torch's FLOP counter and figures measured on the original."""

from __future__ import annotations

import pytest
import torch
from hallo_nodes.bench import flops
from hallo_nodes.pipeline.models.architecture import HalloArchitecture
from hallo_nodes.pipeline.models.net import build_net
from hallo_nodes.pipeline.models.unets import DeepCache, LevelMasks, UNetConditions
from hallo_nodes.pipeline.sampling.sampler import HalloReference, HalloSampler
from hallo_nodes.testing.tiny_models import tiny_architecture
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def counted(fn) -> float:
    """FLOPs as torch counts them, with SDPA forced to the MATH backend so attention matmuls are seen."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _tiny_setup(size: int, frames: int):
    torch.manual_seed(0)
    arch = tiny_architecture()
    net = build_net(arch, "cpu").eval()
    net.denoising_unet.drop_unused_motion_modules()
    lh = size // 8
    levels = [lh * lh // 4**i for i in range(4)]
    ref = HalloReference(
        pixels=torch.zeros(3, size, size), latent=torch.randn(1, 4, lh, lh),
        face_embedding=torch.randn(arch.face_embedding_dim), face_locator_image=torch.zeros(3, size, size),
        full_masks=[torch.rand(n) for n in levels], face_masks=[torch.rand(n) for n in levels],
        lip_masks=[torch.rand(n) for n in levels],
    )
    sampler = HalloSampler(net, vae=torch.nn.Identity(), device="cpu", dtype=torch.float32)
    return arch, net, ref, sampler


@pytest.mark.parametrize("cfg", [True, False])
def test_tiny_network_matches_the_flop_counter_exactly(cfg: bool) -> None:
    size, frames = 64, 3
    arch, net, ref, sampler = _tiny_setup(size, frames)
    motion = torch.randn(2, 4, size // 8, size // 8)
    with torch.no_grad():
        ref_counted = counted(lambda: sampler.reference_bank(ref, motion, frames, cfg, True))
        bank, face_tokens = sampler.reference_bank(ref, motion, frames, cfg, True)
        rows = (2 if cfg else 1) * frames
        masks = sampler.level_masks(ref, rows)
        b = 2 if cfg else 1
        audio = torch.randn(b, frames, arch.audio_tokens, arch.audio_dim)
        audio[:b - 1] = 0  # the unconditional half's audio tokens are zero, as the sampler builds them
        ctx = UNetConditions(face_tokens=face_tokens, audio_tokens=audio, masks=masks,
                             face_locator=torch.zeros(rows, arch.block_out_channels[0], size // 8, size // 8),
                             bank=bank, silent_audio=b - 1)
        x = torch.randn(b, 4, frames, size // 8, size // 8)
        first = counted(lambda: net.denoising_unet(x, 500, ctx))  # projects the reference K/V once
        deep = DeepCache()
        second = counted(lambda: net.denoising_unet(x, 480, ctx, deep))  # reuses them; keeps the deep features
        deep.reuse = True
        shallow = counted(lambda: net.denoising_unet(x, 460, ctx, deep))  # DeepCache: the outer blocks only
    assert shallow == pytest.approx(flops.denoiser_flops(arch, size, size, frames=frames, cfg=cfg, shallow=True).total,
                                    rel=1e-12)
    expected_step = flops.denoiser_flops(arch, size, size, frames=frames, cfg=cfg).total
    assert second == pytest.approx(expected_step, rel=1e-12)
    # the first call also makes the clip's constants (face/audio K/V, silent audio branches, motion-frame parts)
    expected_ref = flops.reference_flops(arch, size, size, cfg=cfg).total
    constants = flops.clip_constant_flops(arch, size, size, frames=frames, cfg=cfg).total
    assert ref_counted + (first - second) == pytest.approx(expected_ref + constants, rel=1e-12)
    assert isinstance(masks, LevelMasks)


def test_full_size_sd_unet_and_vae_match_the_flop_counter_on_meta() -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    arch = HalloArchitecture()
    with torch.device("meta"):
        unet = UNet2DConditionModel(**arch.unet_kwargs())
        vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                            up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4)
        lat = torch.empty(1, 4, 64, 64)
        assert counted(lambda: unet(lat, 10, torch.empty(1, 77, 768))) == flops.sd_unet_flops(arch, 512, 512).total
        assert counted(lambda: vae.decode(lat)) == flops.vae_decode_flops(512, 512)
        assert counted(lambda: vae.encode(torch.empty(1, 3, 512, 512))) == flops.vae_encode_flops(512, 512)


def test_original_mode_matches_peers_appendix_a() -> None:
    """The original code measured with FlopCounterMode at 512² (GFLOP)."""
    arch = HalloArchitecture()
    g = 1e9
    assert flops.sd_unet_flops(arch, 512, 512).total / g == pytest.approx(803.3, rel=1e-3)
    assert flops.reference_flops(arch, 512, 512, mode="original").total / g == pytest.approx(4782, rel=1e-3)
    assert flops.vae_decode_flops(512, 512) / g == pytest.approx(2514.5, rel=1e-4)
    assert flops.vae_encode_flops(512, 512) / g == pytest.approx(1116.7, rel=1e-4)
    # The denoiser lands within 1 % of the measured figures (residual ~0.7 %, proportional to tokens).
    for size, measured in ((256, 10_922), (512, 53_572), (768, 158_471), (1024, 376_342)):
        ours = flops.denoiser_flops(arch, size, size, mode="original").total / g
        assert ours == pytest.approx(measured, rel=0.01), size
    assert flops.denoiser_flops(arch, 512, 512, cfg=False, mode="original").total / g == pytest.approx(25_400, rel=0.01)


def test_our_forward_saves_the_thrown_away_reference_attention() -> None:
    arch = HalloArchitecture()
    ours = flops.denoiser_flops(arch, 512, 512).total
    original = flops.denoiser_flops(arch, 512, 512, mode="original").total
    assert 0.85 * original < ours < 0.92 * original
    # without CFG nothing is thrown away; ours saves only the per-step reference K/V projection
    assert flops.denoiser_flops(arch, 512, 512, cfg=False).total < flops.denoiser_flops(
        arch, 512, 512, cfg=False, mode="original").total


def test_our_forward_skips_the_unconditional_audio_attention() -> None:
    arch = HalloArchitecture()
    ours = flops.denoiser_flops(arch, 512, 512).parts["audio"]
    original = flops.denoiser_flops(arch, 512, 512, mode="original").parts["audio"]
    assert ours < 0.95 * original  # the q/out projections and attention of 3 branches, for half the rows
    # without CFG nothing is silent: ours saves only the audio tokens' K/V, made once per clip
    no_cfg = flops.denoiser_flops(arch, 512, 512, cfg=False).parts["audio"]
    original = flops.denoiser_flops(arch, 512, 512, cfg=False, mode="original").parts["audio"]
    kv = sum(3 * flops.linear(16 * arch.audio_tokens, arch.audio_dim, 2 * inner)
             for inner in [320] * 3 + [640] * 2 + [1280] * 2 + [640] * 3 + [320] * 6)  # the 16 modules' widths
    assert original - no_cfg == pytest.approx(kv, rel=1e-12)


def test_our_motion_modules_skip_the_discarded_motion_frame_outputs() -> None:
    arch = HalloArchitecture()
    ours = flops.denoiser_flops(arch, 512, 512).parts["motion"]
    original = flops.denoiser_flops(arch, 512, 512, mode="original").parts["motion"]
    # 18 frames -> 16 for the feed-forward and projections, the motion frames' first q/k/v once per clip
    assert 0.88 * original < ours < 0.92 * original


def test_render_flops_counts_steps_cfg_and_clips() -> None:
    arch = HalloArchitecture()
    full = flops.render_flops(arch, 512, 512, 25, steps=40)
    step = flops.denoiser_flops(arch, 512, 512).total
    consts, half_consts = (flops.clip_constant_flops(arch, 512, 512, cfg=cfg).total for cfg in (True, False))
    assert full.denoise == pytest.approx(2 * (40 * step + consts))
    half = flops.render_flops(arch, 512, 512, 25, steps=40, cfg_steps=20)
    no_cfg = flops.denoiser_flops(arch, 512, 512, cfg=False).total
    assert half.denoise == pytest.approx(2 * (20 * step + 20 * no_cfg + consts + half_consts))
    # DeepCache every 3rd step: steps 0, 3, ..., 39 full (14), the 26 others shallow
    cached = flops.render_flops(arch, 512, 512, 25, steps=40, cache_interval=3)
    shallow = flops.denoiser_flops(arch, 512, 512, shallow=True).total
    assert cached.denoise == pytest.approx(2 * (14 * step + 26 * shallow + consts))
    assert 0.4 * step < shallow < 0.5 * step  # the outer blocks run at the full latent size
    assert full.decode == pytest.approx(32 * flops.vae_decode_flops(512, 512))
    assert full.encode == pytest.approx(3 * flops.vae_encode_flops(512, 512))  # reference + 1 motion encode
    # the original at default settings: ~3.4 PFLOP per video second (measured on the original: 3,424 TFLOP)
    original = flops.render_flops(arch, 512, 512, 16 * 100, mode="original")
    assert original.per_video_second / 1e12 == pytest.approx(3424, rel=0.02)
    with pytest.raises(ValueError):
        flops.denoiser_flops(arch, 512, 512, mode="fast")
