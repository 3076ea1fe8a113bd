"""The one place that talks to ComfyUI: folders, devices, model management, progress, interrupt, outputs.

Every function works without ComfyUI (CI, scripts): it then falls back to plain torch behaviour, the
``HALLO_MODEL_PATH`` / ``HALLO_OUTPUT_DIR`` environment variables and a module-level interrupt flag.
ComfyUI modules are only used when ComfyUI itself has loaded them (``folder_paths`` or
``comfy.model_management`` in ``sys.modules``), so importing this file never imports ComfyUI and
never trips ComfyUI's CUDA checks on a CPU-only torch.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..pipeline.models.attention_dispatch import attention_backend, set_attention_backend
from ..pipeline.sampling.residency import (
    NET,
    REFERENCE_NET,
    VAE,
    WAV2VEC,
    Residency,
    TorchResidency,
    network_modules,
)
from ..pipeline.video.output_path import folder_prefix, numbered_output

logger = logging.getLogger(__name__)

MODEL_FOLDER = "hallo"
CHECKPOINT_VARIANTS = ("hallo", "hallo2")
CHECKPOINT_FILES = ("net.safetensors", "net.pth")
ENV_MODEL_PATH = "HALLO_MODEL_PATH"
ENV_OUTPUT_DIR = "HALLO_OUTPUT_DIR"
PREVIEW_MAX_SIZE = 512

_INTERRUPT = threading.Event()


def _comfy(name: str) -> ModuleType | None:
    """A ComfyUI module, only when running inside ComfyUI (never imported from outside it)."""
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    if "folder_paths" not in sys.modules and "comfy.model_management" not in sys.modules:
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a partial ComfyUI install must not break the pack
        logger.debug("ComfyUI module %s not importable", name, exc_info=True)
        return None


def inside_comfyui() -> bool:
    return _comfy("folder_paths") is not None


# ------------------------------------------------------------------------------------------------
# model folder
# ------------------------------------------------------------------------------------------------
def register_model_folder() -> None:
    """Register ``models/hallo`` with ComfyUI's folder_paths (no directory is created, nothing downloaded)."""
    fp = _comfy("folder_paths")
    if fp is None:
        return
    try:
        fp.add_model_folder_path(MODEL_FOLDER, os.path.join(fp.models_dir, MODEL_FOLDER))
        fp.folder_names_and_paths[MODEL_FOLDER][1].update({".pth", ".safetensors"})
    except Exception:  # noqa: BLE001 - an unusual folder_paths must not stop the pack from loading
        logger.warning("could not register the '%s' model folder with ComfyUI", MODEL_FOLDER, exc_info=True)


def model_roots() -> list[Path]:
    """Folders searched for Hallo model folders: ComfyUI's ``hallo`` paths, then ``$HALLO_MODEL_PATH``."""
    roots: list[Path] = []
    fp = _comfy("folder_paths")
    if fp is not None:
        try:
            roots.extend(Path(p) for p in fp.get_folder_paths(MODEL_FOLDER))
        except KeyError:
            pass
    env = os.environ.get(ENV_MODEL_PATH, "")
    roots.extend(Path(p) for p in env.split(os.pathsep) if p)
    seen: set[str] = set()
    unique = []
    for r in roots:
        key = str(r.expanduser().resolve())
        if key not in seen:
            seen.add(key)
            unique.append(r.expanduser())
    return unique


def default_model_dir() -> str:
    """Where the user should put the model folder (for error messages)."""
    fp = _comfy("folder_paths")
    if fp is not None:
        return os.path.join(fp.models_dir, MODEL_FOLDER)
    return f"ComfyUI/models/{MODEL_FOLDER} (or a folder named in ${ENV_MODEL_PATH})"


@dataclass(frozen=True)
class CheckpointEntry:
    name: str  # what the loader's combo shows, e.g. "hallo/net.pth" or "hallo-models/hallo2/net.pth"
    root: Path  # the model folder (parent of hallo/ and hallo2/)
    variant: str
    path: Path


def find_checkpoints() -> list[CheckpointEntry]:
    """``<root>/<variant>/net.{pth,safetensors}`` and one folder deeper (``<root>/<sub>/<variant>/...``)."""
    found: dict[str, CheckpointEntry] = {}
    for root in model_roots():
        if not root.is_dir():
            continue
        candidates: list[tuple[Path, str]] = [(root, "")]
        try:
            candidates += [(d, d.name + "/") for d in sorted(root.iterdir()) if d.is_dir()
                           and d.name not in CHECKPOINT_VARIANTS]
        except OSError:
            continue
        for folder, prefix in candidates:
            for variant in CHECKPOINT_VARIANTS:
                for fname in CHECKPOINT_FILES:
                    path = folder / variant / fname
                    name = f"{prefix}{variant}/{fname}"
                    if name not in found and path.is_file():
                        found[name] = CheckpointEntry(name, folder, variant, path)
    return [found[k] for k in sorted(found)]


