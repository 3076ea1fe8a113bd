"""Reading and validating ``net.pth`` (and its optional safetensors twin) without unpickling objects."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import HalloInputError, public_name
from ..file_checks import DENIED, MISSING, PERMISSION_FIX, file_problem
from ..paths import HF_REPOS

logger = logging.getLogger(__name__)


@public_name
class CheckpointError(HalloInputError):
    """The checkpoint file cannot be used; the message says why and what to do."""


def _redownload_hint(path: Path) -> str:
    return (f"Download {path.name} again (the released file is ~4.85 GB) from the Hugging Face repo "
            f"{' or '.join(repr(r) for r in HF_REPOS.values())}.")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a flat ``{name: tensor}`` checkpoint, memory-mapped where the format allows it.

    ``.safetensors`` is read with safetensors; anything else with ``torch.load(weights_only=True)``, which
    never runs arbitrary pickled code.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        kind, text = problem
        if kind == MISSING:
            raise CheckpointError(f"checkpoint not found: {path} {text}")
        fix = PERMISSION_FIX if kind == DENIED else _redownload_hint(path)
        raise CheckpointError(f"checkpoint {path} {text}; {fix}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({exc}); delete it and convert net.pth again."
            ) from exc
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic != b"PK" and not magic.startswith(b"\x80"):
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (it starts with {magic!r}, neither a zip archive nor a "
            f"pickle; an HTML error page or a partial download?). {_redownload_hint(path)}"
        )
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} is not a plain tensor checkpoint: loading it would need to unpickle arbitrary objects, "
            f"which is refused ({str(exc).splitlines()[0]}). Use the released net.pth."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt download? "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). {_redownload_hint(path)}"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors as net.pth does. {_redownload_hint(path)}")
    return state


def check_float_dtypes(state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Refuse tensors that are not floating point (a quantized, boolean or mis-converted checkpoint)."""
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(
                f"checkpoint {path}: tensor {key} is {str(tensor.dtype).removeprefix('torch.')}, not floating point "
                f"(a quantized or mis-converted file?). {_redownload_hint(Path(path))}")


def check_finite(tensors: dict[str, torch.Tensor], path: Path | str) -> None:
    """Refuse NaN or infinite weights (a corrupt file, or values beyond the range of the dtype cast to).

    One fp32-accumulated sum per tensor (NaN and inf survive a sum; fp16 weights cannot overflow fp32), done
    where the tensors already are (on the GPU after the move there) and read back with a single sync; only a
    non-finite sum is confirmed element-wise. About 25x faster than ``isfinite(t).all()`` on a CPU.
    """
    floats = [(k, t) for k, t in tensors.items() if t.is_floating_point() and t.numel()]
    if not floats:
        return
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for key, tensor in floats:
        by_device.setdefault(tensor.device, []).append((key, tensor))
    for group in by_device.values():
        sums = torch.stack([t.sum(dtype=torch.float32) for _, t in group])
        if bool(torch.isfinite(sums).all()):
            continue
        for key, tensor in group:
            if not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(
                    f"checkpoint {path}: tensor {key} holds NaN or infinite values, so every frame would come "
                    f"out black or noise. {_redownload_hint(Path(path))}")


@dataclass
class KeyReport:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, path: Path | str, examples: int = 5) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing keys (e.g. {', '.join(self.missing[:examples])})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected keys (e.g. {', '.join(self.unexpected[:examples])})")
        if self.mismatched:
            shown = ", ".join(f"{k}: file {tuple(f)} vs model {tuple(m)}" for k, f, m in self.mismatched[:examples])
            parts.append(f"{len(self.mismatched)} keys with the wrong shape (e.g. {shown})")
        return (f"checkpoint {path} does not match the Hallo network: " + "; ".join(parts)
                + ". Nothing was loaded. Is it the released hallo/net.pth or hallo2/net.pth, and does "
                "stable-diffusion-v1-5/unet/config.json belong to the same model folder?")


def compare_keys(expected: dict[str, torch.Size | tuple[int, ...]], found: dict[str, torch.Tensor]) -> KeyReport:
    """Compare a checkpoint against the expected key/shape list."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [(k, tuple(found[k].shape), tuple(expected[k])) for k in expected
                  if k in found and tuple(found[k].shape) != tuple(expected[k])]
    return KeyReport(missing, unexpected, mismatched)


def convert_to_safetensors(pth: Path, out: Path | None = None) -> Path:
    """One-time conversion of ``net.pth`` to ``net.safetensors`` (memory-mapped, faster loads).

    Written to a temporary file and renamed, so an interrupted conversion leaves nothing half-written.
    """
    from safetensors.torch import save_file

    pth = Path(pth)
    out = Path(out) if out is not None else pth.with_suffix(".safetensors")
    state = read_state_dict(pth)
    tmp = out.with_name(out.name + ".partial")
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"source": pth.name})
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("converted %s -> %s (%d tensors)", pth, out, len(state))
    return out
