"""Preparing the portrait for the generator: pixels, VAE latent, embedding, face box and masks.

:func:`prepare_reference` is the original ``Resize((H,W)) -> ToTensor -> Normalize(0.5, 0.5)`` (PIL bilinear
resize to the output size; non-square inputs are stretched).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .budgets import size_problem
from .errors import HalloInputError
from .face.analysis import FaceAnalysisResult
from .sampling.sampler import LATENT_SCALE, HalloReference


def check_output_size(height: int, width: int) -> None:
    """The UNet downsamples by 64 (VAE 8 x three UNet stages): both sides must be multiples of 64, within the
    budget (:mod:`.budgets`)."""
    for name, value in (("height", height), ("width", width)):
        problem = size_problem(int(value))
        if problem:
            raise HalloInputError(f"output {name} {problem}")


@torch.no_grad()
def make_reference(
    vae: torch.nn.Module,
    rgb: np.ndarray,
    face: FaceAnalysisResult,
    *,
    size: tuple[int, int] = (512, 512),
) -> HalloReference:
    """Resize the portrait to ``size`` (height, width) exactly as the original and encode it once."""
    height, width = size
    check_output_size(height, width)
    masks = face.masks
    if tuple(masks.face_locator.shape[-2:]) != (height, width):
        raise ValueError(
            f"the face analysis was made for a {tuple(masks.face_locator.shape[-2:])} output but the reference is "
            f"{(height, width)}; analyse the face with output_size={size}"
        )
    pixels = prepare_reference(rgb, size=(height, width))
    param = next(vae.parameters())
    latent = vae.encode(pixels[None].to(param.device, param.dtype)).latent_dist.mean * LATENT_SCALE
    return HalloReference(
        pixels=pixels.float(),
        latent=latent.float().cpu(),
        face_embedding=torch.as_tensor(np.asarray(face.embedding, dtype=np.float32)),
        face_locator_image=masks.face_locator.float(),
        full_masks=[m.float() for m in masks.full],
        face_masks=[m.float() for m in masks.face],
        lip_masks=[m.float() for m in masks.lip],
    )


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"output size must be positive (height, width), got {size}")
    return h, w


def prepare_reference(rgb: np.ndarray, size: tuple[int, int] = (512, 512)) -> torch.Tensor:
    """Reference pixels exactly like the original: PIL bilinear resize to ``size`` = (H, W) (no crop,
    non-square inputs stretch), ``/255``, ``(x - 0.5) / 0.5``. Returns float32 ``(3, H, W)`` in [-1, 1].
    """
    h, w = _check_size(size)
    pil = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    if pil.size != (w, h):
        pil = pil.resize((w, h), Image.BILINEAR)
    t = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255.0)
    return t.sub(0.5).div(0.5)
