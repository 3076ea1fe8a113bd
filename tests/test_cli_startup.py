"""hallo-render and hallo-eval answer --help, argument errors and the cheap path checks before any heavy import;
every option says what it does and its default; the download hint names the folder the user gave."""

from __future__ import annotations

import argparse
import json
import re
import resource
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hallo_nodes.pipeline import cli, eval_cli
from hallo_nodes.pipeline.paths import FACE_MODELS_SUBDIR, LANDMARKER_FILE, ModelFileMissing, ModelFolder

REPO = Path(__file__).resolve().parents[1]
#: Libraries that take seconds to import; none may load before the arguments are parsed.
HEAVY = ("torch", "diffusers", "transformers", "onnxruntime", "mediapipe", "cv2", "av", "onnx")
#: Generous: ``--help`` takes about 0.3 s of CPU time; importing torch alone takes 2-4 s.
HELP_CPU_SECONDS = 2.0


def _run_timed(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python args`` in a child; (result, the child's user + system CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.parametrize("module, argv, code", [
    ("hallo_nodes.pipeline.cli", ["--help"], 0),
    ("hallo_nodes.pipeline.eval_cli", ["--help"], 0),
    ("hallo_nodes.pipeline.cli", [], 2),  # a bare hallo-render: missing --image, --audio, --models
], ids=["render-help", "eval-help", "render-missing-arguments"])
def test_answers_in_cpu_seconds(module: str, argv: list[str], code: int, tmp_path: Path) -> None:
    proc, cpu = _run_timed(["-m", module, *argv], tmp_path)
    assert proc.returncode == code, proc.stderr
    assert cpu < HELP_CPU_SECONDS, f"{module} {argv} took {cpu:.2f} s of CPU time"
    if code:
        assert proc.stderr.splitlines() == ["hallo-render: error: missing --image, --audio, --models "
                                            "(see hallo-render --help)"]
    else:
        assert "--help" in proc.stdout


def test_parsing_and_cheap_checks_load_no_heavy_library(tmp_path: Path) -> None:
    """The real check behind the timing: after parsing every option, and after the one-line errors of the cheap
    path checks, none of the heavy libraries is in ``sys.modules``."""
    (tmp_path / "models").mkdir()
    (tmp_path / "existing.mp4").write_bytes(b"an earlier render")
    script = f"""
import contextlib, io, json, sys
from hallo_nodes.pipeline import cli, eval_cli
full = ["--image", "p.png", "--audio", "a.wav", "--models", "models", "--preset", "fast", "--compile",
        "--dtype", "bf16", "--separate-vocals", "--pose-weight", "0:1.0, 2s:0.5", "--make-tiny-models", "t"]
cli.build_parser().parse_args(full)
eval_cli.build_parser().parse_args(["v.mp4", "--reference", "p.png", "--models", "models"])
codes, errors = [], io.StringIO()
with contextlib.redirect_stderr(errors):
    for argv in (["--image", "missing.png", "--audio", "a.wav", "--models", "models", "--out", "o.mp4"],
                 ["--image", "p.png", "--audio", "a.wav", "--models", "no-such-folder"],
                 ["--image", "p.png", "--audio", "a.wav", "--models", "models", "--out", "existing.mp4"],
                 ["--image", "p.png", "--audio", "a.wav", "--models", "models", "--out", "o.gif"]):
        codes.append(cli.main(argv))
print(json.dumps({{"heavy": [m for m in {HEAVY!r} if m in sys.modules], "codes": codes,
                  "errors": errors.getvalue().splitlines()}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["heavy"] == []
    assert result["codes"] == [2, 2, 2, 2]
    errors = result["errors"]
    assert len(errors) == 4 and all(e.startswith("hallo-render: error: ") for e in errors), errors
    for line, expect in zip(errors, ("image file not found: missing.png", "model folder not found: no-such-folder",
                                     "existing.mp4 already exists", "'.gif'"), strict=True):
        assert expect in line, line


def _option_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's help as ``--help`` prints it (defaults added by the formatter), one line of words."""
    formatter = parser._get_formatter()
    return {"/".join(a.option_strings) or a.dest: " ".join(formatter._expand_help(a).split())
            for a in parser._actions if a.help is not argparse.SUPPRESS and a.dest != "help"}


