"""encode_audio on real speech: frame counts, padding, window, normalisation, long audio, no result cache,
bad inputs, vocal-separation messages."""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_helpers import SPEECH_44K, SPEECH_48K, hf_reference_states, loop_window, make_encoder, read_wav  # noqa: E402
from hallo_nodes.pipeline.audio import features as af  # noqa: E402
from hallo_nodes.pipeline.audio import windows  # noqa: E402
from hallo_nodes.pipeline.audio.decode import to_mono_16k  # noqa: E402
from hallo_nodes.pipeline.audio.features import (  # noqa: E402
    AudioFeatures,
    encode_audio,
    normalize_wave,
    plan_windows,
)
from hallo_nodes.pipeline.audio.separation import VocalSeparationUnavailable, check_separator  # noqa: E402


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory):
    return make_encoder(tmp_path_factory.mktemp("w2v"), seed=0)


@pytest.fixture(scope="module")
def speech(assets: Path) -> dict[str, tuple[torch.Tensor, int]]:
    return {name: read_wav(assets / name) for name in (SPEECH_44K, SPEECH_48K)}


# -- frame counts and padding -------------------------------------------------------------------
@pytest.mark.parametrize("name", [SPEECH_44K, SPEECH_48K])
@pytest.mark.parametrize("fps", [25.0, 30.0, 24.0, 12.5])
def test_frame_count_and_padding(enc, speech, name: str, fps: float) -> None:
    wav, rate = speech[name]
    assert wav.shape[0] == 2 and rate in (44100, 48000)
    seconds = wav.shape[1] / rate
    out = encode_audio(wav, rate, enc, fps=fps)
    expected = math.ceil(seconds * fps)
    assert out.num_frames == expected
    padded = math.ceil(expected / 16) * 16
    assert out.features.shape == (padded, 5, 12, 32)
    assert out.num_padded_frames % 16 == 0 and out.num_clips == padded // 16
    assert out.fps == fps and out.clip_length == 16
    assert out.duration_s == pytest.approx(seconds)
    assert torch.isfinite(out.features).all() and out.features.dtype == torch.float32
    assert out.features.device.type == "cpu"


def test_known_counts(enc, speech) -> None:
    a = encode_audio(*speech[SPEECH_44K], enc)  # 7.5 s
    b = encode_audio(*speech[SPEECH_48K], enc)  # 12 s
    assert (a.num_frames, a.num_padded_frames) == (188, 192)
    assert (b.num_frames, b.num_padded_frames) == (300, 304)
    c = encode_audio(*speech[SPEECH_48K], enc, clip_length=12)
    assert (c.num_frames, c.num_padded_frames) == (300, 300)  # already a multiple: no padding


@pytest.mark.parametrize("name", [SPEECH_44K, SPEECH_48K])
def test_matches_hand_built_hallo_reference(enc, speech, name: str) -> None:
    """Independent re-computation of Hallo's audio path with transformers' own pieces:
    HF Wav2Vec2FeatureExtractor normalisation, zero padding of the *normalised* wave by
    (16 - n % 16) * 640 samples, official model forward with numpy interpolation, loop window."""
    from transformers import Wav2Vec2FeatureExtractor

    wav, rate = speech[name]
    wave16 = to_mono_16k(wav, rate)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    normed = torch.from_numpy(np.asarray(fe(wave16.numpy(), sampling_rate=16000).input_values[0], dtype=np.float32))
    assert torch.allclose(normed, normalize_wave(wave16), atol=1e-4)
    seq = math.ceil(len(normed) / 16000 * 25)
    pad = (16 - seq % 16) * 640
    normed = torch.nn.functional.pad(normed, (0, pad))
    seq = seq + (16 - seq % 16)
    ref = loop_window(hf_reference_states(enc.model, normed, seq))
    out = encode_audio(wav, rate, enc)
    assert out.features.shape == ref.shape
    assert torch.allclose(out.features, ref, atol=5e-4, rtol=1e-3), (out.features - ref).abs().max()


