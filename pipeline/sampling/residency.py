"""Model residency: which networks sit on the compute device, and when.

The clip loop asks for the networks it is about to run (``with residency.use(VAE): ...``); a residency
brings them to its ``device`` for the block and may let them go afterwards. Two implementations exist:

* :class:`TorchResidency` (here, plain torch): networks named *visiting* live on the CPU and visit the GPU
  only inside a ``use`` block (low-VRAM mode); all others stay where they were loaded.
* the ComfyUI one in the nodes layer, which hands the networks to ComfyUI's memory manager.

Names are shared by both: ``net`` (the whole Hallo network), ``reference_unet`` (its ReferenceNet, run once
per clip), ``vae`` and ``wav2vec``. In the original layout the ReferenceNet is part of ``net``; a residency that
cannot move it on its own maps it to ``net``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import torch

from .offload import offload_to_cpu, on_device

NET = "net"
REFERENCE_NET = "reference_unet"
VAE = "vae"
WAV2VEC = "wav2vec"


@runtime_checkable
class Residency(Protocol):
    """Brings named networks to ``device`` for the duration of a ``use`` block."""

    device: torch.device

    def use(self, *names: str) -> AbstractContextManager[None]:
        """Inside the block the named networks are on ``device``; afterwards they may move away again."""
        ...


class TorchResidency:
    """Plain-torch residency: *visiting* networks live on ``home`` and visit ``device`` while used.

    The ReferenceNet runs once per clip, the VAE once per clip (decode) and at most once more (motion-frame
    encode), wav2vec2 once per audio file; the denoising UNet runs at every step and stays put. A visit costs
    one host-to-device copy of the weights (ReferenceNet ~1.7 GB fp16, VAE ~0.17 GB). Networks that are not
    visiting are used wherever they are.
    """

    def __init__(self, modules: Mapping[str, torch.nn.Module], device: torch.device | str,
                 visiting: Collection[str] = (), home: torch.device | str = "cpu") -> None:
        unknown = sorted(set(visiting) - set(modules))
        if unknown:
            raise ValueError(f"TorchResidency: visiting networks {unknown} are not among {sorted(modules)}")
        self.modules = dict(modules)
        self.device = torch.device(device)
        self.visiting = frozenset(visiting)
        self.home = torch.device(home)

    def park(self) -> None:
        """Send every visiting network home now (before a render, so the first clip starts with them away)."""
        if self.visiting:
            offload_to_cpu(*(self.modules[name] for name in sorted(self.visiting)), home=self.home)

    @contextlib.contextmanager
    def use(self, *names: str) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for name in names:
                if name not in self.modules:
                    raise KeyError(f"TorchResidency: no network named {name!r} (known: {sorted(self.modules)})")
                stack.enter_context(on_device(self.modules[name], self.device, name in self.visiting, self.home))
            yield


def network_modules(net: torch.nn.Module, vae: torch.nn.Module,
                    wav2vec: torch.nn.Module | None = None) -> dict[str, torch.nn.Module]:
    """The residency names of a loaded model's networks."""
    modules = {NET: net, REFERENCE_NET: net.reference_unet, VAE: vae}
    if wav2vec is not None:
        modules[WAV2VEC] = wav2vec
    return modules


def low_vram_residency(net: torch.nn.Module, vae: torch.nn.Module, device: torch.device | str, low_vram: bool,
                       wav2vec: torch.nn.Module | None = None) -> TorchResidency:
    """The plain-torch residency of a render: on CUDA in low-VRAM mode all but the denoiser visit the GPU."""
    modules = network_modules(net, vae, wav2vec)
    offload = low_vram and torch.device(device).type == "cuda"
    return TorchResidency(modules, device, visiting=[n for n in modules if n != NET] if offload else ())
