"""wav2vec2-base-960h audio encoder, run exactly as Hallo runs it.

Hallo's forward (``hallo/models/wav2vec.py``): CNN feature extractor (50 Hz, 512 channels) ->
linear interpolation (``align_corners=True``) to the video frame count -> feature projection ->
transformer encoder (so the positional conv and all 12 layers see a frame-rate sequence) ->
hidden states of layers 1..12 stacked to ``(N, 12, C)``. No SpecAugment masking (eval).

The weights are the released Hugging Face folder ``wav2vec/wav2vec2-base-960h`` (a
``Wav2Vec2ForCTC`` checkpoint: keys prefixed ``wav2vec2.``, ``lm_head.*`` unused, the positional
conv stored as weight-norm ``weight_g``/``weight_v``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import HalloInputError
from ..file_checks import PERMISSION_FIX
from ..models.checkpoint import check_finite
from ..paths import (
    HF_REPO,
    WAV2VEC_SUBDIR,
    WAV2VEC_WEIGHTS,
    ModelFileMissing,
    check_model_file,
    missing_file_error,
    wav2vec_folder,
)

logger = logging.getLogger(__name__)


def _missing(path: Path, what: str) -> ModelFileMissing:
    return missing_file_error(path, f"wav2vec2 {what}", f"{WAV2VEC_SUBDIR}/")


def _remap_state_dict(raw: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Map released checkpoint keys (CTC prefix, weight_g/weight_v) onto ``Wav2Vec2Model`` names."""
    own = set(model.state_dict().keys())
    uses_param = any(".parametrizations.weight." in k for k in own)
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith("lm_head.") or key.startswith("quantizer.") or key.startswith("project_"):
            continue
        k = key[len("wav2vec2.") :] if key.startswith("wav2vec2.") else key
        if uses_param:
            k = k.replace("conv.weight_g", "conv.parametrizations.weight.original0")
            k = k.replace("conv.weight_v", "conv.parametrizations.weight.original1")
        else:
            k = k.replace("conv.parametrizations.weight.original0", "conv.weight_g")
            k = k.replace("conv.parametrizations.weight.original1", "conv.weight_v")
        out[k] = value
    return out


class Wav2VecEncoder:
    """A loaded ``Wav2Vec2Model`` plus Hallo's interpolating forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()
        cfg = model.config
        self.hidden_size: int = int(cfg.hidden_size)
        self.num_layers: int = int(cfg.num_hidden_layers)
        # CNN geometry: receptive field and hop in samples (400 / 320 for the released config).
        hop, field = 1, 1
        for k, s in zip(cfg.conv_kernel, cfg.conv_stride, strict=True):
            field += (k - 1) * hop
            hop *= s
        self.cnn_hop: int = hop
        self.cnn_field: int = field

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Wav2VecEncoder:
        """Move the network (in place) and return ``self``."""
        self.model.to(device=device, dtype=dtype)
        return self

    # -- pieces (also used by the long-audio path in features.py) ------------------------------
    def cnn_features(self, wave: torch.Tensor) -> torch.Tensor:
        """CNN features ``(1, T50, C_conv)`` for a ``(1, S)`` normalised 16 kHz wave."""
        return self.model.feature_extractor(wave).transpose(1, 2)

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        """Feature projection (LayerNorm + Linear) of ``(1, N, C_conv)`` -> ``(1, N, hidden)``."""
        out = self.model.feature_projection(feats)
        return out[0] if isinstance(out, tuple) else out

    def encode_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """Run the transformer encoder; return the 12 layer outputs stacked as ``(N, L, C)``."""
        enc = self.model.encoder
        stable = bool(getattr(self.model.config, "do_stable_layer_norm", False))
        h = hidden + enc.pos_conv_embed(hidden)
        if not stable:
            h = enc.layer_norm(h)
        h = enc.dropout(h)
        # written layer by layer into one tensor: no list of 12 outputs plus a stacked copy of them
        states = torch.empty(h.shape[1], len(enc.layers), h.shape[2], dtype=h.dtype, device=h.device)
        for i, layer in enumerate(enc.layers):
            out = layer(h, attention_mask=None)
            h = out[0] if isinstance(out, tuple) else out
            if stable and i == len(enc.layers) - 1:
                h = enc.layer_norm(h)
            states[:, i] = h[0]
        return states

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Hallo's forward: ``(S,)`` or ``(1, S)`` normalised 16 kHz wave -> ``(seq_len, 12, C)`` float32."""
        if wave.ndim == 1:
            wave = wave[None]
        wave = wave.to(device=self.device, dtype=self.dtype)
        feats = self.cnn_features(wave)
        feats = interpolate_frames(feats, seq_len)
        hidden = self.project(feats)
        return self.encode_hidden(hidden).float()