def test_window_is_edge_clamped(enc, speech) -> None:
    out = encode_audio(*speech[SPEECH_44K], enc)
    states = out.frame_states
    n = states.shape[0]
    ref = torch.empty(n, 5, *states.shape[1:])
    for i in range(n):
        for j, off in enumerate(range(-2, 3)):
            ref[i, j] = states[min(max(i + off, 0), n - 1)]
    assert torch.equal(out.features, ref)
    assert torch.equal(out.features[0, 0], states[0]) and torch.equal(out.features[0, 1], states[0])
    assert torch.equal(out.features[-1, 4], states[-1]) and torch.equal(out.features[-1, 3], states[-1])
    assert torch.equal(out.features[5, 0], states[3]) and torch.equal(out.features[5, 4], states[7])
    # consecutive frames really differ (the window is not a trivial copy)
    assert not torch.allclose(states[10], states[11])
    assert out.clip(1).shape == (16, 5, 12, 32) and out.clip(1).is_contiguous()
    assert torch.equal(out.clip(1), out.features[16:32])


def test_stereo_downmix_and_batch(enc, speech, caplog: pytest.LogCaptureFixture) -> None:
    wav, rate = speech[SPEECH_48K]
    stereo = encode_audio(wav, rate, enc)
    mono = encode_audio(wav.mean(0, keepdim=True), rate, enc)
    assert torch.allclose(stereo.features, mono.features, atol=1e-5)
    left = encode_audio(wav[:1], rate, enc)
    assert not torch.allclose(left.features, stereo.features, atol=1e-3)
    with caplog.at_level(logging.WARNING):
        batched = encode_audio(torch.stack([wav, torch.zeros_like(wav)]), rate, enc)
    assert "only the first one is used" in caplog.text
    assert torch.allclose(batched.features, stereo.features)
    flat = encode_audio(wav.mean(0), rate, enc)  # a bare [T] tensor is accepted as mono
    assert torch.allclose(flat.features, mono.features)


def test_volume_invariance_and_loudness_option(enc, speech) -> None:
    wav, rate = speech[SPEECH_44K]
    base = encode_audio(wav, rate, enc)
    quiet = encode_audio(wav * 0.05, rate, enc)
    assert torch.allclose(base.features, quiet.features, atol=1e-3)  # whole-file normalisation
    for mode in ("peak", "rms"):
        alt = encode_audio(wav * 0.05, rate, enc, loudness=mode)
        assert torch.allclose(alt.features, base.features, atol=1e-3)
    with pytest.raises(ValueError, match="loudness must be one of"):
        encode_audio(wav, rate, enc, loudness="lufs")


def test_resampled_input_rates_agree(enc, speech) -> None:
    """The same speech delivered at 16 kHz and at 48 kHz gives nearly the same features."""
    wav, rate = speech[SPEECH_48K]
    wave16 = to_mono_16k(wav, rate)[None]
    a = encode_audio(wav, rate, enc)
    b = encode_audio(wave16, 16000, enc)
    rel = (a.features - b.features).norm() / a.features.norm()
    assert rel < 1e-4


# -- Hallo2 segments ----------------------------------------------------------------------------
def test_segments_are_independent(enc, speech) -> None:
    wav, rate = speech[SPEECH_48K]  # 12 s -> 4 s segments of 100 frames
    out = encode_audio(wav, rate, enc, segment_seconds=4.0)
    assert (out.num_frames, out.num_padded_frames) == (300, 304)
    wave16 = to_mono_16k(wav, rate)
    first = enc(normalize_wave(wave16[:64000]), 100)
    assert torch.allclose(out.frame_states[:100], first, atol=1e-5)
    whole = encode_audio(wav, rate, enc)
    assert not torch.allclose(out.frame_states[:100], whole.frame_states[:100], atol=1e-2)
    last = normalize_wave(wave16[128000:])
    last = torch.nn.functional.pad(last, (0, 4 * 640))  # 100 + 100 + 100 -> pad 4 frames
    assert torch.allclose(out.frame_states[200:], enc(last, 104), atol=1e-5)


