"""One audio path (PyAV / libswresample): resampling quality, chunking, LoadAudio's scaling, the CLI's
decoder and the nodes' AUDIO giving identical features, broken headers, rate validation."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_helpers import SPEECH_44K, SPEECH_48K, make_encoder, sine  # noqa: E402
from hallo_nodes.pipeline.audio.decode import (  # noqa: E402
    check_sample_rate,
    load_audio_file,
    resample_waveform,
    to_mono_16k,
)
from hallo_nodes.pipeline.audio.features import encode_audio  # noqa: E402

RATES = [8000, 11025, 22050, 44100, 48000, 96000, 192000]


def comfy_load_audio(path: Path) -> dict:
    """ComfyUI core's ``LoadAudio``, step by step: PyAV frames -> [C, n] (packed ones reshaped) -> int16 / 2^15."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels, rate = stream.channels, stream.codec_context.sample_rate
        pieces = []
        for frame in container.decode(streams=stream.index):
            buf = torch.from_numpy(frame.to_ndarray())
            if buf.shape[0] != channels:
                buf = buf.view(-1, channels).t()
            pieces.append(buf)
    wav = torch.cat(pieces, dim=1)
    assert wav.dtype == torch.int16
    return {"waveform": (wav.float() / (2**15))[None], "sample_rate": rate}


# -- resampling quality -------------------------------------------------------------------------
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("freq", [440.0, 1000.0, 3150.0])
def test_sine_keeps_frequency_phase_and_amplitude(rate: int, freq: float) -> None:
    x = sine(freq, rate, 2.0, amp=0.6, phase=0.3)
    y = to_mono_16k(x[None], rate)
    assert y.shape == (math.ceil(x.shape[0] * 16000 / rate),) and y.dtype == torch.float32
    t = np.arange(len(y)) / 16000.0
    ref = 0.6 * np.sin(2 * math.pi * freq * t + 0.3)
    assert np.max(np.abs(y.numpy()[1600:-1600] - ref[1600:-1600])) < 1e-4  # sample-exact, no delay


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000, 192000])
def test_out_of_band_tone_is_removed_and_passband_kept(rate: int) -> None:
    stop = to_mono_16k(sine(10000.0, rate, 1.0, amp=0.8)[None], rate)[800:-800]
    assert float(stop.pow(2).mean().sqrt()) < 1e-4 * 0.8 / math.sqrt(2)  # > 80 dB down, no alias
    edge = to_mono_16k(sine(7000.0, rate, 1.0, amp=0.5)[None], rate)[800:-800]
    assert float(edge.pow(2).mean().sqrt()) == pytest.approx(0.5 / math.sqrt(2), rel=0.06)


def test_identity_at_16k_and_mean_downmix() -> None:
    x = torch.randn(2, 16000)
    assert torch.equal(to_mono_16k(x[:1], 16000), x[0])
    assert torch.equal(to_mono_16k(x, 16000), ((x[0].double() + x[1].double()) / 2).float())
    s = sine(440.0, 48000, 0.5)
    assert to_mono_16k(torch.stack([s, -s]), 48000).abs().max() == 0  # mean after resampling, per channel
    stereo = resample_waveform(torch.stack([s, 0.5 * s]), 48000)
    assert stereo.shape == (2, 8000)
    assert torch.allclose(stereo[1], 0.5 * stereo[0], atol=1e-7)  # channels are resampled independently


def test_result_does_not_depend_on_chunking(assets: Path) -> None:
    """libswresample's state flows across chunks: a file decoded frame by frame (4096 samples) and its whole
    waveform cut into 65536-sample chunks give the same bits."""
    path = assets / SPEECH_48K
    streamed, rate = load_audio_file(path, sample_rate=16000, mono=True)
    full, full_rate = load_audio_file(path)
    assert rate == 16000 and full_rate == 48000 and full.shape[0] == 2
    assert torch.equal(streamed[0], to_mono_16k(full, full_rate))
    assert streamed.shape[1] == 12 * 16000


