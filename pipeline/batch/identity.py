"""What a job is: the content of its inputs, its options and the pack's version, hashed into one id.

The id is stored in the video itself (a container tag, :data:`JOB_TAG`), so a rerun knows a finished job from
the file alone: same id, skipped; another id (the portrait, the voice or an option changed, or a new release
of the pack), rendered again; no tag, a file the batch did not write, left alone unless ``--overwrite``.
The model folder is not part of the id (hashing gigabytes of weights per run is not worth it): after replacing
the weights, render again with ``--force``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

#: The container tag that holds a batch-rendered video's job id.
JOB_TAG = "hallo_job"
ID_SCHEME = "hallo-job/1"
_CHUNK = 1 << 20


@lru_cache(maxsize=1)
def pack_version() -> str:
    """The installed hallo-nodes version; in a checkout that is not installed, the one in pyproject.toml."""
    try:
        return metadata.version("hallo-nodes")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "unknown"


class ContentHashes:
    """SHA-256 of input files, each file read once per run (a portrait shared by many rows, say)."""

    def __init__(self) -> None:
        self._known: dict[tuple, str] = {}

    def __call__(self, path: Path) -> str:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in self._known:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            self._known[key] = digest.hexdigest()
        return self._known[key]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def options_fingerprint(options: Any) -> dict[str, Any]:
    """The render options that shape the video, as plain JSON (``overwrite`` only decides where it may go)."""
    plain = _plain(options)
    plain.pop("overwrite", None)
    return plain


def job_id(image_sha256: str, audio_sha256: str, options: Any) -> str:
    """The id of a job: its inputs' content, its options and the pack's version."""
    text = json.dumps({"scheme": ID_SCHEME, "version": pack_version(), "image": image_sha256,
                       "audio": audio_sha256, "options": options_fingerprint(options)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def stored_job_id(video: Path) -> str | None:
    """The job id stored in a video the batch wrote; None for any other file (or one that does not open)."""
    import av

    try:
        with av.open(str(video)) as container:
            return container.metadata.get(JOB_TAG)
    except (av.FFmpegError, OSError, ValueError):
        return None
