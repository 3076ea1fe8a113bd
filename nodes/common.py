"""Payload types of the custom sockets and input checks shared by the nodes."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ..pipeline.audio.decode import check_waveform
from ..pipeline.errors import HalloInputError
from ..pipeline.notices import notice
from ..pipeline.paths import ModelFolder
from ..pipeline.sampling.residency import Residency

logger = logging.getLogger(__name__)

CATEGORY = "Hallo"

# Custom socket types (payloads without a core type).
HALLO_MODEL = "HALLO_MODEL"
HALLO_AUDIO = "HALLO_AUDIO"
HALLO_FACE = "HALLO_FACE"
HALLO_REFERENCE = "HALLO_REFERENCE"
HALLO_MOTION = "HALLO_MOTION"
HALLO_CROP = "HALLO_CROP"


@dataclass
class HalloModel:
    """HALLO_MODEL: the denoising net, the VAE and the wav2vec2 encoder of one model folder."""

    folder: ModelFolder
    variant: str
    checkpoint: str
    net: torch.nn.Module
    vae: torch.nn.Module
    wav2vec: Any  # pipeline.wav2vec.Wav2VecEncoder
    dtype: torch.dtype
    residency: Residency  # brings the networks to the compute device while a node uses them

    @property
    def device(self) -> torch.device:
        return self.residency.device

    @property
    def is_hallo2(self) -> bool:
        return self.variant == "hallo2"

    def __repr__(self) -> str:  # shown by debugging nodes; keep it short
        return f"HalloModel({self.checkpoint}, {self.variant}, {self.dtype}, {self.device})"


def expect(value: Any, cls: type | tuple[type, ...], node: str, name: str, socket: str) -> Any:
    """Return ``value`` if it is a ``cls``; otherwise raise a readable HalloInputError."""
    if isinstance(value, cls):
        return value
    raise HalloInputError(
        f"{node}: input '{name}' must be a {socket} (connect the matching output of a Hallo node), "
        f"got {type(value).__name__}"
    )


def check_image(image: Any, node: str, name: str = "image") -> torch.Tensor:
    """A ComfyUI IMAGE: float tensor [B,H,W,C] with C in 1..4."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 2, 3, 4):
        got = f"tensor of shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise HalloInputError(f"{node}: input '{name}' must be an IMAGE (tensor [batch, height, width, channels]), "
                              f"got {got}")
    if image.shape[0] == 0:
        raise HalloInputError(f"{node}: input '{name}' is an empty image batch")
    return image


def check_mask(mask: Any, node: str, name: str) -> torch.Tensor:
    """A ComfyUI MASK: [B,H,W] (or a bare [H,W]); returns the first mask as float32 [H,W] in 0..1."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3) or mask.numel() == 0:
        got = f"tensor of shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise HalloInputError(f"{node}: input '{name}' must be a MASK (tensor [batch, height, width]), got {got}")
    m = mask[0] if mask.ndim == 3 else mask
    return m.detach().float().cpu().clamp(0, 1)


def check_audio(audio: Any, node: str, name: str = "audio") -> tuple[torch.Tensor, int]:
    """A ComfyUI AUDIO dict -> (waveform [B,C,T], sample_rate), within the audio budget and finite."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise HalloInputError(f"{node}: input '{name}' must be an AUDIO "
                              "({'waveform': [batch, channels, samples], 'sample_rate': int}), e.g. from LoadAudio; "
                              f"got {type(audio).__name__}")
    wave = audio["waveform"]
    if not isinstance(wave, torch.Tensor):
        raise HalloInputError(f"{node}: input '{name}': the waveform must be a tensor, got {type(wave).__name__}")
    if wave.ndim == 2:
        wave = wave[None]
    if wave.ndim != 3:
        raise HalloInputError(f"{node}: input '{name}': waveform must be [batch, channels, samples], "
                              f"got shape {tuple(wave.shape)}")
    # the same budget as an audio file's (rate, channels, length) and no NaN / inf, on every node taking AUDIO
    return wave, check_waveform(wave, audio["sample_rate"], f"{node}: input '{name}'")


