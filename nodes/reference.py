"""HalloReference: the portrait prepared once for the sampler (VAE latent, identity tokens, masks)."""

from __future__ import annotations

import logging

from ..pipeline.face.analysis import FaceAnalysisResult
from ..pipeline.images import comfy_image_to_rgb
from ..pipeline.notices import collect_notices, notice
from ..pipeline.sampling.residency import VAE
from .common import (
    CATEGORY,
    HALLO_FACE,
    HALLO_MODEL,
    HALLO_REFERENCE,
    HalloModel,
    check_image,
    expect,
    node_messages,
    with_notes,
)

logger = logging.getLogger(__name__)

NODE = "HalloReference"


class HalloReference:
    DESCRIPTION = (
        "Prepares the portrait for HalloSampler: resizes it to the output size, encodes it with the VAE and "
        "bundles it with the identity embedding and the masks of HalloFaceAnalysis. The ReferenceNet runs on "
        "this (plus the motion frames) once per 16-frame clip inside the sampler."
    )
    CATEGORY = f"{CATEGORY}/reference"
    RETURN_TYPES = (HALLO_REFERENCE,)
    RETURN_NAMES = ("reference",)
    OUTPUT_TOOLTIPS = ("The prepared portrait for HalloSampler; reuse it for many voice tracks.",)
    FUNCTION = "prepare"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": (HALLO_MODEL, {"tooltip": "From HalloModelLoader; its VAE encodes the portrait."}),
                "image": ("IMAGE", {"tooltip": "The same portrait that went into HalloFaceAnalysis."}),
                "face": (HALLO_FACE, {"tooltip": "From HalloFaceAnalysis; sets the output size."}),
            }
        }

    @node_messages("HalloReference")
    def prepare(self, model: HalloModel, image, face: FaceAnalysisResult) -> dict:
        model = expect(model, HalloModel, NODE, "model", HALLO_MODEL)
        face = expect(face, FaceAnalysisResult, NODE, "face", HALLO_FACE)
        rgb = comfy_image_to_rgb(check_image(image, NODE), name=f"{NODE} image")
        if face.image_size != (0, 0) and tuple(rgb.shape[:2]) != tuple(face.image_size):
            fh, fw = face.image_size
            raise ValueError(f"{NODE}: the face was analysed on a {fw}x{fh} image but 'image' is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}; connect the same image to both nodes")
        size = tuple(int(v) for v in face.masks.face_locator.shape[-2:])
        from ..pipeline.reference import make_reference

        with collect_notices(NODE) as notes:
            stretch_notice(rgb.shape[0], rgb.shape[1], size)
            with model.residency.use(VAE):
                reference = make_reference(model.vae, rgb, face, size=size)
        return {"ui": with_notes({}, notes), "result": (reference,)}


def stretch_notice(height: int, width: int, size: tuple[int, int]) -> None:
    """The portrait is resized to the output size as the original does: tell the user when that distorts it."""
    out_h, out_w = size
    if abs(width / height - out_w / out_h) <= 0.01 * out_w / out_h:
        return
    notice(logger, f"{NODE}: the {width}x{height} portrait is stretched to {out_w}x{out_h} (the original resizes "
                   "without cropping); crop it to the output's shape first, e.g. with HalloFaceCrop")
