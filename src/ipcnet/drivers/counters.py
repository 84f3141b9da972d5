"""Server counters that survive fork: one row per worker in shared memory.

Role: accepted, active, refused, bytes in/out, errors, and per-worker state, readable by
the serving process, its workers and the stats socket. Rules: memory is an anonymous
shared mapping made before any fork, so forked workers write where the parent reads; each
worker writes only its own row (no cross-process races); processes that share a row (the
children of the fork models, which add their totals once at exit, and their parent, which
counts accepts and datagrams meanwhile) all write it under the process lock: an unlocked
``+=`` in the parent, between a child's read and write of a cell, lost the child's totals.
Retiring a row (moving an ended worker's counts into row 0) is a seqlock's write: a
generation cell is odd while the counts move, and a snapshot taken meanwhile is taken
again, so a total never drops nor counts a row twice (a Prometheus counter that
decreases is read as a restart). Readers take no lock: a lock held by the --metrics
thread at a fork would stay held in the forked worker.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import threading
import time
from contextlib import AbstractContextManager
from typing import Any

from ipcnet.transports.processlock import ProcessLock

FIELDS = (
    "accepted",
    "active",
    "refused",
    "bytes_in",
    "bytes_out",
    "errors",
    "handled",
    "pid",
    "state",
    "since",
)
#: upgraded and draining are the main row's: after SIGUSR2, and during --drain-delay
STATES = ("idle", "busy", "stopping", "gone", "upgraded", "draining", "starting")
_INDEX = {name: i for i, name in enumerate(FIELDS)}
_ACCEPTED, _ACTIVE, _BYTES_IN, _BYTES_OUT, _HANDLED = (
    _INDEX[f] for f in ("accepted", "active", "bytes_in", "bytes_out", "handled")
)
#: connection durations (accept to close), a histogram after the fields of each row: one
#: count per upper bound in seconds, one for +Inf, then the sum in microseconds (issue 14)
DURATION_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)
_HIST = len(FIELDS)
_HIST_SUM = _HIST + len(DURATION_BUCKETS) + 1
_WIDTH = _HIST_SUM + 1
RETRIES = 1000  # snapshots taken again at most while rows are retired (then the last one)


class Row:
    """One worker's counters: attribute access reads and writes shared memory."""

    __slots__ = ("_base", "_cells", "_lock")

    def __init__(
        self, cells: memoryview, index: int, lock: AbstractContextManager[Any] | None
    ) -> None:
        self._cells = cells
        self._base = index * _WIDTH
        self._lock = lock

    def add(self, field: str, amount: int = 1) -> None:
        if self._lock is None:
            self._cells[self._base + _INDEX[field]] += amount
        else:
            with self._lock:  # threads of one process share a row: += is not atomic
                self._cells[self._base + _INDEX[field]] += amount

    def set(self, field: str, value: int) -> None:
        self._cells[self._base + _INDEX[field]] = value

    def get(self, field: str) -> int:
        return int(self._cells[self._base + _INDEX[field]])

    def set_state(self, state: str) -> None:
        self.set("state", STATES.index(state))

    def observe(self, seconds: float) -> None:
        """A connection ended after ``seconds``: into the duration histogram."""
        cell = self._base + _HIST + bisect.bisect_left(DURATION_BUCKETS, seconds)
        cells = self._cells
        if self._lock is None:
            cells[cell] += 1
            cells[self._base + _HIST_SUM] += int(seconds * 1e6)
        else:
            with self._lock:
                cells[cell] += 1
                cells[self._base + _HIST_SUM] += int(seconds * 1e6)

    def opened(self) -> None:
        """A connection was accepted and is served: accepted and active, in one call."""
        cells, base = self._cells, self._base
        if self._lock is None:
            cells[base + _ACCEPTED] += 1
            cells[base + _ACTIVE] += 1
        else:
            with self._lock:
                cells[base + _ACCEPTED] += 1
                cells[base + _ACTIVE] += 1

    def closed(self, bytes_in: int, bytes_out: int, seconds: float) -> None:
        """A connection ``opened`` ended: its last bytes, active, handled and its duration,
        in one call (and one lock) instead of six."""
        cells, base = self._cells, self._base
        cell = base + _HIST + bisect.bisect_left(DURATION_BUCKETS, seconds)
        with self._lock or _NO_LOCK:
            cells[base + _BYTES_IN] += bytes_in
            cells[base + _BYTES_OUT] += bytes_out
            cells[base + _ACTIVE] -= 1
            cells[base + _HANDLED] += 1
            cells[cell] += 1
            cells[base + _HIST_SUM] += int(seconds * 1e6)

    def add_all(self, amounts: dict[str, int]) -> None:
        """Add several fields, the caller holding whatever lock the row needs."""
        cells, base = self._cells, self._base
        for field, amount in amounts.items():
            cells[base + _INDEX[field]] += amount

    def durations(self) -> list[int]:
        return [int(v) for v in self._cells[self._base + _HIST : self._base + _WIDTH]]

    def as_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            name: int(self._cells[self._base + i]) for i, name in enumerate(FIELDS)
        }  # the histogram is not per row: ``Counters.snapshot`` adds it up
        state = values["state"]
        values["state"] = STATES[state] if 0 <= state < len(STATES) else "?"
        return values


