"""Placeholder ``torchvision.ops.boxes``: every public name raises when called."""

from torchvision._missing import module_getattr

__getattr__ = module_getattr(__name__)
