"""Network namespaces: move the calling process into a private one, its lo up.

Role: ``enter_private()`` is unshare(CLONE_NEWNET) (through ctypes) followed by
``ip link set lo up``, so that what the process then does to interfaces exists for it
(and its children) alone. Rules: the whole process moves, never back: call it in a child
made for the purpose; a refused unshare is a plain OSError (errno set), an ``ip`` that
fails a ``subprocess.CalledProcessError``, for the caller to translate or report.
"""

from __future__ import annotations

import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000


def enter_private() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