def interpolate_frames(feats: torch.Tensor, seq_len: int) -> torch.Tensor:
    """``(1, T, C)`` -> ``(1, seq_len, C)`` with ``F.interpolate(mode='linear', align_corners=True)``."""
    return F.interpolate(feats.transpose(1, 2), size=int(seq_len), mode="linear", align_corners=True).transpose(
        1, 2
    )


def _build_model(config_dict: dict[str, Any]) -> torch.nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(**{k: v for k, v in config_dict.items() if k != "architectures"})
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:  # noqa: BLE001 - older/newer transformers may refuse; default is fine
        logger.debug("could not select sdpa attention for wav2vec2; using the default")
    try:
        return Wav2Vec2Model(cfg)
    except ValueError:  # transformers < 4.41 refuses sdpa for wav2vec2 here, at construction
        cfg._attn_implementation = "eager"
        return Wav2Vec2Model(cfg)


def _folder_files(model_dir: Path | str) -> tuple[Path, Path, Path]:
    """``(folder, config.json, weights)`` of the wav2vec2 folder, or :class:`ModelFileMissing` naming the gap."""
    folder = wav2vec_folder(model_dir)
    if not os.path.isdir(folder):
        raise _missing(folder, "folder")
    cfg_path = check_model_file(folder / "config.json", "wav2vec2 config", f"{WAV2VEC_SUBDIR}/config.json")
    weights = check_model_file(folder / WAV2VEC_WEIGHTS, "wav2vec2 weights", f"{WAV2VEC_SUBDIR}/{WAV2VEC_WEIGHTS}")
    return folder, cfg_path, weights


def _read_config(cfg_path: Path) -> dict[str, Any]:
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HalloInputError(f"wav2vec2 config {cfg_path} cannot be read ({exc.strerror or exc}); "
                              f"{PERMISSION_FIX}") from exc
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HalloInputError(f"wav2vec2 config {cfg_path} is not valid JSON ({exc}); download it again from "
                              f"'{HF_REPO}'") from exc
    if not isinstance(config, dict):
        raise HalloInputError(f"wav2vec2 config {cfg_path} is not a JSON object; download it again from '{HF_REPO}'")
    return config


def _checked_state(model: torch.nn.Module, weights: Path, cfg_path: Path, device: torch.device | str
                   ) -> dict[str, torch.Tensor]:
    """The checkpoint under the model's key names, every key and shape checked against the config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(str(weights), device=str(torch.device(device)))
    except (SafetensorError, OSError) as exc:
        raise HalloInputError(
            f"wav2vec2 weights {weights} cannot be read (truncated or corrupt download? {exc}); download "
            f"{WAV2VEC_SUBDIR}/ again from '{HF_REPO}'") from exc
    state = _remap_state_dict(raw, model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - {"masked_spec_embed"})
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"wav2vec2 weights {weights} do not match {cfg_path}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}. Re-download the folder "
            f"'{WAV2VEC_SUBDIR}' from '{HF_REPO}'."
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise ValueError(
                f"wav2vec2 weights {weights}: '{key}' has shape {tuple(value.shape)}, the config "
                f"expects {tuple(own[key].shape)}"
            )
    if "masked_spec_embed" in own and "masked_spec_embed" not in state:
        state["masked_spec_embed"] = torch.zeros_like(own["masked_spec_embed"], device=device)
    return state


def load_wav2vec(
    model_dir: Path | str,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Wav2VecEncoder:
    """Load ``<model_dir>/wav2vec/wav2vec2-base-960h`` (or that folder itself) into a ``Wav2VecEncoder``.

    The network is built on the meta device and materialised once on ``device`` before the
    safetensors weights are copied in (no random init, no second copy).
    """
    folder, cfg_path, weights = _folder_files(model_dir)
    config_dict = _read_config(cfg_path)
    with torch.device("meta"):
        model = _build_model(config_dict)
    model.to_empty(device=device)
    state = _checked_state(model, weights, cfg_path, device)
    model.load_state_dict(state, strict=True)
    del state
    check_finite(model.state_dict(), weights)  # the same check as the other networks' weights
    model.to(dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    logger.info("loaded wav2vec2 from %s (%d layers, hidden %d, %s on %s)", folder,
                model.config.num_hidden_layers, model.config.hidden_size, dtype, device)
    return Wav2VecEncoder(model)
