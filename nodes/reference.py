"""HalloReference: the portrait prepared once for the sampler (VAE latent, identity tokens, masks)."""

from __future__ import annotations

from ..pipeline.face_analysis import FaceAnalysisResult
from ..pipeline.image_prep import comfy_image_to_rgb
from .common import CATEGORY, HALLO_FACE, HALLO_MODEL, HALLO_REFERENCE, HalloModel, check_image, expect

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

    def prepare(self, model: HalloModel, image, face: FaceAnalysisResult) -> tuple:
        model = expect(model, HalloModel, NODE, "model", HALLO_MODEL)
        face = expect(face, FaceAnalysisResult, NODE, "face", HALLO_FACE)
        rgb = comfy_image_to_rgb(check_image(image, NODE), name=f"{NODE} image")
        if face.image_size != (0, 0) and tuple(rgb.shape[:2]) != tuple(face.image_size):
            fh, fw = face.image_size
            raise ValueError(f"{NODE}: the face was analysed on a {fw}x{fh} image but 'image' is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}; connect the same image to both nodes")
        size = tuple(int(v) for v in face.masks.face_locator.shape[-2:])
        from ..pipeline.reference import make_reference

        model.managed.load(["vae"])
        return (make_reference(model.vae, rgb, face, size=size),)
