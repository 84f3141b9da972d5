"""The access log (Common Log Format) and the request counters: the session's Observer.

Role: told about every response, write one CLF line (to stderr or a file, unless quiet)
and count it. Rules: one line is one write (O_APPEND files stay whole lines across
processes); request lines are escaped, so a client cannot forge log lines with CR/LF or
quotes; timestamps are local time with the numeric offset, formatted once per second.
"""

from __future__ import annotations

import time
from typing import TextIO

from ipcnet.errors import IPCError
from ipcnet.httpd.metrics import Metrics
from ipcnet.protocols.base import Peer
from ipcnet.transports.oserrors import translating

_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F, 0x22, 0x5C]}


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def peer_host(peer: Peer) -> str:
    address = peer.address
    if address is None:
        return "-"
    if address.host is not None:
        return address.host
    return "unix"


class AccessLog:
    def __init__(self, metrics: Metrics | None, stream: TextIO | None) -> None:
        self.metrics = metrics
        self.stream = stream
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
        return self._stamp

    def response(
        self, peer: Peer, method: str, target: bytes, version: str, status: int, size: int
    ) -> None:
        if self.metrics is not None:
            self.metrics.count(status, size)
        stream = self.stream
        if stream is None:
            return
        if method == "-":
            request = "-"
        else:
            request = _escape(f"{method} {target.decode('latin-1')} HTTP/{version}")
        line = f'{peer_host(peer)} - - {self._now()} "{request}" {status} {size or "-"}\n'
        try:
            with translating("write", "the access log"):
                stream.write(line)
                stream.flush()
        except (IPCError, ValueError):
            pass  # a full disk or a closed stderr must not stop the server
