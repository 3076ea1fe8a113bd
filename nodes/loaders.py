"""HalloModelLoader: the released Hallo / Hallo2 networks from the ``hallo`` model folder."""

from __future__ import annotations

import logging

from ..pipeline.paths import (
    CHECKPOINT_FILE,
    FACE_MODELS_SUBDIR,
    HF_REPOS,
    UNET_CONFIG,
    VAE_SUBDIR,
    WAV2VEC_SUBDIR,
    ModelFolder,
)
from . import comfy_adapter as comfy
from .common import CATEGORY, HALLO_MODEL, HalloModel, node_messages

logger = logging.getLogger(__name__)

DTYPES = ["auto", "fp16", "bf16", "fp32"]
LAYOUT_HINT = (
    f"Download the Hugging Face repo '{HF_REPOS['hallo']}' (and/or '{HF_REPOS['hallo2']}') and keep "
    f"its layout: {{root}}/hallo/{CHECKPOINT_FILE} (or hallo2/{CHECKPOINT_FILE}), {{root}}/{UNET_CONFIG}, "
    f"{{root}}/{VAE_SUBDIR}/, {{root}}/{WAV2VEC_SUBDIR}/, {{root}}/{FACE_MODELS_SUBDIR}/."
)


def no_checkpoint_message(name: str | None = None) -> str:
    root = comfy.default_model_dir()
    searched = ", ".join(str(p) for p in comfy.model_roots()) or "(no folder registered)"
    head = (f"HalloModelLoader: Hallo checkpoint '{name}' not found" if name
            else "HalloModelLoader: no Hallo checkpoint found")
    return f"{head}. Searched: {searched}. " + LAYOUT_HINT.format(root=root)


class HalloModelLoader:
    DESCRIPTION = (
        "Loads a released Hallo or Hallo2 checkpoint (net.pth or a converted net.safetensors) together with "
        "the VAE (sd-vae-ft-mse) and the wav2vec2 audio encoder of the same model folder. Files are looked up "
        "in ComfyUI/models/hallo (and any 'hallo' path in extra_model_paths.yaml). Nothing is downloaded."
    )
    CATEGORY = f"{CATEGORY}/loaders"
    RETURN_TYPES = (HALLO_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The Hallo networks (denoising UNet, ReferenceNet, VAE, wav2vec2) for the other Hallo nodes.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        names = [e.name for e in comfy.find_checkpoints()]
        return {
            "required": {
                "checkpoint": (names, {"tooltip": "hallo/net.pth (Hallo) or hallo2/net.pth (Hallo2), found under "
                                                  "ComfyUI/models/hallo. A net.safetensors beside net.pth is listed "
                                                  "too and loads faster."}),
                "dtype": (DTYPES, {"default": "auto", "tooltip": "Weight precision. auto: fp16 on CUDA, fp32 on "
                                                                 "the CPU. bf16 suits GPUs without fast fp16."}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, checkpoint: str) -> bool | str:
        """Only 'checkpoint': ComfyUI marks every input this method takes with its error, and checks 'dtype'
        (a fixed list) itself."""
        if checkpoint not in {e.name for e in comfy.find_checkpoints()}:
            return no_checkpoint_message(checkpoint)
        return True

    @classmethod
    def IS_CHANGED(cls, checkpoint: str, dtype: str) -> str:
        """Reload when the checkpoint file is replaced."""
        entry = next((e for e in comfy.find_checkpoints() if e.name == checkpoint), None)
        if entry is None:
            return f"missing:{checkpoint}"
        stat = entry.path.stat()
        return f"{entry.path}:{stat.st_size}:{stat.st_mtime_ns}:{dtype}"

    @node_messages("HalloModelLoader")
    def load(self, checkpoint: str, dtype: str = "auto") -> tuple[HalloModel]:
        from ..pipeline.audio.wav2vec import load_wav2vec
        from ..pipeline.models.loading import load_net, load_vae, parse_dtype

        entry = next((e for e in comfy.find_checkpoints() if e.name == checkpoint), None)
        if entry is None:
            raise FileNotFoundError(no_checkpoint_message(checkpoint))
        device = comfy.torch_device()
        torch_dtype = parse_dtype(dtype, device)
        folder = ModelFolder.at(entry.root)
        folder.check_files(entry.variant, face=False)  # at the door: every file this loads, readable and regular
        store = comfy.offload_device() if comfy.inside_comfyui() else device
        net = load_net(folder, entry.variant, checkpoint=entry.path, device=store, dtype=torch_dtype)
        vae = load_vae(folder, device=store, dtype=torch_dtype)
        wav2vec = load_wav2vec(folder.root, device=store)
        residency = comfy.new_residency(net, vae, wav2vec.model, device)
        logger.info("Hallo model %s ready (%s, %s on %s)", checkpoint, entry.variant, torch_dtype, device)
        return (HalloModel(folder, entry.variant, checkpoint, net, vae, wav2vec, torch_dtype, residency),)
