"""What a server shows of itself: the --trace lines and the --stats socket.

Role: ``Tracer`` prints one line per kernel-level step, tagged with pid and thread;
``StatsServer`` answers each connection to the --stats address with one JSON snapshot of
the counters (``counters.py`` keeps them) and closes it. Rules: tracing is off unless asked
(models test ``core.trace`` before formatting a line); the stats socket is served by a
daemon thread that never blocks the models (the --metrics listener: a daemon thread per
connection, at most MAX_SCRAPES), and a forked child drops it (``abandon``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ipcnet.addresses import parse
from ipcnet.errors import IPCError
from ipcnet.transports import open_listener


class Tracer:
    """--trace: one line per kernel-level step, tagged with pid and thread."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()

    def __call__(self, text: str) -> None:
        who = threading.current_thread().name
        line = f"[pid {os.getpid()} {who}] {text}\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()


class StatsServer:
    """The --stats socket: each connection reads one JSON snapshot, then EOF.

    With ``render`` it is the --metrics listener instead: a minimal HTTP/1.x responder
    (what a Prometheus scraper needs) answering ``GET /metrics`` with ``render(snapshot)``.
    As node_exporter's, each of its connections is served on its own (a thread), so one
    that is idle or trickles its head holds no scrape; each has HTTP_TIMEOUT in all for
    its head; past MAX_SCRAPES at once (node_exporter's --web.max-requests) a connection
    is answered 503 at once.
    """

    def __init__(
        self,
        url: str,
        mode: int,
        snapshot: Callable[[], dict[str, Any]],
        render: Callable[[dict[str, Any]], str] | None = None,
        listener: Any = None,  # inherited at SIGUSR2 (upgrade.adopt), else bound here
    ) -> None:
        listener = listener or open_listener(parse(url), BACKLOG, mode)
        if not listener.servable:
            listener.close()
            raise IPCError(f"cannot serve stats on {url}: not a socket address")
        self.listener = listener
        self.snapshot = snapshot
        self.render = render
        self._slots = threading.BoundedSemaphore(MAX_SCRAPES)
        threading.Thread(target=self._serve, name="ipcnet-stats", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                stream = self.listener.accept()
            except IPCError:
                return
            if self.render is None:  # no request to wait for: the answer goes at once
                self._answer(stream, lambda: json.dumps(self.snapshot()).encode() + b"\n")
            elif self._slots.acquire(blocking=False):
                threading.Thread(
                    target=self._scrape, args=(stream,), name="ipcnet-metrics", daemon=True
                ).start()
            else:
                self._answer(stream, lambda: _reply(503, "busy: too many scrapes at once\n"))

    def _scrape(self, stream: Any) -> None:
        try:
            self._answer(stream, lambda: self._http(stream))
        finally:
            self._slots.release()

    @staticmethod
    def _answer(stream: Any, answer: Callable[[], bytes]) -> None:
        try:
            stream.write(answer())
            # EOF now, even if a prefork worker forked meanwhile holds a copy of this
            # connection (close() alone would leave the client waiting for it)
            stream.send_eof()
        except IPCError:
            pass
        finally:
            stream.close()

    def _http(self, stream: Any) -> bytes:
        head = b""
        deadline = time.monotonic() + HTTP_TIMEOUT  # for the whole head: no trickling on
        while b"\r\n\r\n" not in head and b"\n\n" not in head:
            stream.timeout = deadline - time.monotonic()  # negative: expired
            data = stream.read(4096)
            if not data or len(head) > MAX_HEAD:
                return _reply(400, "bad request: no complete request head\n")
            head += data
        # RFC 9112 §2.2: a recipient may take a bare LF for the end of a line
        parts = head.split(b"\n", 1)[0].rstrip(b"\r").split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _reply(400, "bad request line\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return _reply(404, "not found: the metrics are at /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return _reply(405, "method not allowed\n", b"Allow: GET, HEAD\r\n")
        assert self.render is not None
        return _reply(200, self.render(self.snapshot()), body=method == b"GET")

    def abandon(self) -> None:
        self.listener.abandon()

    def close(self) -> None:
        self.listener.close()


HTTP_TIMEOUT = 5.0  # seconds a scraper may take to send its request head
MAX_HEAD = 8192
MAX_SCRAPES = 40  # --metrics connections served at once (node_exporter's --web.max-requests)
BACKLOG = 64  # a burst of connections waits in the kernel's queue (past it SYNs are lost: 1 s)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _reply(status: int, text: str, extra: bytes = b"", body: bool = True) -> bytes:
    payload = text.encode()
    kind = PROMETHEUS_TYPE if status == 200 else "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n"
    ).encode()
    return head + extra + b"\r\n" + (payload if body else b"")
