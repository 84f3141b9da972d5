"""The kernel's tables as files: /proc (and /etc/services), read for the inspector and tools.

Role: the one place where reading them meets OSError. Rules: a file that does not exist,
or belongs to a process that exited while we read (ENOENT, ESRCH, ENOTDIR: processes come
and go at any moment), gives None, never an error; anything else is translated (a file we
may not read is ``PermissionDenied``). Descriptor tables are read with one directory
descriptor per process and ``readlink(name, dir_fd=...)`` per fd; an fd closed meanwhile
is skipped.
"""

from __future__ import annotations

import os

from ipcnet.errors import PermissionDenied
from ipcnet.transports.oserrors import translate

_GONE = (FileNotFoundError, ProcessLookupError, NotADirectoryError)
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def read_bytes(path: str) -> bytes | None:
    """The whole file, or None if it (or its process) is gone."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except _GONE:
        return None
    except OSError as exc:
        raise translate(exc, "read", path) from exc


def read_text(path: str, errors: str = "surrogateescape") -> str | None:
    """The whole file as UTF-8 text (lines end in "\\n" only), or None if it is gone."""
    try:
        with open(path, encoding="utf-8", errors=errors, newline="\n") as f:
            return f.read()
    except _GONE:
        return None
    except OSError as exc:
        raise translate(exc, "read", path) from exc


def listdir(path: str) -> list[str] | None:
    """The names in a directory, or None if it is gone."""
    try:
        return os.listdir(path)
    except _GONE:
        return None
    except OSError as exc:
        raise translate(exc, "list", path) from exc


def readlink(path: str) -> str | None:
    """Where a symbolic link (a /proc/<pid>/fd/<n> entry) points, or None if it is gone."""
    try:
        return os.readlink(path)
    except _GONE:
        return None
    except OSError as exc:
        raise translate(exc, "read the link", path) from exc


def stat(path: str) -> os.stat_result | None:
    """stat(2) following links (an fd entry: the open file itself), or None if it is gone."""
    try:
        return os.stat(path)
    except _GONE:
        return None
    except OSError as exc:
        raise translate(exc, "stat", path) from exc


def fd_links(pid: int, fifos: bool = False) -> list[tuple[str, str, os.stat_result | None]] | None:
    """(fd, link target, stat or None) for each open fd of ``pid``; None if it is gone.

    The stat is taken only with ``fifos`` and only for targets that are paths (the one way
    to tell a fifo from a file). Raises PermissionDenied if we may not read its fds.
    """
    try:
        dfd = os.open(f"/proc/{pid}/fd", _O_DIR)
    except _GONE:
        return None
    except OSError as exc:
        raise _fd_error(exc, pid) from exc
    try:
        try:
            names = os.listdir(dfd)
        except OSError as exc:
            if isinstance(exc, _GONE):
                return None
            raise _fd_error(exc, pid) from exc
        out = []
        readlink_at = os.readlink
        for name in names:
            try:
                target = readlink_at(name, dir_fd=dfd)
                st = os.stat(name, dir_fd=dfd) if fifos and target[:1] == "/" else None
            except OSError:
                continue  # closed meanwhile (or its file is gone): not open any more
            out.append((name, target, st))
        return out
    finally:
        os.close(dfd)


def _fd_error(exc: OSError, pid: int) -> Exception:
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"cannot read the fds of pid {pid}: permission denied")
    return translate(exc, "read the fds of", f"pid {pid}")
