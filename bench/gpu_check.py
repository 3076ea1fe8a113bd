"""The GPU check: the full-size network (random weights) renders one 16-frame 512² clip per configuration.

Run through ``bench/gpu_check.sh`` (which installs the carried wheels); ``--dry-run`` runs the same code on
the CPU with the tiny network at 64² and 2 steps. Prints one JSON line per configuration: preset, dtype,
options, seconds per video second, peak VRAM (allocated and reserved), achieved TFLOP/s (analytic count of
bench/flops.py), and the targets beside them; a configuration that does not fit the time budget or cannot
run here is printed as ``"skipped"`` with the reason. The face and audio stages are not part of it (a random
portrait latent, masks and audio features of the real shapes stand in for them).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch

from ..pipeline.errors import HalloInputError
from ..pipeline.models.architecture import HalloArchitecture
from ..pipeline.sampling.acceleration import apply_speedups
from ..pipeline.sampling.presets import PRESETS, preset_settings
from ..pipeline.sampling.residency import low_vram_residency
from ..pipeline.sampling.sampler import HalloReference, HalloSampler, SamplerSettings
from . import flops as flop_count
from .full_size import FULL_VAE_CONFIG, random_net, random_vae

logger = logging.getLogger(__name__)

FRAMES, FPS = 16, 25.0
TARGET_S_PER_VIDEO_S = {"faithful": 6.0, "fast": 2.5}
TARGET_PEAK_GB = {"faithful": 8.0, "low_vram": 6.0}
#: Seconds a whole-UNet compile is expected to take on an H100/H200 (budgeting only; measured and printed).
COMPILE_ESTIMATE_S = {"reduce-overhead": 150.0, "max-autotune-no-cudagraphs": 330.0}


@dataclass(frozen=True)
class Config:
    preset: str
    dtype: str
    low_vram: bool = False
    channels_last: bool = False
    compile: str = "off"
    fp8: bool = False

    @property
    def options(self) -> dict[str, object]:
        return {"low_vram": self.low_vram, "channels_last": self.channels_last, "compile": self.compile,
                "fp8": self.fp8}


@dataclass
class Env:
    device: torch.device
    size: int
    arch: HalloArchitecture
    vae_config: dict
    max_steps: int | None  # dry run: steps capped
    backend: str  # torch.compile backend ("eager" in the dry run: the wiring, not the kernels)
    deadline: float
    step_s: dict[str, float] = field(default_factory=dict)  # measured seconds per step, by dtype (budget)


def plan(presets: list[str], dtypes: list[str], skip: set[str]) -> Iterator[Config]:
    """Every configuration, most important first (the budget drops the tail)."""
    for dtype in dtypes:
        for preset in presets:
            yield Config(preset, dtype)
        yield Config("faithful", dtype, low_vram=True)
    first = dtypes[0]
    extras = [Config("faithful", first, channels_last=True), Config("faithful", first, fp8=True),
              Config("faithful", first, compile="reduce-overhead"),
              Config("faithful", first, compile="reduce-overhead", fp8=True),
              Config("fast", first, compile="max-autotune-no-cudagraphs")]
    for config in extras:
        if not (("compile" in skip and config.compile != "off") or ("fp8" in skip and config.fp8)):
            yield config


def settings_for(config: Config, env: Env) -> SamplerSettings:
    settings = preset_settings(config.preset, SamplerSettings(low_vram=config.low_vram))
    if env.max_steps is not None and settings.steps > env.max_steps:
        cfg_steps = None if settings.cfg_steps is None else min(settings.cfg_steps, env.max_steps - 1)
        settings = replace(settings, steps=env.max_steps, cfg_steps=cfg_steps)
    return settings


def stand_in_inputs(env: Env, seed: int = 0) -> tuple[HalloReference, torch.Tensor]:
    """A random portrait latent, a centred face box, its masks and random audio features (real shapes)."""
    gen = torch.Generator().manual_seed(seed)
    s = env.size
    box = torch.zeros(3, s, s)
    box[:, s // 4:3 * s // 4, s // 4:3 * s // 4] = 1.0
    levels = [(s // d) * (s // d) for d in (8, 16, 32, 64)]
    full = [torch.ones(n) for n in levels]
    face = [torch.nn.functional.interpolate(box[None, :1], size=(s // d, s // d)).flatten() for d in (8, 16, 32, 64)]
    lip = [m * 0.5 for m in face]
    reference = HalloReference(
        pixels=torch.rand(3, s, s, generator=gen) * 2 - 1, latent=torch.randn(1, 4, s // 8, s // 8, generator=gen),
        face_embedding=torch.randn(512, generator=gen) * 20, face_locator_image=box,
        full_masks=full, face_masks=face, lip_masks=lip)
    audio = torch.randn(FRAMES, 5, 12, env.arch.audio_channels, generator=gen)
    return reference, audio


def build(config: Config, env: Env) -> HalloSampler:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[config.dtype]
    net = random_net(env.arch, env.device, dtype)
    vae = random_vae(env.vae_config, env.device, dtype)
    apply_speedups(net, vae, env.device, channels_last=config.channels_last, compile=config.compile,
                   fp8=config.fp8, backend=env.backend)
    residency = low_vram_residency(net, vae, env.device, config.low_vram)
    residency.park()  # low-VRAM: the ReferenceNet and the VAE start on the CPU, as in a render
    return HalloSampler(net, vae, device=env.device, dtype=dtype, residency=residency)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def render_once(sampler: HalloSampler, settings: SamplerSettings, inputs, device: torch.device) -> tuple:
    """One 16-frame clip; (wall seconds, the sampler's stage timings)."""
    reference, audio = inputs
    _sync(device)
    started = time.perf_counter()
    result = sampler.generate(reference, audio, FRAMES, settings, collect=False)
    _sync(device)
    return time.perf_counter() - started, result.timings


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def memory_gb(device: torch.device) -> tuple[float | None, float | None]:
    if device.type != "cuda":
        return None, None
    return (round(torch.cuda.max_memory_allocated(device) / 1e9, 3),
            round(torch.cuda.max_memory_reserved(device) / 1e9, 3))


def reset_memory(device: torch.device) -> None:
    gc.collect()  # the previous configuration's networks (closures and hooks can hold cycles)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def targets(config: Config, s_per_video_s: float, peak_gb: float | None) -> dict[str, object]:
    """The issue's targets that apply to this configuration, and whether they are met."""
    out: dict[str, object] = {}
    speed = TARGET_S_PER_VIDEO_S.get(config.preset)
    if speed is not None:
        out["s_per_video_s_max"], out["meets_speed"] = speed, s_per_video_s <= speed
    memory = TARGET_PEAK_GB["low_vram"] if config.low_vram else TARGET_PEAK_GB.get(config.preset)
    if memory is not None and peak_gb is not None:
        out["peak_vram_gb_max"], out["meets_vram"] = memory, peak_gb <= memory
    return out


def estimate_s(config: Config, settings: SamplerSettings, env: Env) -> float:
    """Expected seconds for a configuration: build, warm-up and timed clip (compile runs render twice)."""
    per_step = env.step_s.get(config.dtype, max(env.step_s.values(), default=0.0))
    clip = per_step * settings.steps * (2.0 if config.low_vram else 1.0)
    return 5.0 + clip * (2 if config.compile != "off" else 1) + COMPILE_ESTIMATE_S.get(config.compile, 0.0) * (
        env.device.type == "cuda")


def run_config(config: Config, env: Env, inputs) -> dict[str, object]:
    """Build, warm up (one step) and time one clip of ``config``; the JSON line."""
    settings = settings_for(config, env)
    reset_memory(env.device)
    started = time.perf_counter()
    sampler = build(config, env)
    build_s = time.perf_counter() - started
    first_s, _ = render_once(sampler, replace(settings, steps=1, cfg_steps=None), inputs, env.device)
    if config.compile != "off":  # the compile pays at the first step of each shape: warm the others too
        first_s += render_once(sampler, settings, inputs, env.device)[0]
    reset_memory(env.device)
    wall, stages = render_once(sampler, settings, inputs, env.device)
    env.step_s.setdefault(config.dtype, wall / settings.steps)
    video_s = FRAMES / FPS
    fl = flop_count.render_flops(env.arch, env.size, env.size, FRAMES, steps=settings.steps,
                                 cfg_steps=settings.cfg_steps, vae_config=env.vae_config,
                                 cache_interval=settings.cache_interval)
    sampler_flops = fl.total - flop_count.vae_encode_flops(env.size, env.size, env.vae_config)  # no portrait encode
    allocated, reserved = memory_gb(env.device)
    line = {"kind": "run", "preset": config.preset, "dtype": config.dtype, "options": config.options,
            "size": env.size, "frames": FRAMES, "steps": settings.steps, "cfg_steps": settings.cfg_steps,
            "s_per_video_s": round(wall / video_s, 3), "clip_wall_s": round(wall, 3),
            "stages_s": {k: round(v, 3) for k, v in stages.items()}, "build_s": round(build_s, 2),
            "warmup_s": round(first_s, 2), "peak_vram_allocated_gb": allocated, "peak_vram_reserved_gb": reserved,
            "tflop": _sig(sampler_flops / 1e12), "achieved_tflops": _sig(sampler_flops / 1e12 / max(wall, 1e-9))}
    if config.compile == "reduce-overhead":  # did the graphs replay, or did inductor fall back (and why)?
        from torch._dynamo.utils import counters

        line["cudagraph_skips"] = dict(counters["inductor"]).get("cudagraph_skips", 0)
    line.update(targets(config, line["s_per_video_s"], allocated))
    del sampler
    return line


def header(env: Env, args: argparse.Namespace) -> dict[str, object]:
    """What ran where: device, versions, the budget."""
    info: dict[str, object] = {"kind": "header", "dry_run": args.dry_run, "device": str(env.device),
                               "torch": torch.__version__, "size": env.size, "frames": FRAMES,
                               "budget_s": args.budget_s, "compile_backend": env.backend,
                               "note": "random weights; face and audio stages replaced by random inputs"}
    if env.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(env.device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(env.device)))
    try:
        import torchao

        info["torchao"] = torchao.__version__
    except ImportError:
        info["torchao"] = None
    return info


