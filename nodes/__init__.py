"""ComfyUI nodes (thin wrappers over ``pipeline``), registered through ``NODE_CLASS_MAPPINGS``."""

from . import comfy_adapter
from .audio import HalloAudioEncode
from .evaluate import HalloEvaluate
from .face import HalloFaceAnalysis, HalloFaceCrop, HalloPasteBack
from .loaders import HalloModelLoader
from .reference import HalloReference
from .sampler import HalloRenderToVideoFile, HalloSampler

comfy_adapter.register_model_folder()

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "HalloModelLoader": HalloModelLoader,
    "HalloAudioEncode": HalloAudioEncode,
    "HalloFaceAnalysis": HalloFaceAnalysis,
    "HalloFaceCrop": HalloFaceCrop,
    "HalloPasteBack": HalloPasteBack,
    "HalloReference": HalloReference,
    "HalloSampler": HalloSampler,
    "HalloRenderToVideoFile": HalloRenderToVideoFile,
    "HalloEvaluate": HalloEvaluate,
}

NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "HalloModelLoader": "Hallo Model Loader",
    "HalloAudioEncode": "Hallo Audio Encode",
    "HalloFaceAnalysis": "Hallo Face Analysis (masks)",
    "HalloFaceCrop": "Hallo Face Crop",
    "HalloPasteBack": "Hallo Paste Back",
    "HalloReference": "Hallo Reference (ReferenceNet input)",
    "HalloSampler": "Hallo Sampler",
    "HalloRenderToVideoFile": "Hallo Render to Video File",
    "HalloEvaluate": "Hallo Evaluate (lip sync, identity, seams)",
}
