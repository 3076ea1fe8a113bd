"""The README's hostile-input table, kept true: every row is a case run here, with the words the README quotes.

Also: the worst input each budget allows stays under its stated memory bound, Ctrl-C at any moment exits 130 with
one line, stale temporary files of killed renders are removed (only those), and the tiny model folder is readable
by others, as a download is.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from cli_helpers import RECORD_OWN_PEAK, add_face_task, as_nobody, own_peak_mb, run_main, short_speech
from hallo_nodes.pipeline.budgets import MAX_IMAGE_PIXELS
from hostile_inputs import AudioRecipe, ImageRecipe, make_audio, make_image
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"



class Case:
    """One row: ``make(root, models)`` returns the hallo-render arguments (or runs a node and returns its error)."""

    def __init__(self, make: Callable[[Path, Path], list[str] | str], nobody: bool = False) -> None:
        self.make, self.nobody = make, nobody


def _image(recipe: ImageRecipe) -> Callable[[Path, Path], list[str]]:
    return lambda root, models: ["--image", str(make_image(recipe, root / "portrait.png"))]


def _audio(recipe: AudioRecipe) -> Callable[[Path, Path], list[str]]:
    return lambda root, models: ["--audio", str(make_audio(recipe, root / "voice.wav"))]


def _long_wav(root: Path, models: Path) -> list[str]:
    path = root / "long.wav"
    with wave.open(str(path), "wb") as out:  # 1 h 40 s of 4 kHz 8-bit silence: 14.6 MB
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(4000)
        out.writeframes(b"\x80" * (4000 * 3640))
    return ["--audio", str(path)]


def _special(kind: str, where: str) -> Callable[[Path, Path], list[str]]:
    def make(root: Path, models: Path) -> list[str]:
        path = root / ("out.mp4" if where == "--out" else "input.png")
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dangling":
            path.symlink_to(root / "gone.mp4")
        elif kind == "unreadable":
            path.write_bytes(b"\x89PNG\r\n\x1a\n")
            path.chmod(0)
        return [where, str(path)]
    return make


def _model(name: str, damage: str) -> Callable[[Path, Path], list[str]]:
    def make(root: Path, models: Path) -> list[str]:
        path = models / name
        path.unlink()
        if damage == "dev-zero":
            path.symlink_to("/dev/zero")
        else:
            path.write_bytes(b"{}" if path.suffix == ".json" else b"PK\x03\x04")
            path.chmod(0)
        return []
    return make


def _node_nan_audio(root: Path, models: Path) -> str:
    from hallo_nodes.nodes.common import check_audio

    with pytest.raises(ValueError) as info:
        check_audio({"waveform": torch.full((1, 1, 16000), math.nan), "sample_rate": 16000}, "HalloRenderToVideoFile")
    return str(info.value)


def _node_prefix(prefix: str) -> Callable[[Path, Path], str]:
    def make(root: Path, models: Path) -> str:
        from hallo_nodes.nodes.sampler import HalloRenderToVideoFile

        verdict = HalloRenderToVideoFile.VALIDATE_INPUTS(filename_prefix=prefix)
        assert isinstance(verdict, str), verdict
        return verdict
    return make


CASES: dict[str, Case] = {
    "image-strip": Case(_image(ImageRecipe("PNG", "RGB", (1, 1), claim=(1, 60000)))),
    "image-huge": Case(_image(ImageRecipe("PNG", "RGB", (1, 1), claim=(60000, 60000)))),
    "image-panorama": Case(_image(ImageRecipe("PNG", "RGB", (1, 1), claim=(9000, 1000)))),
    "image-small": Case(_image(ImageRecipe("PNG", "RGB", (32, 32)))),
    "image-truncated": Case(_image(ImageRecipe("PNG", "RGB", (200, 200), cut=0.5))),
    "image-fifo": Case(_special("fifo", "--image")),
    "image-unreadable": Case(_special("unreadable", "--image"), nobody=True),
    "audio-1hz": Case(_audio(AudioRecipe("wav", 1, 1, 2, 16000))),
    "audio-17-channels": Case(_audio(AudioRecipe("wav", 16000, 17, 2, 1600))),
    "audio-empty": Case(_audio(AudioRecipe("wav", 16000, 1, 2, 0))),
    "audio-too-long": Case(_long_wav),
    "steps": Case(lambda root, models: ["--steps", "1001"]),
    "size": Case(lambda root, models: ["--size", "4096"]),
    "out-dangling-link": Case(_special("dangling", "--out")),
    "out-fifo": Case(_special("fifo", "--out")),
    "model-dev-zero": Case(_model("hallo/net.pth", "dev-zero")),
    "model-unreadable": Case(_model("wav2vec/wav2vec2-base-960h/config.json", "unreadable"), nobody=True),
    "node-nan-audio": Case(_node_nan_audio),
    "node-long-prefix": Case(_node_prefix("a" * 300)),
    "node-nul-prefix": Case(_node_prefix("hallo\x00name")),
}

ROW = re.compile(r"^\| `([a-z0-9-]+)` \| (.+?) \| (.+?) \|$")


def readme_rows() -> dict[str, str]:
    """``{case id: outcome}`` of the README's hostile-input table."""
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- hostile-inputs -->")[1]
    return {m.group(1): m.group(3) for m in map(ROW.match, table.splitlines()) if m}


