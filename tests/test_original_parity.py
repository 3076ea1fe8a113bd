"""Our generator against numbers recorded from the ORIGINAL Hallo and Hallo2 code.

The goldens in ``fixtures/original_parity/`` were produced once by running the original repositories' modules,
``FaceAnimatePipeline`` and ``scripts/inference.py`` / ``scripts/inference_long.py`` clip loops (diffusers 0.27.2)
on a tiny SD-shaped network whose weights follow a key-seeded rule (``parity_helpers.rule_state_dict``), with
the inputs stored in ``inputs.npz``. The fixtures' README.md says exactly how. No code of the original is part of
this repository; only its numbers are.

Here the same weights are written as a model folder, loaded by our loaders, and driven through the public API
(``make_reference`` -> ``HalloSampler.generate``). Three goldens:

* one CFG denoising call of clip 1 (ReferenceNet at t=0, then the denoiser at the first timestep), both halves;
* a 2-clip render (20 true frames, 3 DDIM steps, CFG 3.5, seed 42, weights 1.0/0.8/1.3), Hallo mode;
* the same render in Hallo2 mode (0.25 motion-frame pixel drop outside the face box).

The tight goldens come from the original with its reference bank kept in fp32, and are compared with our
render with ``fp16_bank=False``. The unmodified original rounds the bank to fp16 even in an fp32 run, as our
faithful fp32 default does; its recordings are compared with that default. Rounding-boundary flips differ
between the two sides (the last bits of the fp32 bank do), which this network amplifies to a few 1e-2 in single
pixels of clip 2, so those bounds are looser. Every bound carries a guard test showing that a plausible wiring
error moves the outputs far past it. The strict fp32 tests hold one call and clip 1's frame means to 5e-6 relative;
a further test shows why that cannot hold against the unmodified original (fp16-rounding flips of the bank).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from hallo_nodes.pipeline.models.loading import load_net, load_vae
from hallo_nodes.pipeline.models.reference_bank import ReferenceBank
from hallo_nodes.pipeline.sampling.sampler import HalloReference, HalloSampler, MotionState, SamplerSettings
from parity_helpers import (
    GOLDENS_FILE,
    INPUTS_FILE,
    ParityInputs,
    decode_frames,
    is_kept,
    key_digest,
    load_goldens,
    load_inputs,
    make_parity_reference,
    max_abs,
    net_template,
    rule_state_dict,
    shape_digest,
    vae_template,
    windowed_audio,
    write_parity_model_folder,
)

CLIP = 16
RULE_DIGESTS_FILE = GOLDENS_FILE.parent / "rule_digests.json"
# One denoising call, max |v_ours - v_original| (|v| up to 2.3), bank in fp32 on both sides. Measured: 2.1e-5
# (9.1e-6 of max |v|) with 1 thread, 1.7e-5 with 4, at most 2.3e-5 with 1 to 16.
TOL_V = 6e-5


@dataclass(frozen=True)
class Bounds:
    max: float  # max |difference| over the stored frames of the clip
    mean: float  # mean |difference| over the stored frames of the clip
    frame_means: float  # max |difference| of the per-frame channel means, every frame of the clip


# Frames (0..1) against the original with its bank kept fp32, per clip. Measured with 1 to 16 torch threads
# (the worst of Hallo and Hallo2): clip 1 max 6.5e-5, mean 8.0e-6, frame means 1.1e-6; clip 2 max 4.0e-3,
# mean 2.9e-4, frame means 1.1e-5. Clip 2 starts from decoded and re-encoded frames of clip 1, where float
# rounding that depends on the thread count is amplified (the original itself moves by up to 1.1e-4 in clip 1
# and 3.7e-4 in clip 2 between 1 and 4 threads).
TIGHT = (Bounds(2e-3, 2e-4, 5e-5), Bounds(2e-2, 1.5e-3, 1e-4))
# Our faithful fp32 default (bank rounded to fp16) against the unmodified original, which rounds it too (and
# alone moves by 3.8e-2 in clip 2 between 1 and 4 threads). Measured with 1, 2, 4, 8 and 16 threads: clip 1
# Hallo max 6.8e-4 (1.5e-3 with 4 threads), mean 9.0e-5 (2.0e-4), frame means 1.4e-5 (2.8e-5); Hallo2 max
# 5.8e-5, mean 8.5e-6, frame means 1.2e-6; clip 2 (worst mode) max 3.4e-2, mean 3.9e-3, frame means 2.8e-4.
# With the bank left in fp32, clip 1 was up to 3.4e-3 / 4.9e-4 / 1.3e-4, outside the clip-1 max and mean bounds.
# Which fp16 values flip depends on the CPU's float kernels too: on an AVX-512-FP16 Xeon (1 thread) clip 1 of
# Hallo measured max 2.4e-3, mean 3.6e-4, frame means 1.3e-4; the frame-means bound leaves room for that.
LOOSE = (Bounds(3e-3, 4e-4, 2e-4), Bounds(0.15, 2e-2, 3e-3))
# Strict fp32 parity (issue 12): relative errors against the original with its bank kept fp32. A single call:
# ||v_ours - v_orig|| / ||v_orig|| over both CFG halves (L2 over the whole tensor); measured 3.9e-6 to 4.25e-6
# with 1 to 16 threads (max |dv| / max |v| is 7.3e-6 to 9.3e-6). Clip 1: every frame's channel means (stored in
# float32), max over frames and channels of |m_ours - m_orig| / |m_orig|; measured at most 2.1e-6 (Hallo) and
# 7.1e-7 (Hallo2) with 1 to 8 threads. The stored frames themselves are 16-bit (storage alone is 7.5e-6 of
# their norm), and clip-1 frames differ more between thread counts of the same code (Hallo: 3.8e-5 of the
# norm, 1 vs 4 threads) than from the original (2.2e-5), so no frame-level bound of 5e-6 is meaningful.
STRICT_REL = 5e-6
# The unmodified original rounds its bank to fp16 (so does our faithful fp32 default). Moving every fp32 bank value
# by one unit in the last place moves one call by 2.1e-6 to 3.2e-6 of its norm with the bank in fp32, but by
# 1.1e-5 to 3.1e-4 once the bank is rounded to fp16: 0.01 % to 0.02 % of the values flip to the neighbouring fp16
# value, and this network amplifies that (by how much depends on which values flip). No implementation whose fp32
# bank differs from the original's in the last bit can match the unmodified original within STRICT_REL.
FLIP_MOVES = 20 * STRICT_REL
FLIP_SEEDS = (1, 2, 3)
# A guard's wiring error must exceed the tight bounds (max and mean) by this factor, the loose ones by LOOSE_GUARD.
GUARD_FACTOR = 10
LOOSE_GUARD = 3


@dataclass
class Parity:
    inputs: ParityInputs
    goldens: dict[str, np.ndarray]
    nets: dict[str, torch.nn.Module]
    vae: torch.nn.Module
    reference: HalloReference
    features: torch.Tensor

    def settings(self, **overrides) -> SamplerSettings:
        pose, face, lip = self.inputs.motion_scale
        base = SamplerSettings(steps=self.inputs.steps, guidance_scale=self.inputs.guidance_scale,
                               seed=self.inputs.seed, pose_weight=pose, face_weight=face, lip_weight=lip)
        return replace(base, **overrides)

    def sampler(self, mode: str) -> HalloSampler:
        return HalloSampler(self.nets[mode], self.vae, device="cpu", dtype=torch.float32, is_hallo2=mode == "hallo2")


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> Parity:
    assert INPUTS_FILE.is_file() and GOLDENS_FILE.is_file(), "the original-parity fixtures are missing"
    root = write_parity_model_folder(tmp_path_factory.mktemp("parity_models"))
    nets = {mode: load_net(root, mode, dtype="fp32") for mode in ("hallo", "hallo2")}
    vae = load_vae(root, dtype="fp32")
    inputs = load_inputs()
    return Parity(inputs, load_goldens(), nets, vae, make_parity_reference(vae, inputs), windowed_audio(inputs))


def first_call(p: Parity, reference: HalloReference | None = None, features: torch.Tensor | None = None,
               **overrides) -> torch.Tensor:
    """Model output of the first denoiser call of clip 1 (both CFG halves, before guidance), through ``generate``.

    One trailing DDIM step runs at t=999, the first timestep of the 3-step renders as well. The bank stays fp32,
    as in the golden's recording.
    """
    overrides.setdefault("fp16_bank", False)
    net = p.nets["hallo"]
    outputs: list[torch.Tensor] = []
    hook = net.denoising_unet.register_forward_hook(lambda _m, _a, out: outputs.append(out.detach().clone()))
    try:
        p.sampler("hallo").generate(reference or p.reference, p.features if features is None else features,
                                    p.inputs.num_frames, p.settings(steps=1, **overrides), end_frame=CLIP)
    finally:
        hook.remove()
    return outputs[0]


def rel_l2(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """``||a - b|| / ||b||`` over the whole tensors (float64)."""
    a, b = (np.asarray(x.detach().double() if isinstance(x, torch.Tensor) else x, np.float64) for x in (a, b))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def clip1_means_rel(frames: torch.Tensor, goldens: dict[str, np.ndarray], key: str) -> float:
    """Max over clip 1's frames and channels of ``|mean_ours - mean_orig| / |mean_orig|``."""
    ours = frames[:CLIP].double().numpy().mean(axis=(1, 2))
    gold = goldens[f"{key}_frame_means"][:CLIP].astype(np.float64)
    return float((np.abs(ours - gold) / np.abs(gold)).max())


