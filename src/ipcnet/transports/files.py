"""Files handed to a driver for sendfile(2): the one place their descriptors are closed."""

from __future__ import annotations

import contextlib
import os


def release(fd: int) -> None:
    """Close a file descriptor the driver was given ownership of (SendFile(close=True))."""
    with contextlib.suppress(OSError):
        os.close(fd)
