"""Helpers for the IPC tests (issue 13): run code in a forked child, as another user or not."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

NOBODY = 65534


def as_other_user(fn: Callable[[], str]) -> str:
    """Run ``fn`` in a forked child whose uid and gid are nobody's; what it returned (or the
    repr of what it raised). Root only: other users cannot change their uid."""
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    # ipcnet imports these lazily, and nobody may not read the interpreter's own library
    # (a pyenv under /root): load them here, as the parent, before dropping the uid
    import ipcnet.transports.mq
    import ipcnet.transports.semaphore
    import ipcnet.transports.shm
    import ipcnet.transports.signals  # noqa: F401

    def dropped() -> str:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        return fn()

    return in_child(dropped)


def in_child(fn: Callable[[], str]) -> str:
    """Run ``fn`` in a forked child (its only thread is its main thread, so signal handlers
    and masks are its own); what it returned, or the repr of what it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                out = fn()
            except BaseException as exc:
                out = f"{type(exc).__name__}: {exc}"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out
