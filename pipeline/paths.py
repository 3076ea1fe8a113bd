"""The released Hallo model-folder layout: file names, Hugging Face repo ids, dtype names, and clear errors
for anything missing from the folder.

Every model file of the pack is found through this module. The layout is the one of the Hugging Face
repo ``fudan-generative-ai/hallo`` downloaded as is::

    hallo/net.pth, hallo2/net.pth          (hallo2 comes from ``fudan-generative-ai/hallo2``)
    stable-diffusion-v1-5/unet/config.json
    sd-vae-ft-mse/                         (AutoencoderKL config + weights)
    wav2vec/wav2vec2-base-960h/            (Wav2Vec2ForCTC config + model.safetensors)
    face_analysis/models/                  (scrfd_10g_bnkps.onnx, glintr100.onnx,
                                            face_landmarker_v2_with_blendshapes.task)
    audio_separator/Kim_Vocal_2.onnx       (only for vocal separation)
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import HalloInputError, public_name
from .file_checks import DENIED, MISSING, PERMISSION_FIX, file_problem

if TYPE_CHECKING:  # torch is imported where a dtype is made: the CLI's parser needs only the names below
    import torch

logger = logging.getLogger(__name__)

HF_REPO = "fudan-generative-ai/hallo"
HF_REPOS = {"hallo": HF_REPO, "hallo2": "fudan-generative-ai/hallo2"}
VARIANTS = tuple(HF_REPOS)

# Folders and files inside the model folder (posix paths relative to its root).
CHECKPOINT_FILE = "net.pth"
UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
VAE_SUBDIR = "sd-vae-ft-mse"
VAE_WEIGHTS = "diffusion_pytorch_model.safetensors"
WAV2VEC_SUBDIR = "wav2vec/wav2vec2-base-960h"
WAV2VEC_WEIGHTS = "model.safetensors"
FACE_MODELS_SUBDIR = "face_analysis/models"
DETECTOR_FILE = "scrfd_10g_bnkps.onnx"  # SCRFD face detector (insightface antelopev2)
RECOGNIZER_FILE = "glintr100.onnx"  # ArcFace recogniser (insightface antelopev2)
LANDMARKER_FILE = "face_landmarker_v2_with_blendshapes.task"  # MediaPipe face landmarker bundle (a zip archive)
#: The same MediaPipe bundle shipped with the pack (Apache-2.0, byte-identical to the released download's).
SHIPPED_LANDMARKER_TASK = Path(__file__).resolve().parent / "face" / "assets" / LANDMARKER_FILE
SEPARATOR_SUBDIR = "audio_separator"
SEPARATOR_FILE = "Kim_Vocal_2.onnx"  # MDX-Net vocal separation model

#: The precisions a user can name (``auto`` aside); :data:`DTYPES` maps them to torch dtypes.
PRECISION_NAMES = ("fp32", "fp16", "bf16")


def _torch_dtypes() -> dict[str, torch.dtype]:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def __getattr__(name: str) -> object:
    """``DTYPES`` ({name: torch dtype}) is made on first use, so that importing this module loads no torch."""
    if name == "DTYPES":
        return _torch_dtypes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_dtype(dtype: str | torch.dtype, device: torch.device | str = "cpu") -> torch.dtype:
    """'fp32' | 'fp16' | 'bf16' | 'auto' | torch.dtype -> torch.dtype ('auto': fp16 on CUDA, fp32 elsewhere)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in PRECISION_NAMES:
        raise ValueError(f"dtype {dtype!r} is not supported; use one of auto, {', '.join(PRECISION_NAMES)}")
    return _torch_dtypes()[dtype]


@public_name
class ModelFileMissing(FileNotFoundError):
    """A file of the model folder is missing; the message names the path and where it comes from."""


def missing_file_error(path: Path, what: str, repo_path: str, repo: str = HF_REPO,
                       error: type[ModelFileMissing] = ModelFileMissing) -> ModelFileMissing:
    """``error`` naming the missing ``path`` and the command that downloads ``repo_path`` (a file, or a folder
    ending in ``/``) of ``repo`` into the model folder that ``path`` belongs to."""
    get = f"--include '{repo_path}*'" if repo_path.endswith("/") else repo_path
    return error(
        f"{what} not found: expected {path}. Download '{repo_path}' from the Hugging Face repo '{repo}' into the "
        f"model folder: `hf download {repo} {get} --local-dir {_model_root(path, repo_path)}` (older "
        "huggingface_hub: `huggingface-cli download`, same arguments); keep the released layout (see README, "
        "'Model folder')."
    )