def test_hallo2_padding_rule_on_the_last_segment(enc, speech) -> None:
    """Hallo2 (``inference_long.py`` + ``AudioProcessor.preprocess(padding=True)``): the last segment is padded
    only when its *own* frame count is not a multiple of 16, by ``16 - total % 16`` frames of zeros."""
    wav, rate = speech[SPEECH_48K]
    wave16 = to_mono_16k(wav, rate)
    # (b) total 100 + 28 = 128 frames, a multiple of 16, but the last segment (28) is not: Hallo2 pads 16 more.
    out = encode_audio(wave16[None, :81900], 16000, enc, segment_seconds=4.0)
    assert (out.num_frames, out.num_padded_frames) == (128, 144)
    last = torch.nn.functional.pad(normalize_wave(wave16[64000:81900]), (0, 16 * 640))
    assert torch.allclose(out.frame_states[100:], enc(last, 44), atol=1e-5)
    # (a) total 100 + 32 = 132, the last segment (32) is a multiple: Hallo2 encodes it unpadded (and never
    # renders the partial clip); the features it does use are kept, the tail repeats the last frame.
    out = encode_audio(wave16[None, :84480], 16000, enc, segment_seconds=4.0)
    assert (out.num_frames, out.num_padded_frames) == (132, 144)
    tail = enc(normalize_wave(wave16[64000:84480]), 32)
    assert torch.allclose(out.frame_states[100:132], tail, atol=1e-5)
    assert torch.equal(out.frame_states[132:], tail[-1:].expand(12, -1, -1))


# -- long audio ---------------------------------------------------------------------------------
def test_plan_windows_cover_and_overlap() -> None:
    for n, w, o in [(304, 100, 25), (15008, 1500, 125), (101, 100, 25), (1000, 100, 33)]:
        spans = plan_windows(n, w, o)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(e - s == w for s, e in spans)
        assert all(a[1] - b[0] >= o for a, b in zip(spans[:-1], spans[1:], strict=False))
    assert plan_windows(50, 100, 25) == [(0, 50)]


def test_chunked_cnn_equals_single_pass(enc, speech) -> None:
    """Long-audio CNN in chunks with whole-file GroupNorm statistics == one pass."""
    wav, rate = speech[SPEECH_48K]
    wave = normalize_wave(to_mono_16k(wav, rate))[None]
    with torch.no_grad():
        ref = enc.cnn_features(wave)
        for chunk in (64, 97, 250):
            got = windows.cnn_chunked(enc, wave, chunk)
            assert got.shape == ref.shape
            assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4), (chunk, (got - ref).abs().max())


def test_windowed_encoder_exact_when_attention_is_local(tmp_path: Path, speech) -> None:
    """With the attention outputs zeroed, temporal context comes only from the positional conv
    (+-8 frames in the tiny model): the stitched result must then equal one pass exactly, which
    checks the frame grid, window offsets and cross-fade weights."""
    local = make_encoder(tmp_path, seed=5)
    for layer in local.model.encoder.layers:
        torch.nn.init.zeros_(layer.attention.out_proj.weight)
        torch.nn.init.zeros_(layer.attention.out_proj.bias)
    wav, rate = speech[SPEECH_48K]
    single = encode_audio(wav, rate, local)
    calls: list[tuple[int, int]] = []
    # 100-frame windows, 33-frame overlaps: the cross-fade uses frames >= 8 from any window edge.
    windowed = encode_audio(wav, rate, local, max_window_seconds=4.0, overlap_seconds=1.32,
                            progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] and len(calls) >= 4
    assert torch.allclose(windowed.features, single.features, atol=1e-4)
    # ... and a too-small overlap (cross-fade reaching into the conv's zero-padded edge) is not exact,
    # so the check above can fail.
    short = encode_audio(wav, rate, local, max_window_seconds=2.4, overlap_seconds=0.2)
    assert not torch.allclose(short.features, single.features, atol=1e-3)


def test_long_audio_is_one_exact_encoder_pass(enc, speech) -> None:
    """Past the CNN's 20-s chunk the features still equal the original's single pass over the whole file."""
    wav, rate = speech[SPEECH_48K]
    wave16 = to_mono_16k(wav, rate).repeat(3)[: 30 * 16000]  # 30 s
    out = encode_audio(wave16[None], 16000, enc)
    assert (out.num_frames, out.num_padded_frames) == (750, 752)
    padded = torch.nn.functional.pad(normalize_wave(wave16), (0, 2 * 640))
    assert torch.allclose(out.frame_states, enc(padded, 752), atol=1e-4)


