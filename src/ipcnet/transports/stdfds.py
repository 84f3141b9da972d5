"""Descriptors 0, 1 and 2 of a process that started with one of them closed.

Rules: ``open_std_fds()`` puts /dev/null on any of fds 0-2 that is closed (``ipcnet ...
<&-``, ``>&-``, ``2>&-``), as OpenSSH's sanitise_stdfd does: else the next socket opened
takes that number, and stdin, stdout or stderr would be the socket itself. It returns the
names of the ones it filled (``stdout``...), and gives Python a stream on each that it
had found closed (``sys.stdout`` was None: print() and flush() raised AttributeError).
``directions(fd)`` says which ways an open one goes: ``0>>file`` leaves stdin open for
writing only, ``1<file`` stdout for reading only (reading or writing it is EBADF, which
reads as "closed" and is not). A small module with no imports of its own, so that every
command can afford it.
"""

from __future__ import annotations

import fcntl
import os
import sys


def open_std_fds() -> list[str]:
    """Open /dev/null on each closed one of fds 0, 1, 2 (reading for 0, writing else)."""
    filled = []
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass  # EBADF: closed
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        filled.append(name)
        if getattr(sys, name) is None:  # Python found it closed: print() may use it now
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115
    return filled


def directions(fd: int) -> tuple[bool, bool]:
    """(readable, writable) by the open descriptor's access mode; both if it cannot tell."""
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return True, True  # closed: the read or write will say so
    return mode != os.O_WRONLY, mode != os.O_RDONLY