def with_notes(ui: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Add the node's notices to its ``ui`` output as ``"text"`` (the pack's frontend shows them on the node)."""
    if notes:
        ui["text"] = list(notes)
    return ui


def odd_size_notes(node: str, height: int, width: int) -> list[str]:
    """The notice for a photo whose side is odd (cut to even: H.264 in yuv420p needs even sides)."""
    if not (height % 2 or width % 2):
        return []
    even_h, even_w = height - height % 2, width - width % 2
    message = (f"{node}: the photo is {width}x{height}; the frames are {even_w}x{even_h} (the last odd "
               "column / row dropped: H.264 video needs even sides)")
    notice(logger, message)
    return [message]


class FiniteMin(float):
    """A FLOAT widget's ``min`` that NaN counts as below, so ComfyUI's own range check refuses NaN.

    ComfyUI checks ``value < min`` for each widget and marks only the widget at fault; with a plain float bound
    NaN passes (every comparison with NaN is False). ``value < FiniteMin`` asks ``FiniteMin.__gt__`` first (the
    reflected method of a subclass wins), which is True for NaN. It is sent to the frontend as a plain number.
    """

    def __gt__(self, other: object) -> bool:
        if isinstance(other, float) and math.isnan(other):
            return True
        return float.__gt__(self, other)


def tooltip_opts(tooltip: str, **opts: Any) -> dict[str, Any]:
    return {"tooltip": tooltip, **opts}


def non_finite_message(node: str, name: str, value: Any) -> str:
    return (f"{node}: widget '{name}' is {value}, not a finite number: NaN or Inf would silently give an all-black "
            "video. Enter a number (check the node that feeds it, if it is connected).")


def check_finite(node: str, **values: Any) -> None:
    """Refuse NaN / Inf in FLOAT widgets (ComfyUI's min/max checks let NaN through: every comparison is False)."""
    for name, value in values.items():
        if value is not None and not math.isfinite(float(value)):
            raise ValueError(non_finite_message(node, name, value))


def validate_floats(node: str, spec: dict[str, tuple], values: dict[str, Any]) -> bool | str:
    """For ``VALIDATE_INPUTS``: the literal FLOAT widgets are finite and within their min/max.

    ComfyUI skips its own min/max check for every input that ``VALIDATE_INPUTS`` takes, so it is redone here.
    Connected inputs arrive as None and are checked when the node runs.
    """
    for name, value in values.items():
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            return f"{node}: widget '{name}' must be a number, got {value!r}"
        if not math.isfinite(number):
            return non_finite_message(node, name, value)
        opts = spec[name][1]
        if number < opts.get("min", -math.inf) or number > opts.get("max", math.inf):
            return f"{node}: widget '{name}' is {number}, outside {opts.get('min')}..{opts.get('max')}"
    return True


#: Multiples of this are the sizes the networks take (VAE 8 x three UNet stages).
SIZE_MULTIPLE = 64


def size_problem(node: str, name: str, value: Any) -> str | None:
    """A video size widget that is not a positive multiple of 64, with the nearest valid values."""
    size = int(value)
    if size >= SIZE_MULTIPLE and size % SIZE_MULTIPLE == 0:
        return None
    low = max(SIZE_MULTIPLE, size - size % SIZE_MULTIPLE)
    high = low + SIZE_MULTIPLE
    fix = f"use {low}" if size <= low else f"use {low} or {high}"
    return f"{node}: widget '{name}' is {size}, not a multiple of {SIZE_MULTIPLE}: {fix}"


F = TypeVar("F", bound=Callable[..., Any])
#: Exceptions that are ComfyUI's (or the user's) way of stopping a run, not messages about the node.
_NOT_MESSAGES = ("InterruptProcessingException", "RenderCancelled")


def node_messages(node: str) -> Callable[[F], F]:
    """Decorator for a node's FUNCTION: every error message it raises starts with ``node:``.

    The pipeline's own errors (a missing model file, MediaPipe finding no face, ...) do not know which node runs
    them; this prefixes their message, keeping the exception's type (ComfyUI shows the type and the message).
    """
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if type(exc).__name__ not in _NOT_MESSAGES and len(exc.args) == 1 and isinstance(exc.args[0], str) \
                        and not exc.args[0].startswith(f"{node}:"):
                    exc.args = (f"{node}: {exc.args[0]}",)
                raise
        return run  # type: ignore[return-value]
    return decorate
