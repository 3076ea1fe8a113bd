"""Checking a render's output path before any work: never over an input, never a surprise overwrite."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HalloInputError

# Containers the writer (H.264 video + AAC audio through PyAV) produces correctly.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
DEFAULT_FILENAME = "Hallo"


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_parent(out: Path) -> None:
    """The nearest existing folder above ``out`` must be a writable directory."""
    parent = out.parent.resolve()
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HalloInputError(f"output {out}: {parent} is a file, not a folder; choose another output path")
    # effective ids: what the file creation below will be checked against (differs under setuid/seteuid)
    effective = os.access in os.supports_effective_ids
    if not os.access(parent, os.W_OK | os.X_OK, effective_ids=effective):
        raise HalloInputError(
            f"output {out}: the folder {parent} is not writable (permission denied or a read-only file system); "
            "choose a folder you can write to")


def check_output_path(out: str | Path, *, inputs: dict[str, Path], models: Path | None = None,
                      overwrite: bool = False) -> Path:
    """Validate the output video path; ``inputs`` maps an input's name ('image', 'audio') to its path."""
    out = Path(out).expanduser()
    if out.is_dir() or str(out).endswith(os.sep):
        raise HalloInputError(f"output {out} is a directory; give a file name such as {out / 'hallo.mp4'}")
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        what = f"'{out.suffix}'" if out.suffix else "no extension"
        raise HalloInputError(f"output {out} has {what}; the video is H.264 with AAC audio: name it "
                              f"{out.stem or 'hallo'}.mp4 (or .mov / .mkv)")
    for name, path in inputs.items():
        if path is not None and _same_file(out, Path(path).expanduser()):
            raise HalloInputError(f"output {out} is the {name} input; writing it would destroy the input: "
                                  "choose another output name")
    if models is not None and _inside(out, Path(models).expanduser()):
        raise HalloInputError(f"output {out} is inside the model folder {models}; write the video elsewhere")
    if out.exists() and not overwrite:
        raise HalloInputError(f"output {out} already exists; pass --overwrite to replace it or choose another name")
    _check_parent(out)
    return out


def folder_prefix(prefix: str) -> str:
    """``"hallo/"`` means the folder ``hallo``: give it a file name (core would write ``hallo_00001_`` into the
    output root instead). An empty prefix becomes the default file name."""
    prefix = prefix.strip()
    if not prefix or prefix.endswith(("/", "\\")):
        return prefix + DEFAULT_FILENAME
    return prefix


def numbered_output(out_dir: Path, prefix: str) -> tuple[Path, str, str, int]:
    """Outside ComfyUI: (folder, file name, subfolder, next counter) for ``<prefix>_<counter>_.*`` in
    ``out_dir``, the way ComfyUI numbers its outputs; the prefix may not leave ``out_dir``."""
    prefix_path = Path(prefix.replace("\\", "/"))
    if prefix_path.is_absolute() or ".." in prefix_path.parts:
        raise ValueError(f"filename_prefix must be a relative name inside the output folder, got {prefix!r}")
    folder = out_dir / prefix_path.parent
    parent = prefix_path.parent.as_posix()
    filename, subfolder = prefix_path.name, "" if parent == "." else parent
    counter = 1
    if folder.is_dir():
        used = [p.name[len(filename) + 1:].split("_")[0] for p in folder.glob(f"{filename}_*_.*")]
        counter = max([int(u) for u in used if u.isdigit()] + [0]) + 1
    return folder, filename, subfolder, counter
