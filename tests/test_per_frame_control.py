"""Per-frame pose / face / lip weights and ``still``, on the audio block and on full renders of the tiny model.

What a schedule changes, exactly: the audio block treats every frame (row) on its own, so there a per-frame
weight changes only the rows of the frames whose weight differs, and only the branch it names. The whole
network does not: temporal attention (the motion modules) mixes the 16 frames of a clip, and the last two
frames of a clip are the next clip's motion frames. So in a render, every frame of the clips *before* the clip
that holds the first changed frame is bit-identical to the constant-weight render; that clip and all later
ones may differ, even frames whose own weight did not change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from generator_helpers import prepare
from hallo_nodes.pipeline.models.audio_attention import AudioBlock
from hallo_nodes.pipeline.models.unets import DenoisingUNet
from hallo_nodes.pipeline.sampling.sampler import SamplerSettings
from hallo_nodes.pipeline.sampling.schedules import parse_weight
from hallo_nodes.pipeline.sampling.still import keep_weight

FRAMES = 4  # frames per clip in the module tests
STEPS = 2


def block_inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(3)
    rows = batch * FRAMES
    x = torch.randn(rows, 6, 32, generator=gen)
    audio = torch.randn(rows, 5, 24, generator=gen)
    audio[:FRAMES * (batch - 1)] = 0  # CFG's unconditional half: silent
    masks = tuple(torch.rand(rows, 6, generator=gen) for _ in range(3))
    return x, audio, masks


@pytest.fixture(scope="module")
def block() -> AudioBlock:
    torch.manual_seed(0)
    return AudioBlock(32, 4, 24).eval()


@torch.no_grad()
def test_a_lip_schedule_scales_only_the_lip_branch_of_its_frames(block: AudioBlock) -> None:
    x, audio, masks = block_inputs()
    lip = torch.tensor([1.0, 2.0, 1.0, 0.5])
    silent = FRAMES
    n = block.norm2(x)
    const = list(block.weighted_branches(n, audio, masks, (1.0, 1.0, 1.0), silent))
    sched = list(block.weighted_branches(n, audio, masks, (1.0, 1.0, lip), silent))
    assert torch.equal(sched[0], const[0]) and torch.equal(sched[1], const[1])  # pose and face branches untouched
    per_row = lip.repeat(2)  # [uncond frames, cond frames]: the weight of frame f scales rows f and F + f
    assert torch.equal(sched[2], const[2] * per_row[:, None, None])
    assert not torch.equal(sched[2], const[2])
    # the whole block: the rows of frames whose weight is 1 are bit-identical, the others differ
    out_const = block(x, audio, masks, (1.0, 1.0, 1.0), silent)
    out_sched = block(x, audio, masks, (1.0, 1.0, lip), silent)
    same = per_row == 1.0
    assert torch.equal(out_sched[same], out_const[same])
    assert (out_sched[~same] - out_const[~same]).abs().amax(dim=(1, 2)).min() > 0


@torch.no_grad()
@pytest.mark.parametrize("batch", [1, 2])  # 1: a CFG half on its own (low VRAM, or steps without CFG)
def test_per_frame_weights_equal_to_a_number_compute_exactly_that_number(block: AudioBlock, batch: int) -> None:
    x, audio, masks = block_inputs(batch)
    numbers = (0.8, 1.3, 1.7)
    tensors = tuple(torch.full((FRAMES,), w) for w in numbers)
    silent = FRAMES * (batch - 1)
    assert torch.equal(block(x, audio, masks, tensors, silent), block(x, audio, masks, numbers, silent))


@pytest.fixture(scope="module")
def prepared(tiny_model_dir: Path, assets: Path):
    return prepare(tiny_model_dir, assets)


def render(prepared, end_frame: int, **settings) -> torch.Tensor:
    return prepared.sampler.generate(prepared.reference, prepared.features.features, prepared.features.num_frames,
                                     SamplerSettings(steps=STEPS, **settings), end_frame=end_frame).frames


@pytest.fixture(scope="module")
def constant(prepared) -> torch.Tensor:
    return render(prepared, 64)


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) > 0


def test_a_schedule_changes_its_clip_and_later_ones_only(prepared, constant, monkeypatch) -> None:
    # the lip weight rises to 2.5 on frames 41..47 (clip 2 = frames 32..47) and is 1 everywhere else
    lip = parse_weight("0:1, 40:1, 41:2.5, 47:2.5, 48:1", "lip_schedule", 25.0)
    weights = []
    real = DenoisingUNet._block_inputs

    def recording(self, b, frames, t, dtype, ctx):
        weights.append(ctx.motion_scale)
        return real(self, b, frames, t, dtype, ctx)

    monkeypatch.setattr(DenoisingUNet, "_block_inputs", recording)
    frames = render(prepared, 64, lip_weight=lip)
    assert torch.equal(frames[:32], constant[:32])  # clips 0 and 1: bit-identical
    for f in range(32, 64):  # clip 2 (also frames 32..40 whose own weight is 1) and clip 3 (motion frames)
        assert differs(frames[f], constant[f]), f
    # what reached the audio modules: numbers for constant clips, per-frame lip weights in clip 2 only
    per_clip = weights[::STEPS]
    assert [w for i, w in enumerate(per_clip) if i != 2] == [(1.0, 1.0, 1.0)] * 3
    pose, face, lip_clip2 = per_clip[2]
    assert (pose, face) == (1.0, 1.0)
    assert lip_clip2.tolist() == [1.0] * 9 + [2.5] * 7


def test_a_schedule_starting_in_a_later_clip_and_a_list_of_floats(prepared, constant) -> None:
    n = prepared.features.num_frames
    pose = parse_weight([1.0] * 50 + [0.2] * (n - 50), "pose_weight", 25.0)  # as a schedule node sends it
    frames = render(prepared, 64, pose_weight=pose)
    assert torch.equal(frames[:48], constant[:48])
    assert differs(frames[48:], constant[48:])


def test_the_default_and_constant_schedules_are_the_original_computation(prepared, constant) -> None:
    flat = parse_weight("0:1.0, 90:1.0", "face_schedule", 25.0)  # a schedule object, the same value throughout
    assert torch.equal(render(prepared, 64, face_weight=flat), constant)
    assert torch.equal(render(prepared, 64, pose_weight=1.0, face_weight=1.0, lip_weight=1.0), constant)


def region_motion(frames: torch.Tensor, region: torch.Tensor) -> float:
    """Mean absolute change from one frame to the next inside ``region`` (H, W)."""
    step = (frames[1:] - frames[:-1]).abs().mean(-1)
    return float(step[:, region].mean())


def test_still_pins_the_portrait_outside_the_face_and_keeps_the_lips_moving(prepared, constant) -> None:
    reference = prepared.reference
    h, w = reference.latent.shape[-2:]
    keep = keep_weight(reference.full_masks[0].reshape(h, w))
    assert float(keep.min()) == 0.0  # the face box is free
    decoded_latents = []
    real_decode = prepared.sampler.decode

    def recording(latents: torch.Tensor, batch: int) -> torch.Tensor:
        decoded_latents.append(latents.clone())
        return real_decode(latents, batch)

    prepared.sampler.decode = recording
    try:
        still = render(prepared, 32, still=True)
    finally:
        del prepared.sampler.decode
    # every frame's final latent equals the portrait's where the blend weight is 1 (away from the face)
    pinned = keep == 1.0
    assert int(pinned.sum()) > 0
    for latents in decoded_latents:
        assert torch.equal(latents[:, :, pinned], reference.latent[0][:, pinned].expand(latents.shape[0], -1, -1))
    size = reference.size
    up = torch.nn.functional.interpolate
    outside = up(keep[None, None], size=size, mode="bilinear")[0, 0] > 0.9
    lips = up(reference.lip_masks[0].reshape(1, 1, h, w), size=size, mode="bilinear")[0, 0] > 0.5
    moving, held = region_motion(constant[:32], outside), region_motion(still, outside)
    # in pixels less than in latents: the VAE decoder spreads the moving face a little (at 64x64 the pinned
    # latents are the four corners; -40 % here, -85 % at 128x128)
    assert held < 0.75 * moving, (held, moving)
    assert region_motion(still, lips) > 0.5 * region_motion(constant[:32], lips)
