"""Shared helpers for the node tests: ComfyUI-shaped inputs from the real assets, and fake ComfyUI modules."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from asset_paths import ASSETS, asset
from PIL import Image


def comfy_image(name: str = "painting_girl.jpg", assets: Path = ASSETS) -> torch.Tensor:
    """A portrait as a ComfyUI IMAGE [1,H,W,3] float 0..1 (what LoadImage gives)."""
    path = asset("portraits", name) if assets == ASSETS else assets / "portraits" / name
    rgb = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    return torch.from_numpy(rgb)[None]


def comfy_audio(seconds: float | None = None, name: str = "speech_7s_44k.wav", assets: Path = ASSETS) -> dict:
    """Real speech as a ComfyUI AUDIO dict (what LoadAudio gives), optionally cut to ``seconds``."""
    from hallo_nodes.pipeline.video.writer import load_audio_file

    wave, rate = load_audio_file(asset("audio", name) if assets == ASSETS else assets / "audio" / name)
    if seconds is not None:
        wave = wave[:, : int(seconds * rate)]
    return {"waveform": wave[None].contiguous(), "sample_rate": rate}


class FakeProgressBar:
    """Records what a node reports through comfy.utils.ProgressBar."""

    instances: list[FakeProgressBar] = []

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = total
        self.calls: list[tuple[int, int, Any]] = []
        FakeProgressBar.instances.append(self)

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        self.calls.append((value, self.total, preview))


class InterruptProcessingException(Exception):
    pass


def fake_comfy_modules(tmp: Path) -> dict[str, types.ModuleType]:
    """Minimal stand-ins for folder_paths, comfy.utils, comfy.model_management and comfy.model_patcher."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp / "models")
    fp.folder_names_and_paths = {}
    fp.supported_pt_extensions = {".pth", ".safetensors", ".ckpt"}

    def add_model_folder_path(name: str, path: str, is_default: bool = False) -> None:
        paths, exts = fp.folder_names_and_paths.setdefault(name, ([], set()))
        if path not in paths:
            paths.append(path)

    def get_folder_paths(name: str) -> list[str]:
        return list(fp.folder_names_and_paths[name][0])

    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = get_folder_paths
    fp.get_output_directory = lambda: str(tmp / "output")
    fp.get_temp_directory = lambda: str(tmp / "temp")

    def get_save_image_path(prefix: str, out_dir: str, w: int = 0, h: int = 0):
        sub = str(Path(prefix).parent).replace(".", "")
        return str(Path(out_dir) / sub), Path(prefix).name, 1, sub, prefix

    fp.get_save_image_path = get_save_image_path

    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = FakeProgressBar

    mm = types.ModuleType("comfy.model_management")
    mm.state = {"interrupt": False, "checks": 0, "loads": [], "empty_cache": 0}
    mm.InterruptProcessingException = InterruptProcessingException
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")

    def soft_empty_cache(force: bool = False) -> None:
        mm.state["empty_cache"] += 1

    def load_models_gpu(models: list, force_full_load: bool = False, **kwargs: Any) -> None:
        mm.state["loads"].append(([m.name for m in models], force_full_load))

    def interrupt_current_processing(value: bool = True) -> None:
        mm.state["interrupt"] = value

    def throw_exception_if_processing_interrupted() -> None:
        mm.state["checks"] += 1
        if mm.state["interrupt"]:
            mm.state["interrupt"] = False
            raise InterruptProcessingException()

    mm.soft_empty_cache = soft_empty_cache
    mm.load_models_gpu = load_models_gpu
    mm.interrupt_current_processing = interrupt_current_processing
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted

    mp = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device) -> None:
            self.model = model
            self.load_device = load_device
            self.offload_device = offload_device
            model.device = offload_device  # what the real one does; must not hit a read-only property
            self.name = type(model.inner).__name__

    mp.ModelPatcher = ModelPatcher
    comfy = types.ModuleType("comfy")
    return {"folder_paths": fp, "comfy": comfy, "comfy.utils": utils, "comfy.model_management": mm,
            "comfy.model_patcher": mp}


def load_tiny_model(model_dir: Path) -> Any:
    """``HalloModelLoader`` on ``model_dir`` (found through the env variable the nodes use outside ComfyUI)."""
    import os

    from hallo_nodes.nodes import NODE_CLASS_MAPPINGS
    from hallo_nodes.nodes import comfy_adapter as adapter

    old = os.environ.get(adapter.ENV_MODEL_PATH)
    os.environ[adapter.ENV_MODEL_PATH] = str(model_dir)
    try:
        (loaded,) = NODE_CLASS_MAPPINGS["HalloModelLoader"]().load("hallo/net.pth", "auto")
    finally:
        if old is None:
            os.environ.pop(adapter.ENV_MODEL_PATH, None)
        else:
            os.environ[adapter.ENV_MODEL_PATH] = old
    return loaded
