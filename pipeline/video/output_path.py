"""Checking a render's output path before any work: never over an input, never a surprise overwrite."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import HalloInputError
from ..file_checks import special_kind

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


def _check_not_special(out: Path) -> None:
    """The output name is free or a regular file: never a symbolic link (dangling or not: the finished video
    would replace the link, not write where it points) nor a FIFO, device or socket."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError:  # a folder above it cannot be searched: the parent check says so
        return
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(out)
        state = "which does not exist" if not os.path.exists(out) else "the video would replace the link"
        raise HalloInputError(f"output {out} is a symbolic link to {target} ({state}); give the real path or "
                              "another name")
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise HalloInputError(f"output {out} is {kind}, not a regular file; choose another output name")


def check_output_path(out: str | Path, *, inputs: dict[str, Path], models: Path | None = None,
                      overwrite: bool = False) -> Path:
    """Validate the output video path; ``inputs`` maps an input's name ('image', 'audio') to its path."""
    out = Path(out).expanduser()
    if out.is_dir() or str(out).endswith(os.sep):
        raise HalloInputError(f"output {out} is a directory; give a file name such as {out / 'hallo.mp4'}")
    _check_not_special(out)
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


#: Longest file or folder name most file systems take (bytes of UTF-8), and what the counter adds to a prefix.
NAME_MAX = 255
COUNTER_SUFFIX = len("_00001_.mp4")
PREFIX_MAX = 1024


def filename_prefix_problem(prefix: object) -> str | None:
    """What is wrong with a node's ``filename_prefix`` (None: usable): a relative name inside the output folder,
    no NUL or control characters, every part short enough for the file system once the counter is appended."""
    if not isinstance(prefix, str):
        return f"must be text, got {type(prefix).__name__}"
    bad = next((c for c in prefix if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        return (f"holds a control character ({bad!r}; a NUL, tab or line break pasted in?): remove it, e.g. "
                "hallo/Hallo")
    if len(prefix) > PREFIX_MAX:
        return f"is {len(prefix)} characters long; the limit is {PREFIX_MAX}: use a shorter name"
    parts = prefix.replace("\\", "/").split("/")
    if prefix.startswith(("/", "\\")) or (len(prefix) > 1 and prefix[1] == ":"):
        return f"{prefix[:40]!r} is an absolute path; give a name inside ComfyUI's output folder, e.g. hallo/Hallo"
    if ".." in parts:
        return f"{prefix[:40]!r} leads out of the output folder ('..'); give a name inside it, e.g. hallo/Hallo"
    for i, part in enumerate(parts):
        room = NAME_MAX - (COUNTER_SUFFIX if i == len(parts) - 1 else 0)
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > room:
            what = "the file name" if i == len(parts) - 1 else f"the folder name {part[:20]!r}..."
            return (f"has {what} of {size} bytes; file names take at most {NAME_MAX} bytes with the counter "
                    f"'_00001_.mp4' the node appends, so at most {room} here: use a shorter name")
    return None


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
