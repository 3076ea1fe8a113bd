"""Many jobs: one model load (``hallo-batch``) against N separate ``hallo-render`` calls, 1 against 2 Ray
workers, and jobs per hour on 1, 8 and 64 GPUs on paper. One JSON line per measurement.

    python bench/bench_batch.py                          # tiny models, 64², 4 jobs of 0.4 s speech, 2 steps
    python bench/bench_batch.py --full --jobs 3 --dtype bf16 --modes separate,batch   # full size, ~5 GB folder
    python bench/bench_batch.py --paper --load-s 12      # GPU throughput from the FLOP model and a load time

Every run is a fresh process, as a user would start it: ``separate`` runs ``hallo-render`` once per job (each
pays the interpreter start, the imports and the network load), ``batch`` runs ``hallo-batch`` once for all
jobs (in this process, networks loaded once), ``ray`` runs ``hallo-batch --ray --workers K`` on a local cluster
started for the run (K renderers with one CPU and one thread each). ``wall_s`` is the whole command;
``span_s`` runs from the first job's start to the last job's end (without the interpreter and cluster start).
``--paper`` prints jobs per hour for 10-s and 60-s videos per preset: the H100 time per video second at 45 %
MFU from the analytic FLOP count (bench/flops.py), plus the per-job CPU stages and the load, per worker.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("HALLO_TEST_ASSETS", REPO / "tests" / "assets"))
PORTRAITS = ("statue.jpg", "photo_woman.jpg", "painting_girl.jpg", "stylized_3d.jpg")
H100_BF16_TFLOPS = 989.0
MFU = 0.45


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}


def write_speech(dst: Path, seconds: float) -> Path:
    with wave.open(str(ASSETS / "audio" / "speech_7s_44k.wav")) as src:
        params = src.getparams()
        frames = src.readframes(int(seconds * src.getframerate()))
    with wave.open(str(dst), "wb") as out:
        out.setparams(params)
        out.writeframes(frames)
    return dst


def tiny_folder(root: Path) -> Path:
    from hallo_nodes.pipeline.paths import SHIPPED_LANDMARKER_TASK
    from hallo_nodes.testing.tiny_models import write_tiny_model_folder

    return write_tiny_model_folder(root, variants=("hallo",), landmarker_task=SHIPPED_LANDMARKER_TASK)


def full_folder(root: Path) -> Path:
    """The released layout with full-size random weights: net.pth (fp16, every key of the released file), the
    SD VAE and wav2vec2-base; the face models are the tiny stand-ins (plus the real MediaPipe landmarker)."""
    import torch
    from hallo_nodes.bench.full_size import FULL_VAE_CONFIG
    from hallo_nodes.pipeline.models.architecture import SD15_UNET_CONFIG, HalloArchitecture
    from hallo_nodes.pipeline.models.net import build_net
    from hallo_nodes.pipeline.paths import UNET_CONFIG, VAE_SUBDIR, WAV2VEC_SUBDIR
    from hallo_nodes.testing.tiny_wav2vec import write_wav2vec_folder

    tiny_folder(root)
    (root / UNET_CONFIG).write_text(json.dumps(SD15_UNET_CONFIG))
    torch.manual_seed(0)
    net = build_net(HalloArchitecture(), "meta").to(torch.float16).to_empty(device="cpu")
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5 / math.sqrt(p[0].numel())) if p.ndim >= 2 else p.fill_(0.0)
        state = net.state_dict()
    torch.save(state, root / "hallo" / "net.pth")
    del net, state
    from diffusers import AutoencoderKL

    shutil.rmtree(root / VAE_SUBDIR)
    AutoencoderKL(**FULL_VAE_CONFIG).save_pretrained(str(root / VAE_SUBDIR), safe_serialization=True)
    shutil.rmtree(root / WAV2VEC_SUBDIR)
    write_wav2vec_folder(root / WAV2VEC_SUBDIR, tiny=False)
    return root


def jobs_file(work: Path, count: int, seconds: float, folder: str) -> tuple[Path, list[dict]]:
    speech = write_speech(work / "speech.wav", seconds)
    rows = []
    for i in range(count):
        portrait = work / PORTRAITS[i % len(PORTRAITS)]
        if not portrait.exists():
            shutil.copyfile(ASSETS / "portraits" / portrait.name, portrait)
        rows.append({"image": portrait.name, "audio": speech.name, "out": f"{folder}/job{i + 1}.mp4", "seed": i})
    path = work / f"{folder}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def timed(cmd: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env or os.environ)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return time.perf_counter() - started


def span(results: Path) -> float:
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    starts = [r["started_at"] for r in rows]
    ends = [r["started_at"] + r["seconds_total"] for r in rows]
    return max(ends) - min(starts)


def report(mode: str, jobs: int, wall: float, extra: dict | None = None) -> dict:
    line = {"mode": mode, "jobs": jobs, "wall_s": round(wall, 2), "jobs_per_hour": round(3600 * jobs / wall, 1),
            **(extra or {}), **machine()}
    print(json.dumps(line), flush=True)
    return line


def measure(args: argparse.Namespace, work: Path, models: Path) -> None:
    options = ["--size", str(args.size), "--steps", str(args.steps), "--dtype", args.dtype, "-q"]
    modes = args.modes.split(",")
    if "separate" in modes:
        path, rows = jobs_file(work, args.jobs, args.seconds, "separate")
        started = time.perf_counter()
        for row in rows:
            timed([sys.executable, "-m", "hallo_nodes.pipeline.cli", "--image", str(work / row["image"]),
                   "--audio", str(work / row["audio"]), "--models", str(models), "--out", str(work / row["out"]),
                   "--seed", str(row["seed"]), *options])
        report("separate", len(rows), time.perf_counter() - started)
    if "batch" in modes:
        batch(work, models, args, options)
    if "ray" in modes:
        ray(work, models, args, options)


def batch(work: Path, models: Path, args: argparse.Namespace, options: list[str]) -> None:
    path, rows = jobs_file(work, args.jobs, args.seconds, "batch")
    wall = timed([sys.executable, "-m", "hallo_nodes.pipeline.batch.cli", str(path), "--models", str(models),
                  *options])
    table = [json.loads(line) for line in (work / "batch" / "results.jsonl").read_text().splitlines()]
    report("batch", len(rows), wall, {"span_s": round(span(work / "batch" / "results.jsonl"), 2),
                                      "load_s": round(sum(r["seconds_load"] for r in table), 2),
                                      "job_s_mean": round(sum(r["seconds_total"] for r in table) / len(table), 2)})


def ray(work: Path, models: Path, args: argparse.Namespace, options: list[str]) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    for workers in (1, 2):
        path, rows = jobs_file(work, args.jobs, args.seconds, f"ray{workers}")
        wall = timed([sys.executable, "-m", "hallo_nodes.pipeline.batch.cli", str(path), "--models", str(models),
                      "--ray", "--workers", str(workers), "--cpus-per-worker", "1", *options], env)
        results = work / f"ray{workers}" / "results.jsonl"
        table = [json.loads(line) for line in results.read_text().splitlines()]
        per_worker = {w: sum(r["worker"] == w for r in table) for w in sorted({r["worker"] for r in table})}
        report("ray", len(rows), wall, {"workers": workers, "span_s": round(span(results), 2),
                                        "jobs_per_hour_in_span": round(3600 * len(rows) / span(results), 1),
                                        "jobs_per_worker": sorted(per_worker.values()),
                                        "job_s_mean": round(sum(r["seconds_total"] for r in table) / len(table), 2)})


def paper(args: argparse.Namespace) -> None:
    """Jobs per hour on 1, 8 and 64 GPUs (estimates): per worker, a job takes the denoising time from the FLOP
    count at MFU plus the per-job CPU stages; the load is paid once per worker (batch) or once per job
    (separate hallo-render calls)."""
    from hallo_nodes.bench.flops import preset_table

    for row in preset_table(512):
        s_per_video_s = row["tflop_per_video_s"] / (H100_BF16_TFLOPS * MFU)
        for video_s in (10.0, 60.0):
            job = video_s * s_per_video_s + args.per_job_s + args.audio_s_per_s * video_s
            batch = 3600 / (job + args.load_s / args.jobs_per_worker)
            separate = 3600 / (job + args.load_s + args.start_s)
            print(json.dumps({"mode": "paper [est]", "preset": row["preset"], "size": 512, "video_s": video_s,
                              "gpu_s_per_job": round(job, 1), "load_s": args.load_s,
                              "jobs_per_hour": {str(g): round(g * batch) for g in (1, 8, 64)},
                              "separate_calls_jobs_per_hour_1gpu": round(separate),
                              "batch_over_separate": round(batch / separate, 2)}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--seconds", type=float, default=0.4, help="speech per job (0.4 s: one 16-frame clip)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (OMP_NUM_THREADS; 0 = torch's default); a Ray CPU worker has 1")
    p.add_argument("--full", action="store_true", help="full-size random weights (writes a ~5 GB folder)")
    p.add_argument("--modes", default="separate,batch,ray", help="which runs (comma-separated)")
    p.add_argument("--paper", action="store_true", help="only the GPU estimates")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (the model folder is reused)")
    p.add_argument("--load-s", type=float, default=12.0,
                   help="--paper: seconds to start a renderer and load the networks on a GPU")
    p.add_argument("--start-s", type=float, default=4.0, help="--paper: interpreter start and imports per call")
    p.add_argument("--per-job-s", type=float, default=1.0,
                   help="--paper: face analysis, reference encode and mp4 writing per job")
    p.add_argument("--audio-s-per-s", type=float, default=0.08, help="--paper: wav2vec2 seconds per audio second")
    p.add_argument("--jobs-per-worker", type=float, default=50.0, help="--paper: jobs each worker renders")
    args = p.parse_args()
    if args.paper:
        paper(args)
        return
    if args.threads:  # every process below (hallo-render, hallo-batch, Ray workers) computes on this many threads
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="hallo-bench-batch-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        started = time.perf_counter()
        models = work / "models"
        if not models.is_dir():
            (full_folder if args.full else tiny_folder)(models)
        print(json.dumps({"mode": "setup", "models": "full-size random" if args.full else "tiny random",
                          "size": args.size, "steps": args.steps, "dtype": args.dtype, "speech_s": args.seconds,
                          "threads": args.threads or "default",
                          "write_models_s": round(time.perf_counter() - started, 1), **machine()}), flush=True)
        measure(args, work, models)


if __name__ == "__main__":
    main()
