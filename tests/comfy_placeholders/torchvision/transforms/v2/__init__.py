"""Placeholder ``torchvision.transforms.v2``: every public name raises when called."""

from torchvision._missing import module_getattr
from torchvision.transforms.v2 import functional

__all__ = ["functional"]
__getattr__ = module_getattr(__name__)