# ------------------------------------------------------------------------------------------------
# devices and model management
# ------------------------------------------------------------------------------------------------
def torch_device() -> torch.device:
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return torch.device(mm.get_torch_device())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    mm = _comfy("comfy.model_management")
    if mm is not None:
        return torch.device(mm.unet_offload_device())
    return torch_device()


def soft_empty_cache() -> None:
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Holder(torch.nn.Module):
    """Wraps a module for ``ModelPatcher``, which sets ``.device`` (a read-only property on our nets)."""

    def __init__(self, inner: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.inner = inner
        self.device = device


class ComfyResidency:
    """The :class:`~..pipeline.sampling.residency.Residency` of a HALLO_MODEL inside ComfyUI.

    Every network is a ``ModelPatcher``; ``use`` asks ``comfy.model_management.load_models_gpu`` for the named
    networks together with those of the enclosing ``use`` blocks (so loading the VAE never evicts the net in
    the middle of a render). ComfyUI offloads them again when another model needs the memory.
    """

    # networks that are part of another one: the ReferenceNet lives inside the net
    PARTS = {REFERENCE_NET: NET}

    def __init__(self, modules: dict[str, torch.nn.Module], load_device: torch.device,
                 offload: torch.device, model_patcher: ModuleType) -> None:
        self.modules = modules
        self.device = load_device
        self.offload_device = offload
        self.patchers = {name: model_patcher.ModelPatcher(_Holder(module, offload), load_device=load_device,
                                                          offload_device=offload)
                         for name, module in modules.items()}
        self._active: list[str] = []

    @contextlib.contextmanager
    def use(self, *names: str) -> Iterator[None]:
        wanted = [self.PARTS.get(n, n) for n in names]
        unknown = [n for n in wanted if n not in self.patchers]
        if unknown:
            raise KeyError(f"ComfyResidency: no network named {unknown} (known: {sorted(self.patchers)})")
        depth = len(self._active)
        self._active.extend(wanted)
        try:
            needed = [self.patchers[n] for n in dict.fromkeys(self._active)]
            _comfy("comfy.model_management").load_models_gpu(needed, force_full_load=True)
            yield
        finally:
            del self._active[depth:]


def new_residency(net: torch.nn.Module, vae: torch.nn.Module, wav2vec: torch.nn.Module,
                  load_device: torch.device) -> Residency:
    """ComfyUI's model management inside ComfyUI, otherwise the plain-torch residency on ``load_device``."""
    patcher, mm = _comfy("comfy.model_patcher"), _comfy("comfy.model_management")
    if patcher is not None and mm is not None:
        use_comfy_attention()
        return ComfyResidency({NET: net, VAE: vae, WAV2VEC: wav2vec}, load_device, offload_device(), patcher)
    modules = network_modules(net, vae, wav2vec)
    for name in (NET, VAE, WAV2VEC):  # the loader stores them on the offload device inside a partial ComfyUI
        modules[name].to(load_device)
    return TorchResidency(modules, load_device)


_ATTENTION = {"registered": False}


def use_comfy_attention() -> bool:
    """Route every attention of the pack through core's ``optimized_attention`` (the kernel ComfyUI selected:
    xformers, flash, sage, split, sub-quadratic or PyTorch). Done once, at the first model load inside ComfyUI,
    since importing ``comfy.ldm`` is heavy. Returns whether core's kernel is in use."""
    if _ATTENTION["registered"]:
        return True
    module = _comfy("comfy.ldm.modules.attention")
    kernel = getattr(module, "optimized_attention", None)
    if kernel is None:
        logger.info("ComfyUI's optimized_attention is not available; the Hallo nodes use PyTorch SDPA")
        return False
    set_attention_backend(kernel)
    _ATTENTION["registered"] = True
    return True


def attention_name() -> str:
    """The attention kernel the Hallo networks run on (for the sampler's info)."""
    backend = attention_backend()
    return "sdpa" if backend is None else getattr(backend, "__name__", type(backend).__name__)


# ------------------------------------------------------------------------------------------------
# progress and interrupt
# ------------------------------------------------------------------------------------------------
def to_preview(frame: torch.Tensor | np.ndarray | Any) -> Any:
    """(H, W, 3) float 0..1 -> PIL image (a PIL image is passed through)."""
    from PIL import Image

    if isinstance(frame, Image.Image):
        return frame
    arr = frame.detach().cpu().float().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    return Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)[:, :, :3])


