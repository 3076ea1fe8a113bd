"""The tiny model folder loads through the real loading code; every error case has a clear message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.models.checkpoint import CheckpointError, convert_to_safetensors, read_state_dict
from hallo_nodes.pipeline.models.loading import load_net, load_vae, parse_dtype
from hallo_nodes.pipeline.paths import ModelFileMissing, ModelFolder


@pytest.fixture()
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "models"
    shutil.copytree(tiny_model_dir, dst)
    return dst


@pytest.mark.parametrize("variant", ["hallo", "hallo2"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_tiny_folder_loads(tiny_model_dir: Path, variant: str, dtype: str) -> None:
    net = load_net(tiny_model_dir, variant, dtype=dtype)
    state = read_state_dict(tiny_model_dir / variant / "net.pth")
    loaded = net.state_dict()
    assert all(not t.is_meta for t in loaded.values())
    assert {t.dtype for t in loaded.values()} == {parse_dtype(dtype)}
    # every kept tensor carries the file's values (fp16 file -> requested dtype)
    for key, value in loaded.items():
        torch.testing.assert_close(value.float(), state[key].float(), rtol=1e-2, atol=1e-3)
    # the unused motion modules are validated, then dropped
    assert len(state) - len(loaded) == sum("down_blocks.3.motion_modules" in k or "up_blocks.0.motion_modules" in k
                                           for k in state)


def test_hallo_and_hallo2_are_different_weights(tiny_model_dir: Path) -> None:
    a = load_net(tiny_model_dir, "hallo").imageproj.proj.weight
    b = load_net(tiny_model_dir, "hallo2").imageproj.proj.weight
    assert not torch.equal(a, b)


def test_keep_unused_motion_modules(tiny_model_dir: Path) -> None:
    net = load_net(tiny_model_dir, "hallo", keep_unused_motion_modules=True)
    assert len(net.state_dict()) == len(read_state_dict(tiny_model_dir / "hallo" / "net.pth"))


def test_vae_loads(tiny_model_dir: Path) -> None:
    vae = load_vae(tiny_model_dir, dtype="bf16")
    assert next(vae.parameters()).dtype == torch.bfloat16


def test_missing_folder_names_path(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing, match="model folder not found: .*nowhere"):
        load_net(tmp_path / "nowhere")


def test_missing_checkpoint_names_path_and_download(model_copy: Path) -> None:
    (model_copy / "hallo2" / "net.pth").unlink()
    expected = str(model_copy / "hallo2" / "net.pth")
    with pytest.raises(ModelFileMissing) as err:
        load_net(model_copy, "hallo2")
    assert expected in str(err.value)
    assert "fudan-generative-ai/hallo2" in str(err.value)


def test_missing_unet_config_names_path(model_copy: Path) -> None:
    shutil.rmtree(model_copy / "stable-diffusion-v1-5")
    with pytest.raises(ModelFileMissing, match=r"stable-diffusion-v1-5/unet/config\.json"):
        load_net(model_copy)


def test_missing_vae_names_path(model_copy: Path) -> None:
    (model_copy / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelFileMissing, match=r"sd-vae-ft-mse/diffusion_pytorch_model\.safetensors"):
        load_vae(model_copy)


def test_missing_keys_refused_with_counts(model_copy: Path) -> None:
    path = model_copy / "hallo" / "net.pth"
    state = torch.load(path, weights_only=True)
    dropped = [k for k in state if k.startswith("audioproj.")]
    for k in dropped:
        del state[k]
    state["denoising_unet.extra.weight"] = torch.zeros(1)
    state["imageproj.proj.bias"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_net(model_copy)
    msg = str(err.value)
    assert f"{len(dropped)} missing keys (e.g. audioproj." in msg
    assert "1 unexpected keys (e.g. denoising_unet.extra.weight)" in msg
    assert "1 keys with the wrong shape (e.g. imageproj.proj.bias: file (3,)" in msg
    assert "Nothing was loaded" in msg


def test_truncated_checkpoint(model_copy: Path) -> None:
    path = model_copy / "hallo" / "net.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt download"):
        load_net(model_copy)


def test_non_checkpoint_file(model_copy: Path) -> None:
    (model_copy / "hallo" / "net.pth").write_text("<html>404 not found</html>")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_net(model_copy)


def test_empty_checkpoint(model_copy: Path) -> None:
    (model_copy / "hallo" / "net.pth").write_bytes(b"")
    with pytest.raises(HalloInputError, match="is empty"):  # at the door, before torch.load
        load_net(model_copy)


def test_pickled_objects_refused(model_copy: Path) -> None:
    import datetime

    torch.save({"x": datetime.date(2024, 6, 1)}, model_copy / "hallo" / "net.pth")
    with pytest.raises(CheckpointError, match="unpickle arbitrary objects"):
        load_net(model_copy)


def test_not_a_state_dict(model_copy: Path) -> None:
    torch.save([torch.zeros(1)], model_copy / "hallo" / "net.pth")
    with pytest.raises(CheckpointError, match="flat dict of tensors"):
        load_net(model_copy)


def test_safetensors_conversion_is_preferred_and_identical(model_copy: Path) -> None:
    pth = model_copy / "hallo" / "net.pth"
    st = convert_to_safetensors(pth)
    assert st.name == "net.safetensors" and not st.with_name("net.safetensors.partial").exists()
    assert ModelFolder.at(model_copy).checkpoint("hallo") == st
    a = load_net(model_copy, "hallo", checkpoint=pth).state_dict()
    b = load_net(model_copy, "hallo").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_safetensors(model_copy: Path) -> None:
    (model_copy / "hallo" / "net.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_net(model_copy)


def test_bad_dtype_and_variant(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="dtype 'int8' is not supported"):
        load_net(tiny_model_dir, dtype="int8")
    with pytest.raises(ValueError, match="unknown checkpoint variant 'hallo3'"):
        load_net(tiny_model_dir, "hallo3")


def _edit_checkpoint(model_copy: Path, suffix: str, edit) -> str:
    path = model_copy / "hallo" / "net.pth"
    state = torch.load(path, weights_only=True)
    key = next(k for k in state if k.endswith(suffix))
    state[key] = edit(state[key])
    torch.save(state, path)
    return key


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_refused_naming_file_and_key(model_copy: Path, value: float) -> None:
    def poison(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t.view(-1)[t.numel() // 2] = value
        return t

    key = _edit_checkpoint(model_copy, "audioproj.proj1.weight", poison)
    with pytest.raises(CheckpointError, match="NaN or infinite") as info:
        load_net(model_copy, "hallo")
    assert key in str(info.value) and "net.pth" in str(info.value)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int8, torch.int32])
def test_non_float_weights_refused(model_copy: Path, dtype: torch.dtype) -> None:
    key = _edit_checkpoint(model_copy, "conv_in.weight", lambda t: t.to(dtype))
    with pytest.raises(CheckpointError, match="not floating point") as info:
        load_net(model_copy, "hallo")
    assert key in str(info.value)


def test_corrupt_vae_files_name_the_folder(model_copy: Path) -> None:
    vae = model_copy / "sd-vae-ft-mse"
    weights = vae / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    with pytest.raises(CheckpointError, match="sd-vae-ft-mse"):
        load_vae(model_copy)
    (vae / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="sd-vae-ft-mse"):
        load_vae(model_copy)
