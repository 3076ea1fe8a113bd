"""Placeholder ``torchvision.transforms``: a real ``InterpolationMode``; other public names raise when called."""

from enum import Enum

from torchvision._missing import module_getattr
from torchvision.transforms import functional, v2


class InterpolationMode(Enum):
    """The same members and values as torchvision's."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


__all__ = ["InterpolationMode", "functional", "v2"]
__getattr__ = module_getattr(__name__)
