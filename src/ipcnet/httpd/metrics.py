"""Request counters for the status page, shared by every process of one server.

Role: the HTTP-level numbers the server core does not keep: requests by status class,
body bytes, a per-second ring for "requests/s over the last 10 s", and a histogram of the
time to answer (request head parsed -> response queued, in BUCKETS; /_metrics shows it in
Prometheus form). Rules: the counters are
``transports.cells`` rows, one per process (prefork workers and fork children all count):
an update takes only its own process's lock, and a snapshot adds the rows up.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from ipcnet.transports.cells import SharedCells

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
SECONDS = 16  # ring slots (we report the last 10 complete seconds)
_REQUESTS, _BYTES, _CLASS0 = 0, 1, 2
_RING = _CLASS0 + len(CLASSES)  # stamps, then counts
#: the latency histogram's upper bounds, in seconds (Prometheus's defaults, finer below 5 ms)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_HIST = _RING + 2 * SECONDS  # one count per bucket, then +Inf, then the sum in microseconds
_SUM = _HIST + len(BUCKETS) + 1


class Metrics:
    def __init__(self) -> None:
        self._cells = SharedCells(_SUM + 1, "ipcnet-http-metrics")
        self.started = time.time()

    def count(self, status: int, size: int, seconds: float = 0.0) -> None:
        now = int(time.time())
        bucket = _HIST + bisect.bisect_left(BUCKETS, seconds)
        slot = _RING + now % SECONDS
        klass = status // 100
        shared = self._cells
        cells, lock = shared.row, shared.lock
        lock.acquire()  # the lock's own method: `with` adds two Python calls per request
        try:
            cells[_REQUESTS] += 1
            cells[_BYTES] += size
            if 1 <= klass <= 5:
                cells[_CLASS0 + klass - 1] += 1
            if cells[slot] != now:
                cells[slot] = now
                cells[slot + SECONDS] = 0
            cells[slot + SECONDS] += 1
            cells[bucket] += 1
            cells[_SUM] += int(seconds * 1e6)
        finally:
            lock.release()

    def snapshot(self) -> dict[str, Any]:
        now = int(time.time())
        rows = self._cells.rows()
        values = self._cells.totals(rows)
        recent = sum(  # each process's ring: its seconds' stamps, then their counts
            row[_RING + SECONDS + i]
            for row in rows
            for i in range(SECONDS)
            if now - 10 <= row[_RING + i] < now
        )
        return {
            "requests": values[_REQUESTS],
            "by_class": {name: values[_CLASS0 + i] for i, name in enumerate(CLASSES)},
            "body_bytes": values[_BYTES],
            "requests_per_second_10s": round(recent / 10, 1),
            "latency_buckets": values[_HIST:_SUM],
            "latency_sum": values[_SUM] / 1e6,
        }

    def prometheus(self) -> str:
        """The request families: requests by status class, body bytes, the latency."""
        from ipcnet.drivers.prometheus import family, histogram

        snap = self.snapshot()
        return (
            family(
                "http_requests_total",
                "counter",
                "HTTP responses, by status class.",
                [({"code": name}, count) for name, count in snap["by_class"].items()],
            )
            + family(
                "http_response_body_bytes_total",
                "counter",
                "Bytes of response bodies.",
                [({}, snap["body_bytes"])],
            )
            + histogram(
                "http_request_duration_seconds",
                "Time from a request head to its response being queued.",
                BUCKETS,
                snap["latency_buckets"],
                snap["latency_sum"],
            )
        )