def test_windowed_encoder_close_to_single_pass_at_stitches(enc, speech) -> None:
    """Full random model (global attention): windows of 4-8 s vs one pass over 12 s of speech."""
    wav, rate = speech[SPEECH_48K]
    single = encode_audio(wav, rate, enc).frame_states
    n = single.shape[0]
    prev_mean = None
    for window_s, overlap_s in ((4.0, 1.5), (8.0, 2.0)):
        out = encode_audio(wav, rate, enc, max_window_seconds=window_s, overlap_seconds=overlap_s)
        got = out.frame_states
        assert got.shape == single.shape and out.num_frames == 300
        err = ((got - single).norm(dim=-1) / single.norm(dim=-1)).mean(dim=1)  # per frame
        # every frame is recognisably itself: nearest single-pass frame is the same frame
        d = torch.cdist(got.reshape(n, -1), single.reshape(n, -1))
        assert (d.argmin(dim=1) == torch.arange(n)).float().mean() >= 0.95
        assert err.mean() < 0.2 and err.max() < 0.3
        spans = plan_windows(n, int(window_s * 25), int(overlap_s * 25))
        assert len(spans) >= 2
        for (_, end), (start, _) in zip(spans[:-1], spans[1:], strict=False):
            stitch = err[start:end]  # the overlap, where windows are cross-faded
            assert stitch.max() <= 1.5 * err.max().item()
            # no jump across the stitch beyond ordinary frame-to-frame changes of the single pass
            jumps = (got[start + 1 : end] - got[start : end - 1]).norm(dim=-1).mean(dim=1)
            ref_jumps = (single[1:] - single[:-1]).norm(dim=-1).mean(dim=1)
            assert jumps.max() <= 1.25 * ref_jumps.max()
        if prev_mean is not None:
            assert err.mean() < prev_mean  # longer windows converge towards the single pass
        prev_mean = err.mean()


@pytest.mark.slow
def test_ten_minutes_of_audio(enc, speech) -> None:
    wav, rate = speech[SPEECH_48K]
    reps = math.ceil(600 * rate / wav.shape[1])
    long = wav.repeat(1, reps)[:, : 600 * rate]
    out = encode_audio(long, rate, enc)  # time and memory: bench/bench_audio.py
    assert out.num_frames == 15000 and out.num_padded_frames == 15008
    assert torch.isfinite(out.features).all()
    # periodic input -> the features of repeated speech far from the ends repeat too (same grid)
    period = 300  # 12 s at 25 fps
    a, b = out.frame_states[3000:3100], out.frame_states[3000 + period : 3100 + period]
    assert ((a - b).norm() / a.norm()) < 0.25


# -- no result cache ----------------------------------------------------------------------------
def test_no_private_result_cache(enc, speech) -> None:
    """ComfyUI caches node outputs; encode_audio keeps no results of its own (each call encodes)."""
    wav, rate = speech[SPEECH_44K]
    runs = []
    handle = enc.model.feature_extractor.register_forward_hook(lambda *_: runs.append(1))
    try:
        first = encode_audio(wav, rate, enc)
        second = encode_audio(wav, rate, enc)
    finally:
        handle.remove()
    assert len(runs) == 2 and second is not first
    assert torch.equal(first.features, second.features)
    assert not hasattr(af, "clear_audio_cache") and not hasattr(af, "_CACHE")


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_inf_rejected(enc, bad: float) -> None:
    wav = torch.randn(2, 16000)
    wav[1, 500] = bad
    with pytest.raises(ValueError, match=r"audio contains NaN/inf samples \(1 of 32000\)"):
        encode_audio(wav, 16000, enc)


