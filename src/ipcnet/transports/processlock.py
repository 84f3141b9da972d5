"""A lock between a process and the children it forks: a POSIX record lock on a memfd.

Role: the counters' lock for rows that several forked processes write (drivers/counters).
Rules: fcntl(2) record locks belong to a process, so forked children exclude each other
and their parent, but threads of one process do not exclude each other (a caller that
also has threads pairs it with a threading.Lock); the descriptor is this module's, closed
by ``close``; an OSError becomes its ipcnet error here. Not multiprocessing.Lock: that
import (with subprocess, tempfile, random) is ~1.5 MB more for every fork to copy.
"""

from __future__ import annotations

import fcntl
import os

from ipcnet.transports.oserrors import translating


class ProcessLock:
    def __init__(self, name: str = "ipcnet-lock") -> None:
        self._name = name
        with translating("memfd_create", name):
            self._fd = os.memfd_create(name, os.MFD_CLOEXEC)

    def __enter__(self) -> None:
        with translating("lock", self._name):
            fcntl.lockf(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        with translating("unlock", self._name):
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with translating("close", self._name):
                os.close(fd)