def check_model_file(path: Path, what: str, repo_path: str, repo: str = HF_REPO,
                     error: type[ModelFileMissing] = ModelFileMissing) -> Path:
    """``path`` if it is a non-empty regular file this user can read. Otherwise the true reason: ``error``
    (missing, with the download that provides it), or :class:`HalloInputError` for a folder, a FIFO or device, a
    file or folder this user may not read, or an empty file."""
    problem = file_problem(path)
    if problem is None:
        return path
    kind, text = problem
    if kind == MISSING:
        if os.path.islink(path):  # a dangling link: say where it points
            raise error(f"{what} {path} {text}; fix the link or download '{repo_path}' from the Hugging Face repo "
                        f"'{repo}'")
        raise missing_file_error(path, what, repo_path, repo, error)
    if kind == DENIED:
        raise HalloInputError(f"{what} {path} {text}; {PERMISSION_FIX}")
    raise HalloInputError(f"{what} {path} {text}; download '{repo_path}' again from the Hugging Face repo '{repo}'")


def _lexists(path: Path) -> bool:
    """Whether a name exists (a dangling link too); False where a folder above it cannot be searched."""
    return os.path.lexists(path)


def _model_root(path: Path, repo_path: str) -> str:
    """The model folder in which ``path`` is ``repo_path`` (or a file inside it), quoted for a shell."""
    want = Path(repo_path.rstrip("/")).parts
    parts = Path(path).parts
    for i in range(len(parts) - len(want), -1, -1):
        if parts[i : i + len(want)] == want:
            return shlex.quote(str(Path(*parts[:i]))) if i else "."
    return "<model folder>"


def face_model_file(model_dir: Path | str, filename: str,
                    error: type[ModelFileMissing] = ModelFileMissing) -> Path:
    """``<model_dir>/face_analysis/models/<filename>``, or ``error`` naming it and where to download it (or
    :class:`HalloInputError` when it is there but not a readable file)."""
    path = Path(model_dir) / FACE_MODELS_SUBDIR / filename
    return check_model_file(path, "face model file", f"{FACE_MODELS_SUBDIR}/{filename}", error=error)


_SHIPPED_TASK_NOTED: set[str] = set()


def landmarker_task_file(model_dir: Path | str) -> Path:
    """The MediaPipe ``.task`` for ``model_dir``: its own ``face_analysis/models`` copy when there is one, else
    the identical file shipped with the pack (said once per folder, at info level). Returns the folder's path,
    which may not exist, when neither is there (the caller names what is missing)."""
    own = Path(model_dir) / FACE_MODELS_SUBDIR / LANDMARKER_FILE
    if _lexists(own) or not SHIPPED_LANDMARKER_TASK.is_file():  # present, even if damaged: its true reason is told
        return own
    if str(own) not in _SHIPPED_TASK_NOTED:
        _SHIPPED_TASK_NOTED.add(str(own))
        logger.info("%s is not in the model folder: using the identical copy shipped with hallo-nodes (%s)",
                    LANDMARKER_FILE, SHIPPED_LANDMARKER_TASK)
    return SHIPPED_LANDMARKER_TASK


def wav2vec_folder(model_dir: Path | str) -> Path:
    """The wav2vec2 folder of a model root; the wav2vec2 folder itself (holding config.json) is accepted too."""
    model_dir = Path(model_dir)
    if _lexists(model_dir / "config.json") and not _lexists(model_dir / WAV2VEC_SUBDIR):
        return model_dir
    return model_dir / WAV2VEC_SUBDIR


