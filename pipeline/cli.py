"""``hallo-render``: a talking video from a portrait, a voice track and the released model folder.

``--help``, argument errors and the cheap input checks answer before torch, diffusers, onnxruntime or MediaPipe
load: this module and what it imports at the top stay light; the rest is imported after the arguments are parsed.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .audio.separation import SEPARATION_MODES, VocalSeparationUnavailable
from .budgets import size_problem, steps_problem
from .door import check_render_inputs
from .errors import HalloInputError, raised_in_pipeline
from .paths import (
    HF_REPO,
    LANDMARKER_FILE,
    PRECISION_NAMES,
    SEPARATOR_FILE,
    SEPARATOR_SUBDIR,
    SHIPPED_LANDMARKER_TASK,
    ModelFolder,
)
from .sampling.compile_modes import COMPILE_MODES
from .sampling.hooks import RenderCancelled
from .sampling.options import SamplerOptions, check_options, preset_names, resolve_sampler
from .sampling.presets import PRESETS
from .sampling.schedules import Weight, parse_weight
from .sampling.scheduling import SOLVERS
from .sampling.settings import VIDEO_FPS, SamplerSettings
from .video.output_path import check_output_path

logger = logging.getLogger("hallo_nodes")

PROG = "hallo-render"
# torch.Generator.manual_seed takes 0 .. 2**64 - 1 (negative seeds wrap around and alias positive ones).
SEED_MAX = 2**64 - 1
# Errors that mean "this input cannot be used": reported as one line with exit status 2. Anything else is a
# bug and keeps its traceback; so does a ValueError raised outside pipeline/ (in torch, numpy, ...).
INPUT_ERRORS = (HalloInputError, FileNotFoundError, ValueError, VocalSeparationUnavailable)


def is_input_error(exc: BaseException) -> bool:
    """True for our own input errors; a plain ValueError counts only when ``pipeline/`` code raised it."""
    if not isinstance(exc, INPUT_ERRORS):
        return False
    return type(exc) is not ValueError or raised_in_pipeline(exc)


class DefaultsFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default (``(default: X)``) unless the help already says ``default X``;
    options without a value (flags) or with ``None`` (nothing given) say what happens in their own words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or not action.option_strings:
            return text
        shown = default.name if isinstance(default, Path) else default
        if f"default {shown}" in text or f"default: {shown}" in text:
            return text
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): the line names the option and the fix."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(**kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def finite_float(text: str) -> float:
    """A float option that refuses nan and inf (they would render a black or noise video silently)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give a plain number such as 1.0")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def steps_int(text: str) -> int:
    """Denoising steps: 1 .. the budget's limit (the nodes' too)."""
    value = positive_int(text)
    problem = steps_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def side_int(text: str) -> int:
    """An output side: a multiple of 64 within the budget."""
    value = positive_int(text)
    problem = size_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def index_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more (0 = the largest face)")
    return value


def seed_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text} is outside the generator's range 0 .. 2**64-1 ({SEED_MAX})")
    return value


TINY_DEMO = (
    "No weights yet? Try every stage on tiny random models (the video is noise): hallo-render --make-tiny-models "
    "hallo-tiny --image portrait.jpg --audio speech.wav --size 64 --steps 2 --out tiny.mp4 --overwrite. "
    "Run again, it reuses hallo-tiny."
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Render a talking-portrait mp4 with Hallo. Needs the released weights: download the Hugging "
        f"Face repo {HF_REPO} into a folder and pass it with --models.",
        epilog=TINY_DEMO,
    )
    p.add_argument("--image", type=Path,
                   help="portrait image (square, face filling 50-70%% works best); required to render")
    p.add_argument("--audio", type=Path, help="driving audio (wav, mp3, flac, ...); required to render")
    p.add_argument("--models", type=Path,
                   help=f"model folder laid out like {HF_REPO}; required to render, unless --make-tiny-models")
    p.add_argument("--out", type=Path, default=Path("hallo.mp4"),
                   help="output video: .mp4, .mov or .mkv (default: hallo.mp4); an existing file is refused "
                   "unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (as ffmpeg's -y)")
    p.add_argument("--variant", choices=("hallo", "hallo2"), default="hallo", help="checkpoint: hallo/ or hallo2/")
    p.add_argument("--size", type=side_int, default=512,
                   help="output width and height (multiple of 64; default 512)")
    p.add_argument("--width", type=side_int, default=None,
                   help="output width, overrides --size (multiple of 64; default: --size)")
    p.add_argument("--height", type=side_int, default=None,
                   help="output height, overrides --size (multiple of 64; default: --size)")
    p.add_argument("--face-expand-ratio", type=positive_float, default=1.2,
                   help="the face region of the masks: the detected face box enlarged by this factor (default "
                   "1.2, as the original)")
    p.add_argument("--face-index", type=index_int, default=None,
                   help="face to animate in a group photo (0 = largest; default: the largest)")
    p.add_argument("--allow-no-face", action="store_true", help="animate even when no face is detected")
    p.add_argument("--separate-vocals", nargs="?", const="on", default="auto", choices=SEPARATION_MODES,
                   help="isolate the voice before wav2vec2 as the original does: auto (when the optional "
                   f"audio-separator package and {SEPARATOR_SUBDIR}/{SEPARATOR_FILE} are there), on (also "
                   "--separate-vocals alone: fail when either is missing), off")
    _add_sampling_options(p.add_argument_group("sampling"))
    _add_device_options(p.add_argument_group("device, precision and speed"))
    p.add_argument("--make-tiny-models", type=Path, metavar="DIR",
                   help="write tiny random models in the released layout to DIR (new or empty; a DIR it wrote "
                   "before is reused) and, with --image and --audio, render with them: sets --models DIR. For "
                   "trying the pipeline without the weights: the video is noise (default: off)")
    p.add_argument("--landmarker-task", type=Path, metavar="FILE",
                   help=f"with --make-tiny-models: the MediaPipe {LANDMARKER_FILE} to copy in (default: the "
                        "copy shipped with hallo-nodes, identical to the released download's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no info messages")
    return p


