"""What a server shows of itself: the --trace lines and the --stats socket.

Role: ``Tracer`` prints one line per kernel-level step, tagged with pid and thread;
``StatsServer`` answers each connection to the --stats address with one JSON snapshot of
the counters (``counters.py`` keeps them) and closes it. Rules: tracing is off unless asked
(models test ``core.trace`` before formatting a line); the stats socket is served by a
daemon thread that never blocks the models, and a forked child drops it (``abandon``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
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
    """The --stats socket: each connection reads one JSON snapshot, then EOF."""

    def __init__(self, url: str, mode: int, snapshot: Callable[[], dict[str, Any]]) -> None:
        listener = open_listener(parse(url), 16, mode)
        if not listener.servable:
            listener.close()
            raise IPCError(f"cannot serve stats on {url}: not a socket address")
        self.listener = listener
        self.snapshot = snapshot
        threading.Thread(target=self._serve, name="ipcnet-stats", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                stream = self.listener.accept()
            except IPCError:
                return
            try:
                stream.write(json.dumps(self.snapshot()).encode() + b"\n")
            except IPCError:
                pass
            finally:
                stream.close()

    def abandon(self) -> None:
        self.listener.abandon()

    def close(self) -> None:
        self.listener.close()