class Progress:
    """ComfyUI's ProgressBar (with JPEG previews) or a debug log outside ComfyUI."""

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = max(1, int(total))
        self.value = 0
        self.last_preview: Any = None
        utils = _comfy("comfy.utils")
        self._bar = utils.ProgressBar(self.total, node_id=node_id) if utils is not None else None

    def update_absolute(self, value: int, total: int | None = None,
                        preview: torch.Tensor | np.ndarray | Any | None = None) -> None:
        if total is not None:
            self.total = max(1, int(total))
        self.value = min(int(value), self.total)
        pv = None
        if preview is not None:
            self.last_preview = to_preview(preview)
            pv = ("JPEG", self.last_preview, PREVIEW_MAX_SIZE)
        if self._bar is not None:
            self._bar.update_absolute(self.value, self.total, pv)
        else:
            logger.debug("progress %d/%d", self.value, self.total)


def latent_previewer() -> Callable[[torch.Tensor], Any] | None:
    """ComfyUI's live preview of SD-1.5 latents, with the preview method ComfyUI runs with (``--preview-method``
    none / auto / latent2rgb / taesd): a function (1, 4, h, w) scaled latent -> PIL image. None when previews are
    off or outside ComfyUI, so the sampler then does no preview work at all."""
    preview, formats = _comfy("latent_preview"), _comfy("comfy.latent_formats")
    if preview is None or formats is None:
        return None
    previewer = preview.get_previewer(torch_device(), formats.SD15())
    if previewer is None:
        return None

    def decode(latent: torch.Tensor) -> Any:
        return previewer.decode_latent_to_preview(latent.float())

    return decode


def interrupt_current_processing(value: bool = True) -> None:
    """Request (or clear) a cancel: ComfyUI's flag inside ComfyUI, a module flag outside it."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.interrupt_current_processing(value)
    elif value:
        _INTERRUPT.set()
    else:
        _INTERRUPT.clear()


def check_interrupt() -> bool:
    """Called at every denoising step. Inside ComfyUI an interrupt raises ComfyUI's own exception, so the
    queue reports 'interrupted' (not an error); outside it returns True once and clears the flag."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
        return False
    if _INTERRUPT.is_set():
        _INTERRUPT.clear()
        return True
    return False


# ------------------------------------------------------------------------------------------------
# output / temp files
# ------------------------------------------------------------------------------------------------
def output_directory() -> Path:
    fp = _comfy("folder_paths")
    if fp is not None:
        return Path(fp.get_output_directory())
    return Path(os.environ.get(ENV_OUTPUT_DIR, Path.cwd() / "output"))


def temp_directory() -> Path:
    fp = _comfy("folder_paths")
    if fp is not None:
        return Path(fp.get_temp_directory())
    return Path(tempfile.gettempdir()) / "hallo_nodes"


def next_output_path(prefix: str, ext: str, width: int, height: int) -> tuple[Path, str, str]:
    """A fresh ``<output>/<subfolder>/<name>_00001_.<ext>``; returns (path, subfolder, filename).

    The prefix follows core's SaveImage (``%width%``-style variables inside ComfyUI, ``a/b`` = file ``b`` in
    folder ``a``, no way out of the output folder); a trailing slash names a folder, the file is then
    ``Hallo_00001_``.
    """
    prefix = folder_prefix(prefix)
    out_dir = output_directory()
    fp = _comfy("folder_paths")
    if fp is not None:
        full_folder, filename, counter, subfolder, _ = fp.get_save_image_path(prefix, str(out_dir), width, height)
        folder = Path(full_folder)
    else:
        folder, filename, subfolder, counter = numbered_output(out_dir, prefix)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{filename}_{counter:05}_.{ext}"
    while (folder / name).exists():
        counter += 1
        name = f"{filename}_{counter:05}_.{ext}"
    return folder / name, subfolder, name


# ------------------------------------------------------------------------------------------------
# video outputs: core SaveVideo's metadata, the VIDEO type
# ------------------------------------------------------------------------------------------------
def video_metadata(prompt: dict | None, extra_pnginfo: dict | None) -> dict[str, str]:
    """The container tags core SaveVideo writes: every EXTRA_PNGINFO entry (the UI's ``workflow``), then
    ``prompt``, each as JSON. None at all when ComfyUI runs with ``--disable-metadata``."""
    cli = _comfy("comfy.cli_args")
    if cli is not None and getattr(cli.args, "disable_metadata", False):
        return {}
    tags = {str(k): json.dumps(v) for k, v in (extra_pnginfo or {}).items()}
    if prompt is not None:
        tags["prompt"] = json.dumps(prompt)
    return tags


def video_output(path: Path) -> Any:
    """The written file as ComfyUI's ``VIDEO`` (comfy_api's ``VideoFromFile``), for Save Video, Get Video
    Components and other video nodes; None (with a log line) in a ComfyUI, or outside one, without it."""
    impl = _comfy("comfy_api.input_impl")
    video_cls = getattr(impl, "VideoFromFile", None)
    if video_cls is None:
        logger.info("this ComfyUI has no VIDEO type (comfy_api.input_impl.VideoFromFile): the 'video' output is "
                    "empty; the mp4 is %s", path)
        return None
    return video_cls(str(path))