def _add_sampling_options(p: argparse._ArgumentGroup) -> None:
    """Preset and recipe, CFG, seed, the three audio weights (numbers or schedules), still."""
    p.add_argument("--preset", choices=preset_names(), default="faithful",
                   help="sampling recipe: " + "; ".join(f"{k} ({v.description})" for k, v in PRESETS.items())
                   + "; custom (--solver, --steps, --cfg-steps)")
    p.add_argument("--steps", type=steps_int, default=None,
                   help="denoising steps (default: the preset's, 40 for faithful and custom); replaces the "
                   "preset's count")
    p.add_argument("--solver", choices=SOLVERS, default=None, help="with --preset custom: the solver (default ddim)")
    p.add_argument("--cfg-steps", type=steps_int, default=None,
                   help="with --preset custom: CFG on the first N steps only (default: every step)")
    p.add_argument("--cache-interval", type=positive_int, default=None,
                   help="DeepCache: run the whole UNet every N-th step and only its outer blocks in between, "
                   "reusing the deep features (default: the preset's; 1 = off, 3 for cache)")
    p.add_argument("--cfg", type=finite_float, default=3.5, help="guidance scale (default 3.5)")
    p.add_argument("--seed", type=seed_int, default=42, help="random seed, 0 .. 2**64-1 (default 42)")
    for branch, what in (("pose", "head pose (outside the face)"), ("face", "expression"), ("lip", "the lips")):
        p.add_argument(f"--{branch}-weight", default="1.0", metavar="WEIGHT",
                       help=f"strength of the audio on {what} (default 1.0): a number, or per-frame keyframes "
                       "frame:value (seconds: 2.5s:value), linear in between, e.g. '0:1.0, 50:1.6, 120:0.8'")
    p.add_argument("--still", action="store_true",
                   help="keep the head pose of the portrait (presenter videos): everything outside the face box "
                   "stays the portrait's; the face and lips still move; less natural motion")


def _add_device_options(p: argparse._ArgumentGroup) -> None:
    """Device, precision, low VRAM and the opt-in speed switches."""
    p.add_argument("--device", default="auto",
                   help="auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", choices=("auto", *PRECISION_NAMES),
                   help="precision of the weights and the computation: auto (fp16 on CUDA, fp32 "
                   "elsewhere; bf16 with --fp8)")
    p.add_argument("--vae-dtype", default=None, choices=PRECISION_NAMES,
                   help="VAE precision (default: --dtype)")
    p.add_argument("--low-vram", action="store_true",
                   help="CFG halves one after the other; ReferenceNet, VAE and wav2vec2 on the GPU only while used")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (same output)")
    p.add_argument("--compile", nargs="?", const="default", default="off", choices=COMPILE_MODES,
                   help="torch.compile the denoiser (slow first clip): off, default (what --compile alone means), "
                   "reduce-overhead (whole UNet replayed as CUDA graphs, CUDA only), max-autotune-no-cudagraphs")
    p.add_argument("--fp8", action="store_true",
                   help="FP8 matmuls in the denoiser's Linear layers (GPU with compute capability >= 8.9, bf16: "
                   "--dtype auto becomes bf16, the optional torchao package); changes the output slightly")


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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, ``kill``): unwinds like Ctrl-C so temporary files are removed."""


_termination_requested = False


def _on_sigterm(signum: int, frame: object) -> None:
    global _termination_requested
    _termination_requested = True  # a C extension may turn the exception below into another (ImportError, ...)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not interrupt the cleanup
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (main thread only; elsewhere nothing changes)."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report_error(exc: BaseException) -> int:
    """One line on stderr naming the input and the fix; exit status 2."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return 2


