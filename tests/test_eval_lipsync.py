"""Lip-sync measures on a synthetic talking face: a real portrait whose mouth is opened by warping, driven by
the speech activity of a real recording, and read back by the real MediaPipe landmarker.

Figures (photo_woman at 256 px, speech_7s_44k at 25 fps, 187 frames): in sync, offset 0 with confidence ~0.9;
audio shifted by 5 frames, offset -5 / +5 with confidence ~0.9; audio shuffled in 0.5 s chunks, confidence
0.1-0.4; mouth shut through the second half, ~0.5 less than in sync; mouth shut throughout, 0.
"""

from __future__ import annotations

import numpy as np
import pytest
from asset_paths import LANDMARKER_TASK, asset
from audio_helpers import SPEECH_44K, read_wav
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.evaluation.lipsync import lip_sync, silent_lip_motion
from hallo_nodes.pipeline.evaluation.mouth import mouth_opening
from hallo_nodes.pipeline.evaluation.speech import silent_frames, speech_activity
from hallo_nodes.testing.synthetic_talking_face import speech_envelope, talking_face_frames
from PIL import Image

FPS = 25
SIDE = 256
#: In-sync synthetic faces must score at least this; unrelated (shuffled) audio at most half the synced score.
SYNCED_CONFIDENCE = 0.7


class Clip:
    """The portrait, the speech, its activity and the in-sync synthetic video's mouth opening (built once)."""

    def __init__(self):
        self.task = LANDMARKER_TASK
        image = Image.open(asset("portraits", "photo_woman.jpg")).convert("RGB")
        self.portrait = np.array(image.resize((SIDE, SIDE), Image.LANCZOS))
        wave, self.rate = read_wav(asset(*SPEECH_44K.split("/")))
        self.wave = wave.mean(0).numpy()
        self.n = int(self.wave.size * FPS / self.rate)
        self.activity = speech_activity(self.wave, self.rate, FPS, self.n)
        self.opening = self.measure(speech_envelope(self.wave, self.rate, FPS, self.n))

    def measure(self, envelope: np.ndarray) -> np.ndarray:
        return mouth_opening(talking_face_frames(self.portrait, envelope, self.task), self.task)

    def activity_of(self, wave: np.ndarray) -> np.ndarray:
        return speech_activity(wave, self.rate, FPS, self.n)


@pytest.fixture(scope="module")
def clip() -> Clip:
    return Clip()


def delayed(wave: np.ndarray, frames: int, rate: int) -> np.ndarray:
    """``wave`` played ``frames`` video frames later (negative: earlier), same length, silence filled in."""
    k = round(abs(frames) * rate / FPS)
    pad = np.zeros(k, wave.dtype)
    return np.concatenate([pad, wave])[: wave.size] if frames > 0 else np.concatenate([wave[k:], pad])


