"""A random-weight wav2vec2 folder in the released ``wav2vec/wav2vec2-base-960h`` layout, for tests and benchmarks.

The folder holds what the Hugging Face download holds: ``config.json`` (the released values, or a
narrow twin with all 12 layers), ``preprocessor_config.json`` and ``model.safetensors`` with the
``Wav2Vec2ForCTC`` key naming (``wav2vec2.*``, weight-norm ``weight_g``/``weight_v``, ``lm_head.*``), so
:func:`~hallo_nodes.pipeline.audio.wav2vec.load_wav2vec` runs on it exactly as on the released weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..pipeline.paths import WAV2VEC_WEIGHTS

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
    save_file(state, str(dst / WAV2VEC_WEIGHTS), metadata={"format": "pt"})
    full_cfg = dict(cfg_dict)
    full_cfg["transformers_version"] = "4.7.0.dev0"
    (dst / "config.json").write_text(json.dumps(full_cfg, indent=2, sort_keys=True), encoding="utf-8")
    (dst / "preprocessor_config.json").write_text(json.dumps(_PREPROCESSOR_CONFIG, indent=2), encoding="utf-8")
    return dst