def _make_tiny_models(folder: Path, landmarker_task: Path | None) -> None:
    """Write the tiny folder, or reuse the one an earlier run wrote there (a folder holding anything else is
    refused)."""
    from ..testing.tiny_models import tiny_model_folder

    if landmarker_task is None:
        landmarker_task = SHIPPED_LANDMARKER_TASK
    elif not landmarker_task.is_file():
        raise HalloInputError(f"--landmarker-task {landmarker_task} is not a file; give the path of "
                              f"{LANDMARKER_FILE}")
    elif not zipfile.is_zipfile(landmarker_task):
        raise HalloInputError(f"--landmarker-task {landmarker_task} is not a complete MediaPipe model (a .task "
                              f"is a zip archive); give the path of {LANDMARKER_FILE}")
    _, reused = tiny_model_folder(folder, landmarker_task=landmarker_task)
    if not reused:
        logger.info("tiny model folder written to %s (random weights: the video will be noise)", folder)


def _check_paths_early(args: argparse.Namespace) -> None:
    """The path checks :func:`~.render.render_file` starts with, made before torch loads: an output that would
    be refused or a missing input file is reported at once."""
    check_output_path(args.out, inputs={"image": args.image, "audio": args.audio},
                      models=args.models.expanduser(), overwrite=args.overwrite)
    check_render_inputs(args.image, args.audio)  # at the door: readable regular files within the budget


def _weights(args: argparse.Namespace, fps: float) -> dict[str, Weight]:
    """--pose-weight, --face-weight, --lip-weight: numbers or keyframe schedules (seconds at ``fps``)."""
    return {f"{b}_weight": parse_weight(getattr(args, f"{b}_weight"), f"--{b}-weight", fps)
            for b in ("pose", "face", "lip")}


def _sampler_settings(args: argparse.Namespace) -> SamplerSettings:
    """The sampling options checked and resolved (no torch needed: bad values are reported at once)."""
    opts = SamplerOptions(args.preset, args.steps or 0, args.solver or "ddim", args.cfg_steps or 0,
                          args.cache_interval or 0)
    check_options(opts, lambda name: "--" + name.replace("_", "-"))
    return resolve_sampler(opts, SamplerSettings(
        guidance_scale=args.cfg, seed=args.seed, low_vram=args.low_vram, still=args.still,
        **_weights(args, VIDEO_FPS)))


def _options(args: argparse.Namespace):
    from .render import RenderOptions

    return RenderOptions(variant=args.variant, width=args.width or args.size, height=args.height or args.size,
                         face_expand_ratio=args.face_expand_ratio, face_index=args.face_index,
                         allow_no_face=args.allow_no_face, separate_vocals=args.separate_vocals,
                         device=args.device, dtype=args.dtype, sampler=_sampler_settings(args),
                         vae_dtype=args.vae_dtype, channels_last=args.channels_last, compile=args.compile,
                         fp8=args.fp8, overwrite=args.overwrite)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    tiny = args.make_tiny_models
    if tiny is not None and args.image is None and args.audio is None:
        _make_tiny_models(tiny, args.landmarker_task)
        return 0
    if tiny is not None:
        args.models = args.models or tiny
    missing = [name for name in ("image", "audio", "models") if getattr(args, name) is None]
    if missing:
        parser.error("missing " + ", ".join(f"--{m}" for m in missing))
    _sampler_settings(args)  # option errors first, then the paths, all before torch loads
    if tiny is None:
        ModelFolder.at(args.models)
    _check_paths_early(args)
    if tiny is not None:  # written (or reused) once the render's own inputs are known to be there
        _make_tiny_models(tiny, args.landmarker_task)
    from .render import render_file

    timings = render_file(args.image, args.audio, args.models, args.out, _options(args),
                          on_step=ProgressBar(not args.quiet))
    per_second = timings["generate"] / max(timings["video_seconds"], 1e-9)
    logger.info("wrote %s: %.2f s of video, %.1f s generating (%.1f s per video second)",
                args.out, timings["video_seconds"], timings["generate"], per_second)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    with sigterm_raises():
        try:
            return _run(args, parser)
        except INPUT_ERRORS as exc:
            if not is_input_error(exc):
                raise
            return report_error(exc)
        except Terminated:
            logger.error("terminated (SIGTERM); no output was written")
            return 143
        except (KeyboardInterrupt, RenderCancelled):
            logger.error("cancelled; no output was written")
            return 130
        except BaseException:
            if _termination_requested:  # SIGTERM arrived inside a library call that re-raised it as its own error
                logger.error("terminated (SIGTERM); no output was written")
                return 143
            raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
