"""Helpers shared by the audio tests (not a conftest: the lead owns tests/conftest.py)."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import torch

SPEECH_44K = "audio/speech_7s_44k.wav"
SPEECH_48K = "audio/speech_12s_48k.wav"


def read_wav(path: Path) -> tuple[torch.Tensor, int]:
    """Read a 16-bit PCM WAV with the stdlib ``wave`` module -> (``[C, T]`` float32, rate)."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    assert width == 2, f"{path}: expected 16-bit PCM, got {8 * width}-bit"
    data = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).T.astype(np.float32) / 32768.0
    return torch.from_numpy(data.copy()), rate


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5, phase: float = 0.0) -> torch.Tensor:
    """A float64-accurate sine as float32 ``[T]``."""
    t = np.arange(int(round(rate * seconds)), dtype=np.float64) / rate
    return torch.from_numpy((amp * np.sin(2 * math.pi * freq * t + phase)).astype(np.float32))


def make_encoder(folder: Path, *, tiny: bool = True, seed: int = 0):
    """Write a random wav2vec2 folder in the released layout under ``folder`` and load it."""
    from hallo_nodes.pipeline.audio.wav2vec import load_wav2vec
    from hallo_nodes.testing.tiny_wav2vec import write_wav2vec_folder

    write_wav2vec_folder(folder / "wav2vec" / "wav2vec2-base-960h", tiny=tiny, seed=seed)
    return load_wav2vec(folder)


def np_interp_frames(feats: torch.Tensor, size: int) -> torch.Tensor:
    """Independent ``align_corners=True`` linear resampling of ``(1, T, C)`` along T with numpy."""
    x = feats[0].double().numpy()
    t_in = x.shape[0]
    pos = np.linspace(0.0, t_in - 1, size) if size > 1 else np.zeros(1)
    out = np.stack([np.interp(pos, np.arange(t_in), x[:, c]) for c in range(x.shape[1])], axis=1)
    return torch.from_numpy(out).to(feats.dtype)[None]


def hf_reference_states(model, wave16_normalised: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Hallo's features via the *official* transformers ``Wav2Vec2Model.forward``.

    A forward hook on ``feature_extractor`` swaps its 50 Hz output for a numpy-interpolated
    ``seq_len``-frame version, so the projection, encoder and ``hidden_states`` come from
    transformers itself. Returns ``(seq_len, L, C)``.
    """

    def hook(_module, _inputs, output):
        feats = output.transpose(1, 2)  # (1, T, C)
        return np_interp_frames(feats, seq_len).transpose(1, 2)

    handle = model.feature_extractor.register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = model(wave16_normalised[None], output_hidden_states=True)
    finally:
        handle.remove()
    # Hallo: stack(hidden_states[1:], dim=1).squeeze(0) -> (L, N, C) -> 'b s d -> s b d'
    return torch.stack(out.hidden_states[1:], dim=1)[0].permute(1, 0, 2).float()


def loop_window(states: torch.Tensor) -> torch.Tensor:
    """``process_audio_emb``-style +-2 window written as an explicit loop."""
    n = states.shape[0]
    rows = []
    for i in range(n):
        rows.append(torch.stack([states[max(min(i + j, n - 1), 0)] for j in range(-2, 3)], dim=0))
    return torch.stack(rows, dim=0)
