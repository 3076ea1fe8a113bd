"""``hallo-eval``: measure talking-head videos (lip sync, identity, clip seams, colour drift) and compare them."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from .cli import Parser, is_input_error, positive_int
from .errors import HalloInputError
from .paths import FACE_MODELS_SUBDIR, HF_REPO, LANDMARKER_FILE

logger = logging.getLogger("hallo_nodes")

PROG = "hallo-eval"
INPUT_ERRORS = (HalloInputError, FileNotFoundError, ValueError)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Measure talking-head videos: ArcFace identity to the reference portrait (and its drift), "
        "lip sync of mouth opening against speech activity, lip motion in silence, the jump at 16-frame clip "
        "boundaries and the background colour drift (SyncNet LSE-C/LSE-D too when syncnet_v2.model is in the "
        "model folder and syncnet-python is installed). Several videos are compared side by side.",
    )
    p.add_argument("videos", type=Path, nargs="+", metavar="VIDEO", help="video file(s) to measure (any talking head)")
    p.add_argument("--reference", type=Path, required=True, metavar="IMG",
                   help="the portrait the video(s) should show (identity and colour are measured against it)")
    p.add_argument("--audio", type=Path, metavar="WAV",
                   help="the driving voice (default: each video's own sound track)")
    p.add_argument("--no-audio", action="store_true", help="skip the lip-sync measures (videos without sound)")
    p.add_argument("--models", type=Path, required=True, metavar="DIR",
                   help=f"model folder laid out like {HF_REPO} (uses {FACE_MODELS_SUBDIR}/: the face detector, "
                   f"ArcFace and {LANDMARKER_FILE}, else the copy shipped with hallo-nodes)")
    p.add_argument("--plot", type=Path, metavar="PNG",
                   help="write the curves over time to this image (default: no plot)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write the full report(s) with per-frame curves (default: the table only)")
    p.add_argument("--clip-length", type=positive_int, default=16, help="frames per generated clip (default 16)")
    p.add_argument("--clip-offset", type=int, default=0,
                   help="frame at which the first clip boundary pattern starts (default 0: boundaries at 16, 32, ...)")
    p.add_argument("--device", default="cpu", help="cpu or cuda for the face models (default cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="only the table and errors")
    return p


def _check_paths(args: argparse.Namespace) -> None:
    for video in args.videos:
        if not video.is_file():
            raise FileNotFoundError(f"VIDEO {video} not found")
    if not args.reference.is_file():
        raise FileNotFoundError(f"--reference {args.reference} not found")
    if args.audio is not None and not args.audio.is_file():
        raise FileNotFoundError(f"--audio {args.audio} not found")
    if args.audio is not None and args.no_audio:
        raise HalloInputError("--audio and --no-audio exclude each other; give one")
    if not args.models.is_dir():
        raise FileNotFoundError(f"--models {args.models} is not a folder; give the model folder that holds "
                                f"{FACE_MODELS_SUBDIR}/")
    for suffix in (args.plot, args.json):
        if suffix is not None and not suffix.parent.is_dir():
            raise FileNotFoundError(f"the folder of {suffix} does not exist")


def _audio(args: argparse.Namespace, video: Path) -> tuple[np.ndarray, int] | None:
    from .audio.decode import load_audio_file

    if args.no_audio:
        return None
    source, what = (args.audio, "--audio") if args.audio is not None else (video, "VIDEO")
    try:
        wave, rate = load_audio_file(source, mono=True)
    except ValueError as exc:
        hint = "" if args.audio is not None else "; pass the voice with --audio WAV, or --no-audio to skip lip sync"
        raise HalloInputError(f"{what}: {exc}{hint}") from exc
    return wave[0].numpy(), rate


def _names(videos: list[Path]) -> list[str]:
    stems = [v.stem for v in videos]
    return [s if stems.count(s) == 1 else str(v) for s, v in zip(stems, videos, strict=True)]


def _evaluate_all(args: argparse.Namespace) -> list:
    from .evaluation.report import evaluate
    from .evaluation.video_file import read_video
    from .face.detection import NoFaceError
    from .images import load_image_rgb

    reference = load_image_rgb(args.reference)
    reports = []
    for video, name in zip(args.videos, _names(args.videos), strict=True):
        frames, fps = read_video(video, "VIDEO")
        audio = _audio(args, video)
        try:
            reports.append(evaluate(frames, reference, fps, args.models, audio=audio, clip_length=args.clip_length,
                                    boundary_offset=args.clip_offset, name=name, device=args.device))
        except NoFaceError as exc:
            raise HalloInputError(f"--reference {args.reference}: {exc}") from exc
    return reports


def _run(args: argparse.Namespace) -> int:
    from .evaluation.plot import plot_reports
    from .evaluation.report import format_report, reports_to_dict

    _check_paths(args)
    reports = _evaluate_all(args)
    sys.stdout.write(format_report(reports) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(reports_to_dict(reports), indent=2) + "\n")
        logger.info("wrote %s", args.json)
    if args.plot is not None:
        from PIL import Image

        Image.fromarray(plot_reports(reports)).save(args.plot)
        logger.info("wrote %s", args.plot)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except INPUT_ERRORS as exc:
        if not is_input_error(exc):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"{PROG}: error: {message}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
