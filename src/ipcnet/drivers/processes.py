"""The server's own child processes: fork, signal and reap them, errors translated.

Role: the fork models and prefork start children and must signal and reap them; these
calls (kill(2), waitpid(2)) have no transport, so their OSError kinds are translated here,
once: a child that is gone already is a ``False``/``None`` answer, not an exception.
Rules: only our own children are signalled or waited for; EINTR is retried by Python.
"""

from __future__ import annotations

import os

from ipcnet.errors import IPCError


def kill(pid: int, sig: int) -> bool:
    """kill(2) one of our children; False if it is gone already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise IPCError(f"cannot signal process {pid}: {exc.strerror}") from exc
    return True


def wait(pid: int = -1, block: bool = True) -> tuple[int, int] | None:
    """waitpid(2): (pid, status) of a child that ended, (0, 0) if none has yet (when not
    blocking), None if there is no such child (any more)."""
    try:
        return os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None