def quoted(outcome: str) -> list[str]:
    return re.findall(r'"([^"]+)"', outcome)


def test_readme_table_lists_exactly_the_tested_cases() -> None:
    rows = readme_rows()
    assert sorted(rows) == sorted(CASES)
    for case, outcome in rows.items():
        assert outcome.startswith("exit 2") or outcome.startswith("refused"), (case, outcome)
        assert quoted(outcome), (case, outcome)


@pytest.fixture()
def world_readable(tiny_model_dir: Path, assets: Path) -> Iterator[tuple[Path, Path]]:
    """A folder 'nobody' can enter, with a private copy of the tiny models (readable by all), a real portrait and
    real speech: the repository itself may sit in a folder only its owner can enter (CI's plain clone does)."""
    root = Path(tempfile.mkdtemp(prefix="hallo-hostile-"))
    try:
        models = root / "models"
        shutil.copytree(tiny_model_dir, models, ignore=shutil.ignore_patterns("hallo2"))
        add_face_task(models, assets)
        short_speech(assets, root / "speech.wav")
        shutil.copyfile(assets / "portraits" / "statue.jpg", root / "statue.jpg")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o644)
        yield root, models
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_gets_what_the_readme_says(name: str, world_readable: tuple[Path, Path], assets: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root, models = world_readable
    case = CASES[name]
    expected = quoted(readme_rows()[name])
    made = case.make(root, models)
    if isinstance(made, str):  # a node's refusal
        line = made
    else:
        args = {"--image": str(root / "statue.jpg"), "--audio": str(root / "speech.wav"),
                "--models": str(models), "--out": str(root / "out" / "talking.mp4")}
        (root / "out").mkdir(mode=0o777, exist_ok=True)
        (root / "out").chmod(0o777)
        argv = [*(x for kv in args.items() for x in kv), "--size", "64", "--steps", "1", "-q", *made]
        with as_nobody() if case.nobody else nullcontext():
            code, err = run_main(argv, capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("hallo-render: error:")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        line = lines[0]
        assert [p.name for p in (root / "out").iterdir() if p.name != "out.mp4"] == []
    for words in expected:
        assert words in line, (words, line)
    assert "\n" not in line



# -- the worst allowed input, under its stated bound ----------------------------------------------------------
WORST_IMAGE_RSS_MB = 1500  # pipeline/budgets.py: ~0.4 GB + 10 bytes a pixel, 1.05 GB measured at 64 megapixels

_WORST_IMAGE = RECORD_OWN_PEAK + """
import sys
from hallo_nodes.pipeline.face.analysis import analyze_face
from hallo_nodes.pipeline.images import load_image_rgb
rgb = load_image_rgb(sys.argv[1])
analyze_face(rgb, sys.argv[2], output_size=(512, 512), allow_no_face=True)
"""


def test_worst_allowed_image_stays_under_its_memory_bound(tiny_model_dir: Path, assets: Path,
                                                          tmp_path: Path) -> None:
    """The largest image the budget allows, decoded and through the face stage, in its own process (whose own
    peak is measured: not the pytest process's, which ``ru_maxrss`` would report)."""
    models = add_face_task(tiny_model_dir, assets)
    side = int(MAX_IMAGE_PIXELS ** 0.5)
    Image.new("RGB", (side, side), (120, 110, 100)).save(tmp_path / "worst.png", compress_level=1)
    peak_file = tmp_path / "peak-mb"
    out = subprocess.run([sys.executable, "-c", _WORST_IMAGE, str(tmp_path / "worst.png"), str(models)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HALLO_TEST_PEAK_FILE": str(peak_file)})
    assert out.returncode == 0, out.stderr[-3000:]
    peak = own_peak_mb(peak_file)
    assert peak < WORST_IMAGE_RSS_MB, peak


# -- Ctrl-C ---------------------------------------------------------------------------------------------------
_INTERRUPTED_IMPORT = """
import os, signal, sys
from pathlib import Path
from hallo_nodes.pipeline import entry, in_flight
partial = Path(sys.argv[1]); partial.write_bytes(b"half a video")
in_flight.track(partial)
Path(sys.argv[2], "interrupts_its_import.py").write_text("import os, signal; os.kill(os.getpid(), signal.SIGINT)")
sys.path.insert(0, sys.argv[2])
def main(argv):
    import interrupts_its_import  # noqa: F401  the SIGINT arrives inside the import machinery
    return 0
fake = type(sys)("fake_cli")
fake.main = main
sys.modules["hallo_nodes.pipeline.fake_cli"] = fake
sys.exit(entry.guarded("hallo-render", "fake_cli"))
"""


def test_ctrl_c_inside_an_import_exits_at_once_and_removes_the_partial_file(tmp_path: Path) -> None:
    """A SIGINT whose handler runs inside an import (where C code may print the KeyboardInterrupt as a traceback)
    ends the process from the handler: status 130, one line, and the render's temporary file is gone."""
    partial = tmp_path / ".talking.1-abcd.partial.mp4"
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_IMPORT, str(partial), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines() == ["hallo-render: cancelled; no output was written"], proc.stderr
    assert not partial.exists()


@pytest.mark.skipif(os.name != "posix", reason="signals")
@pytest.mark.parametrize("delay", [0.0, 0.2, 0.6, 1.5, 3.0])
def test_ctrl_c_at_any_moment_exits_130_with_one_line(delay: float, world_readable: tuple[Path, Path],
                                                      assets: Path) -> None:
    """SIGINT from the entry point's first line on (torch, diffusers, MediaPipe still importing at the short
    delays): status 130, one line, no traceback. ``-X importtime`` says when the entry point has started: the
    interpreter's own start-up before it is not the pack's code."""
    root, models = world_readable
    cmd = [sys.executable, "-X", "importtime", "-c",
           "import sys; from hallo_nodes.pipeline.entry import render; sys.exit(render())",
           "--image", str(root / "statue.jpg"), "--audio", str(root / "speech.wav"),
           "--models", str(models), "--out", str(root / "ctrl-c.mp4"), "--size", "64", "--steps", "1", "-q",
           "--separate-vocals", "off"]  # no notice of a missing separator when the render gets that far
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "hallo_nodes.pipeline.entry" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(120), lines
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    reader.join(timeout=30)
    if proc.returncode == 0:
        pytest.fail("the render finished before the signal; the delays are too long for this machine")
    noise = ("import time:", "W0000", "I0000", "INFO: Created", "WARNING: Logging")
    said = [ln for ln in lines if ln.strip() and not ln.startswith(noise)]
    assert proc.returncode == 130, [ln for ln in lines if not ln.startswith("import time:")] + lines[-5:]
    assert not any("Traceback" in ln for ln in lines) and len(said) == 1, said
    assert "cancelled" in said[0]
    assert not list(root.glob("*ctrl-c*"))


# -- killed renders' temporary files ----------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partials_of_killed_renders_are_removed_and_only_those(tmp_path: Path) -> None:
    from hallo_nodes.pipeline.video.writer import VideoWriter, partial_name

    out = tmp_path / "hallo.mp4"
    dead = partial_name(out, _dead_pid(), "0123abcd")
    alive = partial_name(out, os.getpid(), "4567cdef")  # a render still running (this process)
    other = partial_name(tmp_path / "other.mp4", _dead_pid(), "89abcdef")  # another name's
    lookalike = tmp_path / ".hallo.12x-0123abcd.partial.mp4"  # not ours: no pid
    for path in (dead, alive, other, lookalike):
        path.write_bytes(b"")
    with VideoWriter(out, 25.0, 64, 64, overwrite=False) as writer:
        writer.write(torch.zeros(1, 64, 64, 3))
    assert not dead.exists()
    assert alive.exists() and other.exists() and lookalike.exists()
    assert out.read_bytes()[4:8] == b"ftyp"


def test_sigkill_leaves_a_partial_that_the_next_run_removes(tmp_path: Path) -> None:
    out = tmp_path / "hallo.mp4"
    code = (f"from hallo_nodes.pipeline.video.writer import VideoWriter\nimport os, signal\n"
            f"w = VideoWriter({str(out)!r}, 25.0, 64, 64)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code], check=False, timeout=120)
    left = list(tmp_path.glob(".hallo.*.partial.mp4"))
    assert len(left) == 1
    from hallo_nodes.pipeline.video.writer import VideoWriter

    with VideoWriter(out, 25.0, 64, 64) as writer:
        writer.write(torch.zeros(1, 64, 64, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hallo.mp4"]


# -- the tiny model folder, as a download -------------------------------------------------------------------------
def test_tiny_model_files_are_readable_by_others(tmp_path: Path) -> None:
    from hallo_nodes.testing.tiny_models import write_tiny_model_folder

    old = os.umask(0o022)
    try:
        root = write_tiny_model_folder(tmp_path / "tiny", variants=("hallo",), with_face_models=False)
    finally:
        os.umask(old)
    modes = {p.relative_to(root).as_posix(): p.stat().st_mode & 0o777 for p in root.rglob("*")}
    assert modes["sd-vae-ft-mse/diffusion_pytorch_model.safetensors"] == 0o644
    assert modes["wav2vec/wav2vec2-base-960h/model.safetensors"] == 0o644
    assert all(m == (0o755 if (root / p).is_dir() else 0o644) for p, m in modes.items()), modes


def test_wav2vec_weights_get_the_finite_check(tmp_path: Path) -> None:
    from hallo_nodes.pipeline.audio.wav2vec import load_wav2vec
    from hallo_nodes.pipeline.models.checkpoint import CheckpointError
    from hallo_nodes.testing.tiny_wav2vec import write_wav2vec_folder
    from safetensors.torch import load_file, save_file

    folder = write_wav2vec_folder(tmp_path / "w2v", tiny=True, seed=0)
    weights = Path(folder) / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("feature_projection.projection.weight"))
    state[key][0, 0] = math.inf
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_wav2vec(folder)


def test_damaged_face_model_same_message_in_the_nodes(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The CLI's one-line message for a damaged ONNX file comes from pipeline/face/, so the nodes get it too."""
    from hallo_nodes.pipeline.errors import HalloInputError
    from hallo_nodes.pipeline.face.detection import load_face_models

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir / "face_analysis", models / "face_analysis")
    path = models / "face_analysis" / "models" / "glintr100.onnx"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(HalloInputError, match=r"glintr100\.onnx cannot be used \(truncated or corrupt"):
        load_face_models(models)