_NO_LOCK = contextlib.nullcontext()


class Counters:
    """Rows 0..workers; row 0 is the serving (or master) process."""

    def __init__(self, workers: int = 0, threaded: bool = False, forked: bool = False) -> None:
        """``threaded``: threads of one process write a row; ``forked``: forked children
        write their parent's row (the fork models), so every row is written under the
        process lock (fcntl locks do not exclude threads: no model is both)."""
        self.rows_count = workers + 1
        self._generation = self.rows_count * _WIDTH  # the cell after the rows (see retire)
        self._map = mmap.mmap(-1, (self._generation + 1) * 8, mmap.MAP_SHARED)
        self._cells = memoryview(self._map).cast("q")
        self.lock = ProcessLock("ipcnet-counters-lock")
        self._row_lock: AbstractContextManager[Any] | None = (
            self.lock if forked else threading.Lock() if threaded else None
        )
        self.started = time.time()
        self.main = self.row(0)
        self.main.set("pid", os.getpid())
        self.main.set("since", int(self.started))

    def row(self, index: int) -> Row:
        return Row(self._cells, index, self._row_lock)

    def add_shared(self, row: Row, **amounts: int) -> None:
        """Add to a row other processes also write (fork children reporting at exit)."""
        with self.lock:
            row.add_all(amounts)

    def retire(self, index: int) -> None:
        """Move row ``index``'s counts (its process has ended) into the main row, so
        that a new process can take the row and the totals keep them."""
        cells, base, generation = self._cells, index * _WIDTH, self._generation
        with self.lock:
            cells[generation] += 1  # odd: a snapshot now is taken again (see snapshot)
            try:
                for i in [*range(_INDEX["handled"] + 1), *range(_HIST, _WIDTH)]:
                    if i != _INDEX["active"]:  # what it still had open died with it
                        cells[i] += cells[base + i]
                    cells[base + i] = 0
                cells[base + _INDEX["pid"]] = 0
            finally:
                cells[generation] += 1

    def snapshot(self) -> dict[str, Any]:
        """Totals and per-worker rows, as the stats socket and status pages show them;
        read again while a row is retired (see ``retire``)."""
        cells, generation = self._cells, self._generation
        for _ in range(RETRIES):
            before = cells[generation]
            rows = [self.row(i).as_dict() for i in range(self.rows_count)]
            per_row = [self.row(i).durations() for i in range(self.rows_count)]
            if before % 2 == 0 and cells[generation] == before:
                break
            time.sleep(0)  # let the retiring process finish its few cells
        totals = {f: sum(r[f] for r in rows) for f in FIELDS[:7]}
        hist = [sum(col) for col in zip(*per_row, strict=True)]
        return {
            "uptime": round(time.time() - self.started, 3),
            **totals,
            # the rows of workers that are (or were) serving, not spare or gone ones
            "workers": [r for r in rows[1:] if r["pid"] and r["state"] != "gone"]
            if self.rows_count > 1
            else rows,
            "connection_seconds": {"buckets": hist[:-1], "sum": hist[-1] / 1e6},
        }