def render(p: Parity, mode: str, reference: HalloReference | None = None, end_frame: int | None = None,
           **overrides) -> torch.Tensor:
    result = p.sampler(mode).generate(reference or p.reference, p.features, p.inputs.num_frames,
                                      p.settings(**overrides), end_frame=end_frame)
    return result.frames


@dataclass
class FrameErrors:
    max: float
    mean: float
    frame_means: float

    def within(self, bounds: Bounds) -> bool:
        return self.max <= bounds.max and self.mean <= bounds.mean and self.frame_means <= bounds.frame_means

    def beyond(self, bounds: Bounds, factor: float) -> bool:
        return self.max > factor * bounds.max and self.mean > factor * bounds.mean


def frame_errors(frames: torch.Tensor, goldens: dict[str, np.ndarray], key: str, clip: int) -> FrameErrors:
    """Errors of ``frames`` (the render from frame 0 on) against golden ``key`` within clip ``clip``.

    The goldens hold a few stored frames and the channel means of every frame; both are compared.
    """
    ours = frames.double().numpy()
    lo, hi = clip * CLIP, min((clip + 1) * CLIP, ours.shape[0])
    assert hi > lo, f"the render has no frame of clip {clip}"
    index = goldens[f"{key}_frame_index"]
    keep = (index >= lo) & (index < hi)
    assert keep.any(), f"{key} stores no frame of clip {clip}"
    diff = np.abs(ours[index[keep]] - decode_frames(goldens[f"{key}_frames"][keep]))
    means = np.abs(ours[lo:hi].mean(axis=(1, 2)) - goldens[f"{key}_frame_means"][lo:hi].astype(np.float64))
    return FrameErrors(float(diff.max()), float(diff.mean()), float(means.max()))


