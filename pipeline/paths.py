"""The released Hallo model-folder layout and clear errors for anything missing from it (hallo.md §3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import public_name

HF_REPOS = {"hallo": "fudan-generative-ai/hallo", "hallo2": "fudan-generative-ai/hallo2"}
VARIANTS = tuple(HF_REPOS)


@public_name
class ModelFileMissing(FileNotFoundError):
    """A file of the model folder is missing; the message names the path and where it comes from."""


def missing_file_error(path: Path, what: str, repo_path: str, repo: str = HF_REPOS["hallo"]) -> ModelFileMissing:
    return ModelFileMissing(
        f"{what} not found: expected {path}. Download '{repo_path}' from the Hugging Face repo '{repo}' "
        f"(for example `huggingface-cli download {repo} --local-dir <models>/hallo-models`) and keep the "
        "released folder layout (see README, 'Model folder')."
    )


@dataclass(frozen=True)
class ModelFolder:
    """Paths inside a model folder laid out like the Hugging Face ``fudan-generative-ai/hallo`` repo."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> ModelFolder:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ModelFileMissing(
                f"model folder not found: {root}. Point it at the folder that holds hallo/net.pth, "
                "stable-diffusion-v1-5/, sd-vae-ft-mse/, wav2vec/ and face_analysis/ (the Hugging Face repo "
                "'fudan-generative-ai/hallo' downloaded as is)."
            )
        return cls(root)

    def checkpoint(self, variant: str = "hallo") -> Path:
        """``hallo/net.pth`` or ``hallo2/net.pth``; a converted ``net.safetensors`` beside it is preferred."""
        if variant not in HF_REPOS:
            raise ValueError(f"unknown checkpoint variant {variant!r}; use one of {VARIANTS}")
        pth = self.root / variant / "net.pth"
        st = pth.with_suffix(".safetensors")
        if st.is_file():
            return st
        if not pth.is_file():
            raise missing_file_error(pth, f"{variant} checkpoint", f"{variant}/net.pth", HF_REPOS[variant])
        return pth

    @property
    def unet_config(self) -> Path:
        path = self.root / "stable-diffusion-v1-5" / "unet" / "config.json"
        if not path.is_file():
            raise missing_file_error(path, "UNet architecture config", "stable-diffusion-v1-5/unet/config.json")
        return path

    @property
    def vae_dir(self) -> Path:
        path = self.root / "sd-vae-ft-mse"
        if not (path / "config.json").is_file():
            raise missing_file_error(path / "config.json", "VAE (sd-vae-ft-mse)", "sd-vae-ft-mse/")
        return path

    @property
    def wav2vec_dir(self) -> Path:
        path = self.root / "wav2vec" / "wav2vec2-base-960h"
        if not (path / "config.json").is_file():
            raise missing_file_error(path / "config.json", "wav2vec2 audio encoder", "wav2vec/wav2vec2-base-960h/")
        return path

    @property
    def face_models_dir(self) -> Path:
        path = self.root / "face_analysis" / "models"
        if not path.is_dir():
            raise missing_file_error(path, "face analysis models", "face_analysis/models/")
        return path

    def available_variants(self) -> list[str]:
        return [v for v in VARIANTS if (self.root / v / "net.pth").is_file()
                or (self.root / v / "net.safetensors").is_file()]
