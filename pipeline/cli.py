"""``hallo-render``: a talking video from a portrait, a voice track and the released model folder."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .sampler import RenderCancelled, SamplerSettings
from .vocal_separation import SEPARATION_MODES, VocalSeparationUnavailable

logger = logging.getLogger("hallo_nodes")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hallo-render",
        description="Render a talking-portrait mp4 with Hallo. Needs the released weights: download the Hugging "
        "Face repo fudan-generative-ai/hallo into a folder and pass it with --models.",
    )
    p.add_argument("--image", type=Path, help="portrait image (square, face filling 50-70%% works best)")
    p.add_argument("--audio", type=Path, help="driving audio (wav, mp3, flac, ...)")
    p.add_argument("--models", type=Path, help="model folder laid out like fudan-generative-ai/hallo")
    p.add_argument("--out", type=Path, default=Path("hallo.mp4"), help="output mp4 (default: hallo.mp4)")
    p.add_argument("--variant", choices=("hallo", "hallo2"), default="hallo", help="checkpoint: hallo/ or hallo2/")
    p.add_argument("--size", type=int, default=512, help="output width and height (multiple of 64; default 512)")
    p.add_argument("--width", type=int, default=None, help="output width, overrides --size (multiple of 64)")
    p.add_argument("--height", type=int, default=None, help="output height, overrides --size (multiple of 64)")
    p.add_argument("--preset", choices=("faithful", "balanced", "fast"), default="faithful",
                   help="sampling recipe: faithful (original: 40 DDIM steps, CFG every step), balanced "
                   "(25 DPM-Solver++ steps, CFG on 20), fast (20 steps, CFG on 10)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's, 40 for faithful)")
    p.add_argument("--cfg", type=float, default=3.5, help="guidance scale (default 3.5)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--pose-weight", type=float, default=1.0)
    p.add_argument("--face-weight", type=float, default=1.0)
    p.add_argument("--lip-weight", type=float, default=1.0)
    p.add_argument("--face-expand-ratio", type=float, default=1.2)
    p.add_argument("--face-index", type=int, default=None, help="face to animate in a group photo (0 = largest)")
    p.add_argument("--allow-no-face", action="store_true", help="animate even when no face is detected")
    p.add_argument("--separate-vocals", nargs="?", const="on", default="auto", choices=SEPARATION_MODES,
                   help="isolate the voice before wav2vec2 as the original does: auto (default: when the optional "
                   "audio-separator package and audio_separator/Kim_Vocal_2.onnx are there), on, off")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--vae-dtype", default=None, choices=("fp32", "fp16", "bf16"),
                   help="VAE precision (default: --dtype)")
    p.add_argument("--low-vram", action="store_true",
                   help="CFG halves one after the other; ReferenceNet, VAE and wav2vec2 on the GPU only while used")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (same output)")
    p.add_argument("--compile", action="store_true", help="torch.compile the denoiser (slow first step)")
    p.add_argument("--make-tiny-models", type=Path, metavar="DIR",
                   help="write a tiny random model folder to DIR (for trying the pipeline without the weights)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


class ProgressBar:
    """A denoising-step progress bar with an ETA, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (total - done) if done else 0.0
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} steps "
                         f"{elapsed:6.1f}s elapsed, ETA {eta:6.1f}s")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    if args.make_tiny_models:
        from .tiny_models import write_tiny_model_folder

        write_tiny_model_folder(args.make_tiny_models)
        logger.info("tiny model folder written to %s (random weights: the video will be noise)", args.make_tiny_models)
        if not (args.image and args.audio):
            return 0
        args.models = args.models or args.make_tiny_models
    missing = [name for name in ("image", "audio", "models") if getattr(args, name) is None]
    if missing:
        build_parser().error("missing " + ", ".join(f"--{m}" for m in missing))

    from .presets import preset_settings
    from .render import RenderOptions, render_file

    settings = preset_settings(args.preset, SamplerSettings(
        guidance_scale=args.cfg, seed=args.seed, pose_weight=args.pose_weight, face_weight=args.face_weight,
        lip_weight=args.lip_weight, low_vram=args.low_vram))
    if args.steps is not None:
        settings.steps = args.steps
    options = RenderOptions(variant=args.variant, width=args.width or args.size,
                            height=args.height or args.size,
                            face_expand_ratio=args.face_expand_ratio, face_index=args.face_index,
                            allow_no_face=args.allow_no_face, separate_vocals=args.separate_vocals,
                            device=args.device, dtype=args.dtype, sampler=settings, vae_dtype=args.vae_dtype,
                            channels_last=args.channels_last, compile=args.compile)
    try:
        timings = render_file(args.image, args.audio, args.models, args.out, options,
                              on_step=ProgressBar(not args.quiet))
    except (FileNotFoundError, ValueError, VocalSeparationUnavailable) as exc:
        logger.error("%s", exc)
        return 2
    except (KeyboardInterrupt, RenderCancelled):
        logger.error("cancelled; no output was written")
        return 130
    per_second = timings["generate"] / max(timings["video_seconds"], 1e-9)
    logger.info("wrote %s: %.2f s of video, %.1f s generating (%.1f s per video second)",
                args.out, timings["video_seconds"], timings["generate"], per_second)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