def shuffled(wave: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """``wave`` cut into 0.5 s chunks put back in a random order in which no chunk keeps its place."""
    size = rate // 2
    count = wave.size // size
    rng = np.random.default_rng(seed)
    order = rng.permutation(count)
    while np.any(order == np.arange(count)):
        order = rng.permutation(count)
    return np.concatenate([wave[i * size:(i + 1) * size] for i in order] + [wave[count * size:]])


def test_mouth_opening_grows_with_the_warp_and_is_nan_without_a_face(clip):
    frames = talking_face_frames(clip.portrait, np.array([0.0, 0.5, 1.0]), clip.task)
    blank = np.full((1, SIDE, SIDE, 3), 128, np.uint8)
    got = mouth_opening(np.concatenate([frames, blank]), clip.task)
    assert got[0] < 0.05 < got[0] + 0.08 < got[1] < got[2] - 0.05, got
    assert np.isnan(got[3])
    np.testing.assert_allclose(mouth_opening(frames.astype(np.float32) / 255.0, clip.task), got[:3], atol=0.01)


def test_mouth_opening_does_not_depend_on_the_face_size(clip):
    frames = talking_face_frames(clip.portrait, np.array([0.0, 1.0]), clip.task)
    big = np.stack([np.array(Image.fromarray(f).resize((2 * SIDE, 2 * SIDE), Image.BICUBIC)) for f in frames])
    np.testing.assert_allclose(mouth_opening(big, clip.task), mouth_opening(frames, clip.task), rtol=0.1, atol=0.01)


def test_mouth_opening_names_a_missing_model(clip, tmp_path):
    with pytest.raises(HalloInputError, match="not found"):
        mouth_opening(np.zeros((1, 8, 8, 3), np.uint8), tmp_path / "face_landmarker.task")


def test_in_sync_audio_gives_offset_zero_and_high_confidence(clip):
    result = lip_sync(clip.opening, clip.activity)
    assert result.offset == 0
    assert result.confidence > SYNCED_CONFIDENCE, result.confidence
    assert result.offsets.tolist() == list(range(-15, 16))


@pytest.mark.parametrize("shift", [5, -5])
def test_shifted_audio_gives_the_shift_with_the_documented_sign(clip, shift):
    """Audio played 5 frames late = the mouth moves 5 frames before its sound = offset -5 (and vice versa)."""
    result = lip_sync(clip.opening, clip.activity_of(delayed(clip.wave, shift, clip.rate)))
    assert result.offset == -shift
    assert result.confidence > SYNCED_CONFIDENCE, result.confidence


def test_video_lagging_the_audio_gives_a_positive_offset(clip):
    """Frames shown 5 late (the first frame repeated in front): the mouth moves after the sound, offset +5."""
    late = np.concatenate([np.repeat(clip.opening[:1], 5), clip.opening[:-5]])
    assert lip_sync(late, clip.activity).offset == 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_audio_gives_low_confidence(clip, seed):
    synced = lip_sync(clip.opening, clip.activity).confidence
    result = lip_sync(clip.opening, clip.activity_of(shuffled(clip.wave, clip.rate, seed)))
    assert result.confidence < synced / 2, (result.confidence, synced)


def test_confidence_is_the_peak_against_the_other_offsets():
    """A slow drift shared by both signals correlates ~1 at every offset: that is no evidence of sync."""
    ramp = np.linspace(0.0, 1.0, 200)
    result = lip_sync(ramp, ramp)
    assert result.correlations.min() > 0.8
    assert 0 <= result.confidence < 0.1
    peak = result.correlations[result.offsets == result.offset][0]
    others = result.correlations[result.offsets != result.offset]
    assert result.confidence == pytest.approx(peak - np.median(others))


def test_frames_without_a_face_are_left_out(clip):
    opening = clip.opening.copy()
    opening[40:60] = np.nan
    result = lip_sync(opening, clip.activity)
    assert result.offset == 0 and result.confidence > SYNCED_CONFIDENCE
    with pytest.raises(HalloInputError, match="frames with a face"):
        lip_sync(np.full(clip.n, np.nan), clip.activity)


def test_a_mouth_shut_during_speech_scores_worse(clip):
    synced = lip_sync(clip.opening, clip.activity).confidence
    envelope = clip.activity.copy()
    envelope[clip.n // 2:] = 0.0
    half_shut = lip_sync(clip.measure(envelope), clip.activity).confidence
    shut = lip_sync(clip.measure(np.zeros(clip.n)), clip.activity).confidence
    assert shut < 0.1 < half_shut < synced - 0.2, (shut, half_shut, synced)


def test_a_mouth_moving_during_silence_scores_worse(clip):
    silent = silent_frames(clip.activity)
    assert silent.sum() > 30  # the recording has real pauses
    envelope = clip.activity.copy()
    t = np.arange(clip.n) / FPS
    envelope[silent] = 0.3 + 0.3 * np.sin(2 * np.pi * 3.0 * t[silent])
    still = silent_lip_motion(clip.opening, clip.activity)
    moving = silent_lip_motion(clip.measure(envelope), clip.activity)
    assert still is not None and moving is not None
    assert moving > 5 * still, (moving, still)


def test_silent_lip_motion_is_none_without_a_pause(clip):
    assert silent_lip_motion(clip.opening, np.ones(clip.n)) is None


def test_speech_activity_follows_the_frame_grid():
    rate, fps = 16000, 25.0
    wave = np.zeros(rate, np.float32)
    wave[3 * 640:5 * 640] = np.sin(np.arange(2 * 640) * 0.3)  # loud during frames 3 and 4 exactly
    got = speech_activity(wave, rate, fps, 30)
    assert got.shape == (30,)
    assert got[3] == got[4] == 1.0
    assert np.all(np.delete(got, [3, 4]) == 0.0)
    assert silent_frames(got).tolist() == [False] * 5 + [True] * 25  # 3 quiet frames are too short a pause
    assert silent_frames(got, min_frames=3).tolist() == [True] * 3 + [False] * 2 + [True] * 25


def test_mismatched_lengths_name_the_fix(clip):
    with pytest.raises(HalloInputError, match="num_frames=187"):
        lip_sync(clip.opening, clip.activity[:-1])