# -- the weights and key naming are the ones the goldens were recorded with -----------------------------------
def test_rule_weights_are_the_recorded_ones(parity: Parity) -> None:
    g = parity.goldens
    net, vae = net_template(), vae_template()
    assert key_digest(list(net)) == int(g["net_key_digest"]), "our net.pth key names changed"
    assert shape_digest(net) == int(g["net_shape_digest"]), "our tiny net's tensor shapes changed"
    assert key_digest(list(vae)) == int(g["vae_key_digest"]) and shape_digest(vae) == int(g["vae_shape_digest"])
    digests = json.loads(RULE_DIGESTS_FILE.read_text())
    for template, name in ((net, "net"), (vae, "vae")):
        state = rule_state_dict(template)
        assert rule_digest(state) == digests[f"{name}_rule_crc32"], f"{name}: the weight rule's values changed"
        # The built pos_encoder tables differ between CPUs by float32 rounding (sin/cos): compare their |w| sum,
        # the recorded total less the ruled part, at float32 precision.
        ruled = sum(float(state[k].double().abs().sum()) for k in sorted(state) if not is_kept(k))
        built = sum(float(state[k].double().abs().sum()) for k in sorted(state) if is_kept(k))
        assert built == pytest.approx(float(g[f"{name}_abs_sum"]) - ruled, rel=1e-6, abs=1e-6), f"{name}: kept tables"


