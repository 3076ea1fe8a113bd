"""End-to-end generator tests on the tiny model with a real portrait and real speech."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import pytest
import torch
from generator_helpers import SIZE, prepare
from hallo_nodes.pipeline.sampling.sampler import NonFiniteError, RenderCancelled, SamplerSettings

SETTINGS = SamplerSettings(steps=2)


@pytest.fixture(scope="module")
def prepared(tiny_model_dir: Path, assets: Path):
    return prepare(tiny_model_dir, assets)


@pytest.fixture(scope="module")
def full_run(prepared):
    clips = []
    encoded = []
    sampler = prepared.sampler
    original_encode = sampler.encode

    def recording_encode(pixels: torch.Tensor) -> torch.Tensor:
        encoded.append(pixels.clone())
        return original_encode(pixels)

    sampler.encode = recording_encode
    try:
        result = sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                  SETTINGS, on_clip=clips.append)
    finally:
        del sampler.encode
    return result, clips, encoded


def test_frame_count_shape_and_range(prepared, full_run, assets: Path) -> None:
    result, clips, _ = full_run
    with wave.open(str(assets / "audio" / "speech_7s_44k.wav")) as w:
        seconds = w.getnframes() / w.getframerate()
    expected = math.ceil(seconds * 25)
    assert prepared.features.num_frames == expected
    assert result.frames.shape == (expected, *SIZE, 3)
    assert result.frames.dtype == torch.float32
    assert float(result.frames.min()) >= 0.0 and float(result.frames.max()) <= 1.0
    assert float(result.frames.std()) > 0.01  # not a constant image
    # clips stream in order and cover exactly the trimmed video
    assert [c.index for c in clips] == list(range(math.ceil(expected / 16)))
    assert sum(c.frames.shape[0] for c in clips) == expected
    assert clips[-1].frames.shape[0] == expected - 16 * (len(clips) - 1)


def test_deterministic_for_a_seed_and_different_for_another(prepared, full_run) -> None:
    result, _, _ = full_run
    again = prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                      SETTINGS, end_frame=32)
    assert torch.equal(again.frames, result.frames[:32])
    other = prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                      SamplerSettings(steps=2, seed=7), end_frame=32)
    assert (other.frames - result.frames[:32]).abs().mean() > 1e-3


def test_motion_frames_are_re_encoded_last_two_frames(prepared, full_run) -> None:
    _, clips, encoded = full_run
    # first clip: the reference itself serves as motion frames (no extra encode);
    # every later clip k+1 encodes the last two decoded frames of clip k mapped to [-1, 1]
    assert len(encoded) == len(clips) - 1
    for k, pixels in enumerate(encoded):
        last_two = clips[k].frames[-2:].permute(0, 3, 1, 2) * 2 - 1
        torch.testing.assert_close(pixels, last_two, rtol=0, atol=0)


def test_two_segments_equal_one_run(prepared, full_run) -> None:
    result, _, _ = full_run
    features, n = prepared.features.features, prepared.features.num_frames
    first = prepared.sampler.generate(prepared.reference, features, n, SETTINGS, end_frame=64)
    assert first.motion.next_frame == 64
    second = prepared.sampler.generate(prepared.reference, features, n, SETTINGS, start_frame=64,
                                       motion=first.motion)
    joined = torch.cat([first.frames, second.frames])
    assert joined.shape == result.frames.shape
    torch.testing.assert_close(joined, result.frames, rtol=0, atol=1e-6)


def test_segment_arguments_are_checked(prepared) -> None:
    f, n = prepared.features.features, prepared.features.num_frames
    with pytest.raises(ValueError, match="multiple of the clip length"):
        prepared.sampler.generate(prepared.reference, f, n, SETTINGS, start_frame=10)
    with pytest.raises(ValueError, match="needs the motion frames"):
        prepared.sampler.generate(prepared.reference, f, n, SETTINGS, start_frame=16)
    with pytest.raises(ValueError, match="end_frame must be a multiple"):
        prepared.sampler.generate(prepared.reference, f, n, SETTINGS, end_frame=20)
    with pytest.raises(ValueError, match="audio features cover"):
        prepared.sampler.generate(prepared.reference, f[:16], n, SETTINGS)


def test_progress_and_cancel_hooks_run_every_step(prepared) -> None:
    f, n = prepared.features.features, prepared.features.num_frames
    steps: list[tuple[int, int]] = []
    checks = []

    def cancel_in_second_clip() -> bool:
        checks.append(len(steps))
        return len(steps) >= 3  # one full clip (2 steps) and one step of the next

    clips = []
    with pytest.raises(RenderCancelled, match="clip 2 at step 2"):
        prepared.sampler.generate(prepared.reference, f, n, SETTINGS, on_step=lambda d, t: steps.append((d, t)),
                                  should_cancel=cancel_in_second_clip, on_clip=clips.append)
    assert steps == [(1, 24), (2, 24), (3, 24)]
    assert len(checks) == 4
    assert len(clips) == 1  # the cancelled clip was never emitted
    # the next run works
    ok = prepared.sampler.generate(prepared.reference, f, n, SETTINGS, end_frame=16)
    assert ok.frames.shape[0] == 16


def test_hallo2_drops_motion_pixels_outside_the_face(tiny_model_dir: Path, assets: Path) -> None:
    p = prepare(tiny_model_dir, assets, variant="hallo2")
    seen = []
    original_encode = p.sampler.encode

    def recording_encode(pixels: torch.Tensor) -> torch.Tensor:
        seen.append(pixels.clone())
        return original_encode(pixels)

    p.sampler.encode = recording_encode
    p.sampler.generate(p.reference, p.features.features, p.features.num_frames, SETTINGS, end_frame=16)
    # Hallo2 masks the motion frames of every clip, the first included
    assert len(seen) == 1
    face = p.reference.face_locator_image[0] > 0
    dropped = (seen[0] == 0).all(dim=1)  # (2, H, W): pixels set to 0 on all channels
    assert not dropped[:, face].any()
    outside = dropped[:, ~face].float().mean().item()
    assert 0.15 < outside < 0.35  # about 25 % of the pixels outside the face box
    # the drop can be switched off
    seen.clear()
    p.sampler.generate(p.reference, p.features.features, p.features.num_frames,
                       SamplerSettings(steps=2, motion_frame_drop=0.0), end_frame=16)
    assert seen == []


def test_non_square_output(tiny_model_dir: Path, assets: Path) -> None:
    """The original is square-only; here any multiple of 64 works, e.g. a 128x64 portrait video."""
    p = prepare(tiny_model_dir, assets, size=(128, 64))
    assert [tuple(m.shape) for m in p.reference.full_masks] == [(16 * 8,), (8 * 4,), (4 * 2,), (2 * 1,)]
    result = p.sampler.generate(p.reference, p.features.features, p.features.num_frames, SamplerSettings(steps=1),
                                end_frame=32)
    assert result.frames.shape == (32, 128, 64, 3)
    assert float(result.frames.std()) > 0.01


def test_non_finite_weights_stop_the_render_instead_of_a_black_video(prepared) -> None:
    f, n = prepared.features.features, prepared.features.num_frames
    weight = prepared.sampler.net.denoising_unet.conv_in.weight
    saved = weight.detach().clone()
    clips = []
    try:
        with torch.no_grad():
            weight[0, 0, 0, 0] = float("nan")  # one NaN weight, as in a damaged checkpoint
        with pytest.raises(NonFiniteError, match=r"clip 1: .*NaN or Inf.*checkpoint.*bf16 or fp32.*non-finite input"):
            prepared.sampler.generate(prepared.reference, f, n, SETTINGS, on_clip=clips.append)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert clips == []  # nothing reached the video
    with pytest.raises(NonFiniteError, match="clip 1"):  # non-finite audio features: the same guard
        prepared.sampler.generate(prepared.reference, torch.full_like(f, float("nan")), n, SETTINGS, end_frame=16)
    assert prepared.sampler.generate(prepared.reference, f, n, SETTINGS, end_frame=16).frames.shape[0] == 16


@pytest.mark.parametrize("name", ["guidance_scale", "pose_weight", "face_weight", "lip_weight", "motion_frame_drop"])
def test_non_finite_settings_are_refused(prepared, name: str) -> None:
    f, n = prepared.features.features, prepared.features.num_frames
    with pytest.raises(ValueError, match=f"{name} must be a finite number, got nan"):
        prepared.sampler.generate(prepared.reference, f, n, SamplerSettings(steps=1, **{name: float("nan")}))


def test_latent_preview_hook_gets_the_middle_frames_x0_at_every_step(prepared, full_run) -> None:
    """``on_latent`` sees (1, 4, h, w) every step; at a clip's last DDIM step the x0 prediction is the final latent,
    so decoding it gives exactly the clip's middle frame. The frames do not change with the hook."""
    result, _, _ = full_run
    f, n = prepared.features.features, prepared.features.num_frames
    seen: list[tuple[int, int, torch.Tensor]] = []
    clips = []
    out = prepared.sampler.generate(prepared.reference, f, n, SETTINGS, end_frame=32, on_clip=clips.append,
                                    on_latent=lambda d, t, x: seen.append((d, t, x.clone())))
    assert [(d, t) for d, t, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(x.shape == (1, 4, SIZE[0] // 8, SIZE[1] // 8) for _, _, x in seen)
    torch.testing.assert_close(out.frames, result.frames[:32], rtol=0, atol=0)
    for clip, (_, _, last) in zip(clips, (seen[1], seen[3]), strict=True):
        decoded = prepared.sampler.decode(last, 1)[0].permute(1, 2, 0)
        torch.testing.assert_close(decoded, clip.frames[8], rtol=0, atol=1e-5)
    assert not torch.equal(seen[0][2], seen[1][2])  # the first step's prediction is still rough
