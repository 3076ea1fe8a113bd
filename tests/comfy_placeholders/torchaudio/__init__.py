"""Test-only torchaudio placeholder (see ../README.md): a real ``functional.resample``, nothing else."""

from torchaudio import functional, transforms

__version__ = "0.0.0+placeholder"
__all__ = ["functional", "transforms"]
