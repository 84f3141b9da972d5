"""Network namespaces: move the calling process into a private one, its lo up; or open a
socket in another one while staying where it is.

Role: ``enter_private()`` is unshare(CLONE_NEWNET) (through ctypes) followed by
``ip link set lo up``, so that what the process then does to interfaces exists for it
(and its children) alone. ``current()`` opens the calling thread's namespace (a
descriptor that names it, as ``ip netns`` keeps one under /run/netns); ``socket_in(ns,
...)`` makes a socket in that namespace, from a short-lived thread that enters it
(setns(2) changes the calling thread only, and a socket stays in the namespace it was made
in), so a handle made in one namespace keeps acting there whichever thread uses it.
Rules: the whole process moves in ``enter_private``, never back: call it in a child made
for the purpose; a refused unshare or setns is a plain OSError (errno set), an ``ip`` that
fails a ``subprocess.CalledProcessError``, for the caller to translate or report.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading

CLONE_NEWNET = 0x40000000
_SELF = "/proc/thread-self/ns/net"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def enter_private() -> None:
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def current() -> int:
    """A descriptor of the calling thread's network namespace (the caller closes it)."""
    return os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)


def is_current(ns: int) -> bool:
    """Is ``ns`` (from ``current()``) the calling thread's network namespace?"""
    mine, theirs = os.stat(_SELF), os.fstat(ns)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def socket_in(ns: int | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """``socket.socket(family, kind, proto)`` made in namespace ``ns`` (None or the
    caller's own: made here, directly)."""
    if ns is None or is_current(ns):
        return socket.socket(family, kind, proto)
    out: list[socket.socket | OSError] = []

    def make() -> None:  # this thread alone enters ns, and ends there
        try:
            libc = _libc()
            if libc.setns(ns, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            out.append(socket.socket(family, kind, proto))
        except OSError as exc:
            out.append(exc)

    t = threading.Thread(target=make, name="ipcnet-netns")
    t.start()
    t.join()
    made = out[0]
    if isinstance(made, OSError):
        raise made
    return made
