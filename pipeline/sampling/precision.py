"""The sampler's compute precision, on top of the precision the weights were loaded in.

``auto`` (the default) computes in the weights' own dtype, exactly as before. ``fp16`` / ``bf16`` on weights of
another dtype run the sampler under ``torch.autocast``: the weights stay as loaded while matrix products and
convolutions compute in half precision (mixed precision). A model loaded in fp32 keeps its latents and
scheduler in fp32, and draws the same initial noise as an fp32 run. ``fp32`` cannot be reached from weights
loaded in half precision (autocast only lowers precision): that is refused with the fix (load in fp32).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from contextlib import AbstractContextManager

import torch

from ..paths import DTYPES

COMPUTE_DTYPES = ("auto", *DTYPES)  # auto, fp32, fp16, bf16
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


def dtype_problem(name: str, device: torch.device | str) -> str | None:
    """Why compute dtype ``name`` cannot run on ``device`` in this torch build (``None`` when it can)."""
    if name not in COMPUTE_DTYPES:
        return f"{name!r} is not a compute dtype; use one of {', '.join(COMPUTE_DTYPES)}"
    if name in ("auto", "fp32"):
        return None
    return _autocast_problem(name, str(torch.device(device)))


@functools.lru_cache(maxsize=16)
def _autocast_problem(name: str, device: str) -> str | None:
    dev, dtype = torch.device(device), DTYPES[name]
    available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.4; older ones: the probe below
    if available is not None and not available(dev.type):
        return f"this torch build has no mixed precision on {dev.type}"
    try:
        with warnings.catch_warnings():  # an unsupported dtype warns and disables autocast on some devices
            warnings.simplefilter("ignore")
            with torch.autocast(dev.type, dtype=dtype):
                probe = torch.nn.functional.linear(torch.ones(2, 8, device=dev), torch.ones(4, 8, device=dev))
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:  # CPU-only torch asserts on cuda
        return f"{dev} cannot compute in {name} ({' '.join(str(exc).split())[:200]})"
    if probe.dtype != dtype:
        return f"{dev} cannot compute in {name} with this torch build"
    return None


def compute_precision(name: str | None, device: torch.device | str,
                      weights: torch.dtype) -> AbstractContextManager[None]:
    """The context the sampler runs in for compute dtype ``name`` over weights of dtype ``weights``."""
    if name in (None, "auto") or DTYPES.get(name) == weights:
        return contextlib.nullcontext()
    problem = dtype_problem(name, device)
    if problem:
        raise ValueError(f"dtype {name}: {problem}; use dtype auto")
    if DTYPES[name] == torch.float32:
        loaded = DTYPE_NAMES.get(weights, str(weights))
        raise ValueError(f"dtype fp32 needs weights loaded in fp32, these are {loaded}: set the model loader's "
                         "dtype to fp32, or the sampler's dtype to auto")
    return torch.autocast(torch.device(device).type, dtype=DTYPES[name])
