"""A running relay: listen on one address, connect each client to a target, pump both ways.

Role: the library's ``ipcnet.relay(listen, targets, ...)``. Rules:
- streams: an accepting thread hands each client to a thread of its own, which runs the
  client's ``service.RelaySession`` as a blocking model would (the PROXY header phase, then
  the hand-over: connect a target, drive the ``pump.Bridge`` until both directions ended);
  ``ipcnet relay`` runs the same sessions under any model of the driver engine;
- datagrams (udp, unixgram listeners): ``udp.DatagramRelay`` in one thread;
- ``max_conns``: a client over it is refused at once (closed with a reset) and counted;
- a client whose PROXY header is missing, malformed or too long is refused the same way;
  so is one for which no target accepted (a refusal passed on as a reset);
- ``stop(grace)``: stop accepting (the listener closes, and its unix socket file goes
  only if this relay created it), let connections finish for ``grace`` seconds, then close
  the rest; ``close()`` is ``stop(0)``;
- one log line per finished connection on the ``ipcnet.relay`` logger (``stats.log_line``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ipcnet.addresses import Address, parse
from ipcnet.drivers.handover import drive
from ipcnet.errors import IPCError, Timeout, Unsupported
from ipcnet.protocols.base import Peer, Timer, as_list
from ipcnet.protocols.handover import Handover
from ipcnet.relay import proxyio
from ipcnet.relay.pump import Bridge
from ipcnet.relay.service import RelayService, is_tls, plain
from ipcnet.relay.targets import Targets
from ipcnet.relay.udp import DatagramRelay, start_thread
from ipcnet.transports import (
    DatagramEndpoint,
    SocketListener,
    StreamTransport,
    open_datagram,
    open_listener,
)
from ipcnet.transports.splice import RelayEnd, close_fds, make_waker, wake

log = logging.getLogger("ipcnet.relay")


@dataclass
class RelayConfig:
    """A relay's options; the CLI's map one to one onto these fields."""

    balance: str = "first"
    connect_timeout: float | None = 5.0
    linger: float | None = None  # idle seconds allowed after the first EOF (None: forever)
    idle_timeout: float | None = None  # idle seconds allowed both ways (None: forever)
    max_conns: int = 1024
    grace: float = 10.0
    splice: bool = True
    buffer: int | None = None  # per direction: the splice pipe (1 MiB), the copy buffer (256 KiB)
    send_proxy: str | None = None  # "v1" or "v2"
    accept_proxy: bool = False
    udp_idle: float = 60.0
    udp_replies: int | None = None
    max_datagram: int = 65536
    backlog: int = 128
    mode: int = 0o600
    once: bool = False  # serve one connection, then stop
    stats: str | None = None  # an address answering with the counters as JSON
    tls: dict[str, Any] = field(default_factory=dict)  # TLSOptions keywords, tls:// listen
    target_tls: dict[str, Any] = field(default_factory=dict)  # ... for tls:// targets
    extra: dict[str, object] = field(default_factory=dict)

    def check(self) -> None:
        if self.send_proxy not in (None, *proxyio.VERSIONS):
            raise Unsupported(f"--send-proxy takes v1 or v2, not {self.send_proxy!r}")
        if self.max_conns < 1:
            raise Unsupported(f"--max-conns must be at least 1, not {self.max_conns}")
        for name in ("connect_timeout", "linger", "idle_timeout", "grace", "udp_idle"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise Unsupported(f"--{name.replace('_', '-')} cannot be negative ({value})")
        if self.udp_replies is not None and self.udp_replies < 1:
            raise Unsupported(f"--udp-replies must be at least 1, not {self.udp_replies}")
        if self.buffer is not None and self.buffer < 4096:
            raise Unsupported(f"--buffer must be at least 4096 bytes, not {self.buffer}")


class Relay:
    """A relay bound and running (see the module's rules); use as a context manager."""

    def __init__(
        self,
        listen: str | Address,
        targets: Sequence[str | Address],
        config: RelayConfig | None = None,
    ) -> None:
        self.config = config or RelayConfig()
        self.config.check()
        self.listen_address = parse(listen)
        self.targets = Targets(
            targets, self.config.balance, self.config.connect_timeout, tls=self.config.target_tls
        )
        self.stats = self.targets.stats
        self.service = RelayService(self.targets, self.config, self.stats, self.listen_address)
        datagram = self.listen_address.kind == "datagram"
        for target in self.targets.addresses:
            if (target.kind == "datagram") != datagram:
                kind = "datagram" if datagram else "stream"
                raise Unsupported(f"target {target} is not a {kind} address like {listen}")
        if datagram and (self.config.send_proxy or self.config.accept_proxy):
            raise Unsupported("the PROXY protocol options are for stream relays")
        self.stopping = threading.Event()
        self.forcing = threading.Event()
        self.finished = threading.Event()
        self._lock = threading.Condition()
        self._active: dict[int, Bridge | None] = {}  # connection id -> its bridge, once made
        self._ids = 0
        self._threads: list[threading.Thread] = []
        self._waker_r, self._waker_w = make_waker()
        self.listener: SocketListener | None = None
        self.endpoint: DatagramEndpoint | None = None
        self._stats_listener: SocketListener | None = None
        try:
            self._bind(datagram)
        except BaseException:
            self._close_all()
            raise

    # --- starting ------------------------------------------------------------------

    def _bind(self, datagram: bool) -> None:
        config = self.config
        if datagram:
            self.endpoint = open_datagram(
                self.listen_address, listen=True, max_size=config.max_datagram, mode=config.mode
            )
            self.address = parse(self.endpoint.where)
        else:
            listener = open_listener(plain(self.listen_address), config.backlog, config.mode)
            if not isinstance(listener, SocketListener):
                listener.close()
                raise Unsupported(f"cannot relay from {self.listen_address}: not a socket")
            self.listener = listener
            self.address = listener.address
            if is_tls(self.listen_address):  # the service terminates TLS on it
                tls = self.listen_address
                self.address = (
                    tls.with_port(int(listener.address.port or 0)) if tls.is_inet else tls
                )
        if config.stats:
            stats = open_listener(parse(config.stats), 16, config.mode)
            assert isinstance(stats, SocketListener)
            self._stats_listener = stats

    def start(self) -> Relay:
        if self.endpoint is not None:
            udp = DatagramRelay(
                self.endpoint,
                self.targets,
                self.stats,
                limit=self.config.max_conns,
                idle=self.config.udp_idle,
                replies=self.config.udp_replies,
                max_size=self.config.max_datagram,
                waker=self._waker_r,
                stopping=self.stopping.is_set,
            )
            self._threads.append(start_thread(udp))
        else:  # joined at stop: the listener is released (an abstract name too) by then
            self._threads.append(self._spawn(self._accept_loop, "ipcnet-relay-accept"))
        if self._stats_listener is not None:  # joined at stop, as the accept thread
            self._threads.append(self._spawn(self._serve_stats, "ipcnet-relay-stats"))
        return self

    def _spawn(self, target: object, name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        return thread

    # --- streams -------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self.listener is not None
        while not self.stopping.is_set():
            try:
                client = self.listener.accept()
            except IPCError as exc:
                if self.stopping.is_set() or self.listener.closed:
                    return
                log.warning("accept on %s: %s", self.listener.where, exc)
                time.sleep(0.1)  # out of descriptors, say: pause, do not spin
                continue
            with self._lock:
                if len(self._active) >= self.config.max_conns:
                    self.stats.add("refused")
                    RelayEnd(client).abort()
                    log.info("%s: refused, %d connections already (--max-conns)",
                             client.where, self.config.max_conns)  # fmt: skip
                    continue
                self._ids += 1
                self._active[self._ids] = None
                ident = self._ids
            self._spawn(self._serve, f"ipcnet-relay-{ident}", client, ident)
            if self.config.once:
                self.stopping.set()
                return

    def _serve(self, client: StreamTransport, ident: int) -> None:
        """One client, blocking: the session's PROXY header phase, then its pump."""
        try:
            session, actions = self.service.start(self.service_peer(client))
            deadline: float | None = None
            while (handover := _handover(actions)) is None:
                for action in as_list(actions):  # the header's deadline
                    if isinstance(action, Timer):
                        seconds = action.seconds
                        deadline = None if seconds is None else time.monotonic() + seconds
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    actions = session.on_timer()
                    continue
                client.timeout = left
                try:
                    data = client.read(proxyio.READ_PIECE)
                except Timeout:
                    actions = session.on_timer()
                    continue
                actions = session.feed(data) if data else session.feed_eof()
            client.timeout = None
            pump = handover.job(client)
            if isinstance(pump, Bridge):
                with self._lock:
                    self._active[ident] = pump
                if self.forcing.is_set():
                    pump.stop()
                drive(pump, self.forcing.is_set, self._waker_r)
        except IPCError as exc:
            log.info("%s: %s", client.where, exc)
            client.close()
        finally:
            with self._lock:
                self._active.pop(ident, None)
                self._lock.notify_all()
            if self.config.once:
                self.finished.set()

    @staticmethod
    def service_peer(client: StreamTransport) -> Peer:
        try:
            return Peer(client.peer_address, client.local_address)
        except IPCError:
            return Peer(None, None)

    def moved(self) -> tuple[int, int]:
        """Bytes relayed so far (up, down), counting the connections still open."""
        with self._lock:
            bridges = [b for b in self._active.values() if b is not None]
        up = self.stats["bytes_up"] + sum(b.bytes_up for b in bridges)
        down = self.stats["bytes_down"] + sum(b.bytes_down for b in bridges)
        return up, down

    # --- stopping ------------------------------------------------------------------

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting; wait up to ``grace`` (the config's by default) for connections
        to end by themselves; then close the rest."""
        grace = self.config.grace if grace is None else grace
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
        deadline = time.monotonic() + grace
        with self._lock:
            while self._active and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
        self.force()
        with self._lock:
            end = time.monotonic() + 5
            while self._active and (left := end - time.monotonic()) > 0:
                self._lock.wait(left)
        if self._stats_listener is not None:  # it served the drain; its thread ends now
            self._stats_listener.close()
        for thread in self._threads:
            thread.join(5)
        self._close_all()
        self.finished.set()

    def force(self) -> None:
        """Close every open connection now (a second stop signal)."""
        self.forcing.set()
        if self._waker_w >= 0:
            wake(self._waker_w)

    def close(self) -> None:
        self.stop(0)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the relay stopped (for ``once``: its connection ended)."""
        return self.finished.wait(timeout)

    def _close_all(self) -> None:
        for closable in (self.listener, self.endpoint, self._stats_listener):
            if closable is not None:
                closable.close()
        if self._waker_r >= 0:
            close_fds(self._waker_r, self._waker_w)
            self._waker_r = self._waker_w = -1

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Relay {self.address} -> {', '.join(map(str, self.targets.addresses))}>"

    # --- stats ---------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """The counters as the --stats socket serves them."""
        return {
            "relay": str(self.address),
            "targets": [str(t) for t in self.targets.addresses],
            "balance": self.config.balance,
            **self.stats.snapshot(),
        }

    def _serve_stats(self) -> None:
        assert self._stats_listener is not None
        while True:
            try:
                stream = self._stats_listener.accept()
            except IPCError:
                return
            try:
                stream.write(json.dumps(self.status()).encode() + b"\n")
            except IPCError:
                pass
            finally:
                stream.close()


def _handover(actions: object) -> Handover | None:
    if isinstance(actions, Handover):
        return actions
    if isinstance(actions, list):
        return next((a for a in actions if isinstance(a, Handover)), None)
    return None