def rule_digest(state: dict[str, torch.Tensor]) -> int:
    """CRC32 of the ruled tensors' names and exact float32 bytes (kept buffers left out), in key order."""
    crc = 0
    for key in sorted(state):
        if not is_kept(key):
            crc = zlib.crc32(key.encode("utf-8") + state[key].numpy().astype("<f4").tobytes(), crc)
    return crc


# -- goldens ------------------------------------------------------------------------------------------------
def test_first_denoising_call_matches_original(parity: Parity) -> None:
    v = first_call(parity)
    gold = parity.goldens["first_call_v"]
    assert tuple(v.shape) == gold.shape == (2, 4, 16, 8, 8)
    assert max_abs(v[0], gold[0]) <= TOL_V, "unconditional half"
    assert max_abs(v[1], gold[1]) <= TOL_V, "conditional half"


def test_first_call_strict_fp32_parity(parity: Parity) -> None:
    assert rel_l2(first_call(parity), parity.goldens["first_call_v"]) <= STRICT_REL


@pytest.mark.parametrize("mode", ["hallo", "hallo2"])
def test_first_clip_frame_means_strict_fp32_parity(parity: Parity, mode: str) -> None:
    frames = render(parity, mode, end_frame=CLIP, fp16_bank=False)
    assert clip1_means_rel(frames, parity.goldens, mode) <= STRICT_REL


class OneUlpBank:
    """Wraps ``HalloSampler.reference_bank``: every fp32 bank value moved by one unit in the last place (random
    sign) before the optional fp16 rounding; records the share of values whose fp16 rounding that changes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seed: int = 1) -> None:
        self.seed, self.flipped = seed, []
        self.original = HalloSampler.reference_bank
        monkeypatch.setattr(HalloSampler, "reference_bank", lambda sampler, *args: self.reference_bank(sampler, *args))

    def jitter(self, feats: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        out = {}
        for path, f in feats.items():
            up = torch.randint(0, 2, f.shape, generator=gen, dtype=torch.bool)
            out[path] = torch.where(up, torch.nextafter(f, torch.full_like(f, np.inf)),
                                    torch.nextafter(f, torch.full_like(f, -np.inf)))
            self.flipped.append(float((out[path].half() != f.half()).double().mean()))
        return out

    def reference_bank(self, sampler, reference, motion_latents, frames, cfg, faithful, fp16_bank=False):
        bank, tokens = self.original(sampler, reference, motion_latents, frames, cfg, faithful, False)
        gen = torch.Generator().manual_seed(self.seed)
        bank = ReferenceBank(self.jitter(bank.reference, gen), self.jitter(bank.motion, gen), bank.row_source)
        return (bank.rounded(torch.float16) if fp16_bank else bank), tokens


def test_fp16_bank_rounding_flips_alone_exceed_the_strict_bound(parity: Parity,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the unmodified original (bank rounded to fp16) is matched to 2.4e-3, not to STRICT_REL, in one call."""
    exact = {rounded: first_call(parity, fp16_bank=rounded) for rounded in (False, True)}
    jittered = OneUlpBank(monkeypatch)
    in_fp32 = rel_l2(first_call(parity, fp16_bank=False), exact[False])
    rounded = []
    for seed in FLIP_SEEDS:
        jittered.seed = seed
        rounded.append(rel_l2(first_call(parity, fp16_bank=True), exact[True]))
    report = {"bank in fp32": in_fp32, "bank rounded to fp16": rounded, "flipped": max(jittered.flipped)}
    assert in_fp32 <= STRICT_REL, report  # a last-bit difference in fp32 stays within the strict bound ...
    assert np.mean(jittered.flipped) < 1e-3, report  # ... it flips a few of the fp16-rounded values ...
    assert min(rounded) > STRICT_REL and max(rounded) >= FLIP_MOVES, report  # ... which lands far outside it