def separator_model_file(path: Path | str) -> Path:
    """The vocal separation model: ``path`` may be the ``.onnx`` file, the ``audio_separator`` folder or the
    model root. The file may not exist (the caller says what is missing)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return path
    if path.name == SEPARATOR_SUBDIR:
        return path / SEPARATOR_FILE
    return path / SEPARATOR_SUBDIR / SEPARATOR_FILE


@dataclass(frozen=True)
class ModelFolder:
    """Paths inside a model folder laid out like the Hugging Face ``fudan-generative-ai/hallo`` repo."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> ModelFolder:
        root = Path(root).expanduser()
        try:
            os.stat(root)
        except PermissionError:
            raise HalloInputError(f"model folder {root} cannot be reached: permission denied for this user; "
                                  f"{PERMISSION_FIX}") from None
        except OSError:
            pass
        if not root.is_dir():
            raise ModelFileMissing(
                f"model folder not found: {root}. Point it at the folder that holds hallo/{CHECKPOINT_FILE}, "
                f"{Path(UNET_CONFIG).parts[0]}/, {VAE_SUBDIR}/, {Path(WAV2VEC_SUBDIR).parts[0]}/ and "
                f"{Path(FACE_MODELS_SUBDIR).parts[0]}/ (the Hugging Face repo '{HF_REPO}' downloaded as is)."
            )
        return cls(root)

    def checkpoint(self, variant: str = "hallo") -> Path:
        """``hallo/net.pth`` or ``hallo2/net.pth``; a converted ``net.safetensors`` beside it is preferred."""
        if variant not in HF_REPOS:
            raise ValueError(f"unknown checkpoint variant {variant!r}; use one of {VARIANTS}")
        pth = self.root / variant / CHECKPOINT_FILE
        st = pth.with_suffix(".safetensors")
        what, repo_path = f"{variant} checkpoint", f"{variant}/{CHECKPOINT_FILE}"
        return check_model_file(st if _lexists(st) else pth, what, repo_path, HF_REPOS[variant])

    @property
    def unet_config(self) -> Path:
        return check_model_file(self.root / UNET_CONFIG, "UNet architecture config", UNET_CONFIG)

    @property
    def vae_dir(self) -> Path:
        path = self.root / VAE_SUBDIR
        check_model_file(path / "config.json", f"VAE ({VAE_SUBDIR}) config", f"{VAE_SUBDIR}/")
        return path

    @property
    def vae_weights(self) -> Path:
        """``diffusion_pytorch_model.safetensors`` (or the older ``.bin``) of the VAE folder."""
        weights = self.vae_dir / VAE_WEIGHTS
        bin_weights = weights.with_suffix(".bin")
        path = bin_weights if not _lexists(weights) and _lexists(bin_weights) else weights
        return check_model_file(path, "VAE weights", f"{VAE_SUBDIR}/{VAE_WEIGHTS}")

    @property
    def wav2vec_dir(self) -> Path:
        path = self.root / WAV2VEC_SUBDIR
        check_model_file(path / "config.json", "wav2vec2 audio encoder config", f"{WAV2VEC_SUBDIR}/")
        return path

    @property
    def wav2vec_weights(self) -> Path:
        return check_model_file(self.wav2vec_dir / WAV2VEC_WEIGHTS, "wav2vec2 weights",
                                f"{WAV2VEC_SUBDIR}/{WAV2VEC_WEIGHTS}")

    def check_files(self, variant: str = "hallo", *, face: bool = True) -> None:
        """At the door: every file a render opens is a readable regular file (``face``: the face models too).
        Whether their contents load is checked when they load (truncated, corrupt, NaN weights)."""
        self.checkpoint(variant)
        self.unet_config  # noqa: B018 - the properties check
        self.vae_weights  # noqa: B018
        self.wav2vec_weights  # noqa: B018
        if face:
            for name in (DETECTOR_FILE, RECOGNIZER_FILE):
                face_model_file(self.root, name)
            task = landmarker_task_file(self.root)  # the folder's own, else the copy shipped with the pack
            check_model_file(task, "face model file", f"{FACE_MODELS_SUBDIR}/{LANDMARKER_FILE}")

    @property
    def face_models_dir(self) -> Path:
        path = self.root / FACE_MODELS_SUBDIR
        if not path.is_dir():
            raise missing_file_error(path, "face analysis models", f"{FACE_MODELS_SUBDIR}/")
        return path

    @property
    def landmarker_task(self) -> Path:
        """Where MediaPipe's ``face_landmarker_v2_with_blendshapes.task`` belongs (it may be absent)."""
        return self.root / FACE_MODELS_SUBDIR / LANDMARKER_FILE

    def available_variants(self) -> list[str]:
        return [v for v in VARIANTS if _lexists(self.root / v / CHECKPOINT_FILE)
                or _lexists(self.root / v / "net.safetensors")]
