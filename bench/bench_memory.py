"""Peak host RSS versus audio length, or versus photo size with paste-back, for a render streamed into an mp4.

    python bench/bench_memory.py --lengths 10,60,600 --size 64 --steps 1
    python bench/bench_memory.py --photo-mp 0.75,3,12 --size 64 --steps 1 --seconds 2

``--photo-mp``: the node path (HalloFaceCrop on the photo scaled to that many megapixels, 4:3, then
HalloRenderToVideoFile pasting every frame back into it) in a fresh subprocess per size. The peak is
reset just before the render (``/proc/self/clear_refs``), so it is the render's own: model, photo and
the paste-back, not the face detector on the big photo.

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

ASSETS = Path(os.environ.get("HALLO_TEST_ASSETS", Path(__file__).resolve().parents[1] / "tests" / "assets"))
#: The real MediaPipe landmarker the pack ships, copied into the tiny model folder (the masks need it).
LANDMARKER_TASK = (Path(__file__).resolve().parents[1] / "pipeline" / "face" / "assets"
                   / "face_landmarker_v2_with_blendshapes.task")
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
    from hallo_nodes.pipeline.sampling.sampler import SamplerSettings

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


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def photo_child(args: argparse.Namespace) -> None:
    """One paste-back render with the nodes, the photo scaled to ``args.photo_mp`` megapixels."""
    import numpy as np
    import torch
    from PIL import Image

    os.environ["HALLO_MODEL_PATH"] = str(args.models)
    os.environ["HALLO_OUTPUT_DIR"] = str(args.out)
    from hallo_nodes.nodes import NODE_CLASS_MAPPINGS as N
    from hallo_nodes.pipeline.video.writer import load_audio_file

    if args.threads:
        torch.set_num_threads(args.threads)
    (model,) = N["HalloModelLoader"]().load("hallo/net.pth", "fp32")
    width = int(round((float(args.photo_mp) * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    with Image.open(args.image) as img:
        photo = torch.from_numpy(np.asarray(img.convert("RGB").resize((width, height), Image.BICUBIC),
                                            np.float32) / 255.0)[None]
    crop, box = N["HalloFaceCrop"]().crop(model, photo, size=args.size)
    face = N["HalloFaceAnalysis"]().analyze(model, crop, args.size, args.size)["result"][0]
    reference = N["HalloReference"]().prepare(model, crop, face)
    reference = (reference["result"] if isinstance(reference, dict) else reference)[0]  # older nodes: a tuple
    wave, rate = load_audio_file(args.audio)
    audio = {"waveform": wave[None], "sample_rate": rate}
    features = N["HalloAudioEncode"]().encode(model, audio, 25.0, "off")["result"][0]
    before = current_rss_mb()
    reset = reset_peak_rss()
    started = time.perf_counter()
    out = N["HalloRenderToVideoFile"]().render(model, reference, features, audio, steps=args.steps,
                                              filename_prefix="bench", original=photo, crop=box)
    peak = status_mb("VmHWM")
    print(json.dumps({"photo": f"{width}x{height}", "megapixels": round(width * height / 1e6, 2),
                      "crop_side": box.side, "frames": out["result"][0], "rss_before_render_mb": round(before, 1),
                      "peak_rss_render_mb": round(peak, 1) if reset else None,
                      "render_growth_mb": round(peak - before, 1) if reset else None,
                      "photo_float32_mb": round(width * height * 12 / 2**20, 1),
                      "render_s": round(time.perf_counter() - started, 1)}))


def photo_sweep(args: argparse.Namespace, models: Path, tmp_path: Path) -> dict:
    """Paste-back renders at each ``--photo-mp`` size, one subprocess each."""
    results: dict[str, object] = {"model": str(args.models or "tiny (random)"), "size": args.size,
                                  "steps": args.steps, "threads": args.threads, "seconds": args.seconds}
    audio = looped_wav(args.seconds, tmp_path / "speech.wav")
    for mp in (float(s) for s in args.photo_mp.split(",")):
        out = tmp_path / f"out_{mp:g}"
        cmd = [sys.executable, __file__, "--child", "--photo-mp", str(mp), "--models", str(models), "--image",
               str(args.image), "--audio", str(audio), "--out", str(out), "--size", str(args.size),
               "--steps", str(args.steps), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"the {mp:g} MP render failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        results[f"{mp:g}MP"] = row
        print(json.dumps({f"{mp:g}MP": row}), file=sys.stderr, flush=True)
    return results


def tiny_models(tmp_path: Path) -> Path:
    """A tiny random model folder, with the real MediaPipe landmarker when the assets have it."""
    from hallo_nodes.testing.tiny_models import write_tiny_model_folder

    return write_tiny_model_folder(tmp_path / "models", variants=("hallo",),
                                   landmarker_task=LANDMARKER_TASK if LANDMARKER_TASK.is_file() else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="10,60,600", help="audio lengths in seconds")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", type=Path, default=None, help="default: a tiny random model folder")
    ap.add_argument("--photo-mp", default="", help="paste-back sweep: photo sizes in megapixels, e.g. 0.75,3,12")
    ap.add_argument("--seconds", type=float, default=2.0, help="audio length of the --photo-mp renders")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--image", type=Path, default=ASSETS / "portraits" / "photo_woman.jpg")
    ap.add_argument("--audio", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.child:
        if args.photo_mp:
            photo_child(args)
        else:
            child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        models = args.models or tiny_models(tmp_path)
        if args.photo_mp:
            print(json.dumps(photo_sweep(args, models, tmp_path)))
            return
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
