"""Bad input to hallo-render fails early with exit status 2 and one line naming the input and the fix."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import add_face_task, assert_one_line_error, run_main, short_speech
from hallo_nodes.pipeline.sampling.sampler import clip_noise_generator
from PIL import Image


@pytest.fixture()
def models(tiny_model_dir: Path, assets: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny folder (the tests below damage it) with the real landmarker."""
    dst = tmp_path / "models"
    shutil.copytree(tiny_model_dir, dst, ignore=shutil.ignore_patterns("hallo2"))
    return add_face_task(dst, assets)


@pytest.fixture()
def audio(assets: Path, tmp_path: Path) -> Path:
    return short_speech(assets, tmp_path / "voice.wav")


def _argv(image: Path, audio: Path, models: Path, out: Path, *extra: str) -> list[str]:
    return ["--image", str(image), "--audio", str(audio), "--models", str(models), "--out", str(out),
            "--size", "64", "--steps", "1", "-q", *extra]


def _break_net(models: Path) -> None:
    """A checkpoint that fails to load: a check that comes before the load reports its own input instead."""
    (models / "hallo" / "net.pth").write_bytes(b"<html>not a checkpoint</html>")


@pytest.mark.parametrize("option", ["--cfg", "--lip-weight", "--pose-weight", "--face-weight",
                                    "--face-expand-ratio"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_options_refused_by_the_parser(option: str, value: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(["--image", "x.png", "--audio", "x.wav", "--models", str(tmp_path), f"{option}={value}"],
                         capsys)
    assert code == 2
    assert_one_line_error(err, option, "finite")


def test_seed_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in (str(2**64), "-1"):
        code, err = run_main(["--image", "x.png", "--audio", "x.wav", "--models", str(tmp_path), f"--seed={seed}"],
                             capsys)
        assert code == 2
        assert_one_line_error(err, "--seed", "2**64-1")
    # the largest accepted seed works in the sampler's generator and differs from seed 0
    top = clip_noise_generator(2**64 - 1, 0, (4,), torch.float32, None)
    zero = clip_noise_generator(0, 0, (4,), torch.float32, None)
    assert not torch.equal(torch.randn(4, generator=top), torch.randn(4, generator=zero))


def test_cache_interval_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hallo_nodes.pipeline.cli import _options, build_parser

    base = ["--image", "x.png", "--audio", "x.wav", "--models", str(tmp_path)]
    assert _options(build_parser().parse_args(base)).sampler.cache_interval == 1  # faithful: off
    assert _options(build_parser().parse_args([*base, "--preset", "cache"])).sampler.cache_interval == 3
    chosen = _options(build_parser().parse_args([*base, "--preset", "fast", "--cache-interval", "2"])).sampler
    assert (chosen.cache_interval, chosen.steps) == (2, 20)
    code, err = run_main([*base, "--cache-interval=0"], capsys)
    assert code == 2
    assert_one_line_error(err, "--cache-interval", "1 or more")


@pytest.mark.parametrize("name, expect", [("hallo", "no extension"), ("out.gif", "'.gif'"),
                                          ("out.wav", "'.wav'"), ("folder", "directory"),
                                          ("afile.txt/out.mp4", "not a folder")])
def test_bad_output_refused_before_any_work(name: str, expect: str, models: Path, assets: Path, audio: Path,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile.txt").write_text("x")
    _break_net(models)
    out = tmp_path / name
    code, err = run_main(_argv(assets / "portraits" / "statue.jpg", audio, models, out), capsys)
    assert code == 2
    assert_one_line_error(err, str(out), expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "folder", "models", "voice.wav"]


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps", "gpu"])
def test_unavailable_device(device: str, models: Path, assets: Path, audio: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    code, err = run_main(_argv(assets / "portraits" / "statue.jpg", audio, models, tmp_path / "o.mp4",
                               "--device", device), capsys)
    assert code == 2
    assert_one_line_error(err, f"--device {device}", "--device cpu")


def _truncated_jpeg(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 3])
    return dst


def _header_only_jpeg(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: data.index(b"\xff\xda")])  # everything before the first scan
    return dst


def _bomb(src: Path, dst: Path) -> Path:
    Image.new("1", (15000, 15000)).save(dst)  # 225 Mpx: beyond PIL's decompression-bomb limit
    return dst


@pytest.mark.parametrize("make, expect", [(_truncated_jpeg, "truncated"), (_header_only_jpeg, "cannot be decoded"),
                                          (_bomb, "too large")])
def test_broken_image_files(make, expect: str, models: Path, assets: Path, audio: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    image = make(assets / "portraits" / "statue.jpg", tmp_path / "portrait.png")
    code, err = run_main(_argv(image, audio, models, tmp_path / "o.mp4"), capsys)
    assert code == 2
    assert_one_line_error(err, str(image), expect)


def test_image_is_a_directory(models: Path, audio: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(_argv(tmp_path, audio, models, tmp_path / "o.mp4"), capsys)
    assert code == 2
    assert_one_line_error(err, str(tmp_path), "directory")


def test_no_face_reported_before_the_networks_load(models: Path, audio: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "wall.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((256, 256, 3)) * 60 + 100).astype(np.uint8)).save(image)
    _break_net(models)
    code, err = run_main(_argv(image, audio, models, tmp_path / "o.mp4"), capsys)
    assert code == 2
    assert_one_line_error(err, str(image), "face")
    assert "net.pth" not in err


def _corrupt_vae_config(models: Path) -> str:
    (models / "sd-vae-ft-mse" / "config.json").write_text('{"_class_name": "AutoencoderKL", ')
    return "sd-vae-ft-mse"


def _truncated_vae(models: Path) -> str:
    path = models / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    return "sd-vae-ft-mse"


def _truncated_wav2vec(models: Path) -> str:
    path = models / "wav2vec" / "wav2vec2-base-960h" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    return "wav2vec2-base-960h"


def _truncated_onnx(models: Path) -> str:
    path = models / "face_analysis" / "models" / "scrfd_10g_bnkps.onnx"
    path.write_bytes(path.read_bytes()[:3000])
    return "face_analysis"


def _truncated_task(models: Path) -> str:
    path = models / "face_analysis" / "models" / "face_landmarker_v2_with_blendshapes.task"
    path.write_bytes(path.read_bytes()[:100_000])
    return str(path)


def _checkpoint_with(dtype: torch.dtype):
    def damage(models: Path) -> str:
        path = models / "hallo" / "net.pth"
        state = torch.load(path, weights_only=True)
        key = next(k for k in state if k.endswith("conv_in.weight"))
        state[key] = state[key].to(dtype)
        torch.save(state, path)
        return key
    return damage


def _checkpoint_with_nan(models: Path) -> str:
    path = models / "hallo" / "net.pth"
    state = torch.load(path, weights_only=True)
    key = next(k for k in state if k.endswith("audioproj.proj1.weight"))
    state[key][0, 0] = float("nan")
    torch.save(state, path)
    return key


@pytest.mark.parametrize("damage", [_corrupt_vae_config, _truncated_vae, _truncated_wav2vec, _truncated_onnx,
                                    _truncated_task, _checkpoint_with(torch.bool), _checkpoint_with(torch.int8),
                                    _checkpoint_with_nan],
                         ids=["vae-config", "vae-weights", "wav2vec", "onnx", "task", "bool", "int8", "nan"])
def test_damaged_model_files(damage, models: Path, assets: Path, audio: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    named = damage(models)
    out = tmp_path / "o.mp4"
    code, err = run_main(_argv(assets / "portraits" / "statue.jpg", audio, models, out), capsys)
    assert code == 2
    assert_one_line_error(err, named)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "voice.wav"]  # no output, no temporary file


@pytest.fixture()
def unprivileged(models: Path, audio: Path, assets: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A world-readable copy of (models, audio, image), and the effective user 'nobody' while inside.

    Root reads and writes through any permission bits, and CI runs as root: there the block runs with the
    effective ids of 'nobody' (65534), which root can take and give back, so the checks still run.
    """
    if os.name != "posix":
        pytest.skip("permission bits are POSIX")
    root = Path(tempfile.mkdtemp(prefix="hallo-perm-"))
    try:
        root.chmod(0o755)
        shutil.copytree(models, root / "models")
        shutil.copyfile(audio, root / "voice.wav")
        shutil.copyfile(assets / "portraits" / "statue.jpg", root / "statue.jpg")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        as_root = os.geteuid() == 0
        if as_root:
            os.setegid(65534)
            os.seteuid(65534)
        try:
            yield root / "models", root / "voice.wav", root / "statue.jpg"
        finally:
            if as_root:
                os.seteuid(0)
                os.setegid(0)
    finally:
        shutil.rmtree(root, ignore_errors=True)




def test_unwritable_output_folder(unprivileged: tuple[Path, Path, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    models, audio, image = unprivileged
    locked = image.parent / "locked"
    out = locked / "o.mp4"
    if os.geteuid() == 65534:  # running as 'nobody' inside root's folder: a folder nobody may write to
        os.seteuid(0)
        try:
            locked.mkdir(mode=0o555)
        finally:
            os.seteuid(65534)
    else:
        locked.mkdir()
        locked.chmod(0o555)
    code, err = run_main(_argv(image, audio, models, out), capsys)
    assert code == 2
    assert_one_line_error(err, str(out), "not writable")


def test_unreadable_image(unprivileged: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    models, audio, image = unprivileged
    if os.geteuid() == 65534:
        os.seteuid(0)
        try:
            image.chmod(0o000)
            out_dir = image.parent / "out"
            out_dir.mkdir()
            os.chown(out_dir, 65534, 65534)
        finally:
            os.seteuid(65534)
    else:
        image.chmod(0o000)
        out_dir = image.parent / "out"
        out_dir.mkdir()
    code, err = run_main(_argv(image, audio, models, out_dir / "o.mp4"), capsys)
    assert code == 2
    assert_one_line_error(err, str(image), "permission")


def test_output_inside_the_model_folder_refused(models: Path, assets: Path, audio: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = models / "hallo" / "render.mp4"
    code, err = run_main(_argv(assets / "portraits" / "statue.jpg", audio, models, out), capsys)
    assert code == 2
    assert_one_line_error(err, str(out), "model folder")
    assert not out.exists()


def test_only_our_own_value_errors_count_as_input_errors() -> None:
    """A ValueError from deep inside numpy/torch is a bug: it keeps its traceback instead of one vague line."""
    from hallo_nodes.pipeline.cli import is_input_error
    from hallo_nodes.pipeline.reference import check_output_size

    with pytest.raises(ValueError) as ours:
        check_output_size(100, 100)
    assert is_input_error(ours.value)
    with pytest.raises(ValueError) as foreign:
        np.zeros(3).reshape(2, 2)
    assert not is_input_error(foreign.value)
    assert not is_input_error(RuntimeError("a bug"))


def test_audio_is_a_directory(models: Path, assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(_argv(assets / "portraits" / "statue.jpg", tmp_path, models, tmp_path / "o.mp4"), capsys)
    assert code == 2
    assert_one_line_error(err, str(tmp_path), "directory")


def test_negative_face_index_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(["--image", "x.png", "--audio", "x.wav", "--models", str(tmp_path), "--face-index=-1"],
                         capsys)
    assert code == 2
    assert_one_line_error(err, "--face-index", "0 or more")
