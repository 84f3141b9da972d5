"""stdio: this process's stdin (read) and stdout (write) as one stream.

Rules: both descriptors are shared with the rest of the process, so they keep their
blocking mode (``shared=True``); ``send_eof()`` puts /dev/null in stdout's place.
``open_std_fds()`` puts /dev/null on any of fds 0-2 that was closed when we started
(``ipcnet connect URL <&-``), as OpenSSH's sanitise_stdfd does: else the next socket opened
takes that number, and stdin or stdout would be the socket itself.
"""

from __future__ import annotations

import os
import sys

from ipcnet.addresses import Address
from ipcnet.transports.pipes import PipeStream


def connect(address: Address, timeout: float | None) -> PipeStream:
    return PipeStream(0, 1, str(address), shared=True)


def open_std_fds() -> None:
    """Open /dev/null on each closed one of fds 0, 1, 2 (reading for 0, writing else)."""
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
        if getattr(sys, name) is None:  # Python found it closed: print() may use it now
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115
