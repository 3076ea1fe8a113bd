"""Placeholder ``torchvision.ops``: every public name raises when called."""

from torchvision._missing import module_getattr
from torchvision.ops import boxes

__all__ = ["boxes"]
__getattr__ = module_getattr(__name__)
