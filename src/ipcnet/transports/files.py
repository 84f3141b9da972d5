"""Files handed to a driver for sendfile(2): the one place their descriptors are closed;
and the log files a server appends to."""

from __future__ import annotations

import contextlib
import os

from ipcnet.transports.oserrors import translate, translating


def read_region(fd: int, offset: int, count: int) -> bytes:
    """pread(2): up to ``count`` bytes at ``offset`` (b"" past the end)."""
    with translating("read", f"file descriptor {fd}"):
        return os.pread(fd, count, offset)


def release(fd: int) -> None:
    """Close a file descriptor the driver was given ownership of (SendFile(close=True))."""
    with contextlib.suppress(OSError):
        os.close(fd)


# --- httpd's file cache hands out copies of cached descriptors (a hot path: no generator) --
def duplicate(fd: int, where: str) -> int:
    """dup(2) ``fd``; an OSError (EMFILE, say) becomes its ipcnet error (Busy)."""
    try:
        return os.dup(fd)
    except OSError as exc:
        raise translate(exc, "dup", where) from exc
