"""Counters shared by a process and every process it forks: one row of cells per process.

Role: the memory behind the web server's, the relay's and TLS's counters (httpd/metrics,
relay/stats, transports/tls/stats), which prefork workers and fork children all add to.
Rules: an anonymous shared mapping, made before any fork, holds ``ROWS`` rows of ``width``
64-bit cells. A process writes only its own row (its creator row 0; a forked process
claims a free row as it starts), so no update takes a lock that another process could
hold: a process killed in the middle of one (the OOM killer, kill -9 of a prefork
worker) blocks nobody. A shared semaphore held at that moment stayed taken, and every
other process of the server waited on it for ever (nginx unlocks its shared mutexes for
a dead worker for the same reason). Threads of one process share its row under a
threading lock. A claim is made under a record lock, which the kernel releases when its
holder dies; the row of a process that has ended is claimed again and its counts are
kept. When every row is taken, the last row is shared under that record lock (correct,
slower). Readers take no lock and add the rows up: a cell is one aligned 8-byte word.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from typing import Protocol

from ipcnet.transports.processlock import ProcessLock

ROWS = 64  # row 0 the creator's, 1..ROWS-2 claimed by forked processes, ROWS-1 shared
_SHARED = ROWS - 1


class RowLock(Protocol):
    def acquire(self) -> object: ...
    def release(self) -> None: ...


class _SharedRowLock:
    """The last row's lock: this process's threads, then the other processes."""

    def __init__(self, process: ProcessLock) -> None:
        self._thread, self._process = threading.Lock(), process

    def acquire(self) -> bool:
        self._thread.acquire()
        try:
            self._process.__enter__()
        except BaseException:
            self._thread.release()
            raise
        return True

    def release(self) -> None:
        try:
            self._process.__exit__(None, None, None)
        finally:
            self._thread.release()


class SharedCells:
    """``width`` counters per process; ``row`` and ``lock`` are this process's (write
    ``row[i]`` holding ``lock``); ``totals()`` adds every process's rows up."""

    row: memoryview
    lock: RowLock

    def __init__(self, width: int, name: str = "ipcnet-cells") -> None:
        self.width = width
        self._map = mmap.mmap(-1, ROWS * (width + 1) * 8, mmap.MAP_SHARED)
        cells = memoryview(self._map).cast("q")
        self._owners, self._cells = cells[:ROWS], cells[ROWS:]
        self._claim_lock = ProcessLock(name)
        weakref.finalize(self, self._claim_lock.close)
        self._take(0)
        _ALL.add(self)

    def _take(self, index: int) -> None:
        if index != _SHARED:
            self._owners[index] = os.getpid()
            self.lock = threading.Lock()
        else:
            self.lock = _SharedRowLock(self._claim_lock)
        self.row = self._cells[index * self.width : (index + 1) * self.width]

    def _after_fork(self) -> None:
        """In a forked child: a row of its own (the parent's stays the parent's)."""
        with self._claim_lock:
            for index in range(1, _SHARED):
                owner = self._owners[index]
                if owner == 0 or not _alive(owner):
                    return self._take(index)
        self._take(_SHARED)

    def add(self, *indexes: int, amount: int = 1) -> None:
        """Add ``amount`` to each of the cells ``indexes`` of this process's row."""
        row, lock = self.row, self.lock
        lock.acquire()
        try:
            for index in indexes:
                row[index] += amount
        finally:
            lock.release()

    def rows(self) -> list[list[int]]:
        """The values of every row a process has had (row 0 and the shared row always)."""
        width, cells = self.width, self._cells
        used = [i for i in range(ROWS) if i in (0, _SHARED) or self._owners[i]]
        return [cells[i * width : (i + 1) * width].tolist() for i in used]

    def totals(self, rows: list[list[int]] | None = None) -> list[int]:
        """Each cell added up over ``rows`` (by default, every row now)."""
        return [sum(column) for column in zip(*(rows or self.rows()), strict=True)]


def _alive(pid: int) -> bool:
    """The process ``pid`` exists (a zombie counts: its parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: another user's process took the number
    return True


_ALL: weakref.WeakSet[SharedCells] = weakref.WeakSet()


def _claim_rows() -> None:
    for cells in list(_ALL):
        cells._after_fork()


os.register_at_fork(after_in_child=_claim_rows)
