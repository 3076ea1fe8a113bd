"""Vocal separation with the released MDX-Net model ``audio_separator/Kim_Vocal_2.onnx``.

Hallo always runs ``audio_separator.separator.Separator(output_single_stem="vocals")`` with
``Kim_Vocal_2.onnx`` on the driving audio before wav2vec. The ``audio-separator`` package is an
optional extra, imported only when separation runs. Modes (:data:`SEPARATION_MODES`):

* ``"auto"`` (the default of the nodes and the CLI): separate as the original does when the package and
  the model file are there; otherwise continue on the raw audio and say once what is missing;
* ``"on"``: separate, or fail with an error that says which piece is missing and how to fix it;
* ``"off"``: never separate.
"""

from __future__ import annotations

import logging
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import public_name
from ..notices import notice
from ..paths import HF_REPO, SEPARATOR_FILE, SEPARATOR_SUBDIR, separator_model_file

if TYPE_CHECKING:  # torch and the decoder load when separation runs: hallo-render's parser needs only the modes
    import torch

logger = logging.getLogger(__name__)

SEPARATION_MODES = ("auto", "on", "off")


@public_name
class VocalSeparationUnavailable(RuntimeError):
    """The optional separator package or its model file is missing."""


def separation_mode(value: bool | str) -> str:
    """Normalise ``True``/``False`` or a mode name to one of :data:`SEPARATION_MODES`."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in SEPARATION_MODES:
        raise ValueError(f"separate_vocals must be one of {SEPARATION_MODES} (or True/False), got {value!r}")
    return value


def resolve_separation(value: bool | str, model_path: Path | str | None) -> Path | None:
    """The separator model file to use, or None to encode the raw audio.

    ``"on"`` raises :class:`VocalSeparationUnavailable` when the package or the file is missing; ``"auto"``
    logs that once per missing piece and returns None.
    """
    mode = separation_mode(value)
    if mode == "off":
        return None
    if mode == "on":
        return check_separator(model_path)
    model_file, problems = _missing_pieces(model_path)
    if not problems:
        return model_file
    reason = "; ".join(problems)
    notice(logger, f"vocal separation skipped (separate_vocals='auto'): {reason}. The original Hallo isolates the "
                   "voice before wav2vec2, so music or noise in the track changes the lip motion; set 'off' to "
                   "silence this message.", once=True, short=_short_reason(problems))
    return None


def _short_reason(problems: list[str]) -> str:
    """The notice a node shows: the first thing missing, in one or two lines, without paths (the log and the
    node's help page have the rest)."""
    package = any("audio-separator" in p for p in problems)
    missing = "audio-separator is not installed" if package else f"{SEPARATOR_FILE} is missing"
    return f"Vocal separation is off: {missing} (see the node's help)"


def _missing_pieces(model_path: Path | str | None) -> tuple[Path | None, list[str]]:
    """The model file path and what keeps separation from running (empty when it can run)."""
    problems: list[str] = []
    model_file = separator_model_file(model_path) if model_path is not None else None
    try:
        import audio_separator.separator  # noqa: F401
    except ImportError:
        problems.append(
            "the optional package 'audio-separator' is not installed (pip install audio-separator; "
            "add [gpu] for CUDA: pip install 'audio-separator[gpu]')"
        )
    if model_file is None:
        problems.append(
            f"no separator model path was given (expected <models>/hallo/{SEPARATOR_SUBDIR}/"
            f"{SEPARATOR_FILE} from the Hugging Face repo '{HF_REPO}')"
        )
    elif not model_file.is_file():
        problems.append(
            f"the separator model file {model_file} does not exist (download "
            f"'{SEPARATOR_SUBDIR}/{SEPARATOR_FILE}' from the Hugging Face repo '{HF_REPO}' "
            f"and put it there)"
        )
    return model_file, problems


def check_separator(model_path: Path | str | None) -> Path:
    """Raise ``VocalSeparationUnavailable`` naming what is missing; return the model file path."""
    model_file, problems = _missing_pieces(model_path)
    if problems:
        raise VocalSeparationUnavailable(
            "vocal separation was requested but cannot run: " + "; ".join(problems)
            + ". Or turn vocal separation off."
        )
    assert model_file is not None
    return model_file


def _write_wav_float(path: Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write ``[C, T]`` float32 samples as an IEEE-float WAV (no clipping, no dependency)."""
    data = np.ascontiguousarray(waveform.T.astype("<f4"))
    channels = waveform.shape[0]
    payload = data.tobytes()
    block = 4 * channels
    header = b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 3, channels, sample_rate, sample_rate * block, block, 32)
    path.write_bytes(header + fmt + b"data" + struct.pack("<I", len(payload)) + payload)


def separate_vocals(
    waveform: torch.Tensor, sample_rate: int, model_path: Path | str | None
) -> tuple[torch.Tensor, int]:
    """Return the vocals stem ``([C, T], rate)`` of a ``[C, T]`` waveform using Kim_Vocal_2 (MDX-Net)."""
    model_file = check_separator(model_path)
    import torch
    from audio_separator.separator import Separator

    from .decode import load_audio_file

    with tempfile.TemporaryDirectory(prefix="hallo_sep_") as tmp:
        tmp_dir = Path(tmp)
        src = tmp_dir / "input.wav"
        _write_wav_float(src, waveform.detach().to("cpu", torch.float32).numpy(), int(sample_rate))
        separator = Separator(
            output_dir=str(tmp_dir),
            output_single_stem="vocals",
            model_file_dir=str(model_file.parent),
            output_format="WAV",
        )
        try:
            separator.load_model(model_filename=model_file.name)
        except TypeError:  # older releases take the name positionally
            separator.load_model(model_file.name)
        outputs = separator.separate(str(src))
        if not outputs:
            raise RuntimeError(f"vocal separation with {model_file} produced no output")
        out = Path(outputs[0])
        if not out.is_absolute():
            out = tmp_dir / out
        logger.info("separated vocals with %s", model_file.name)
        return load_audio_file(out)