@pytest.mark.parametrize("mode", ["hallo", "hallo2"])
def test_render_matches_original(parity: Parity, mode: str) -> None:
    fp32_bank = render(parity, mode, fp16_bank=False)
    default = render(parity, mode)  # faithful fp32: the bank rounded to fp16 as in the unmodified original
    h, w = parity.inputs.size
    assert tuple(default.shape) == (parity.inputs.num_frames, h, w, 3)  # trimmed to the true frame count
    report = {}
    for clip in (0, 1):
        report[f"clip {clip + 1}"] = tight = frame_errors(fp32_bank, parity.goldens, mode, clip)
        report[f"clip {clip + 1}, fp16 bank"] = loose = frame_errors(default, parity.goldens, f"{mode}_fp16bank",
                                                                     clip)
        assert tight.within(TIGHT[clip]) and loose.within(LOOSE[clip]), report


# -- guards: plausible wiring errors fail the checks above by a wide margin ------------------------------------
def _permuted_weights(p: Parity) -> dict[str, float]:
    pose, face, lip = p.inputs.motion_scale
    return {"pose_weight": pose, "face_weight": lip, "lip_weight": face}


@pytest.mark.parametrize("error", ["face_lip_masks_swapped", "face_lip_weights_swapped", "batch_quirks_dropped",
                                   "audio_one_frame_late"])
def test_guard_single_call(parity: Parity, error: str) -> None:
    if error == "face_lip_masks_swapped":
        v = first_call(parity, make_parity_reference(parity.vae, parity.inputs, swap_face_lip=True))
    elif error == "face_lip_weights_swapped":
        v = first_call(parity, **_permuted_weights(parity))
    elif error == "batch_quirks_dropped":
        v = first_call(parity, faithful=False)
    else:  # the +-2 audio window centred one frame late
        v = first_call(parity, features=torch.roll(parity.features, shifts=1, dims=0))
    assert max_abs(v, parity.goldens["first_call_v"]) > GUARD_FACTOR * TOL_V
    assert rel_l2(v, parity.goldens["first_call_v"]) > GUARD_FACTOR * STRICT_REL


def test_guard_render_motion_frames_not_chained(parity: Parity) -> None:
    """Clip 2 conditioned on the reference again instead of the last two frames of clip 1."""
    sampler, settings = parity.sampler("hallo"), parity.settings(fp16_bank=False)
    first = sampler.generate(parity.reference, parity.features, parity.inputs.num_frames, settings, end_frame=CLIP)
    stale = MotionState(frames=parity.reference.pixels[None].repeat(2, 1, 1, 1), next_frame=CLIP, seed=settings.seed)
    second = sampler.generate(parity.reference, parity.features, parity.inputs.num_frames, settings,
                              start_frame=CLIP, motion=stale)
    frames = torch.cat([first.frames, second.frames])
    assert frame_errors(frames, parity.goldens, "hallo", 0).within(TIGHT[0])  # clip 1 is still right
    assert frame_errors(frames, parity.goldens, "hallo", 1).beyond(TIGHT[1], GUARD_FACTOR)
    assert frame_errors(frames, parity.goldens, "hallo_fp16bank", 1).beyond(LOOSE[1], LOOSE_GUARD)


@pytest.mark.parametrize("mode", ["hallo", "hallo2"])
def test_guard_render_face_lip_weights_swapped(parity: Parity, mode: str) -> None:
    frames = render(parity, mode, end_frame=CLIP, **_permuted_weights(parity))
    assert frame_errors(frames, parity.goldens, mode, 0).beyond(TIGHT[0], GUARD_FACTOR)
    assert clip1_means_rel(frames, parity.goldens, mode) > GUARD_FACTOR * STRICT_REL
    assert frame_errors(frames, parity.goldens, f"{mode}_fp16bank", 0).beyond(LOOSE[0], LOOSE_GUARD)


def test_guard_hallo2_without_motion_pixel_drop(parity: Parity) -> None:
    frames = render(parity, "hallo2", end_frame=CLIP, motion_frame_drop=0.0)
    assert frame_errors(frames, parity.goldens, "hallo2", 0).beyond(TIGHT[0], GUARD_FACTOR)
    assert clip1_means_rel(frames, parity.goldens, "hallo2") > GUARD_FACTOR * STRICT_REL
    assert frame_errors(frames, parity.goldens, "hallo2_fp16bank", 0).beyond(LOOSE[0], LOOSE_GUARD)
