"""The plain-torch residency: visiting networks come to the compute device only inside ``use`` blocks.

Without a GPU the "home" of the visiting networks is the meta device: a network that is sent home visibly
leaves the compute device (its weights become meta tensors), one that stays resident keeps its weights.
"""

from __future__ import annotations

import pytest
import torch
from hallo_nodes.pipeline.sampling.offload import module_device
from hallo_nodes.pipeline.sampling.residency import Residency, TorchResidency


def networks() -> dict[str, torch.nn.Module]:
    return {"net": torch.nn.Linear(2, 2), "vae": torch.nn.Linear(2, 2), "wav2vec": torch.nn.Linear(2, 2)}


def test_visiting_networks_leave_after_use_resident_ones_stay() -> None:
    modules = networks()
    residency = TorchResidency(modules, "cpu", visiting=["vae"], home="meta")
    assert isinstance(residency, Residency)
    with residency.use("net"):
        with residency.use("vae"):
            assert module_device(modules["vae"]).type == "cpu"
            out = modules["vae"](torch.ones(1, 2))
        assert module_device(modules["vae"]).type == "meta"  # sent home when its block ended
    assert torch.isfinite(out).all()
    assert module_device(modules["net"]).type == "cpu"  # resident: used where it is


def test_park_sends_every_visiting_network_home() -> None:
    modules = networks()
    TorchResidency(modules, "cpu", visiting=["vae", "wav2vec"], home="meta").park()
    assert [module_device(m).type for m in modules.values()] == ["cpu", "meta", "meta"]


def test_unknown_names_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="visiting networks \\['unet'\\]"):
        TorchResidency(networks(), "cpu", visiting=["unet"])
    residency = TorchResidency(networks(), "cpu")
    with pytest.raises(KeyError, match="no network named 'unet'"):
        with residency.use("unet"):
            pass