def attempt(config: Config, env: Env, inputs) -> dict[str, object]:
    """One configuration; a refusal, an out-of-memory or any failure becomes its JSON line, never the end."""
    base = {"preset": config.preset, "dtype": config.dtype, "options": config.options}
    try:
        return run_config(config, env, inputs)
    except HalloInputError as exc:  # the option cannot run here: the refusal message is the reason
        return {"kind": "skipped", **base, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one bad configuration must not lose the others' figures
        logger.exception("configuration %s failed", config)
        return {"kind": "error", **base, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    finally:
        if config.compile != "off":
            torch._dynamo.reset()
        reset_memory(env.device)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def emit(line: dict[str, object]) -> None:
    print(json.dumps(line), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny network, 64², 2 steps: checks the code path")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting configurations after this")
    ap.add_argument("--skip", default="", help="comma-separated: compile, fp8 (leave those configurations out)")
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated presets (default: all)")
    ap.add_argument("--dtypes", default="bf16,fp16", help="comma-separated network precisions (default: bf16,fp16)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (the dry run defaults to 1)")
    return ap.parse_args(argv)


def make_env(args: argparse.Namespace, started: float) -> Env:
    if args.dry_run:
        from ..testing.tiny_models import TINY_VAE_CONFIG, tiny_architecture

        return Env(torch.device("cpu"), 64, tiny_architecture(), dict(TINY_VAE_CONFIG), 2, "eager",
                   started + args.budget_s)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run with --dry-run to check the code path on the CPU")
    return Env(torch.device("cuda"), 512, HalloArchitecture(), dict(FULL_VAE_CONFIG), None, "inductor",
               started + args.budget_s)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if args.threads or args.dry_run:
        torch.set_num_threads(args.threads or 1)
    started = time.perf_counter()
    env = make_env(args, started)
    lines = [header(env, args)]
    emit(lines[0])
    inputs = stand_in_inputs(env)
    skip = set(_names(args.skip))
    for config in plan(_names(args.presets), _names(args.dtypes), skip):
        expected = estimate_s(config, settings_for(config, env), env)
        if time.perf_counter() + expected > env.deadline:
            line = {"kind": "skipped", "preset": config.preset, "dtype": config.dtype, "options": config.options,
                    "reason": f"does not fit the time budget (about {expected:.0f} s needed, "
                              f"{env.deadline - time.perf_counter():.0f} s left of {args.budget_s:.0f} s)"}
        else:
            line = attempt(config, env, inputs)
        lines.append(line)
        emit(line)
    summary = {"kind": "summary", "wall_s": round(time.perf_counter() - started, 1),
               "runs": sum(1 for x in lines if x["kind"] == "run"),
               "skipped": sum(1 for x in lines if x["kind"] == "skipped"),
               "errors": sum(1 for x in lines if x["kind"] == "error")}
    lines.append(summary)
    emit(summary)
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
