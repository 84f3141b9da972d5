"""ServerCore: bind, signals, lifecycle; the part of serving every model shares.

Role: a ServerCore binds the addresses (listeners, datagram endpoints, the --stats socket),
turns SIGTERM/SIGINT/SIGQUIT into a graceful stop (a second signal forces), keeps the stop
deadline and the waker that interrupts a model's wait, and forgets the parent's sockets
in a forked child. Everything else lives beside it: the engine (``engine.py``) interprets
a session's actions, ``admission.py`` accepts, refuses, sweeps and drains, ``observe.py``
traces and serves the counters (``counters.py``), ``datagrams.py`` answers datagrams, and
each model is one small adapter class (``Model``) listed in ``registry.py``.
Rules: drivers reach descriptors only through transports; a service bug in one
connection is logged and counted, and the server keeps serving.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

from ipcnet.addresses import Address, parse
from ipcnet.drivers.counters import Counters, Row
from ipcnet.drivers.engine import HIGH_WATER
from ipcnet.drivers.observe import StatsServer, Tracer
from ipcnet.drivers.registry import DEFAULT_MODEL, info, serving
from ipcnet.errors import IPCError
from ipcnet.protocols.base import Peer, Service
from ipcnet.protocols.simple import LINGER
from ipcnet.transports import (
    DatagramEndpoint,
    SocketStream,
    make_socketpair,
    open_datagram,
    open_listener,
)
from ipcnet.transports.base import Listener, StreamTransport
from ipcnet.transports.inherited import is_datagram

log = logging.getLogger("ipcnet.serve")

READ_SIZE = 64 * 1024
# a graceful stop (a second one forces): SIGTERM as gunicorn and systemd mean it, SIGINT
# (Ctrl-C), and SIGQUIT as nginx means it (its graceful stop; KillSignal=SIGQUIT units):
# left to its default it dumped core, leaving socket files and in-flight work behind
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
DRAIN_LINGER = 1.0  # seconds idle connections of a draining service stay open (issue 14)


@dataclass
class ServeConfig:
    """How to serve; the CLI options map one to one onto these fields."""

    model: str = DEFAULT_MODEL
    workers: int = 4  # pool threads, prefork processes
    inner: str = DEFAULT_MODEL  # the model each prefork worker runs
    max_conns: int = 1024  # per process; over it a connection is refused explicitly
    queue: int = 0  # pool: accepted connections waiting for a thread (0 = 4 x workers)
    grace: float = 10.0  # seconds in-flight work may take after a stop signal
    idle_timeout: float | None = 300.0  # close a connection silent this long
    backlog: int = 128
    high_water: int = HIGH_WATER  # stop reading a connection with more unsent output
    trace: bool = False
    stats: str | None = None  # unix:///path (or tcp://) answering with counters as JSON
    mode: int = 0o600  # unix socket files
    reuse_port: bool = False  # prefork: one listening socket per worker
    tls: dict[str, Any] = field(default_factory=dict)  # tls:// addresses: TLSOptions' fields
    accept_proxy: bool = False  # every connection starts with a PROXY protocol header
    metrics: str | None = None  # tcp://... answering GET /metrics with Prometheus text
    drain_delay: float = 0.0  # SIGTERM fails health checks this long, then stops


class StopServing(BaseException):
    """Raised inside a blocked read when a stop signal arrives and the connection is idle."""


def servable(listener: Listener[Any], address: Address) -> Listener[SocketStream]:
    """The listener, if a server can serve it (the streams it accepts are sockets), or the
    socket bridge it offers (shm://)."""
    if not listener.servable:
        bridge = listener.bridge()
        if bridge is None:
            listener.close()
            raise IPCError(f"cannot serve on {address}: not a socket address")
        listener = bridge
    return cast(Listener[SocketStream], listener)


class StopEvent(threading.Event):
    """The server's stop request. ``asked`` turns true as it is set, so a hot loop tests
    it with one attribute load where ``is_set()`` costs a Python call (drive(), per read)."""

    asked = False

    def set(self) -> None:
        self.asked = True
        super().set()

    def clear(self) -> None:
        self.asked = False
        super().clear()


@dataclass(eq=False, slots=True)  # slots: drive() sets idle twice per read
class Conn:
    """A connection as a blocking model sees it, for stopping and the idle rule."""

    stream: StreamTransport
    idle: bool = False  # True while blocked reading between requests
    last_active: float = field(default_factory=time.monotonic)
    timer_at: float | None = None  # the session's Timer, as a monotonic deadline
    engine: Any = None  # its Engine once started (drain asks ``engine.fed``)
    linger_until: float | None = None  # thread models: our FIN sent at a stop; closed then
    wake: Callable[[], None] | None = None  # ends its thread's blocking read (Interrupted)

    @property
    def quiet(self) -> bool:
        """Idle and past its first request: ending it now loses nothing. One accepted
        whose first bytes are still on their way is not (gunicorn #2529/#3397)."""
        return self.idle and self.engine is not None and self.engine.fed


class Waker:
    """A socketpair whose read end makes a model's wait return (signals, jobs, children)."""

    def __init__(self) -> None:
        self.reader, self.writer = make_socketpair()
        self.reader.set_blocking(False)
        self.writer.set_blocking(False)

    def fileno(self) -> int:
        return self.reader.fileno()

    def wake(self, why: bytes = b"!") -> None:
        """Signal-safe; a full pipe already wakes, a closed one has nobody to wake."""
        try:
            self.writer.try_write(why)
        except IPCError:
            pass

    def drain(self) -> None:
        try:
            while self.reader.try_read(512):
                pass
        except IPCError:
            pass

    def wait(self, timeout: float | None) -> None:
        """Until woken or ``timeout`` seconds passed (None: no limit), then drained: the
        wait of a process with nothing else to watch (a prefork master)."""
        from ipcnet.transports.readiness import PollPoller

        poller = PollPoller()
        poller.register(self.reader, 1, None)  # READ
        poller.wait(-1.0 if timeout is None else timeout)
        poller.close()
        self.drain()

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


class ServerCore:
    def __init__(
        self, service: Service, addresses: list[str | Address], config: ServeConfig
    ) -> None:
        self.addresses = [parse(a) for a in addresses]
        # TLS: drivers/tls.py, imported only when asked for (it loads ssl; a plain server's
        # processes stay smaller, which makes each fork of the fork models cheaper)
        self.tls: ModuleType | None = None
        self.base = service  # the service itself, under any TLS or PROXY wrapper
        self.service = service
        if config.tls or any(a.spec.transport == "tls" for a in self.addresses):
            from ipcnet.drivers import tls

            self.tls = tls
            self.service = tls.secure(service, self.addresses, config.tls)
        self.config = config
        self.trace: Tracer | None = Tracer() if config.trace else None
        model = info(config.model)
        self.counters = Counters(  # threads of the model that serves share a row: lock it
            # prefork: two rows a slot, so that a SIGHUP replacement never writes the row
            # its draining predecessor still writes (prefork.py; issue 14)
            workers=2 * config.workers if model.worker_rows else 0,
            threaded=serving(config.model, config.inner).threaded,
            # the fork models' children add their totals to their parent's row
            forked=serving(config.model, config.inner).forks,
        )
        self.row: Row = self.counters.main
        self.listeners: list[Listener[SocketStream]] = []
        # prefork --reuse-port: slots 2..N's own SO_REUSEPORT listeners (slot 1 has
        # ``listeners``), opened and kept by the master; ``spares``: inherited fds for them
        self.slots: list[list[Listener[SocketStream]]] = []
        self.spares: dict[str, list[int]] = {}
        self.datagrams: list[DatagramEndpoint] = []
        self.datagram_addresses: list[Address] = []  # theirs, fd:// and systemd:// too
        self.datagram_ports: frozenset[int] = frozenset()  # bound: datagrams.may_loop
        self.stopping = StopEvent()
        self.forcing = threading.Event()
        self.deadline = float("inf")
        self.conns: dict[int, Conn] = {}  # the blocking models' connections, for stopping
        self.on_stop: list[Callable[[bool], None]] = []  # called with force=True/False
        self.waker = Waker()
        self.waker_r = self.waker.fileno()
        self._stats: StatsServer | None = None
        self._metrics: StatsServer | None = None
        self._sigmask: set[int | signal.Signals] | None = None  # in a thread: _block_sigpipe
        # scale (issue 14): the listeners are someone else's too (a prefork worker's, or
        # handed to a new master by SIGUSR2): closing drops our fds and removes nothing
        self.keep_listeners = False
        self.upgrading = False
        self.upgrader: threading.Thread | None = None  # SIGUSR2's, while it runs (upgrade.py)
        self.draining = False  # --drain-delay running (upgrade.terminate)
        self.linger_until = 0.0  # while stopping: idle connections stay open until then
        # a prefork worker on a listener its siblings share: whether one of them is under
        # --max-conns (admission: a full worker leaves the connection to it)
        self.room_elsewhere: Callable[[], bool] | None = None
        self.on_reload: list[Callable[[], None]] = []  # SIGHUP: TLS reloads, prefork replaces
        # SIGUSR1: reopen log files (the http access log), prefork tells its workers
        self.on_reopen: list[Callable[[], None]] = []
        reopen = getattr(service, "reopen_logs", None)
        if reopen is not None:
            self.on_reopen.append(reopen)
        self.secured = self.service  # what binds tls:// listeners (TLSService or the service)
        if self.tls is not None and isinstance(self.secured, self.tls.TLSService):
            self.on_reload.append(self.secured.reload)
        reload = getattr(service, "reload_certificates", None)  # a service's own TLS (relay)
        if reload is not None:
            self.on_reload.insert(0, reload)  # before prefork forks its new workers
        if config.accept_proxy:  # the PROXY header comes first on the wire, before TLS
            from ipcnet.drivers.proxied import ProxiedService

            self.service = ProxiedService(self.service, lambda: self.row.add("refused"))
        attach = getattr(service, "attach", None)
        if attach is not None:
            attach(self.stats)  # a status page reads the counters through this

    # --- binding ---------------------------------------------------------------------

    def bind(self) -> None:
        from ipcnet.drivers import upgrade

        handed = upgrade.inherited()  # SIGUSR2: sockets our old master listens on
        for address in self.addresses:
            fds = handed.pop(str(address), [])
            if is_datagram(address, fds[0] if fds else None):
                if self.config.accept_proxy:
                    raise IPCError(
                        f"--accept-proxy: {address} is a datagram address; the PROXY "
                        "protocol heads stream connections"
                    )
                self.datagram_addresses.append(address)
                endpoint = (
                    upgrade.adopt_datagram(fds[0], address)
                    if fds
                    else open_datagram(address, listen=True, mode=self.config.mode)
                )
                self.datagrams.append(endpoint)
                local = endpoint.local_address
                if local is not None and local.is_inet and isinstance(local.port, int):
                    self.datagram_ports |= {local.port}
                if self.trace:
                    self.trace(f"socket() -> fd {endpoint.fileno()}; bind({endpoint.where})")
                continue
            listener = self.open_stream(address, fds[0] if fds else None)
            self.spares[str(address)] = fds[1:]
            self.listeners.append(listener)
            if self.trace:
                fd = listener.fileno()
                self.trace(f"socket() -> fd {fd}")
                self.trace(f"bind(fd {fd}, {listener.address})")
                self.trace(f"listen(fd {fd}, backlog {self.config.backlog})")

        def inherited(url: str) -> Listener[Any] | None:  # SIGUSR2: the old master's
            fds = handed.pop(str(parse(url)), [])
            return upgrade.adopt(fds[0], parse(url)) if fds else None

        if self.config.stats:
            self._stats = StatsServer(
                self.config.stats, self.config.mode, self.stats, None, inherited(self.config.stats)
            )
        if self.config.metrics:
            from ipcnet.drivers.prometheus import exposition

            self._metrics = StatsServer(
                self.config.metrics,
                self.config.mode,
                self.stats,
                exposition,
                inherited(self.config.metrics),
            )

    def open_stream(self, address: Address, fd: int | None = None) -> Listener[SocketStream]:
        """A listener on ``address``: bound now, or the inherited ``fd`` (SIGUSR2)."""
        from ipcnet.drivers import upgrade

        opened = (
            upgrade.adopt(fd, address)
            if fd is not None
            else open_listener(
                address,
                self.config.backlog,
                self.config.mode,
                self.config.reuse_port,
                **({} if self.tls is None else self.tls.listen_keywords(self.secured, address)),
            )
        )
        if self.tls is not None:
            opened = self.tls.served(self.secured, opened)
        return servable(opened, address)

    @property
    def stream_addresses(self) -> list[Address]:
        """The command line's stream addresses, in the order of ``listeners`` (which are
        bound: a port 0 there is the kernel's choice)."""
        return [a for a in self.addresses if a not in self.datagram_addresses]

    def handed_over(self) -> dict[str, list[int]]:
        """What SIGUSR2 hands a new master: each address as its command line names it
        (``tcp://127.0.0.1:0`` too, so that it keeps the port we were given) -> our open
        descriptors of it (a --reuse-port address: one a slot); --stats, --metrics too."""
        datagrams = self.datagram_addresses
        fds: dict[str, list[int]] = {}
        for i, (address, x) in enumerate(zip(self.stream_addresses, self.listeners, strict=True)):
            slots = [x, *(slot[i] for slot in self.slots if slot[i] is not x)]
            fds[str(address)] = [s.fileno() for s in slots if not s.closed]
        for address, d in zip(datagrams, self.datagrams, strict=True):
            if not d.closed:
                fds[str(address)] = [d.fileno()]
        sides = ((self.config.stats, self._stats), (self.config.metrics, self._metrics))
        for url, side in sides:
            if url and side is not None and not side.listener.closed:
                fds[str(parse(url))] = [side.listener.fileno()]
        return fds

    @property
    def bound(self) -> list[str]:
        return [str(x.address) for x in self.listeners] + [d.where for d in self.datagrams]

    # --- stopping --------------------------------------------------------------------

    def install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            self._block_sigpipe()
            return
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        # a mask is inherited across exec: a SIGUSR2 new master started by a thread born
        # inside prefork's blocked fork window came with SIGTERM blocked, heard no stop,
        # and its workers (which restore the mask they were forked with) neither
        # (a prefork worker restores its own mask once its handlers are in place)
        if self.master:
            handled = {*STOP_SIGNALS, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGUSR2, self._on_usr2)
        signal.signal(signal.SIGUSR1, self._on_usr1)  # its default action ends the process
        # the kernel may deliver the signal to any thread; the C-level handler writes to
        # the waker so that the main thread's select() returns and runs the Python handler
        signal.set_wakeup_fd(self.waker.writer.fileno(), warn_on_full_buffer=False)

    def _block_sigpipe(self) -> None:
        """Serving in a thread of a program that restored SIGPIPE's default (pipeline
        tools do): no handler can be set here, and a write that takes no MSG_NOSIGNAL
        (sendfile(2), an SSL socket's) to a peer that reset raises SIGPIPE in the
        writing thread, which would end the process. Blocked in this thread and the
        threads it starts, it stays pending there and the write's EPIPE is an error (as
        nginx, which ignores SIGPIPE); ``close`` unblocks it, dropping one pending."""
        if signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL:
            self._sigmask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})

    def _on_signal(self, signum: int, frame: object) -> None:
        self.terminate()

    def terminate(self) -> None:
        """SIGTERM/SIGINT in every model: --drain-delay first, then ``request_stop``."""
        from ipcnet.drivers import upgrade

        upgrade.terminate(self)

    def _on_hup(self, signum: int, frame: object) -> None:
        from ipcnet.drivers import upgrade

        upgrade.reload(self)

    def _on_usr1(self, signum: int, frame: object) -> None:
        from ipcnet.drivers import upgrade

        upgrade.reopen(self)

    def _on_usr2(self, signum: int, frame: object) -> None:
        from ipcnet.drivers import upgrade

        upgrade.upgrade(self)

    @property
    def master(self) -> bool:
        """The serving process itself, not one of its prefork workers."""
        return os.getpid() == self.counters.main.get("pid")

    def request_stop(self, force: bool = False) -> None:
        """Begin a graceful stop; a second request (or force=True) forces it. Signal-safe."""
        if self.stopping.is_set() or force:
            self.forcing.set()
            force = True
        else:
            self.deadline = time.monotonic() + self.config.grace
            self.stopping.set()
            if self.master:
                from ipcnet.drivers import upgrade

                main = self.counters.main
                if main.as_dict()["state"] != "upgraded":  # after SIGUSR2 the address serves on
                    main.set_state("stopping")  # the server's stop: its workers' checks fail
                upgrade.stopping(f"stopping: in-flight work has {self.config.grace:g} s")
            drain = getattr(self.base, "drain", None)  # not a wrapper's (TLS has none)
            if drain is not None:  # a service that can tell its clients (http)
                self.linger_until = time.monotonic() + min(DRAIN_LINGER, self.config.grace / 2)
                drain()
        self.waker.wake()
        for hook in list(self.on_stop):
            hook(force)

    def past_linger(self) -> bool:
        """Stopping, and a keep-alive connection need not wait for its next request any
        longer (a blocking model ends it after the request in hand)."""
        return self.stopping.is_set() and time.monotonic() >= self.linger_until

    def renew_waker(self) -> None:
        """A forked worker gets a waker of its own (the inherited one is its siblings' too)."""
        self.waker.close()
        self.waker = Waker()
        self.waker_r = self.waker.fileno()

    def drain_waker(self) -> None:
        self.waker.drain()

    def time_left(self) -> float:
        if self.forcing.is_set():
            return 0.0
        return max(0.0, self.deadline - time.monotonic())

    def linger_time(self) -> float:
        """Seconds a connection ended by the stop lingers at most: the daytime service's
        LINGER, never past the grace period (then the stop forces every one anyway)."""
        return min(LINGER, self.time_left())

    def close_listeners(self) -> None:
        for listener in [*self.listeners, *(x for slot in self.slots for x in slot)]:
            if self.trace and not listener.closed:
                self.trace(f"close(fd {listener.fileno()}) listening socket: no new connections")
            if self.keep_listeners:
                listener.abandon()
            else:
                listener.close()
        for endpoint in self.datagrams:
            if self.keep_listeners:
                endpoint.abandon()
            else:
                endpoint.close()

    def close(self) -> None:
        self.close_listeners()
        for side in (self._stats, self._metrics):
            if side is not None:
                if self.keep_listeners:  # handed over (SIGUSR2): the new master's now
                    side.abandon()
                else:
                    side.close()
        self.waker.close()
        self.counters.lock.close()
        if self._sigmask is not None:  # (_block_sigpipe) in the thread that blocked it
            signal.sigtimedwait({signal.SIGPIPE}, 0)  # pending, it would kill when unblocked
            signal.pthread_sigmask(signal.SIG_SETMASK, self._sigmask)
            self._sigmask = None

    def fork(self, what: str, register: Callable[[int], None]) -> tuple[int, set[int]]:
        """Fork a child serving ``what`` so that no stop is lost to the fork: SIGTERM is
        blocked across it (CPython drops a signal that reaches a child before its own
        after-fork set-up), ``register(pid)`` runs in the parent before it is unblocked
        (so the stop hooks signal the child), and a stop that began meanwhile is sent to
        the child at once. (pid, the mask to restore); the child (pid 0) restores it
        once its own SIGTERM handler is in place."""
        from ipcnet.transports import process

        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            pid = process.fork(what)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        if pid == 0:
            return 0, held
        try:
            register(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if self.stopping.is_set():
            process.kill(pid, signal.SIGKILL if self.forcing.is_set() else signal.SIGTERM)
        return pid, held

    def after_fork_child(self) -> None:
        """In a forked connection handler: drop the parent's listeners and stats socket;
        SIGHUP and SIGUSR2 are the master's (a reload or an upgrade started from a child
        re-executed the server beside it, when a signal reached the process group)."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGHUP, signal.SIGUSR2):
            signal.signal(sig, not_ours)
        for listener in self.listeners:
            listener.abandon()
        for endpoint in self.datagrams:
            endpoint.abandon()
        for side in (self._stats, self._metrics):
            if side is not None:
                side.abandon()
        self._stats = self._metrics = None
        self.on_stop.clear()

    # --- what every model asks ----------------------------------------------------------

    def peer(self, stream: StreamTransport) -> Peer:
        """Who is connected, and to which of our addresses."""
        try:
            return Peer(stream.peer_address, stream.local_address)
        except IPCError:
            return Peer(None, None)

    def stats(self) -> dict[str, object]:
        snap = self.counters.snapshot()
        section = getattr(self.service, "stats_section", None)  # relay, TLS: their own
        # draining after a SIGUSR2 hand-over is no reason for a balancer to route away: a
        # check that reached us just before is answered ok (prefork workers read the row)
        # the health is the server's, which its master's row says: a prefork worker that
        # stops because SIGHUP replaced it (it finishes its connections) answers ok
        state = self.counters.main.as_dict()["state"]  # draining is in the row too: prefork
        draining = self.draining or state == "draining"  # workers must see the master's
        if self.master:
            stopping = self.stopping.is_set() and state != "upgraded"
        else:
            stopping = state == "stopping"
        return {
            # a --drain-delay's draining, then the stop it leads to: "stopping"
            "health": "stopping" if stopping else "draining" if draining else "ok",
            "service": self.service.name,
            "model": self.config.model,
            "addresses": self.bound,
            "pid": os.getpid(),
            **snap,
            **(section() if section is not None else {}),
        }


def not_ours(signum: int, frame: object) -> None:
    """A master's signal reaching a worker or a connection child: heard and let be. A
    handler, not SIG_IGN: execve(2) keeps an ignored signal, so every exec: child such a
    process started would have ignored it too."""


class Model(ABC):
    """A concurrency model: runs the accept loop and decides who serves each connection.

    A model is a short adapter: it performs the steps of each connection's ``Engine`` its
    own way, accepts through ``admission.Gate`` and stops through ``admission.drain_step``;
    its row in ``registry.MODELS`` declares its traits.
    """

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    @classmethod
    def check(cls, core: ServerCore) -> None:
        """Raise IPCError, before the server says it listens, if this model cannot serve
        what ``core`` bound (none of the models but asyncio refuses anything)."""
        return None

    @abstractmethod
    def serve(self) -> None:
        """Serve until a stop request, then finish in-flight work within the grace period."""