def test_silent_audio_warns_and_is_finite(enc, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        out = encode_audio(torch.zeros(2, 48000), 48000, enc)
    assert "silent" in caplog.text
    assert out.num_frames == 25 and torch.isfinite(out.features).all()


def test_too_short_audio(enc) -> None:
    with pytest.raises(ValueError, match=r"30\.0 ms long, shorter than one video frame.*at least 40\.0 ms"):
        encode_audio(torch.randn(1, 480), 16000, enc)
    one = encode_audio(torch.randn(1, 640), 16000, enc)  # exactly one frame: allowed
    assert (one.num_frames, one.num_padded_frames) == (1, 16)
    tiny = encode_audio(torch.randn(1, 1764), 44100, enc)  # 40 ms at 44.1 kHz
    assert tiny.num_frames == 1 and torch.isfinite(tiny.features).all()


@pytest.mark.parametrize(
    ("waveform", "rate", "pattern"),
    [
        (torch.randn(1, 16000), 2000, r"2000 Hz is not supported.*4000-768000"),
        (torch.randn(1, 16000), 1_000_000, r"1000000 Hz is not supported"),
        (torch.randn(1, 16000), 22050.5, r"whole number"),
        (torch.randn(1, 2, 3, 16000), 16000, r"\[C, T\] or \[B, C, T\]"),
        (torch.randn(16000, 2), 16000, r"16000 channels.*transpose it to \[C, T\]"),
        (torch.zeros(2, 0), 16000, r"audio waveform is empty"),
        (torch.zeros(0, 2, 100), 16000, r"batch is empty"),
    ],
)
def test_bad_layouts_and_rates(enc, waveform: torch.Tensor, rate, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        encode_audio(waveform, rate, enc)


def test_non_tensor_and_int_pcm(enc) -> None:
    with pytest.raises(TypeError, match="torch.Tensor"):
        encode_audio(np.zeros((1, 16000)), 16000, enc)  # type: ignore[arg-type]
    pcm = (torch.randn(1, 16000) * 3000).to(torch.int16)
    as_int = encode_audio(pcm, 16000, enc)
    as_float = encode_audio(pcm.float() / 32768, 16000, enc)
    assert torch.allclose(as_int.features, as_float.features, atol=1e-4)


def test_bad_settings(enc) -> None:
    wav = torch.randn(1, 16000)
    with pytest.raises(ValueError, match="fps"):
        encode_audio(wav, 16000, enc, fps=0)
    with pytest.raises(ValueError, match="clip_length"):
        encode_audio(wav, 16000, enc, clip_length=0)
    with pytest.raises(ValueError, match="max_window_seconds"):
        encode_audio(wav, 16000, enc, max_window_seconds=0.1)
    with pytest.raises(TypeError, match="Wav2VecEncoder"):
        encode_audio(wav, 16000, object())  # type: ignore[arg-type]


# -- vocal separation messages ------------------------------------------------------------------
def test_separation_missing_package_message(enc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "audio_separator", None)  # force ImportError even if installed
    monkeypatch.setitem(sys.modules, "audio_separator.separator", None)
    with pytest.raises(VocalSeparationUnavailable) as err:
        encode_audio(torch.randn(1, 16000), 16000, enc, separate_vocals=True, separator_model=tmp_path)
    msg = str(err.value)
    assert "pip install audio-separator" in msg
    assert str(tmp_path / "audio_separator" / "Kim_Vocal_2.onnx") in msg and "fudan-generative-ai/hallo" in msg


def test_separation_missing_model_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    fake = types.ModuleType("audio_separator")
    fake_sep = types.ModuleType("audio_separator.separator")
    fake.separator = fake_sep  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "audio_separator", fake)
    monkeypatch.setitem(sys.modules, "audio_separator.separator", fake_sep)
    with pytest.raises(VocalSeparationUnavailable) as err:
        check_separator(tmp_path / "audio_separator")
    msg = str(err.value)
    assert "Kim_Vocal_2.onnx does not exist" in msg and "pip install" not in msg
    model = tmp_path / "audio_separator" / "Kim_Vocal_2.onnx"
    model.parent.mkdir()
    model.write_bytes(b"onnx")
    assert check_separator(tmp_path) == model
    with pytest.raises(VocalSeparationUnavailable, match="no separator model path"):
        check_separator(None)


def _fake_separator_package(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """A stand-in for the optional ``audio-separator`` package with its file protocol: it reads the input
    wav and writes a "vocals" wav (the input at half gain plus a 440 Hz tone, so the features change)."""
    import types

    class Separator:
        def __init__(self, output_dir: str, output_single_stem: str, model_file_dir: str, output_format: str):
            assert output_single_stem == "vocals" and output_format == "WAV"
            self.output_dir = Path(output_dir)

        def load_model(self, model_filename: str) -> None:
            calls.append(model_filename)

        def separate(self, src: str) -> list[str]:
            from hallo_nodes.pipeline.audio.decode import load_audio_file
            from hallo_nodes.pipeline.audio.separation import _write_wav_float

            wave, rate = load_audio_file(src)
            t = torch.arange(wave.shape[1]) / rate
            vocals = 0.5 * wave + 0.3 * torch.sin(2 * math.pi * 440 * t)
            _write_wav_float(self.output_dir / "input_(Vocals).wav", vocals.numpy(), rate)
            return ["input_(Vocals).wav"]

    fake = types.ModuleType("audio_separator")
    fake_sep = types.ModuleType("audio_separator.separator")
    fake_sep.Separator = Separator  # type: ignore[attr-defined]
    fake.separator = fake_sep  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "audio_separator", fake)
    monkeypatch.setitem(sys.modules, "audio_separator.separator", fake_sep)


def test_separation_auto_falls_back_to_raw_audio_and_says_why(enc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from hallo_nodes.pipeline import notices
    from hallo_nodes.pipeline.notices import collect_notices

    monkeypatch.setitem(sys.modules, "audio_separator", None)
    monkeypatch.setitem(sys.modules, "audio_separator.separator", None)
    monkeypatch.setattr(notices, "_LOGGED", set())
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(3))
    with caplog.at_level(logging.WARNING):
        auto = encode_audio(wav, 16000, enc, separate_vocals="auto", separator_model=tmp_path)
        with collect_notices() as notes:
            encode_audio(wav, 16000, enc, separate_vocals="auto", separator_model=tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "vocal separation skipped" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not on every run
    # but shown on the node every time, in one line without paths (the log has the details)
    assert notes == ["Vocal separation is off: audio-separator is not installed (see the node's help)"]
    assert "pip install audio-separator" in warnings[0] and "Kim_Vocal_2.onnx" in warnings[0]
    off = encode_audio(wav, 16000, enc, separate_vocals="off")
    assert torch.equal(auto.features, off.features)
    with pytest.raises(VocalSeparationUnavailable):
        encode_audio(wav, 16000, enc, separate_vocals="on", separator_model=tmp_path)
    with pytest.raises(ValueError, match="separate_vocals must be one of"):
        encode_audio(wav, 16000, enc, separate_vocals="yes")


def test_separation_auto_runs_the_separator_when_it_is_there(enc, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    _fake_separator_package(monkeypatch, calls)
    model = tmp_path / "audio_separator" / "Kim_Vocal_2.onnx"
    model.parent.mkdir()
    model.write_bytes(b"onnx")
    t = torch.arange(44100 * 2) / 44100
    wav = torch.stack([torch.sin(2 * math.pi * 220 * t), torch.sin(2 * math.pi * 330 * t)]) * 0.5
    raw = encode_audio(wav, 44100, enc, separate_vocals="off")
    separated = encode_audio(wav, 44100, enc, separate_vocals="auto", separator_model=tmp_path)
    assert calls == ["Kim_Vocal_2.onnx"]
    assert separated.num_frames == raw.num_frames == 50
    assert float((separated.features - raw.features).abs().max()) > 1e-3  # the vocals stem was encoded
    again = encode_audio(wav, 44100, enc, separate_vocals=True, separator_model=tmp_path)
    assert calls == ["Kim_Vocal_2.onnx"] * 2  # "on" = "auto" here: the same separator, the same features
    assert torch.equal(again.features, separated.features)


def test_audio_features_dataclass_fields() -> None:
    names = [f for f in AudioFeatures.__dataclass_fields__]
    assert names == ["features", "num_frames", "fps", "clip_length", "duration_s"]
