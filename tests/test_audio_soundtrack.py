"""VideoWriter's soundtrack: read once at construction, downmixed properly, resampled to an AAC rate,
failing before the render when it cannot be used."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_helpers import SPEECH_44K, sine  # noqa: E402
from hallo_nodes.pipeline.video.writer import VideoWriter  # noqa: E402

FPS = 25.0
SIZE = 32


def frames(n: int = 25) -> torch.Tensor:
    return torch.rand(n, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(0))


def read_track(path: Path) -> tuple[np.ndarray, int, str]:
    """The mp4's audio track decoded: float32 [C, T], its rate and layout."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        data = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
        return data, int(stream.rate), stream.layout.name


def write_wav(path: Path, data: np.ndarray, rate: int) -> Path:
    """``[C, T]`` float in [-1, 1] as 16-bit PCM WAV (stdlib, no channel mask)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(data.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(data.T, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def tone_rms(track: np.ndarray, rate: int, freq: float) -> float:
    """RMS of the ``freq`` component of the middle of the track (per channel, max)."""
    mid = track[:, rate // 10 : -rate // 10].astype(np.float64)
    t = np.arange(mid.shape[1]) / rate
    basis = np.exp(-2j * math.pi * freq * t)
    return float(np.max(np.abs(mid @ basis) * math.sqrt(2) / mid.shape[1]))


def centre_only_51(rate: int = 48000, seconds: float = 1.0) -> torch.Tensor:
    """5.1 (FL FR FC LFE BL BR) with a 440 Hz 'dialogue' tone only in the centre channel."""
    wave51 = torch.zeros(6, int(rate * seconds))
    wave51[2] = sine(440.0, rate, seconds, amp=0.5)
    return wave51


# -- 14.6: channels beyond the first two are downmixed, not dropped ---------------------------------
def test_51_waveform_keeps_the_centre_channel(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    with VideoWriter(out, FPS, SIZE, SIZE, audio=(centre_only_51()[None], 48000)) as writer:
        writer.write(frames())
    track, rate, layout = read_track(out)
    assert (rate, layout) == (48000, "stereo")
    level = tone_rms(track, rate, 440.0)
    assert level == pytest.approx(0.5 / math.sqrt(2) * math.sqrt(0.5), rel=0.1)  # centre at -3 dB in L and R


def test_51_file_keeps_the_centre_channel(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "51.wav", centre_only_51().numpy(), 48000)
    out = tmp_path / "v.mp4"
    with VideoWriter(out, FPS, SIZE, SIZE, audio=src) as writer:
        writer.write(frames())
    track, rate, layout = read_track(out)
    assert layout == "stereo" and tone_rms(track, rate, 440.0) > 0.2


# -- 14.10: rates AAC cannot encode are resampled; problems surface before the render ---------------
@pytest.mark.parametrize(("rate", "aac_rate"), [(4000, 8000), (192000, 48000), (44100, 44100), (30000, 32000)])
def test_rates_aac_cannot_encode_are_resampled(tmp_path: Path, rate: int, aac_rate: int) -> None:
    mono = sine(440.0, rate, 1.0, amp=0.5)[None]
    for source in ((mono, rate), write_wav(tmp_path / f"{rate}.wav", mono.numpy(), rate)):
        out = tmp_path / "v.mp4"
        with VideoWriter(out, FPS, SIZE, SIZE, audio=source) as writer:
            writer.write(frames())
        track, got_rate, layout = read_track(out)
        assert (got_rate, layout) == (aac_rate, "mono")
        assert tone_rms(track, got_rate, 440.0) == pytest.approx(0.5 / math.sqrt(2), rel=0.1)


def test_unusable_soundtrack_fails_at_construction(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 64)
    out = tmp_path / "v.mp4"
    with pytest.raises(ValueError, match="junk.wav"):
        VideoWriter(out, FPS, SIZE, SIZE, audio=junk)
    with pytest.raises(FileNotFoundError, match="soundtrack not found"):
        VideoWriter(out, FPS, SIZE, SIZE, audio=tmp_path / "missing.wav")
    with pytest.raises(ValueError, match="no audio samples"):
        VideoWriter(out, FPS, SIZE, SIZE, audio=(torch.zeros(1, 2, 0), 48000))
    assert list(tmp_path.iterdir()) == [junk]  # nothing written


# -- 14.4: the soundtrack is read once, when the writer is made ----------------------------------------
@pytest.mark.parametrize("change", ["delete", "replace"])
def test_source_changed_mid_render_does_not_matter(tmp_path: Path, change: str) -> None:
    src = write_wav(tmp_path / "voice.wav", sine(440.0, 44100, 2.0, amp=0.5)[None].numpy(), 44100)
    out = tmp_path / "v.mp4"
    with VideoWriter(out, FPS, SIZE, SIZE, audio=src) as writer:
        writer.write(frames())
        if change == "delete":
            src.unlink()
        else:
            write_wav(src, np.zeros((1, 44100)), 44100)
        writer.write(frames())
    track, rate, _ = read_track(out)
    assert tone_rms(track, rate, 440.0) == pytest.approx(0.5 / math.sqrt(2), rel=0.1)


def test_waveform_changed_mid_render_does_not_matter(tmp_path: Path) -> None:
    wave1 = sine(440.0, 48000, 2.0, amp=0.5)[None, None].clone()
    out = tmp_path / "v.mp4"
    with VideoWriter(out, FPS, SIZE, SIZE, audio=(wave1, 48000)) as writer:
        wave1.zero_()
        writer.write(frames(50))
    track, rate, _ = read_track(out)
    assert tone_rms(track, rate, 440.0) == pytest.approx(0.5 / math.sqrt(2), rel=0.1)


def test_track_is_trimmed_to_the_video(assets: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    with VideoWriter(out, FPS, SIZE, SIZE, audio=assets / SPEECH_44K) as writer:  # 7.5 s of speech
        writer.write(frames(50))  # 2 s of video
    track, rate, layout = read_track(out)
    assert (rate, layout) == (44100, "stereo")
    assert 2 * rate <= track.shape[1] <= 2 * rate + 2 * 1024  # to within one AAC frame (plus priming)
    assert np.abs(track).max() > 0.05
