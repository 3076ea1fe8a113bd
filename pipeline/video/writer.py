"""Writing mp4 videos with PyAV (no ffmpeg binary needed); audio files are read by ``audio_io``."""

from __future__ import annotations

import logging
import os
import re
import secrets
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, the pid check alone decides
    fcntl = None  # type: ignore[assignment]

from .. import in_flight
from ..audio.decode import load_audio_file
from ..errors import HalloInputError
from .soundtrack import SoundtrackSource, encode_soundtrack

__all__ = ["VideoWriter", "load_audio_file", "to_uint8_frames"]

logger = logging.getLogger(__name__)


def to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """(N, H, W, 3) float 0..1 -> uint8 numpy, rounding like image writers do."""
    return (frames.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


_PARTIAL_ID = re.compile(r"(\d+)-[0-9a-f]{8}")


def partial_name(path: Path, pid: int, token: str) -> Path:
    """The temporary file of a render to ``path``: ``.<stem>.<pid>-<8 hex>.partial<suffix>`` beside it."""
    return path.with_name(f".{path.stem}.{pid}-{token}.partial{path.suffix}")


def _lock(fd: int, blocking: bool = True) -> bool:
    """An exclusive advisory lock on ``fd`` (held until it is closed, released by the kernel when the process
    dies, SIGKILL included); False when another process holds it. Always True where there is no flock."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: the pid check alone decides
        return True
    return True


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, another user's (EPERM), or this platform cannot tell: keep its file
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the temporary files that killed renders to ``path`` left behind (SIGKILL, a power cut): those
    named as :func:`partial_name` names them whose process is gone and whose lock nobody holds. Nothing else
    is touched: another name's files, a running render's, a file of the user's that merely looks similar."""
    prefix, suffix = f".{path.stem}.", f".partial{path.suffix}"
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
            continue
        found = _PARTIAL_ID.fullmatch(name[len(prefix):-len(suffix)])
        try:
            if not found or not entry.is_file(follow_symlinks=False) or _pid_alive(int(found.group(1))):
                continue
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _lock(fd, blocking=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
                logger.info("removed %s, left behind by a render that was killed", entry.path)
        except OSError:
            logger.debug("could not remove the stale temporary file %s", entry.path, exc_info=True)
        finally:
            os.close(fd)
    return removed


def reserve_partial_path(path: Path) -> tuple[Path, int]:
    """Create an empty temporary file beside ``path``, unique to this call (O_EXCL), and lock it: returns its
    name and the locked descriptor (close it when the file is published or removed)."""
    remove_stale_partials(path)
    for _ in range(100):
        name = partial_name(path, os.getpid(), secrets.token_hex(4))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any file
        except FileExistsError:
            continue
        except OSError as exc:  # permission denied, read-only file system, a file where a folder should be
            raise HalloInputError(f"output {path}: cannot create a file in {path.parent} ({exc.strerror or exc}); "
                                  "choose a folder you can write to") from exc
        _lock(fd)
        return name, fd
    raise FileExistsError(f"could not create a temporary file beside {path}")  # pragma: no cover


class VideoWriter:
    """Streams frames into an H.264 mp4 with an AAC audio track; the file appears only when complete.

    Frames go to a hidden temporary file unique to this writer (``.<stem>.<pid>-<random>.partial.mp4`` beside
    the output) that is renamed on success, so a crash, a cancel or a concurrent render to the same name never
    leaves a half-written video under the requested name. With ``overwrite=False`` an output that appeared
    meanwhile is never replaced: the finished video is kept under a visible name and an error says where. A
    later render to the same name removes what killed renders left behind (:func:`remove_stale_partials`).

    ``metadata``: container tags (e.g. ComfyUI's ``prompt`` and ``workflow`` as JSON), written as mp4 ``keys``
    tags like ComfyUI's Save Video. The index (``moov``) goes to the front of the file ("faststart"), so a
    browser plays it while loading and a reader of the first megabytes finds the tags of any long video.
    """

    def __init__(self, path: str | Path, fps: float, width: int, height: int, *,
                 audio: SoundtrackSource | None = None, crf: int = 18, overwrite: bool = True,
                 metadata: dict[str, str] | None = None) -> None:
        self._soundtrack = encode_soundtrack(audio) if audio is not None else None  # read once, now
        self.path = Path(path)
        self.overwrite = overwrite
        self._closed = True  # until the container is open: close() then has nothing to finish
        self.partial, self._lock_fd = reserve_partial_path(self.path)
        in_flight.track(self.partial)
        try:
            self._open(fps, width, height, crf=crf, metadata=metadata or {})
        except BaseException:
            self._discard()
            raise

    def _open(self, fps: float, width: int, height: int, *, crf: int, metadata: dict[str, str]) -> None:
        import av

        self.fps = Fraction(fps).limit_denominator(1001)
        self.frames_written = 0
        self._container = av.open(str(self.partial), mode="w", options={"movflags": "use_metadata_tags+faststart"})
        for key, value in metadata.items():  # before any stream, as ComfyUI does
            self._container.metadata[key] = value
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width = width
        self._video.height = height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "medium"}
        self._audio_stream = self._soundtrack.add_stream(self._container) if self._soundtrack else None
        self._closed = False

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append (N, H, W, 3) frames (float 0..1 tensor or uint8 array)."""
        import av

        data = to_uint8_frames(frames) if isinstance(frames, torch.Tensor) else np.asarray(frames, dtype=np.uint8)
        for image in data:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def _mux_audio(self) -> None:
        """Mux the soundtrack read at construction, trimmed to the video's duration (as the original's
        ``subclip``; to within one 1024-sample AAC frame)."""
        self._soundtrack.mux(self._container, self._audio_stream, self.frames_written / float(self.fps))

    def close(self, success: bool = True) -> Path | None:
        """Finish the file (mux audio, rename) or, when ``success`` is False, delete the partial file."""
        if self._closed:
            return self.path if success else None
        self._closed = True
        try:
            if success:
                for packet in self._video.encode(None):
                    self._container.mux(packet)
                if self._audio_stream is not None and self.frames_written:
                    self._mux_audio()
            self._container.close()
        except BaseException:
            self.partial.unlink(missing_ok=True)
            self._unlock()
            raise
        if not success or self.frames_written == 0:
            self.partial.unlink(missing_ok=True)
            self._unlock()
            return None
        try:
            self._publish()
        finally:
            self._unlock()
        logger.info("wrote %s (%d frames at %s fps)", self.path, self.frames_written, self.fps)
        return self.path

    def _discard(self) -> None:
        """Drop the temporary file after a failed start."""
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                logger.debug("closing the half-opened container of %s failed", self.partial, exc_info=True)
        self.partial.unlink(missing_ok=True)
        self._unlock()

    def _unlock(self) -> None:
        """Close the locked descriptor of the temporary file (a later run may then clean up after us)."""
        fd, self._lock_fd = getattr(self, "_lock_fd", -1), -1
        in_flight.untrack(self.partial)
        if fd >= 0:
            os.close(fd)

    def _publish(self) -> None:
        """Move the finished file to its name: atomic, and never over a file that appeared meanwhile."""
        if self.overwrite:
            os.replace(self.partial, self.path)
            return
        try:
            os.link(self.partial, self.path)  # fails if the name exists: no clobbering, no race window
        except FileExistsError:
            raise HalloInputError(
                f"output {self.path} was created by another program while rendering and was left alone; this "
                f"render is kept as {self._keep()}: rename it or render again with --overwrite") from None
        except OSError:  # a file system without hard links: check, then rename
            if self.path.exists():
                raise HalloInputError(f"output {self.path} appeared while rendering and was left alone; this "
                                      f"render is kept as {self._keep()}") from None
            os.replace(self.partial, self.path)
            return
        self.partial.unlink()

    def _keep(self) -> Path:
        """Give a finished render that could not be published a visible name that no cleanup removes
        (``<stem>.<pid>-<hex><suffix>``); the hidden temporary name if that name is taken."""
        kept = self.path.with_name(f"{self.path.stem}.{self.partial.name.split('.')[-3]}{self.path.suffix}")
        try:
            os.link(self.partial, kept)
        except OSError:
            return self.partial
        self.partial.unlink()
        self.partial = kept
        return kept

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(success=exc_type is None)
