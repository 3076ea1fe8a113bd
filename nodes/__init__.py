"""ComfyUI nodes (thin wrappers over ``pipeline``), registered through ``NODE_CLASS_MAPPINGS``."""

from . import comfy_adapter
from .audio import HalloAudioEncode
from .evaluate import HalloEvaluate
from .face import HalloFaceAnalysis, HalloFaceCrop, HalloPasteBack
from .loaders import HalloModelLoader
from .reference import HalloReference
from .sampler import HalloRenderToVideoFile, HalloSampler, HalloSegment
from .sampler_options import HalloSamplerOptions
from .schedule_inputs import HalloWeightSchedule

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
    "HalloSamplerOptions": HalloSamplerOptions,
    "HalloSegment": HalloSegment,
    "HalloWeightSchedule": HalloWeightSchedule,
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
    "HalloSamplerOptions": "Hallo Sampler Options",
    "HalloSegment": "Hallo Segment",
    "HalloWeightSchedule": "Hallo Weight Schedule",
    "HalloEvaluate": "Hallo Evaluate (lip sync, identity, seams)",
}