# -- the CLI and the node give the same features --------------------------------------------------
@pytest.mark.parametrize("name", [SPEECH_44K, SPEECH_48K])
def test_cli_and_node_paths_give_identical_features(assets: Path, tmp_path: Path, name: str) -> None:
    """The CLI decodes the file straight to 16 kHz mono; the node gets LoadAudio's full-rate AUDIO dict and
    resamples it. Both must give the same features, bit for bit."""
    enc = make_encoder(tmp_path, seed=1)
    kwargs = dict(fps=25.0, clip_length=16, separate_vocals=False)
    cli_wave, cli_rate = load_audio_file(assets / name, sample_rate=16000, mono=True)  # as render_file does
    cli = encode_audio(cli_wave, cli_rate, enc, **kwargs)
    audio = comfy_load_audio(assets / name)
    assert audio["sample_rate"] in (44100, 48000) and audio["waveform"].shape[1] == 2
    node = encode_audio(audio["waveform"], audio["sample_rate"], enc, **kwargs)
    assert cli.num_frames == node.num_frames
    assert torch.equal(cli.features, node.features)


def test_loaded_file_equals_load_audio(assets: Path) -> None:
    full, rate = load_audio_file(assets / SPEECH_44K)
    audio = comfy_load_audio(assets / SPEECH_44K)
    assert rate == audio["sample_rate"] and torch.equal(full, audio["waveform"][0])


# -- integer formats and broken headers ------------------------------------------------------------
def test_unsigned_8bit_wav_is_centred(tmp_path: Path) -> None:
    """8-bit WAV is unsigned: 128 is silence, (x - 128) / 128, no DC offset of 0.5."""
    path = tmp_path / "u8.wav"
    codes = np.array([128, 255, 0, 192, 64, 128] * 2000, dtype=np.uint8)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(16000)
        w.writeframes(codes.tobytes())
    wav, rate = load_audio_file(path)
    assert rate == 16000 and wav.shape == (1, codes.size)
    expected = torch.from_numpy((codes.astype(np.float32) - 128) / 128)
    assert torch.equal(wav[0], expected)
    mono16, _ = load_audio_file(path, sample_rate=16000, mono=True)
    assert abs(float(mono16.mean())) < 0.01  # the codes average -1/768; the old offset was +0.5


def _mkv_claiming_centuries(path: Path) -> None:
    """A 1 s mkv whose Segment Duration says 1e13 ms (317 years)."""
    import av

    x = (np.sin(np.arange(16000) / 10.0) * 10000).astype(np.int16)[None]
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        for start in range(0, 16000, 1600):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, start:start + 1600]), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # EBML Duration, 8-byte float
    assert at > 0 and struct.unpack(">d", bytes(data[at + 3:at + 11]))[0] == pytest.approx(1000.0)
    data[at + 3:at + 11] = struct.pack(">d", 1e13)
    path.write_bytes(bytes(data))


def test_header_claiming_centuries_does_not_allocate_it(tmp_path: Path) -> None:
    import av

    path = tmp_path / "liar.mkv"
    _mkv_claiming_centuries(path)
    with av.open(str(path)) as container:
        assert container.duration / 1e6 > 1e9  # the header really lies
    wav, rate = load_audio_file(path)
    assert (rate, tuple(wav.shape)) == (16000, (1, 16000))
    mono, rate16 = load_audio_file(path, sample_rate=16000, mono=True)
    assert torch.equal(mono, wav)


def test_missing_and_non_audio_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        load_audio_file(tmp_path / "nope.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 10)
    with pytest.raises(ValueError, match=f"audio file {junk}|cannot open audio file"):
        load_audio_file(junk)


# -- sample rates ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [3999, 768001, 44100.5, "fast", None, float("nan")])
def test_bad_sample_rates(bad) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        check_sample_rate(bad)


def test_rate_error_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"2000 Hz is not supported.*4000-768000 Hz.*ffmpeg -ar 16000"):
        check_sample_rate(2000)
    assert check_sample_rate(4000.0) == 4000 and check_sample_rate(192000) == 192000
