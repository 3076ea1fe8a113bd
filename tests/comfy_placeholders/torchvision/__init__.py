"""Test-only torchvision placeholder (see ../README.md): imports, but its functions raise when called."""

from torchvision import io, models, ops, transforms
from torchvision._missing import module_getattr

__version__ = "0.0.0+placeholder"
__all__ = ["io", "models", "ops", "transforms"]
__getattr__ = module_getattr(__name__)
