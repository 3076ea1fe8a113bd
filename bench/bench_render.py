"""Render benchmark: one fixed input (real portrait + real speech), prints ONE JSON line.

    python bench/bench_render.py                                   # tiny model, CPU, one clip, < 1 min
    python bench/bench_render.py --full --size 256 --steps 2 --frames 16   # full-size random weights
    python bench/bench_render.py --models /path/to/hallo --preset fast --device cuda --dtype bf16

Stages (seconds): load, audio (wav2vec2), face (analysis + reference encode), encode (motion-frame VAE
encodes), reference (ReferenceNet), denoise, decode (VAE), write (mp4). ``s_per_video_s`` is everything
but load and face (both once per portrait) divided by the video length. ``achieved_tflops`` divides the
analytic FLOP count (pipeline/flops.py) of the sampler stages by their time. ``--full`` builds the
full-size network with random weights in memory (no 5 GB file) plus full-size VAE and wav2vec2; the face
models are the tiny stand-ins (face time is not representative there).
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
from pathlib import Path

import torch
from hallo_nodes.bench import flops as flop_count
from hallo_nodes.bench.full_size import full_vae, random_full_net
from hallo_nodes.pipeline.audio.features import encode_audio
from hallo_nodes.pipeline.audio.wav2vec import Wav2VecEncoder, load_wav2vec
from hallo_nodes.pipeline.face.analysis import analyze_face
from hallo_nodes.pipeline.models.architecture import HalloArchitecture
from hallo_nodes.pipeline.models.loading import load_net, load_vae, parse_dtype
from hallo_nodes.pipeline.paths import SHIPPED_LANDMARKER_TASK
from hallo_nodes.pipeline.reference import make_reference
from hallo_nodes.pipeline.render import load_image_rgb, pick_device
from hallo_nodes.pipeline.sampling.acceleration import COMPILE_MODES, apply_speedups
from hallo_nodes.pipeline.sampling.offload import offload_to_cpu, peak_gpu_memory
from hallo_nodes.pipeline.sampling.presets import PRESETS, preset_settings
from hallo_nodes.pipeline.sampling.sampler import ClipOutput, HalloSampler, SamplerSettings
from hallo_nodes.pipeline.video.writer import VideoWriter, load_audio_file
from hallo_nodes.testing.tiny_models import tiny_architecture, write_tiny_model_folder

ASSETS = Path(os.environ.get("HALLO_TEST_ASSETS", Path(__file__).resolve().parents[1] / "tests" / "assets"))
#: The real MediaPipe landmarker the pack ships, copied into the tiny model folder (the masks need it).
LANDMARKER_TASK = SHIPPED_LANDMARKER_TASK
IMAGE = "portraits/photo_woman.jpg"
AUDIO = "audio/speech_7s_44k.wav"


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if platform.system() != "Darwin" else kb / 2**20


def full_wav2vec(device: torch.device) -> Wav2VecEncoder:
    from hallo_nodes.pipeline.audio.wav2vec import _build_model
    from hallo_nodes.testing.tiny_wav2vec import wav2vec_config

    return Wav2VecEncoder(_build_model(wav2vec_config(tiny=False)).to(device))


def _straightforward_reference_attention(attn, n: torch.Tensor, bank, path: str) -> torch.Tensor:
    """The original's way ("before" figures): every row attends to [own, tiled reference] tokens with K/V
    projected from the concatenation at every step; the uncond half is then recomputed as self-attention."""
    from hallo_nodes.pipeline.models.attention_ops import attend

    if bank is None or path not in bank.reference:
        return attend(attn, n)
    ref = bank.reference[path].to(n.dtype)
    rows = n.shape[0]
    out = attend(attn, n, context=torch.cat([n, ref.repeat(rows // ref.shape[0], 1, 1)], dim=1))
    if (bank.row_source < 0).any():
        half = rows // 2
        out[:half] = attend(attn, n[:half])
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, help="model folder (default: a tiny random one in a temp dir)")
    ap.add_argument("--full", action="store_true", help="full-size network with random weights, built in memory")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    ap.add_argument("--cfg-steps", type=int, default=None, help="override the preset's CFG steps")
    ap.add_argument("--preset", choices=tuple(PRESETS), default="faithful")
    ap.add_argument("--frames", type=int, default=None,
                    help="render only the first N frames (multiple of 16; default: 16 for the tiny model, else all)")
    ap.add_argument("--audio", default=AUDIO, help="audio file under the assets folder, or a path")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    ap.add_argument("--vae-dtype", default=None, choices=("fp32", "fp16", "bf16"), help="default: --dtype")
    ap.add_argument("--low-vram", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", nargs="?", const="default", default="off", choices=COMPILE_MODES,
                    help="torch.compile the denoiser: default (the pieces), reduce-overhead (CUDA graphs), "
                    "max-autotune-no-cudagraphs")
    ap.add_argument("--fp8", action="store_true", help="FP8 Linear layers in the denoiser (CUDA >= 8.9, torchao)")
    ap.add_argument("--decode-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--straightforward", action="store_true",
                    help="'before' figures: the original's reference attention (all rows, K/V every step)")
    ap.add_argument("--out", type=Path, default=None, help="mp4 path (default: temp file, deleted)")
    return ap.parse_args(argv)


def load_models(args: argparse.Namespace, tmp: Path, device: torch.device, dtype: torch.dtype,
                vae_dtype: torch.dtype) -> tuple:
    """(net, vae, encoder, arch, model folder, label), with the opt-in switches applied."""
    if args.models is None:
        models = write_tiny_model_folder(tmp / "models", variants=("hallo",),
                                         landmarker_task=LANDMARKER_TASK if LANDMARKER_TASK.is_file() else None)
        label = "tiny (random)"
    else:
        models, label = args.models, str(args.models)
    if args.full:
        net, vae, encoder = random_full_net(device, dtype), full_vae(device, vae_dtype), full_wav2vec(device)
        arch, label = HalloArchitecture(), "full-size (random weights)"
    else:
        net = load_net(models, "hallo", device=device, dtype=dtype)
        vae = load_vae(models, device=device, dtype=vae_dtype)
        encoder = load_wav2vec(models, device=device)
        arch = net.arch if args.models is not None else tiny_architecture()
    if args.straightforward:
        from hallo_nodes.pipeline.models.unets import DenoisingUNet

        DenoisingUNet._reference_self_attention = staticmethod(_straightforward_reference_attention)
    apply_speedups(net, vae, device, channels_last=args.channels_last, compile=args.compile, fp8=args.fp8)
    return net, vae, encoder, arch, models, label


def render_timed(sampler: HalloSampler, reference, features, settings: SamplerSettings, end: int,
                 out_path: Path, size: int, audio: tuple) -> tuple:
    """Render into ``out_path``; (sampler result, wall seconds, seconds spent writing frames)."""
    write_time = 0.0
    t0 = time.perf_counter()
    writer = VideoWriter(out_path, 25.0, size, size, audio=audio)
    try:
        def write(clip: ClipOutput) -> None:
            nonlocal write_time
            started = time.perf_counter()
            writer.write(clip.frames)
            write_time += time.perf_counter() - started

        result = sampler.generate(reference, features.features, features.num_frames, settings, end_frame=end,
                                  on_clip=write, collect=False)
        started = time.perf_counter()
    finally:
        writer.close()
    write_time += time.perf_counter() - started
    return result, time.perf_counter() - t0, write_time


def report(args: argparse.Namespace, *, label: str, device: torch.device, dtype: torch.dtype,
           vae_dtype: torch.dtype, settings: SamplerSettings, arch: HalloArchitecture, vae, end: int,
           stages: dict[str, float], generate_wall: float) -> dict:
    """The benchmark's JSON line: timings, memory, FLOPs and achieved TFLOP/s."""
    video_s = end / 25.0
    vae_cfg = dict(vae.config) if hasattr(vae, "config") else None
    fl = flop_count.render_flops(arch, args.size, args.size, end, steps=settings.steps,
                                 cfg=settings.guidance_scale > 1.0, cfg_steps=settings.cfg_steps, vae_config=vae_cfg,
                                 cache_interval=settings.cache_interval)
    ref_encode = flop_count.vae_encode_flops(args.size, args.size, vae_cfg)
    sampler_s = sum(stages[k] for k in ("encode", "reference", "denoise", "decode"))
    gpu = peak_gpu_memory(device)
    return {
        "model": label,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "dtype": str(dtype).replace("torch.", ""),
        "vae_dtype": str(vae_dtype).replace("torch.", ""),
        "size": args.size,
        "preset": args.preset,
        "solver": settings.solver,
        "steps": settings.steps,
        "cfg_steps": settings.cfg_steps,
        "low_vram": args.low_vram,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "fp8": args.fp8,
        "straightforward_reference_attention": args.straightforward,
        "decode_batch": settings.decode_batch,
        "frames": end,
        "video_seconds": round(video_s, 3),
        "s_per_video_s": round((generate_wall + stages["audio"]) / video_s, 3),
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_gpu_mb": None if gpu is None else round(gpu / 2**20, 1),
        "tflop": {k: round(v / 1e12, 4) for k, v in fl.as_dict().items() if k != "per_video_second"},
        "tflop_per_video_s": round(fl.per_video_second / 1e12, 4),
        # sampler stages only: the reference-image encode belongs to the face stage
        "achieved_tflops": round((fl.total - ref_encode) / 1e12 / max(sampler_s, 1e-9), 4),
        "denoise_tflops": round(fl.denoise / 1e12 / max(stages["denoise"], 1e-9), 4),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = parse_dtype(args.dtype, device)
    vae_dtype = parse_dtype(args.vae_dtype, device) if args.vae_dtype else dtype
    settings = preset_settings(args.preset, SamplerSettings(decode_batch=args.decode_batch, low_vram=args.low_vram))
    if args.steps is not None:
        settings.steps = args.steps
    if args.cfg_steps is not None:
        settings.cfg_steps = args.cfg_steps
    tmp = tempfile.TemporaryDirectory()
    stages: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    t0 = time.perf_counter()
    net, vae, encoder, arch, models, label = load_models(args, Path(tmp.name), device, dtype, vae_dtype)
    stages["load"] = time.perf_counter() - t0

    audio_path = Path(args.audio) if Path(args.audio).is_file() else ASSETS / args.audio
    waveform, rate = load_audio_file(audio_path)
    t0 = time.perf_counter()
    features = encode_audio(waveform, rate, encoder, device=device)
    if args.low_vram and device.type == "cuda":
        encoder.to(device="cpu")
    stages["audio"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rgb = load_image_rgb(ASSETS / IMAGE)
    size = (args.size, args.size)
    reference = make_reference(vae, rgb, analyze_face(rgb, models, output_size=size, device=str(device)), size=size)
    if args.low_vram and device.type == "cuda":
        offload_to_cpu(net.reference_unet, vae)
    stages["face"] = time.perf_counter() - t0

    frames = args.frames if args.frames is not None else (16 if args.models is None and not args.full else None)
    end = features.num_frames if frames is None else min(frames, features.num_frames)
    sampler = HalloSampler(net, vae, device=device, dtype=dtype)
    result, generate_wall, stages["write"] = render_timed(sampler, reference, features, settings, end,
                                                          args.out or Path(tmp.name) / "bench.mp4", args.size,
                                                          (waveform, rate))
    stages.update(result.timings)
    line = report(args, label=label, device=device, dtype=dtype, vae_dtype=vae_dtype, settings=settings, arch=arch,
                  vae=vae, end=end, stages=stages, generate_wall=generate_wall)
    print(json.dumps(line))
    sys.stdout.flush()
    tmp.cleanup()
    return line

if __name__ == "__main__":
    main()
