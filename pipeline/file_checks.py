"""Is a path a file this user can read? The true reason when it is not, before anything opens it.

Standard library only. A FIFO would block the reader forever, ``/dev/urandom`` never ends, ``/dev/zero`` looks
like an endless file of zeros, and a folder this user may not enter makes ``Path.is_file`` raise: each is
named for what it is instead of "not found" or a traceback from deep inside a library.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MISSING, DIRECTORY, SPECIAL, DENIED, EMPTY = "missing", "directory", "special", "denied", "empty"

_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def this_user() -> str:
    """'this user (uid N)' where user ids exist, else 'this user'."""
    return f"this user (uid {os.geteuid()})" if hasattr(os, "geteuid") else "this user"


def _blocking_folder(path: Path) -> Path | None:
    """The first folder above ``path`` that this user may not enter (search permission), if any."""
    for parent in reversed(path.absolute().parents):
        try:
            os.stat(parent)
        except PermissionError:
            return parent
        except OSError:
            return None
        if not os.access(parent, os.X_OK, effective_ids=os.access in os.supports_effective_ids):
            return parent
    return None


def special_kind(mode: int) -> str | None:
    """'a FIFO (named pipe)', 'a character device', ... for a mode that is neither a file nor a folder."""
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


def file_problem(path: str | Path) -> tuple[str, str] | None:
    """``None`` when ``path`` is a non-empty regular file this user can open for reading; else
    ``(kind, what is wrong)``, kind one of :data:`MISSING`, :data:`DIRECTORY`, :data:`SPECIAL`,
    :data:`DENIED`, :data:`EMPTY`. Symbolic links are followed; a dangling one says where it points."""
    path = Path(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            return MISSING, f"is a symbolic link to {os.readlink(path)}, which does not exist"
        return MISSING, "does not exist"
    except PermissionError:
        folder = _blocking_folder(path)
        where = f"the folder {folder}" if folder is not None else "a folder above it"
        return DENIED, f"cannot be reached: permission denied on {where} for {this_user()}"
    except OSError as exc:  # a symlink loop, a name too long, an I/O error
        return SPECIAL, f"cannot be looked up ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return DIRECTORY, "is a directory, not a file"
    kind = special_kind(st.st_mode)
    if kind is not None:
        return SPECIAL, f"is {kind}, not a regular file"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        return DENIED, f"cannot be read: permission denied for {this_user()}"
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return DENIED, f"cannot be read: permission denied for {this_user()}"
        return SPECIAL, f"cannot be opened ({exc.strerror or exc})"
    os.close(fd)
    if st.st_size == 0:
        return EMPTY, "is empty (0 bytes)"
    return None


PERMISSION_FIX = "make it readable for this user (e.g. chmod a+r, and a+x on its folders) or run as its owner"
