"""Audio-encoding benchmark: seconds of compute per second of audio and peak RSS, 10 s and 10 min.

Prints one JSON line. Uses real speech from tests/assets (tiled to length) when present,
otherwise synthetic noise-modulated tones. ``--full`` uses the full-size wav2vec2-base config
with random weights (same cost as the released model); the default is the tiny test model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
from hallo_nodes.pipeline.audio.features import encode_audio
from hallo_nodes.pipeline.audio.wav2vec import load_wav2vec
from hallo_nodes.testing.tiny_wav2vec import write_wav2vec_folder

ASSET = Path(os.environ.get("HALLO_TEST_ASSETS", Path(__file__).resolve().parents[1] / "tests" / "assets"))


def _speech(seconds: float) -> tuple[torch.Tensor, int]:
    path = ASSET / "audio" / "speech_12s_48k.wav"
    if path.is_file():
        with wave.open(str(path), "rb") as w:
            rate, ch = w.getframerate(), w.getnchannels()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, ch).T
        base = torch.from_numpy(data.astype(np.float32) / 32768.0)
    else:
        rate = 48000
        t = torch.arange(rate * 12) / rate
        base = (torch.sin(2 * torch.pi * 220 * t) * torch.rand(1).item() * torch.sin(t)).repeat(2, 1)
    n = int(seconds * rate)
    reps = -(-n // base.shape[1])
    return base.repeat(1, reps)[:, :n].contiguous(), rate


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if platform.system() != "Darwin" else kb / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="full-size wav2vec2-base config (random weights)")
    ap.add_argument("--lengths", default="10,600", help="comma-separated audio lengths in seconds")
    ap.add_argument("--max-window", type=float, default=600.0, help="max_window_seconds (encode_audio default: 600)")
    args = ap.parse_args()
    results: dict[str, object] = {
        "model": "wav2vec2-base (random weights)" if args.full else "tiny wav2vec2 (random weights)",
        "threads": torch.get_num_threads(),
        "max_window_seconds": args.max_window,
    }
    with tempfile.TemporaryDirectory() as tmp:
        write_wav2vec_folder(Path(tmp) / "wav2vec" / "wav2vec2-base-960h", tiny=not args.full)
        enc = load_wav2vec(tmp)
        warm, warm_rate = _speech(2.0)
        encode_audio(warm, warm_rate, enc)  # first-call kernel/filter set-up
        results["rss_after_load_mb"] = round(_peak_rss_mb(), 1)
        for seconds in (float(s) for s in args.lengths.split(",")):
            wav, rate = _speech(seconds)
            t0 = time.perf_counter()
            out = encode_audio(wav, rate, enc, max_window_seconds=args.max_window)
            dt = time.perf_counter() - t0
            tag = f"{seconds:g}s"
            results[f"{tag}_wall_s"] = round(dt, 3)
            results[f"{tag}_s_per_audio_s"] = round(dt / seconds, 5)
            results[f"{tag}_frames"] = out.num_frames
            results[f"{tag}_peak_rss_mb"] = round(_peak_rss_mb(), 1)  # process peak so far (monotonic)
            del out, wav
    print(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
