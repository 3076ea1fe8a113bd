"""Band-limited resampler: frequency, amplitude, anti-aliasing, downmix, rate validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_helpers import SPEECH_44K, SPEECH_48K, read_wav, sine  # noqa: E402
from hallo_nodes.pipeline.resample import (  # noqa: E402
    check_sample_rate,
    downmix_mono,
    resample,
    to_mono_16k,
)

RATES = [8000, 11025, 22050, 44100, 48000, 96000]


def _peak_freq(x: np.ndarray, rate: int) -> float:
    win = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * win))
    k = int(np.argmax(spec))
    # parabolic interpolation of the peak bin
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-30)
    delta = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + delta) * rate / len(x)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("freq", [440.0, 1000.0, 3150.0])
def test_sine_keeps_frequency_and_amplitude(rate: int, freq: float) -> None:
    amp = 0.6
    x = sine(freq, rate, 2.0, amp=amp, phase=0.3)
    y = resample(x, rate, 16000)
    assert y.shape[0] == math.ceil(x.shape[0] * 16000 / rate)
    mid = y[1600:-1600].double().numpy()  # skip 100 ms filter edges
    assert _peak_freq(mid, 16000) == pytest.approx(freq, abs=0.5)
    rms = float(np.sqrt(np.mean(mid**2)))
    assert rms == pytest.approx(amp / math.sqrt(2), rel=2e-3)
    # sample-exact against the analytic sine on the 16 kHz grid
    t = np.arange(len(y)) / 16000.0
    ref = amp * np.sin(2 * math.pi * freq * t + 0.3)
    assert np.max(np.abs(y.numpy()[1600:-1600] - ref[1600:-1600])) < 3e-3 * amp


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000])
def test_out_of_band_tone_is_removed(rate: int) -> None:
    """A 10 kHz tone (above the 8 kHz Nyquist of 16 kHz) must not alias into the output."""
    x = sine(10000.0, rate, 1.0, amp=0.8)
    y = resample(x, rate, 16000)[800:-800]
    assert float(y.pow(2).mean().sqrt()) < 1e-3 * 0.8 / math.sqrt(2)  # > 60 dB down


@pytest.mark.parametrize("rate", [44100, 48000])
def test_passband_edge_tone_kept(rate: int) -> None:
    x = sine(7000.0, rate, 1.0, amp=0.5)
    y = resample(x, rate, 16000)[800:-800]
    assert float(y.pow(2).mean().sqrt()) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_upsampling_has_no_images() -> None:
    y = resample(sine(1000.0, 8000, 2.0), 8000, 16000)[1600:-1600].double().numpy()
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spec[freqs > 4200].sum() < 1e-6 * spec.sum()  # the 7 kHz image is gone


def test_identity_at_16k_and_dc_gain() -> None:
    x = torch.randn(16000)
    assert torch.equal(resample(x, 16000, 16000), x)
    ones = resample(torch.ones(44100), 44100, 16000)
    assert torch.allclose(ones[200:-200], torch.ones_like(ones[200:-200]), atol=1e-5)


def test_stereo_downmix() -> None:
    s = sine(440.0, 48000, 0.5)
    assert torch.allclose(downmix_mono(torch.stack([s, -s])), torch.zeros_like(s))
    a, b = torch.randn(1000), torch.randn(1000)
    assert torch.allclose(downmix_mono(torch.stack([a, b])), (a + b) / 2)
    stereo = torch.stack([s, 0.5 * s])
    assert torch.allclose(to_mono_16k(stereo, 48000), resample(0.75 * s, 48000), atol=1e-6)


@pytest.mark.parametrize("name", [SPEECH_44K, SPEECH_48K])
def test_real_speech_matches_scipy_reference(assets: Path, name: str) -> None:
    """Independent check against scipy's polyphase resampler on real speech."""
    signal = pytest.importorskip("scipy.signal")
    wav, rate = read_wav(assets / name)
    ours = to_mono_16k(wav, rate).double().numpy()
    g = math.gcd(rate, 16000)
    ref = signal.resample_poly(wav.double().mean(0).numpy(), 16000 // g, rate // g)
    n = min(len(ours), len(ref))
    assert abs(len(ours) - len(ref)) <= 1
    # The two filters differ only in their transition bands (scipy's cutoff sits at Nyquist):
    # compare the 0-6.5 kHz band, where both must be transparent.
    err = np.fft.rfft(ours[400 : n - 400] - ref[400 : n - 400])
    sig = np.fft.rfft(ref[400 : n - 400])
    band = np.fft.rfftfreq(n - 800, 1 / 16000) < 6500
    assert np.sum(np.abs(err[band]) ** 2) < 1e-4 * np.sum(np.abs(sig[band]) ** 2)  # < -40 dB


@pytest.mark.parametrize("bad", [4000, 7999, 96001, 192000, 44100.5, "fast", None, float("nan")])
def test_bad_sample_rates(bad) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        check_sample_rate(bad)


def test_rate_error_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"192000 Hz is not supported.*8000-96000 Hz"):
        check_sample_rate(192000)
