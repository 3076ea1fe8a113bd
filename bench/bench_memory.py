"""Peak host RSS versus audio length for a render streamed straight into an mp4 (tiny model, CPU).

    python bench/bench_memory.py --lengths 10,60,600 --size 64 --steps 1

Each length runs ``render_file`` (audio encode, face, generator with ``collect=False``, ``VideoWriter``)
in a fresh subprocess, so every peak is that render's own. The audio is the real 12 s speech looped to
length. Prints one JSON line: per length the process peak RSS (everything: audio decode, wav2vec2, mp4 mux),
the RSS sampled at every denoising step (the generator + writer loop alone), wall time, and the growth
vs the shortest length.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ASSETS = Path(os.environ.get("HALLO_TEST_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))
#: The real MediaPipe landmarker, copied into the tiny model folder when present (the masks need it).
LANDMARKER_TASK = ASSETS / "models" / "face_landmarker_v2_with_blendshapes.task"
SPEECH = ASSETS / "audio" / "speech_12s_48k.wav"


def looped_wav(seconds: float, dst: Path) -> Path:
    """The real speech looped to ``seconds`` (16-bit PCM, original rate and channels)."""
    with wave.open(str(SPEECH), "rb") as w:
        params = w.getparams()
        data = w.readframes(w.getnframes())
    frame_bytes = params.sampwidth * params.nchannels
    need = int(seconds * params.framerate) * frame_bytes
    with wave.open(str(dst), "wb") as out:
        out.setparams(params)
        written = 0
        while written < need:
            chunk = data[: need - written]
            out.writeframes(chunk)
            written += len(chunk)
    return dst


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(args: argparse.Namespace) -> None:
    import torch
    from hallo_nodes.pipeline.render import RenderOptions, render_file
    from hallo_nodes.pipeline.sampler import SamplerSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    options = RenderOptions(width=args.size, height=args.size, device="cpu", dtype="fp32",
                            sampler=SamplerSettings(steps=args.steps))
    during: list[float] = []

    def sample(done: int, total: int) -> None:  # RSS at every denoising step of the generator
        during.append(current_rss_mb())

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    timings = render_file(args.image, args.audio, args.models, args.out, options, on_step=sample)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"peak_rss_mb": round(rss, 1), "wall_s": round(time.perf_counter() - started, 1),
                      "rss_first_step_mb": round(during[0], 1), "rss_max_during_generate_mb": round(max(during), 1),
                      "generator_growth_mb": round(max(during) - during[0], 1), "peak_before_render_mb": peak_before,
                      "video_seconds": round(timings["video_seconds"], 2),
                      "generate_s": round(timings["generate"], 1), "audio_s": round(timings["audio"], 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="10,60,600", help="audio lengths in seconds")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", type=Path, default=None, help="default: a tiny random model folder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--image", type=Path, default=ASSETS / "portraits" / "photo_woman.jpg")
    ap.add_argument("--audio", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        models = args.models
        if models is None:
            from hallo_nodes.pipeline.tiny_models import write_tiny_model_folder

            models = write_tiny_model_folder(
                tmp_path / "models", variants=("hallo",),
                landmarker_task=LANDMARKER_TASK if LANDMARKER_TASK.is_file() else None)
        results: dict[str, object] = {"model": str(args.models or "tiny (random)"), "size": args.size,
                                      "steps": args.steps, "threads": args.threads}
        base = None
        for seconds in (float(s) for s in args.lengths.split(",")):
            audio = looped_wav(seconds, tmp_path / f"speech_{seconds:g}.wav")
            out = tmp_path / f"out_{seconds:g}.mp4"
            cmd = [sys.executable, __file__, "--child", "--models", str(models), "--image", str(args.image),
                   "--audio", str(audio), "--out", str(out), "--size", str(args.size), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["mp4_mb"] = round(out.stat().st_size / 2**20, 2)
            base = base or (row["peak_rss_mb"], row["rss_max_during_generate_mb"])
            row["growth_vs_first_pct"] = round(100.0 * (row["peak_rss_mb"] / base[0] - 1.0), 1)
            row["generate_growth_vs_first_pct"] = round(100.0 * (row["rss_max_during_generate_mb"] / base[1] - 1.0), 1)
            results[f"{seconds:g}s"] = row
            print(json.dumps({f"{seconds:g}s": row}), file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
