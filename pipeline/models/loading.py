"""Loading the released Hallo / Hallo2 networks and the VAE from a model folder.

The network is allocated once: built on the ``meta`` device, checked key by key against the checkpoint,
then the checkpoint tensors are assigned in place and cast to the requested dtype.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..paths import HF_REPO, VAE_SUBDIR, ModelFolder, parse_dtype
from .architecture import HalloArchitecture, read_unet_config
from .checkpoint import CheckpointError, check_finite, check_float_dtypes, compare_keys, read_state_dict
from .net import HalloNet, build_net
from .unets import UNUSED_MOTION_BLOCKS

logger = logging.getLogger(__name__)


def architecture_for(unet_config: dict, state: dict[str, torch.Tensor]) -> HalloArchitecture:
    """The architecture: UNet layout from config.json, projection sizes read off the checkpoint's shapes."""
    arch = HalloArchitecture(unet=unet_config)
    try:
        proj1 = state["audioproj.proj1.weight"].shape
        proj3 = state["audioproj.proj3.weight"].shape
        image = state["imageproj.proj.weight"].shape
    except KeyError:
        return arch  # the key comparison reports what is missing
    per_frame = arch.audio_window * arch.audio_layers
    dim = arch.audio_dim
    return replace(
        arch,
        audio_intermediate=int(proj1[0]),
        audio_channels=int(proj1[1]) // per_frame if proj1[1] % per_frame == 0 else arch.audio_channels,
        audio_tokens=int(proj3[0]) // dim if proj3[0] % dim == 0 else arch.audio_tokens,
        face_embedding_dim=int(image[1]),
        face_tokens=int(image[0]) // arch.cross_attention_dim
        if image[0] % arch.cross_attention_dim == 0 else arch.face_tokens,
    )


def load_net(
    folder: ModelFolder | str | Path,
    variant: str = "hallo",
    *,
    checkpoint: Path | None = None,
    device: torch.device | str = "cpu",
    dtype: str | torch.dtype = "fp32",
    keep_unused_motion_modules: bool = False,
) -> HalloNet:
    """Load ``<folder>/<variant>/net.pth`` into a ``HalloNet``.

    The checkpoint must match the network exactly (all 2656 keys for the released files); otherwise a
    ``CheckpointError`` lists the missing, unexpected and mis-shaped keys and nothing is loaded. The motion
    modules of down_blocks.3/up_blocks.0 are part of that check but are then dropped (the trained code path
    never runs them; ~181 M parameters saved) unless ``keep_unused_motion_modules``.
    """
    folder = folder if isinstance(folder, ModelFolder) else ModelFolder.at(folder)
    ckpt = Path(checkpoint) if checkpoint is not None else folder.checkpoint(variant)
    torch_dtype = parse_dtype(dtype, device)
    started = time.perf_counter()
    state = read_state_dict(ckpt)
    arch = architecture_for(read_unet_config(folder.unet_config), state)
    net = build_net(arch, "meta")
    expected = {k: v.shape for k, v in net.state_dict().items()}
    report = compare_keys(expected, state)
    if not report.ok:
        raise CheckpointError(report.describe(ckpt))
    check_float_dtypes(state, ckpt)
    if not keep_unused_motion_modules:
        net.denoising_unet.drop_unused_motion_modules()
        prefixes = tuple(f"denoising_unet.{p}.motion_modules." for p in UNUSED_MOTION_BLOCKS)
        state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    net.load_state_dict(state, strict=True, assign=True)
    net.to(device=device, dtype=torch_dtype)
    net.requires_grad_(False)
    net.eval()
    check_finite(net.state_dict(), ckpt)
    leftovers = [n for n, t in list(net.named_parameters()) + list(net.named_buffers()) if t.is_meta]
    if leftovers:  # pragma: no cover - guarded by the strict key comparison above
        raise CheckpointError(f"{ckpt}: tensors were not loaded: {leftovers[:5]}")
    logger.info("loaded %s (%s, %s) in %.2f s", ckpt, variant, torch_dtype, time.perf_counter() - started)
    return net


def load_vae(folder: ModelFolder | str | Path, *, device: torch.device | str = "cpu",
             dtype: str | torch.dtype = "fp32"):
    """The ``sd-vae-ft-mse`` AutoencoderKL of the model folder."""
    from diffusers import AutoencoderKL

    folder = folder if isinstance(folder, ModelFolder) else ModelFolder.at(folder)
    vae_dir = folder.vae_dir
    folder.vae_weights  # noqa: B018 - a readable regular file, or the true reason
    try:
        vae = AutoencoderKL.from_pretrained(str(vae_dir), torch_dtype=parse_dtype(dtype, device),
                                            low_cpu_mem_usage=False)
    except (OSError, ValueError) as exc:  # diffusers reports a bad config.json or weights file as OSError
        raise CheckpointError(
            f"the VAE in {vae_dir} cannot be loaded (truncated or corrupt config.json or weights? "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); download "
            f"{VAE_SUBDIR}/ again from the Hugging Face repo 'stabilityai/sd-vae-ft-mse' or '{HF_REPO}'") from exc
    vae.to(device)
    check_finite(vae.state_dict(), vae_dir)
    vae.requires_grad_(False)
    vae.eval()
    return vae


@dataclass
class HalloModels:
    """The networks a render needs, loaded from one model folder."""

    folder: ModelFolder
    variant: str
    net: HalloNet
    vae: torch.nn.Module
    dtype: torch.dtype
    device: torch.device

    @property
    def is_hallo2(self) -> bool:
        return self.variant == "hallo2"


def load_models(
    root: str | Path,
    variant: str = "hallo",
    *,
    device: torch.device | str = "cpu",
    dtype: str | torch.dtype = "auto",
) -> HalloModels:
    """Load the denoising network and the VAE (the audio and face models load in their own modules)."""
    folder = ModelFolder.at(root)
    torch_dtype = parse_dtype(dtype, device)
    net = load_net(folder, variant, device=device, dtype=torch_dtype)
    vae = load_vae(folder, device=device, dtype=torch_dtype)
    return HalloModels(folder, variant, net, vae, torch_dtype, torch.device(device))
