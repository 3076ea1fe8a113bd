"""Write a tiny random-weight model folder in the released layout and key naming.

Used by the tests, the benchmarks and the README's try-it-out command: every loader runs on it exactly as
on the released weights, only the channel counts are small. The output is noise, not a face.

The folder ends with a manifest (:data:`TINY_MANIFEST`: what was asked for, and the size and SHA-256 of every
file). :func:`tiny_model_folder` reuses a folder whose files are exactly those the manifest lists, intact, so
the README's demo command can be run again; any other non-empty folder is refused, so a real model folder is
never written into.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from ..pipeline.errors import HalloInputError
from ..pipeline.models.architecture import SD15_UNET_CONFIG, HalloArchitecture
from ..pipeline.models.net import build_net
from ..pipeline.paths import (
    CHECKPOINT_FILE,
    FACE_MODELS_SUBDIR,
    SHIPPED_LANDMARKER_TASK,
    UNET_CONFIG,
    VAE_SUBDIR,
    WAV2VEC_SUBDIR,
)

logger = logging.getLogger(__name__)

TINY_UNET_CONFIG = dict(
    SD15_UNET_CONFIG,
    block_out_channels=[32, 64, 64, 64],
    cross_attention_dim=32,
    sample_size=8,
)
TINY_WAV2VEC_HIDDEN = 32
#: Written last into a tiny folder: the request and every file's size and SHA-256 (see the module docstring).
TINY_MANIFEST = "hallo-nodes-tiny-models.json"
#: Raised when what a tiny folder holds changes meaning (another layout, say): older folders are then rewritten,
#: not reused. The networks' configs are in the manifest's request too.
TINY_FORMAT = 1

TINY_VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [32, 32, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}


def tiny_architecture() -> HalloArchitecture:
    return HalloArchitecture(
        unet=dict(TINY_UNET_CONFIG),
        audio_channels=TINY_WAV2VEC_HIDDEN,
        audio_intermediate=32,
        audio_tokens=8,
    )


def write_net(path: Path, arch: HalloArchitecture, seed: int, dtype: torch.dtype = torch.float16) -> Path:
    """Random ``net.pth`` for ``arch`` with the released key names, saved as a flat fp16 state dict."""
    torch.manual_seed(seed)
    net = build_net(arch, "cpu")
    with torch.no_grad():
        # Default inits leave the face locator's output and the zero convs meaningful; scale the
        # rest down a little so deep random stacks stay in a numerically friendly range.
        for name, p in net.named_parameters():
            if p.ndim >= 2 and "pos_encoder" not in name:
                p.mul_(0.5)
    state = {k: v.to(dtype).contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_vae(folder: Path, seed: int) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**{k: v for k, v in TINY_VAE_CONFIG.items() if not k.startswith("_")})
    vae.save_pretrained(str(folder), safe_serialization=True)
    return folder


def check_fresh_folder(root: Path) -> None:
    """Refuse to write random weights into a folder that holds anything (a real model folder, say)."""
    if root.exists() and not root.is_dir():
        raise HalloInputError(f"{root} is a file; give a new, empty folder for the tiny models")
    if root.is_dir() and any(root.iterdir()):
        raise HalloInputError(
            f"{root} is not empty; the tiny random models would replace what it holds (a real model folder's "
            "weights, say): give a new or empty folder (one written by --make-tiny-models is reused as it is)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _request(variants: tuple[str, ...], seed: int, with_face_models: bool, with_wav2vec: bool,
             landmarker_task: Path | str | None) -> dict:
    """What a call asks for, as the manifest stores it (the landmarker by content, not by path)."""
    task = None
    if landmarker_task is not None and with_face_models:
        if not Path(landmarker_task).is_file():
            raise FileNotFoundError(f"landmarker_task: {landmarker_task} is not a file; pass the real "
                                    "face_landmarker_v2_with_blendshapes.task")
        task = _sha256(Path(landmarker_task))
    layout = json.dumps([TINY_UNET_CONFIG, TINY_VAE_CONFIG, dataclasses.asdict(tiny_architecture())], sort_keys=True)
    return {"format": TINY_FORMAT, "architecture_sha256": hashlib.sha256(layout.encode()).hexdigest(),
            "variants": list(variants), "seed": seed, "face_models": with_face_models, "wav2vec": with_wav2vec,
            "landmarker_sha256": task}


def _files_under(root: Path) -> dict[str, Path]:
    """Every file and link under ``root`` but the manifest, by posix path relative to ``root``."""
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*")
            if (p.is_file() or p.is_symlink()) and p != root / TINY_MANIFEST}


def _write_manifest(root: Path, request: dict) -> None:
    files = {rel: {"size": p.stat().st_size, "sha256": _sha256(p)} for rel, p in sorted(_files_under(root).items())}
    manifest = {"what": "tiny random-weight Hallo models written by hallo-nodes (the video is noise)",
                "request": request, "files": files}
    (root / TINY_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def read_tiny_manifest(root: Path) -> dict | None:
    """The manifest of ``root`` when ``root`` holds exactly the files it lists, each intact; else ``None``."""
    try:
        manifest = json.loads((root / TINY_MANIFEST).read_text())
        listed = manifest["files"]
        present = _files_under(root)
        if set(present) != set(listed) or any(p.is_symlink() for p in present.values()):
            return None
        for rel, meta in listed.items():
            if present[rel].stat().st_size != meta["size"] or _sha256(present[rel]) != meta["sha256"]:
                return None
        return manifest
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _clear(root: Path, files: list[str]) -> None:
    """Remove ``files`` (paths relative to ``root``) and the manifest, then every folder left empty."""
    for rel in [*files, TINY_MANIFEST]:
        (root / rel).unlink(missing_ok=True)
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def tiny_model_folder(root: str | Path, *, variants: tuple[str, ...] = ("hallo", "hallo2"), seed: int = 0,
                      with_face_models: bool = True, with_wav2vec: bool = True,
                      landmarker_task: Path | str | None = SHIPPED_LANDMARKER_TASK) -> tuple[Path, bool]:
    """``(root, reused)``: ``root`` as :func:`write_tiny_model_folder` writes it, reused when it already holds
    exactly such a folder, intact, made for the same request. A tiny folder made for another request (another
    landmarker, say) is rewritten; a folder holding anything else is refused with :class:`HalloInputError`."""
    root = Path(root).expanduser()
    manifest = read_tiny_manifest(root) if root.is_dir() else None
    if manifest is not None:
        if manifest["request"] == _request(variants, seed, with_face_models, with_wav2vec, landmarker_task):
            logger.info("reusing the tiny model folder %s (its files match its manifest)", root)
            return root, True
        logger.info("rewriting the tiny model folder %s for other settings", root)
        _clear(root, list(manifest["files"]))
    return write_tiny_model_folder(root, variants=variants, seed=seed, with_face_models=with_face_models,
                                   with_wav2vec=with_wav2vec, landmarker_task=landmarker_task), False


def write_tiny_model_folder(root: str | Path, *, variants: tuple[str, ...] = ("hallo", "hallo2"),
                            seed: int = 0, with_face_models: bool = True, with_wav2vec: bool = True,
                            landmarker_task: Path | str | None = SHIPPED_LANDMARKER_TASK,
                            replace_contents: bool = False) -> Path:
    """Create ``root`` laid out like the Hugging Face ``fudan-generative-ai/hallo`` download.

    ``root`` must be new or empty unless ``replace_contents`` (then the files it writes replace any there).
    ``landmarker_task``: the real ``face_landmarker_v2_with_blendshapes.task`` (MediaPipe's model cannot be made
    up; default: the copy shipped with the pack), copied into ``face_analysis/models``; ``None`` leaves it out
    (the face stage then uses the shipped copy). Ignored when ``with_face_models`` is false. The manifest
    (:data:`TINY_MANIFEST`) is written last. Without ``replace_contents``, a failed or interrupted write removes
    what it wrote."""
    root = Path(root).expanduser()
    if not replace_contents:
        check_fresh_folder(root)
    request = _request(variants, seed, with_face_models, with_wav2vec, landmarker_task)
    existed = root.is_dir()
    try:
        _write_tiny_files(root, variants, seed, with_face_models, with_wav2vec, landmarker_task)
        _write_manifest(root, request)
        as_downloaded(root)
    except BaseException:
        if not replace_contents and root.is_dir():  # it was new or empty: nothing of anyone else's is in it
            if existed:
                _clear(root, list(_files_under(root)))
            else:
                shutil.rmtree(root)
        raise
    logger.debug("wrote tiny model folder %s", root)
    return root


def _write_tiny_files(root: Path, variants: tuple[str, ...], seed: int, with_face_models: bool, with_wav2vec: bool,
                      landmarker_task: Path | str | None) -> None:
    arch = tiny_architecture()
    unet_config = root / UNET_CONFIG
    unet_config.parent.mkdir(parents=True, exist_ok=True)
    unet_config.write_text(json.dumps(arch.unet, indent=2))
    for i, variant in enumerate(variants):
        write_net(root / variant / CHECKPOINT_FILE, arch, seed + i)
    write_vae(root / VAE_SUBDIR, seed)
    if with_wav2vec:
        from .tiny_wav2vec import write_wav2vec_folder

        write_wav2vec_folder(root / WAV2VEC_SUBDIR, tiny=True, seed=seed)
    if with_face_models:
        from .tiny_face_models import write_face_models

        write_face_models(root / FACE_MODELS_SUBDIR, seed=seed, landmarker_task=landmarker_task)


def as_downloaded(root: Path) -> None:
    """Give the files written 0600 under ``root`` (safetensors writes its files so, and another user of a shared
    model folder could not read them) the permissions a download gets: 0644 under the usual umask 022."""
    umask = os.umask(0)
    os.umask(umask)
    for path in root.rglob("*"):
        st = path.lstat()
        if path.is_file() and not path.is_symlink() and st.st_mode & 0o777 == 0o600 and st.st_uid == os.geteuid():
            path.chmod(0o666 & ~umask)
