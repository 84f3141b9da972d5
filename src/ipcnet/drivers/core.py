"""The part every concurrency model shares: listeners, limits, stopping, counters, tracing.

Role: a ServerCore binds the addresses, owns the listeners and datagram endpoints, counts,
traces, refuses over-limit connections, answers datagrams, serves the stats socket, and
turns SIGTERM/SIGINT into a graceful stop (a second signal forces). Each model in this
package is one small class that only decides *who* runs a connection (see ``Model``).
Rules: drivers reach descriptors only through transports; the accept path survives
EMFILE/ENFILE by pausing (never spinning) and ECONNABORTED by skipping; a service bug in
one connection is logged and counted, and the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from ipcnet.addresses import Address, parse
from ipcnet.drivers.counters import Counters, Row
from ipcnet.errors import Busy, IPCError
from ipcnet.protocols.base import Peer, Service, as_list
from ipcnet.transports import (
    DatagramEndpoint,
    SocketListener,
    SocketStream,
    open_datagram,
    open_listener,
)

log = logging.getLogger("ipcnet.serve")

ACCEPT_PAUSE = 0.1  # seconds to stop accepting after EMFILE/ENFILE
READ_SIZE = 64 * 1024


@dataclass
class ServeConfig:
    """How to serve; the CLI options map one to one onto these fields."""

    model: str = "epoll"
    workers: int = 4  # pool threads, prefork processes
    inner: str = "epoll"  # the model each prefork worker runs
    max_conns: int = 1024  # per process; over it a connection is refused explicitly
    queue: int = 0  # pool: accepted connections waiting for a thread (0 = 4 x workers)
    grace: float = 10.0  # seconds in-flight work may take after a stop signal
    idle_timeout: float | None = 300.0  # close a connection silent this long
    backlog: int = 128
    high_water: int = 256 * 1024  # stop reading a connection with more unsent output
    trace: bool = False
    stats: str | None = None  # unix:///path (or tcp://) answering with counters as JSON
    mode: int = 0o600  # unix socket files
    reuse_port: bool = False  # prefork: one listening socket per worker


class StopServing(BaseException):
    """Raised inside a blocked read when a stop signal arrives and the connection is idle."""


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


@dataclass(eq=False)
class Conn:
    """A connection as the core sees it, for stopping and the idle rule."""

    stream: SocketStream
    idle: bool = True
    last_active: float = field(default_factory=time.monotonic)


class ServerCore:
    def __init__(
        self, service: Service, addresses: list[str | Address], config: ServeConfig
    ) -> None:
        self.service = service
        self.addresses = [parse(a) for a in addresses]
        self.config = config
        self.trace: Tracer | None = Tracer() if config.trace else None
        self.counters = Counters(
            workers=config.workers if config.model == "prefork" else 0,
            threaded=config.model in ("thread", "pool"),
        )
        self.row: Row = self.counters.main
        self.listeners: list[SocketListener] = []
        self.datagrams: list[DatagramEndpoint] = []
        self.stopping = threading.Event()
        self.forcing = threading.Event()
        self.deadline = float("inf")
        self.conns: dict[int, Conn] = {}  # fd -> Conn, for the models that run many at once
        self.on_stop: list[Callable[[bool], None]] = []  # called with force=True/False
        self.waker_r, self.waker_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stats: SocketListener | None = None
        self._emfile_logged = 0.0
        attach = getattr(service, "attach", None)
        if attach is not None:
            attach(self.stats)  # a status page reads the counters through this

    # --- binding ---------------------------------------------------------------------

    def bind(self) -> None:
        for address in self.addresses:
            if address.kind == "datagram":
                endpoint = open_datagram(address, listen=True, mode=self.config.mode)
                self.datagrams.append(endpoint)
                if self.trace:
                    self.trace(f"socket() -> fd {endpoint.fileno()}; bind({endpoint.where})")
                continue
            listener = open_listener(
                address, self.config.backlog, self.config.mode, self.config.reuse_port
            )
            bridged = getattr(listener, "bridged", None)  # shm:// (issue 13): via a socket
            if not isinstance(listener, SocketListener) and bridged is not None:
                listener = bridged()
            if not isinstance(listener, SocketListener):
                listener.close()
                raise IPCError(f"cannot serve on {address}: not a socket address")
            self.listeners.append(listener)
            if self.trace:
                fd = listener.fileno()
                self.trace(f"socket() -> fd {fd}")
                self.trace(f"bind(fd {fd}, {listener.address})")
                self.trace(f"listen(fd {fd}, backlog {self.config.backlog})")
        if self.config.stats:
            stats = open_listener(parse(self.config.stats), 16, self.config.mode)
            assert isinstance(stats, SocketListener)
            self._stats = stats
            threading.Thread(target=self._serve_stats, name="ipcnet-stats", daemon=True).start()

    @property
    def bound(self) -> list[str]:
        return [str(x.address) for x in self.listeners] + [d.where for d in self.datagrams]

    # --- stopping --------------------------------------------------------------------

    def install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # the kernel may deliver the signal to any thread; the C-level handler writes to
        # the waker so that the main thread's select() returns and runs the Python handler
        signal.set_wakeup_fd(self.waker_w, warn_on_full_buffer=False)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.request_stop()

    def request_stop(self, force: bool = False) -> None:
        """Begin a graceful stop; a second request (or force=True) forces it. Signal-safe."""
        if self.stopping.is_set() or force:
            self.forcing.set()
            force = True
        else:
            self.deadline = time.monotonic() + self.config.grace
            self.stopping.set()
        try:
            os.write(self.waker_w, b"!")
        except BlockingIOError:
            pass
        for hook in list(self.on_stop):
            hook(force)

    def renew_waker(self) -> None:
        """A forked worker gets a waker of its own (the inherited one is its siblings' too)."""
        for fd in (self.waker_r, self.waker_w):
            os.close(fd)
        self.waker_r, self.waker_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def drain_waker(self) -> None:
        try:
            while os.read(self.waker_r, 512):
                pass
        except BlockingIOError:
            pass

    def time_left(self) -> float:
        if self.forcing.is_set():
            return 0.0
        return max(0.0, self.deadline - time.monotonic())

    def close_listeners(self) -> None:
        for listener in self.listeners:
            if self.trace and not listener.closed:
                self.trace(f"close(fd {listener.fileno()}) listening socket: no new connections")
            listener.close()
        for endpoint in self.datagrams:
            endpoint.close()

    def close(self) -> None:
        self.close_listeners()
        if self._stats is not None:
            self._stats.close()
        for fd in (self.waker_r, self.waker_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def after_fork_child(self) -> None:
        """In a forked connection handler: drop the parent's listeners and stats socket."""
        signal.set_wakeup_fd(-1)
        for listener in self.listeners:
            listener.abandon()
        for endpoint in self.datagrams:
            endpoint.abandon()
        if self._stats is not None:
            self._stats.abandon()
        self.on_stop.clear()

    # --- accepting -------------------------------------------------------------------

    def accept(self, listener: SocketListener) -> SocketStream | None:
        """The next connection, or None; on EMFILE the caller should pause ACCEPT_PAUSE s."""
        try:
            stream = listener.try_accept()
        except Busy as exc:
            now = time.monotonic()
            if now - self._emfile_logged > 5:
                log.warning("%s; pausing accept for %.1f s", exc, ACCEPT_PAUSE)
                self._emfile_logged = now
            self.row.add("errors")
            raise
        if stream is None:
            return None
        if self.trace:
            self.trace(
                f"accept(fd {listener.fileno()}) -> new fd {stream.fileno()} from {stream.where}"
            )
        return stream

    def over_limit(self, active: int) -> bool:
        return active >= self.config.max_conns

    def refuse(self, stream: SocketStream, row: Row | None = None) -> None:
        """Tell an over-limit connection so (the service's refusal bytes) and close it."""
        (row or self.row).add("refused")
        if self.trace:
            self.trace(f"refuse fd {stream.fileno()}: over --max-conns {self.config.max_conns}")
        refusal = self.service.refusal
        try:
            stream.set_blocking(False)
            if refusal:
                stream.try_write(refusal)
                stream.send_eof()
                # drop what the client already sent, so close() sends FIN, not RST (an RST
                # could reach the client before it read the refusal)
                for _ in range(4):
                    if not stream.try_read(READ_SIZE):
                        break
        except IPCError:
            pass
        stream.close()

    def peer(self, stream: SocketStream) -> Peer:
        """Who is connected, and to which of our addresses."""
        try:
            return Peer(stream.peer_address, stream.local_address)
        except IPCError:
            return Peer(None, None)

    # --- datagrams -------------------------------------------------------------------

    def answer_datagram(self, endpoint: DatagramEndpoint, row: Row | None = None) -> None:
        """Receive one datagram (the endpoint must be readable) and send the replies."""
        row = row or self.row
        try:
            data, sender = endpoint.recv()
        except IPCError as exc:
            row.add("errors")
            log.debug("datagram on %s: %s", endpoint.where, exc)
            return
        row.add("bytes_in", len(data))
        row.add("handled")
        if self.trace:
            self.trace(f"recvfrom(fd {endpoint.fileno()}) -> {len(data)} bytes from {sender}")
        try:
            replies = as_list(self.service.datagram(data, Peer(sender, None)))
            for reply in replies:
                if isinstance(reply, (bytes, bytearray, memoryview)):
                    endpoint.send(reply, to=sender)
                    row.add("bytes_out", len(reply))
                    if self.trace:
                        self.trace(
                            f"sendto(fd {endpoint.fileno()}, {len(reply)} bytes) to {sender}"
                        )
        except IPCError as exc:
            row.add("errors")
            log.debug("datagram reply to %s: %s", sender, exc)
        except Exception:
            row.add("errors")
            log.exception("%s failed on a datagram from %s", self.service.name, sender)

    # --- stats -----------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        snap = self.counters.snapshot()
        return {
            "service": self.service.name,
            "model": self.config.model,
            "addresses": self.bound,
            "pid": os.getpid(),
            **snap,
        }

    def _serve_stats(self) -> None:
        assert self._stats is not None
        while True:
            try:
                stream = self._stats.accept()
            except IPCError:
                return
            try:
                stream.write(json.dumps(self.stats()).encode() + b"\n")
            except IPCError:
                pass
            finally:
                stream.close()


class Model(ABC):
    """A concurrency model: runs the accept loop and decides who serves each connection."""

    name: str = "model"

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    @abstractmethod
    def serve(self) -> None:
        """Serve until a stop request, then finish in-flight work within the grace period."""
