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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

WAV2VEC_SUBDIR = Path("wav2vec") / "wav2vec2-base-960h"
HF_REPO = "fudan-generative-ai/hallo"
_WEIGHT_FILES = ("model.safetensors",)

# Released facebook/wav2vec2-base-960h config.json values (the architecture-relevant ones plus
# the bookkeeping fields the released file carries).
_BASE_960H_CONFIG: dict[str, Any] = {
    "activation_dropout": 0.1,
    "apply_spec_augment": True,
    "architectures": ["Wav2Vec2ForCTC"],
    "attention_dropout": 0.1,
    "bos_token_id": 1,
    "conv_bias": False,
    "conv_dim": [512, 512, 512, 512, 512, 512, 512],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1,
    "final_dropout": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.1,
    "mask_feature_length": 10,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_prob": 0.05,
    "model_type": "wav2vec2",
    "num_attention_heads": 12,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "vocab_size": 32,
}

_TINY_OVERRIDES: dict[str, Any] = {
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [32] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}

_PREPROCESSOR_CONFIG: dict[str, Any] = {
    "do_normalize": True,
    "feature_extractor_type": "Wav2Vec2FeatureExtractor",
    "feature_size": 1,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "sampling_rate": 16000,
}


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"wav2vec2 {what} not found: expected {path}. It comes from the Hugging Face repo "
        f"'{HF_REPO}' (folder '{WAV2VEC_SUBDIR.as_posix()}'); download that folder into "
        f"<models>/hallo/{WAV2VEC_SUBDIR.as_posix()}/."
    )


def resolve_wav2vec_dir(model_dir: Path | str) -> Path:
    """Return the wav2vec folder for a model root (or accept the wav2vec folder itself)."""
    model_dir = Path(model_dir)
    if (model_dir / "config.json").is_file() and not (model_dir / WAV2VEC_SUBDIR).exists():
        return model_dir
    return model_dir / WAV2VEC_SUBDIR


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
    """A loaded ``Wav2Vec2Model`` plus Hallo's interpolating forward.

    ``identity`` is a stable string (folder + file size/mtime + dtype) used as a cache key.
    """

    def __init__(self, model: torch.nn.Module, identity: str) -> None:
        self.model = model.eval()
        self.identity = identity
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

    # -- pieces (also used by the long-audio path in audio_features) ---------------------------
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
    return Wav2Vec2Model(cfg)


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
    from safetensors.torch import load_file

    folder = resolve_wav2vec_dir(model_dir)
    if not folder.is_dir():
        raise _missing(folder, "folder")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise _missing(cfg_path, "config.json")
    weights = next((folder / n for n in _WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise _missing(folder / _WEIGHT_FILES[0], "weights file")
    try:
        config_dict = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"wav2vec2 config {cfg_path} is not valid JSON ({exc}); re-download it from "
                         f"'{HF_REPO}'") from exc

    with torch.device("meta"):
        model = _build_model(config_dict)
    model.to_empty(device=device)
    raw = load_file(str(weights), device=str(torch.device(device)))
    state = _remap_state_dict(raw, model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - {"masked_spec_embed"})
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"wav2vec2 weights {weights} do not match {cfg_path}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}. Re-download the folder "
            f"'{WAV2VEC_SUBDIR.as_posix()}' from '{HF_REPO}'."
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise ValueError(
                f"wav2vec2 weights {weights}: '{key}' has shape {tuple(value.shape)}, the config "
                f"expects {tuple(own[key].shape)}"
            )
    if "masked_spec_embed" in own and "masked_spec_embed" not in state:
        state["masked_spec_embed"] = torch.zeros_like(own["masked_spec_embed"], device=device)
    model.load_state_dict(state, strict=True)
    del raw, state
    model.to(dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    stat = weights.stat()
    identity = f"wav2vec:{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{dtype}"
    logger.info("loaded wav2vec2 from %s (%d layers, hidden %d, %s on %s)", folder,
                model.config.num_hidden_layers, model.config.hidden_size, dtype, device)
    return Wav2VecEncoder(model, identity)


def wav2vec_config(tiny: bool = True) -> dict[str, Any]:
    """The released base-960h config (``tiny=False``) or its tiny-width twin (12 layers kept)."""
    cfg = dict(_BASE_960H_CONFIG)
    if tiny:
        cfg.update(_TINY_OVERRIDES)
    return cfg


def write_wav2vec_folder(dst: Path, *, tiny: bool = True, seed: int = 0) -> Path:
    """Write a random-weight wav2vec2 folder in the released layout and key naming; returns ``dst``.

    Files: ``config.json``, ``preprocessor_config.json``, ``model.safetensors`` (a
    ``Wav2Vec2ForCTC`` state dict: ``wav2vec2.*`` keys, weight-norm ``weight_g``/``weight_v``,
    ``lm_head.*``). Weights are scaled by ``1/sqrt(fan_in)`` so activations stay O(1).
    """
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    cfg_dict = wav2vec_config(tiny)
    with torch.device("meta"):
        shapes = {
            k: tuple(v.shape)
            for k, v in Wav2Vec2ForCTC(
                Wav2Vec2Config(**{k: v for k, v in cfg_dict.items() if k != "architectures"})
            ).state_dict().items()
        }
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        name = key.replace("conv.parametrizations.weight.original0", "conv.weight_g").replace(
            "conv.parametrizations.weight.original1", "conv.weight_v"
        )
        if name.endswith("weight_g"):
            t = torch.ones(shape)
        elif "norm" in name and name.endswith(".weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith(".bias") or name.endswith("masked_spec_embed"):
            t = 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            if name.endswith("weight_v"):
                fan_in = shape[0]  # weight-norm over dim 2: each kernel tap is normalised
            t = torch.randn(shape, generator=gen) / max(1, fan_in) ** 0.5
        state[name] = t.to(torch.float32).contiguous()
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    full_cfg = dict(cfg_dict)
    full_cfg["transformers_version"] = "4.7.0.dev0"
    (dst / "config.json").write_text(json.dumps(full_cfg, indent=2, sort_keys=True), encoding="utf-8")
    (dst / "preprocessor_config.json").write_text(json.dumps(_PREPROCESSOR_CONFIG, indent=2), encoding="utf-8")
    return dst
