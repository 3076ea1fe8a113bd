"""``--make-tiny-models``: a tiny folder works with nothing beside the install, is reused when it is exactly what
an earlier run wrote, and nothing else is ever written into; the README's demo command runs twice in a row."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import shutil
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_main, short_speech
from hallo_nodes.pipeline.errors import HalloInputError
from hallo_nodes.pipeline.paths import LANDMARKER_FILE, SHIPPED_LANDMARKER_TASK
from hallo_nodes.testing import tiny_models
from hallo_nodes.testing.tiny_models import TINY_MANIFEST, read_tiny_manifest, tiny_model_folder

REPO = Path(__file__).resolve().parents[1]
TASK = Path("face_analysis") / "models" / LANDMARKER_FILE
#: The smallest folder the reuse rules can be checked on (the CLI writes both variants and wav2vec2 too).
SMALL = {"variants": ("hallo",), "with_wav2vec": False}


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).digest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, reused = tiny_model_folder(tmp_path_factory.mktemp("tiny") / "hallo-tiny", **SMALL)
    assert not reused
    return root


def test_the_shipped_landmarker_is_the_default(small_folder: Path) -> None:
    assert (small_folder / TASK).read_bytes() == SHIPPED_LANDMARKER_TASK.read_bytes()
    manifest = json.loads((small_folder / TINY_MANIFEST).read_text())
    assert manifest["request"]["landmarker_sha256"] == hashlib.sha256(SHIPPED_LANDMARKER_TASK.read_bytes()).hexdigest()
    assert set(manifest["files"]) == {p.relative_to(small_folder).as_posix() for p in small_folder.rglob("*")
                                      if p.is_file() and p.name != TINY_MANIFEST}


def test_an_intact_tiny_folder_is_reused_untouched(small_folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small_folder, copy)
    before = _snapshot(copy)
    root, reused = tiny_model_folder(copy, **SMALL)
    assert reused and root == copy
    assert _snapshot(copy) == before


def _added_file(root: Path) -> None:
    (root / "hallo" / "notes.txt").write_text("mine")


def _same_size_other_bytes(root: Path) -> None:
    path = root / "hallo" / "net.pth"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def _real_weights_under_a_copied_manifest(root: Path) -> None:
    """A real model folder into which someone copied a tiny folder's manifest: the files do not match it."""
    path = root / "hallo" / "net.pth"
    path.write_bytes(b"4.85 GB of trained weights")


def _file_replaced_by_a_link(root: Path) -> None:
    path = root / "hallo" / "net.pth"
    target = root.parent / "elsewhere.pth"
    shutil.move(path, target)
    path.symlink_to(target)


def _broken_manifest(root: Path) -> None:
    (root / TINY_MANIFEST).write_text("{not json")


@pytest.mark.parametrize("change", [_added_file, _same_size_other_bytes, _real_weights_under_a_copied_manifest,
                                    _file_replaced_by_a_link, _broken_manifest])
def test_anything_but_an_intact_tiny_folder_is_refused(change, small_folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(small_folder, copy)
    change(copy)
    before = _snapshot(copy)
    assert read_tiny_manifest(copy) is None
    with pytest.raises(HalloInputError, match="not empty"):
        tiny_model_folder(copy, **SMALL)
    assert _snapshot(copy) == before


def test_a_tiny_folder_made_for_another_landmarker_is_rewritten(small_folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(small_folder, copy)
    other = tmp_path / "other.task"
    other.write_bytes(SHIPPED_LANDMARKER_TASK.read_bytes() + b"\0")  # a zip with a trailing byte: still a zip
    root, reused = tiny_model_folder(copy, landmarker_task=other, **SMALL)
    assert not reused
    assert (copy / TASK).read_bytes() == other.read_bytes()
    assert read_tiny_manifest(copy) is not None
    assert tiny_model_folder(copy, landmarker_task=other, **SMALL) == (copy, True)


def test_an_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_models, "write_vae", stop)
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (tmp_path / "new", empty):
        with pytest.raises(KeyboardInterrupt):
            tiny_model_folder(root, **SMALL)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["empty"]


def test_cli_reuses_its_folder_and_refuses_others(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "hallo-tiny"
    with caplog.at_level(logging.INFO, logger="hallo_nodes"):
        assert run_main(["--make-tiny-models", str(folder)], capsys)[0] == 0
        written = _snapshot(folder)
        assert run_main(["--make-tiny-models", str(folder)], capsys)[0] == 0
    assert "reusing the tiny model folder" in caplog.text
    assert _snapshot(folder) == written
    (folder / "hallo" / "extra.bin").write_bytes(b"x")
    code, err = run_main(["--make-tiny-models", str(folder)], capsys)
    assert code == 2
    assert_one_line_error(err, str(folder), "not empty")


def test_cli_refuses_a_landmarker_that_is_not_a_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"<html>not found</html>")
    code, err = run_main(["--make-tiny-models", str(tmp_path / "t"), "--landmarker-task", str(bad)], capsys)
    assert code == 2
    assert_one_line_error(err, str(bad), "not a complete MediaPipe model")
    assert not (tmp_path / "t").exists()


def _readme_demo() -> list[str]:
    """The README's tiny-model demo command as argv (without the program name)."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(hallo-render --make-tiny-models.*?)```", readme, re.S)
    assert len(blocks) == 1, blocks
    argv = shlex.split(blocks[0].replace("\\\n", " "))
    assert argv[0] == "hallo-render"
    return argv[1:]


def test_readme_demo_names_only_repository_files_and_the_current_folder() -> None:
    argv = _readme_demo()
    for option in ("--image", "--audio"):
        assert (REPO / argv[argv.index(option) + 1]).is_file()
    for option in ("--make-tiny-models", "--out"):
        assert not Path(argv[argv.index(option) + 1]).is_absolute()
    assert "--landmarker-task" not in argv and "--models" not in argv
    text = " ".join(argv)
    assert "/tmp" not in text and "shared" not in text


def test_readme_demo_runs_twice(assets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """The README's command, run twice from one folder, writes the video both times (the audio shortened to
    0.4 s to keep the test short; every other argument is the README's)."""
    argv = _readme_demo()
    argv[argv.index("--audio") + 1] = str(short_speech(assets, tmp_path / "voice.wav"))
    argv[argv.index("--image") + 1] = str(REPO / argv[argv.index("--image") + 1])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = work / argv[argv.index("--out") + 1]
    for run in range(2):
        code, err = run_main([*argv, "-q"], capsys)
        assert code == 0, (run, err)
        assert out.stat().st_size > 1000 and out.read_bytes()[4:8] == b"ftyp"
        out.write_bytes(b"")  # the second run must write it again
    assert sorted(p.name for p in work.iterdir()) == sorted([out.name, argv[argv.index("--make-tiny-models") + 1]])


def test_cli_checks_the_render_inputs_before_writing_models(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "hallo-tiny"
    code, err = run_main(["--make-tiny-models", str(folder), "--image", str(tmp_path / "none.jpg"),
                          "--audio", str(tmp_path / "none.wav"), "--out", str(tmp_path / "o.mp4")], capsys)
    assert code == 2
    assert_one_line_error(err, "image file not found", str(tmp_path / "none.jpg"))
    code, err = run_main(["--make-tiny-models", str(folder), "--image", str(tmp_path / "none.jpg")], capsys)
    assert code == 2
    assert_one_line_error(err, "missing --audio")
    assert not folder.exists()
