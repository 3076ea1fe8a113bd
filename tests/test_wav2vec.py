"""wav2vec2 folder writer, loader and Hallo's interpolating forward vs the transformers model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from audio_helpers import hf_reference_states, make_encoder  # noqa: E402
from hallo_nodes.pipeline.audio.features import normalize_wave  # noqa: E402
from hallo_nodes.pipeline.audio.wav2vec import load_wav2vec  # noqa: E402
from hallo_nodes.testing.tiny_wav2vec import write_wav2vec_folder  # noqa: E402
from safetensors import safe_open
from safetensors.torch import load_file, save_file

# Released key names of facebook/wav2vec2-base-960h's model.safetensors (a Wav2Vec2ForCTC).
RELEASED_KEYS = [
    "wav2vec2.feature_extractor.conv_layers.0.conv.weight",
    "wav2vec2.feature_extractor.conv_layers.0.layer_norm.weight",
    "wav2vec2.feature_extractor.conv_layers.0.layer_norm.bias",
    "wav2vec2.feature_extractor.conv_layers.6.conv.weight",
    "wav2vec2.feature_projection.layer_norm.weight",
    "wav2vec2.feature_projection.projection.weight",
    "wav2vec2.feature_projection.projection.bias",
    "wav2vec2.encoder.pos_conv_embed.conv.weight_g",
    "wav2vec2.encoder.pos_conv_embed.conv.weight_v",
    "wav2vec2.encoder.pos_conv_embed.conv.bias",
    "wav2vec2.encoder.layer_norm.weight",
    "wav2vec2.encoder.layers.0.attention.k_proj.weight",
    "wav2vec2.encoder.layers.0.attention.out_proj.bias",
    "wav2vec2.encoder.layers.11.feed_forward.intermediate_dense.weight",
    "wav2vec2.encoder.layers.11.feed_forward.output_dense.bias",
    "wav2vec2.encoder.layers.11.final_layer_norm.bias",
    "wav2vec2.masked_spec_embed",
    "lm_head.weight",
    "lm_head.bias",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("w2v")
    write_wav2vec_folder(root / "wav2vec" / "wav2vec2-base-960h", tiny=True, seed=1)
    return root


def test_tiny_folder_layout_and_keys(tiny_dir: Path) -> None:
    folder = tiny_dir / "wav2vec" / "wav2vec2-base-960h"
    assert {p.name for p in folder.iterdir()} >= {"config.json", "preprocessor_config.json", "model.safetensors"}
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 12 and cfg["hidden_size"] == 32
    assert cfg["conv_kernel"] == [10, 3, 3, 3, 3, 2, 2] and cfg["conv_stride"] == [5, 2, 2, 2, 2, 2, 2]
    assert cfg["feat_extract_norm"] == "group" and cfg["do_stable_layer_norm"] is False
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["do_normalize"] is True and pre["sampling_rate"] == 16000
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert set(RELEASED_KEYS) <= keys
    assert not any("parametrizations" in k for k in keys)
    assert sum(k.startswith("wav2vec2.encoder.layers.") and k.endswith("k_proj.weight") for k in keys) == 12


def test_full_size_config_loads_and_runs(tmp_path: Path) -> None:
    """The released wav2vec2-base-960h config, random weights, through the real transformers code."""
    folder = write_wav2vec_folder(tmp_path / "wav2vec" / "wav2vec2-base-960h", tiny=False, seed=0)
    cfg = json.loads((folder / "config.json").read_text())
    expect = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
              "conv_dim": [512] * 7, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
              "feat_extract_norm": "group", "do_stable_layer_norm": False}
    assert {k: cfg[k] for k in expect} == expect
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert f.get_slice("wav2vec2.encoder.pos_conv_embed.conv.weight_v").get_shape() == [768, 48, 128]
        assert f.get_slice("wav2vec2.encoder.pos_conv_embed.conv.weight_g").get_shape() == [1, 1, 128]
        assert f.get_slice("wav2vec2.feature_extractor.conv_layers.0.conv.weight").get_shape() == [512, 1, 10]
        assert f.get_slice("lm_head.weight").get_shape() == [32, 768]
    enc = load_wav2vec(tmp_path)
    n_params = sum(p.numel() for p in enc.model.parameters())
    assert 94_000_000 < n_params < 95_000_000  # wav2vec2-base: 94.4 M without the CTC head
    wave = normalize_wave(torch.randn(16000 * 2))
    out = enc(wave, 50)
    assert out.shape == (50, 12, 768) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_loaded_weights_equal_file(tiny_dir: Path) -> None:
    enc = load_wav2vec(tiny_dir)
    raw = load_file(str(tiny_dir / "wav2vec" / "wav2vec2-base-960h" / "model.safetensors"))
    m = enc.model
    assert torch.equal(m.feature_projection.projection.weight, raw["wav2vec2.feature_projection.projection.weight"])
    q_bias = raw["wav2vec2.encoder.layers.7.attention.q_proj.bias"]
    assert torch.equal(m.encoder.layers[7].attention.q_proj.bias, q_bias)
    g = raw["wav2vec2.encoder.pos_conv_embed.conv.weight_g"]
    v = raw["wav2vec2.encoder.pos_conv_embed.conv.weight_v"]
    effective = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight norm over dim 2
    assert torch.allclose(m.encoder.pos_conv_embed.conv.weight, effective, atol=1e-6)
    assert not m.training and enc.dtype == torch.float32
    assert (enc.cnn_hop, enc.cnn_field) == (320, 400)


def test_accepts_the_wav2vec_folder_itself(tiny_dir: Path) -> None:
    enc = load_wav2vec(tiny_dir / "wav2vec" / "wav2vec2-base-960h")
    assert enc.num_layers == 12


def test_forward_matches_transformers_with_interpolation_before_encoder(tiny_dir: Path) -> None:
    """Ours == official Wav2Vec2Model.forward(hidden_states[1:]) with the CNN output interpolated
    (independently, with numpy) to the frame count; and != interpolating after the encoder."""
    enc = load_wav2vec(tiny_dir)
    torch.manual_seed(0)
    wave = normalize_wave(torch.randn(16000 * 3) * torch.linspace(0.1, 1.0, 48000))
    for seq_len in (75, 80, 37):
        ours = enc(wave, seq_len)
        ref = hf_reference_states(enc.model, wave, seq_len)
        assert ours.shape == ref.shape == (seq_len, 12, 32)
        assert torch.allclose(ours, ref, atol=2e-4, rtol=1e-4), (ours - ref).abs().max()
    # Identity interpolation: ours equals the plain transformers forward at 50 Hz.
    t50 = enc.cnn_features(wave[None]).shape[1]
    with torch.no_grad():
        plain = enc.model(wave[None], output_hidden_states=True)
    plain_states = torch.stack(plain.hidden_states[1:], dim=1)[0].permute(1, 0, 2)
    assert torch.allclose(enc(wave, t50), plain_states, atol=2e-4)
    # Interpolating *after* the encoder (the wrong order) gives clearly different features.
    after = torch.nn.functional.interpolate(plain_states.permute(1, 2, 0), size=75, mode="linear",
                                            align_corners=True).permute(2, 0, 1)
    ours75 = enc(wave, 75)
    assert (after - ours75).norm() > 0.2 * ours75.norm()


def test_dtype_argument(tiny_dir: Path) -> None:
    enc = load_wav2vec(tiny_dir, dtype=torch.bfloat16)
    assert enc.dtype == torch.bfloat16
    out = enc(normalize_wave(torch.randn(16000)), 25)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_missing_folder_and_files_name_the_path(tmp_path: Path) -> None:
    expected = tmp_path / "wav2vec" / "wav2vec2-base-960h"
    with pytest.raises(FileNotFoundError) as err:
        load_wav2vec(tmp_path)
    msg = str(err.value)
    assert str(expected) in msg and "fudan-generative-ai/hallo" in msg and "wav2vec/wav2vec2-base-960h" in msg
    expected.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_wav2vec(tmp_path)
    (expected / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError) as err:
        load_wav2vec(tmp_path)
    assert str(expected / "model.safetensors") in str(err.value)


def test_mismatched_weights_are_reported(tmp_path: Path, tiny_dir: Path) -> None:
    src = tiny_dir / "wav2vec" / "wav2vec2-base-960h"
    dst = tmp_path / "wav2vec" / "wav2vec2-base-960h"
    dst.mkdir(parents=True)
    (dst / "config.json").write_text((src / "config.json").read_text())
    state = load_file(str(src / "model.safetensors"))
    del state["wav2vec2.encoder.layers.3.attention.v_proj.weight"]
    save_file(state, str(dst / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing \['encoder.layers.3.attention.v_proj.weight'\]"):
        load_wav2vec(tmp_path)


def test_make_encoder_helper_is_deterministic(tmp_path: Path) -> None:
    a = make_encoder(tmp_path / "a", seed=3)
    b = make_encoder(tmp_path / "b", seed=3)
    wave = normalize_wave(torch.randn(8000))
    assert torch.equal(a(wave, 13), b(wave, 13))
