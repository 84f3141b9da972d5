"""The access log (Common Log Format) and the request counters: the session's Observer.

Role: told about every response, write one CLF line (to stderr or a file, unless quiet)
and count it. Rules: one line is one write (O_APPEND files stay whole lines across
processes); request lines are escaped as nginx escapes them (``\\xHH``), so a client
cannot forge log lines with CR/LF or quotes; timestamps are local time with the numeric
offset, formatted once per second; ``reopen`` (SIGUSR1, as nginx's) opens the file's
path anew after logrotate moved it, and a line written meanwhile goes to the new file.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

from ipcnet.errors import IPCError
from ipcnet.httpd.metrics import Metrics
from ipcnet.protocols.base import Peer
from ipcnet.transports.oserrors import translating

log = logging.getLogger("ipcnet.serve")

# as nginx escapes a log variable: \xHH (upper-case hex) for controls, '"', '\', DEL and
# every byte above it (the target arrives as latin-1: one character is one byte)
_ESCAPES = {i: f"\\x{i:02X}" for i in [*range(0x20), 0x22, 0x5C, *range(0x7F, 0x100)]}


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def peer_host(peer: Peer) -> str:
    """The client field: its IP, or ``unix:`` for a unix socket client (named or not), as
    nginx's $remote_addr; "-" when the driver knows neither end."""
    address, local = peer.address, peer.local
    if address is not None and address.host is not None:
        return address.host
    if address is not None or (local is not None and local.host is None):
        return "unix:"
    return "-"


def open_file(path: str) -> TextIO:
    """The log file, appended to (O_APPEND: whole lines across processes), line-buffered."""
    with translating("create", f"access log {path}"):  # ENOENT: a directory is missing
        return open(path, "a", buffering=1, encoding="utf-8")


class AccessLog:
    def __init__(
        self, metrics: Metrics | None, stream: TextIO | None, path: str | None = None
    ) -> None:
        self.metrics = metrics
        self.stream = stream
        self.path = path  # the file ``stream`` was opened on, for ``reopen``
        self._second = -1
        self._stamp = ""

    def reopen(self) -> None:
        """Open ``path`` again (logrotate renamed the file we write); kept as it is when
        that fails, as nginx keeps its old file. Not a file (stderr): nothing to do."""
        if self.path is None or self.stream is None:
            return
        try:
            fresh = open_file(self.path)
        except IPCError as exc:
            log.warning("%s; still writing the old file", exc)
            return
        old, self.stream = self.stream, fresh
        old.close()

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
        return self._stamp

    def response(
        self,
        peer: Peer,
        method: str,
        target: bytes,
        version: str,
        status: int,
        size: int,
        seconds: float = 0.0,
    ) -> None:
        if self.metrics is not None:
            self.metrics.count(status, size, seconds)
        stream = self.stream
        if stream is None:
            return
        if method == "-":  # no request parsed: its first line as received, as nginx logs it
            request = _escape(target.decode("latin-1")) if target else "-"
        else:
            request = _escape(f"{method} {target.decode('latin-1')} HTTP/{version}")
        line = f'{peer_host(peer)} - - {self._now()} "{request}" {status} {size or "-"}\n'
        try:
            with translating("write", "the access log"):
                try:
                    stream.write(line)
                    stream.flush()
                except ValueError:  # closed: by a reopen in another thread, write anew
                    if self.stream is stream or self.stream is None:
                        raise
                    self.stream.write(line)
                    self.stream.flush()
        except (IPCError, ValueError):
            pass  # a full disk or a closed stderr must not stop the server
