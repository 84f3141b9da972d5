"""A relay's counters and its one log line per finished connection.

Role: what ``--stats`` and the status JSON show, and what the log says. Rules:
- counters: connections active and total, refused (over ``--max-conns``, or a bad PROXY
  header; under a model of the driver engine, the engine counts its own --max-conns
  refusals in its ``refused``), bytes each way (up = client to server), spliced vs
  copied bytes, connect failures per target; for datagrams, sessions active and total,
  datagrams each way, oversize datagrams and sessions refused;
- one log line per connection, after it ended, in the spirit of HAProxy's ``tcplog``:
  client, target, bytes each way, duration, then which side ended first and how (eof,
  reset, timeout, stopped) and how the other side ended;
- all of it is safe to update from many threads and forked processes (``transports.cells``:
  a row per process, so a process killed while it counts blocks no other).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ipcnet.transports.cells import SharedCells

FIELDS = (
    "active",
    "total",
    "refused",
    "bytes_up",
    "bytes_down",
    "spliced",
    "copied",
    "udp_sessions",
    "udp_total",
    "datagrams_up",
    "datagrams_down",
    "oversize",
)


class RelayStats:
    """Counters, readable at any time with ``snapshot()``, in memory shared across fork,
    so that a relay served by forked processes still counts in one place."""

    def __init__(self, targets: Sequence[str] = ()) -> None:
        self.targets = list(dict.fromkeys(targets))
        self._index = {name: i for i, name in enumerate(FIELDS)}
        self._cells = SharedCells(len(FIELDS) + len(self.targets), "ipcnet-relay-stats")
        self.since = time.time()

    def add(self, name: str, amount: int = 1) -> None:
        self._cells.add(self._index[name], amount=amount)

    def connect_failed(self, target: str) -> None:
        if target in self.targets:
            self._cells.add(len(FIELDS) + self.targets.index(target))

    def __getitem__(self, name: str) -> int:
        return self._cells.totals()[self._index[name]]

    def snapshot(self) -> dict[str, object]:
        cells = self._cells.totals()
        values: dict[str, object] = {n: cells[i] for n, i in self._index.items()}
        failures = {t: cells[len(FIELDS) + i] for i, t in enumerate(self.targets)}
        return {
            **values,
            "connect_failures": {t: n for t, n in failures.items() if n},
            "uptime": round(time.time() - self.since, 3),
        }


@dataclass(frozen=True)
class End:
    """How one side of a connection ended, and when (monotonic seconds)."""

    side: str  # client, server, relay
    how: str  # eof, reset, closed (stopped reading), timeout, stopped, error, refused
    at: float = 0.0
    detail: str = ""

    def said(self, first: bool = False) -> str:
        text = f"{self.side} {self.how}" + (" first" if first else "")
        return text + (f" ({self.detail})" if self.detail else "")


def log_line(
    client: str,
    target: str,
    up: int,
    down: int,
    seconds: float,
    ends: Sequence[End],
) -> str:
    """``client -> target: up N B, down M B, T s; client eof first, then server eof``."""
    how = ", then ".join(e.said(i == 0) for i, e in enumerate(ends)) or "open"
    return f"{client} -> {target}: up {up} B, down {down} B, {seconds:.3f} s; {how}"