@pytest.mark.parametrize("parser", [cli.build_parser(), eval_cli.build_parser()], ids=["hallo-render", "hallo-eval"])
def test_every_option_has_help_that_states_its_default(parser: argparse.ArgumentParser) -> None:
    helps = _option_help(parser)
    actions = {"/".join(a.option_strings) or a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(helps) == set(actions)
    for name, text in helps.items():
        action = actions[name]
        assert len(text) > 10, f"{name} has no help"
        default = action.default
        if isinstance(action, argparse._StoreTrueAction) or not action.option_strings or action.required:
            continue  # a switch (off unless given), a positional argument or a required option: no default
        if default is None:  # nothing given: the help says what happens then, or that the option is required
            assert re.search(r"default|required", text), f"{name}: {text}"
            continue
        shown = default.name if isinstance(default, Path) else default
        assert f"default {shown}" in text or f"default: {shown}" in text, f"{name}: {text}"
        if action.const is not None and action.nargs == "?":  # --compile, --separate-vocals: alone means const
            assert "alone" in text and str(action.const) in text, f"{name}: {text}"


def test_help_mentions_the_tiny_demo() -> None:
    text = " ".join(cli.build_parser().format_help().split())
    assert "--make-tiny-models hallo-tiny" in text and "sets --models DIR" in text
    assert "/tmp" not in text


def _hint_command(message: str) -> list[str]:
    """The ``hf download ...`` command quoted in a missing-file message, as argv."""
    commands = re.findall(r"`(hf download [^`]*)`", message)
    assert len(commands) == 1, message
    return shlex.split(commands[0])


def _downloaded(argv: list[str]) -> tuple[Path, str]:
    """(local dir, what is fetched: the file path or the --include pattern) of an ``hf download`` argv."""
    local = Path(argv[argv.index("--local-dir") + 1])
    if "--include" in argv:
        return local, argv[argv.index("--include") + 1]
    return local, argv[3]


@pytest.mark.parametrize("folder_name", ["pretrained_models", "my models (hallo)"])
def test_download_hint_puts_the_files_where_they_are_looked_for(folder_name: str, tmp_path: Path) -> None:
    """Following the hint fetches the missing file into the --models folder itself, at the path that was
    expected (no extra level such as <models>/hallo-models)."""
    models = tmp_path / folder_name
    models.mkdir()
    folder = ModelFolder.at(models)
    expected = {"hallo": models / "hallo" / "net.pth", "hallo2": models / "hallo2" / "net.pth"}
    for variant, path in expected.items():
        with pytest.raises(ModelFileMissing) as err:
            folder.checkpoint(variant)
        argv = _hint_command(str(err.value))
        assert argv[:3] == ["hf", "download", f"fudan-generative-ai/{variant}"]
        local, fetched = _downloaded(argv)
        assert local == models and local / fetched == path
    with pytest.raises(ModelFileMissing) as err:
        folder.vae_dir  # noqa: B018 - the property raises
    local, fetched = _downloaded(_hint_command(str(err.value)))
    assert local == models and (local / "sd-vae-ft-mse" / "config.json").match(str(local / fetched))
    from hallo_nodes.pipeline.face.detection import require_model_file

    with pytest.raises(ModelFileMissing) as err:
        require_model_file(models, "scrfd_10g_bnkps.onnx")
    local, fetched = _downloaded(_hint_command(str(err.value)))
    assert local / fetched == models / FACE_MODELS_SUBDIR / "scrfd_10g_bnkps.onnx"


def test_readme_download_and_render_use_one_folder() -> None:
    """The README downloads with the command the hint names, into the folder its render command passes."""
    readme = (REPO / "README.md").read_text()
    assert "hf download fudan-generative-ai/hallo --local-dir pretrained_models" in readme
    assert "hallo-render --models pretrained_models" in readme
    assert "hallo-models" not in readme


def test_landmarker_option_documents_the_shipped_default() -> None:
    text = _option_help(cli.build_parser())["--landmarker-task"]
    assert LANDMARKER_FILE in text and "shipped" in text
