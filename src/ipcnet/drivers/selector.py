"""The readiness models: select, poll and epoll (seed 002 §7.4).

Role: one thread, non-blocking sockets, and a loop that asks the kernel which descriptors
are ready; each connection is an ``Engine`` plus the events it waits for, kept as the
data of its descriptor (as CPython's selectors docs suggest). A model is this loop and
one class attribute, the poller class: ``select.epoll``, ``select.poll`` or
``select.select`` behind the same four methods. Not ``selectors``: its Python layer
(a key tuple per register/modify, a loop over every ready descriptor) cost more than the
engine per message and doubled the cost of registering a new connection. Rules:
- a step is tried at once; a write or sendfile the kernel takes only part of waits for
  EVENT_WRITE; the engine says when reading pauses (backpressure) and resumes;
- ``Run`` jobs go to a small thread pool; their outcome comes back through the waker, so
  a slow handler never stalls the loop; a hand-over's job (it connects: a blackholed
  target hangs it for the whole connect timeout) goes to a pool of its own bounded by
  --max-conns, so it never waits behind another one that hangs (HAProxy's and nginx's
  connects never block each other);
- byte counters are flushed to the shared row by the sweep (once a second) and at close.
"""

from __future__ import annotations

import collections
import selectors
import time
from concurrent.futures import Future
from typing import Any

from ipcnet.drivers.admission import BATCH, QUEUED, Gate, drain_step, sweep
from ipcnet.drivers.core import READ_SIZE, Model, ServerCore, log
from ipcnet.drivers.datagrams import answer
from ipcnet.drivers.engine import Engine, Region, run_job
from ipcnet.drivers.handover import Watch
from ipcnet.drivers.jobs import DaemonPool, handover_pool
from ipcnet.errors import IPCError
from ipcnet.protocols.base import Close, Outcome, Run, ShutdownWrite, Timer
from ipcnet.protocols.handover import Handover
from ipcnet.transports import SocketStream
from ipcnet.transports.readiness import IN, OUT, EpollPoller, Poller, PollPoller, SelectPoller

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
NOT_IN, NOT_OUT = ~IN, ~OUT  # an error or hangup wakes a reader and a writer both
WAKER: Any = object()  # the data of the waker's descriptor
SWEEP = 1.0  # seconds between idle-timeout sweeps and counter flushes
TIMER_TICK = 0.1  # how often a hand-over pump's deadlines are looked at while one runs
NEVER = float("inf")


class Connection:
    """One connection's state; it is its descriptor's datum in the poller."""

    __slots__ = (
        "closed",
        "engine",
        "events",
        "fd",
        "last_active",
        "loop",
        "stream",
        "timer_at",
        "watch",
    )

    def __init__(self, loop: SelectorLoop, stream: SocketStream, engine: Engine) -> None:
        self.loop = loop
        self.stream = stream
        self.fd = stream.fileno()
        self.engine = engine
        self.events = READ
        self.closed = False
        self.timer_at: float | None = None
        self.last_active = engine.born
        self.watch: Watch | bool | None = None  # handed over: True while its job runs

    def on_readable(self) -> None:
        data = self.stream.try_read(READ_SIZE)
        trace = self.loop.trace
        if not data:
            if data is None:
                return
            if trace:
                trace(f"read(fd {self.fd}) -> 0 bytes (EOF: the peer is done)")
            self.engine.feed_eof()
            self.perform()
            return
        if trace:
            trace(f"read(fd {self.fd}) -> {len(data)} bytes")
        engine = self.engine
        out = engine.feed(data)
        if out.__class__ is bytes:  # the hot path: one answer (a last one: Close queued)
            n = self.stream.try_write(out)
            if trace:
                trace(f"write(fd {self.fd}, {n} bytes)")
            if n < len(out):
                engine.requeue(memoryview(out)[n:])
                self.update()
            elif engine.queue:
                self.perform()  # the Close after a last answer
        elif out is None:
            self.perform()
        else:
            self.answered(out)

    def answered(self, out: bytes | Run | None) -> None:
        """Act on what ``feed``/``resumed`` returned (see the engine's hot path)."""
        if out is None:
            self.perform()
        elif out.__class__ is Run:
            self.loop.submit(self, out)
            self.update()
        else:
            n = self.stream.try_write(out)  # type: ignore[arg-type]
            if self.loop.trace:
                self.loop.trace(f"write(fd {self.fd}, {n} bytes)")
            if n < len(out):  # type: ignore[arg-type]
                self.engine.requeue(memoryview(out)[n:])  # type: ignore[arg-type]
            self.update()  # after a job, reading was off: it resumes now

    def perform(self) -> None:
        """Do every step the engine has until one must wait for the socket or a job."""
        engine = self.engine
        stream = self.stream
        trace = self.loop.trace
        while (step := engine.step()) is not None:
            cls = step.__class__
            if cls is Region:
                region: Any = step
                try:
                    n = stream.try_sendfile(region.fd, region.offset, region.count)
                except IPCError:  # the step is over: reported, so its file is released
                    engine.sent(0, whole=True)
                    raise
                if n is None:
                    engine.sent(0)
                    break  # the socket buffer is full: wait for EVENT_WRITE
                if trace:
                    trace(f"sendfile(fd {self.fd}, {region.path}) -> {n} bytes")
                engine.sent(n, whole=n == 0)  # 0: the file ended early (it shrank)
            elif cls is Run:
                self.loop.submit(self, step)  # type: ignore[arg-type]
            elif cls is Timer:
                self.arm(step.seconds)  # type: ignore[union-attr]
            elif cls is ShutdownWrite:
                stream.send_eof()
                if trace:
                    trace(f"shutdown(fd {self.fd}, SHUT_WR)")
            elif cls is Close:
                self.loop.close(self)
                return
            elif cls is Handover:
                self.loop.hand_over(self, step)  # type: ignore[arg-type]
                return
            else:
                n = stream.try_write(step)  # type: ignore[arg-type]
                if trace and n:
                    trace(f"write(fd {self.fd}, {n} bytes)")
                engine.sent(n)
                if n < len(step):  # type: ignore[arg-type]
                    break
        self.update()

    def arm(self, seconds: float | None) -> None:
        """A Timer step: its deadline (None: none)."""
        if seconds is None:
            self.timer_at = None  # the loop's next_timer may now be early: harmless
        else:
            self.timer_at = at = time.monotonic() + seconds
            if at < self.loop.next_timer:
                self.loop.next_timer = at

    def update(self) -> None:
        """Wait for what the engine needs: readable unless it pauses, writable if queued."""
        wanted = self.engine.wants(READ, WRITE)
        if wanted != self.events and not self.closed:
            self.loop.modify(self, self.events, wanted)
            self.events = wanted

    @property
    def idle(self) -> bool:
        return self.engine.idle and self.watch is None


class SelectorLoop(Model):
    """The loop; a model is this class with its ``poller_class``."""

    poller_class: type[Poller] = EpollPoller

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.selector = self.poller_class()
        self.trace = core.trace
        self.conns: dict[int, Connection] = {}
        self.done: collections.deque[tuple[Connection, Run | None, Any]] = collections.deque()
        self.executor: DaemonPool | None = None
        self.handovers: DaemonPool | None = None  # hand-over jobs (see the rules)
        # the earliest deadline a Timer or a hand-over pump may have (NEVER: none); the
        # connections are looked at only once it passed: not every connection on every
        # wake-up, which an HTTP server's per-connection header deadline would make O(n)
        self.next_timer = NEVER
        self.gate = Gate(
            core,
            active=self.conns.__len__,
            watch=lambda listener: self.selector.register(listener, READ, listener),
            unwatch=self.selector.unregister,
            fd_limit=self.selector.fd_limit,
        )

    def modify(self, conn: Connection, old: int, new: int) -> None:
        if old and new:
            self.selector.modify(conn.fd, new, conn)
        elif new:
            self.selector.register(conn.fd, new, conn)
        elif old:
            self.selector.unregister(conn.fd)

    def serve(self) -> None:
        core = self.core
        sel = self.selector
        for listener in core.listeners:
            listener.set_blocking(False)
            sel.register(listener, READ, listener)
        for endpoint in core.datagrams:
            endpoint.timeout = 0.0
            sel.register(endpoint, READ, endpoint)
        sel.register(core.waker_r, READ, WAKER)
        datagrams = set(core.datagrams)
        data = sel.data
        now = time.monotonic()
        next_sweep = now + SWEEP
        try:
            while True:
                if core.stopping.is_set() and self._stop_step():
                    break
                timeout = next_sweep - now  # ``now``: taken after the last batch
                if timeout < 0.0:
                    timeout = 0.0
                if timeout > self.next_timer - now:
                    timeout = max(0.0, self.next_timer - now)
                for fd, bits in sel.wait(timeout):
                    conn = data.get(fd)  # None: unregistered by an earlier one of this batch
                    if conn.__class__ is Connection:
                        try:
                            events = conn.events
                            if bits & NOT_OUT and events & READ:
                                conn.on_readable()
                            if bits & NOT_IN and events & WRITE and not conn.closed:
                                conn.perform()
                        except Exception as exc:
                            self._failed(conn, exc)
                    elif conn.__class__ is Watch:
                        self._advance(conn)
                    elif conn is WAKER:
                        core.drain_waker()
                        self._finish_jobs()
                    elif conn is None:
                        continue
                    elif conn in datagrams:
                        answer(core, conn)
                    else:
                        self._accept(conn)
                now = time.monotonic()
                if now >= self.next_timer:
                    self._fire_timers(now)
                if now >= next_sweep:
                    sweep(self.conns.values(), core.row, core.config.idle_timeout, now, self.close)
                    self.gate.resume(now)
                    next_sweep = now + SWEEP
        finally:
            for conn in list(self.conns.values()):
                self.close(conn)
            for pool in (self.executor, self.handovers):
                if pool is not None:
                    pool.shutdown(wait=False)
            sel.close()
            core.close_listeners()

    def _accept(self, listener: Any, last: bool = False) -> None:
        core = self.core
        for stream in self.gate.accept(listener, QUEUED if last else BATCH, last):
            stream.set_blocking(False)
            core.row.opened()
            try:
                session, first = core.service.start(core.peer(stream))
            except Exception:
                core.row.add("errors")
                log.exception("%s could not start a session", core.service.name)
                stream.close()
                core.row.add("active", -1)
                continue
            engine = Engine(session, core.config.high_water, last_answers=True)
            conn = Connection(self, stream, engine)
            self.conns[conn.fd] = conn
            self.selector.register(conn.fd, READ, conn)
            if first.__class__ is Timer:  # a lone Timer (HTTP's header deadline) is the
                conn.arm(first.seconds)  # engine's first step (out of band): armed at once
            elif first is not None:
                self._guarded(conn, conn.engine.push, first)

    def _failed(self, conn: Connection, exc: Exception) -> None:
        if isinstance(exc, IPCError):
            log.debug("connection %s ended: %s", conn.stream.where, exc)
        else:
            self.core.row.add("errors")
            log.exception(
                "%s failed on a connection from %s", self.core.service.name, conn.stream.where
            )
        self.close(conn)

    def _guarded(self, conn: Connection, step: Any, *args: Any) -> None:
        """Tell the engine something outside the read path, then act; errors close."""
        try:
            out = step(*args)
            if not conn.closed:
                conn.answered(out)
        except Exception as exc:
            self._failed(conn, exc)

    def close(self, conn: Connection) -> None:
        if conn.closed:
            return
        if conn.events:  # the stream is closed below: its fd is ours alone
            self.selector.forget(conn.fd)
        conn.closed = True
        watch, conn.watch = conn.watch, None
        if isinstance(watch, Watch):
            watch.stop()  # a forced stop (or the sweep) ends a handed-over connection
        if self.conns.get(conn.fd) is conn:  # a handed-over fd may be another's by now
            del self.conns[conn.fd]
        engine = conn.engine
        engine.end()
        self.core.row.closed(*engine.counts(), time.monotonic() - engine.born)
        if self.trace:
            self.trace(f"close(fd {conn.fd})")
        conn.stream.close()

    # --- handed-over connections (protocols.handover) ----------------------------------

    def hand_over(self, conn: Connection, step: Handover) -> None:
        """Stop watching the connection; its job (it may connect: blocking) runs on a
        worker; the pump it returns is then watched here until it finishes."""
        if conn.events:
            self.selector.unregister(conn.fd)
            conn.events = 0
        conn.watch = True
        if self.handovers is None:
            self.handovers = handover_pool(self.core.config.max_conns)
        future = self.handovers.submit(step.job, conn.stream)
        future.add_done_callback(lambda f: self._handed(conn, f))

    def _handed(self, conn: Connection, future: Future[Any]) -> None:
        self.done.append((conn, None, future))
        self.core.waker.wake(b"h")

    def _watch(self, conn: Connection, future: Future[Any]) -> None:
        try:
            pump = future.result()
        except Exception:
            self.core.row.add("errors")
            log.exception("a hand-over job failed on %s", conn.stream.where)
            pump = None
        if pump is None or conn.closed:
            if pump is not None:
                pump.stop()
            conn.watch = None
            self.close(conn)
            return
        watch = Watch(pump, self.selector, lambda w: self.close(conn))
        conn.watch = watch
        self.next_timer = min(self.next_timer, time.monotonic() + TIMER_TICK)  # its deadlines
        self._advance(watch)

    def _advance(self, watch: Watch) -> None:
        """A pump's step; one whose descriptor cannot be watched (select(2) above
        FD_SETSIZE) is stopped, which ends its connection, and the loop serves on."""
        try:
            watch.step()
        except IPCError as exc:
            log.warning("a handed-over connection ended: %s", exc)
            watch.stop()

    # --- jobs --------------------------------------------------------------------------

    def submit(self, conn: Connection, job: Run) -> None:
        if self.executor is None:
            self.executor = DaemonPool(self.core.config.workers)
        future = self.executor.submit(run_job, job)
        future.add_done_callback(lambda f: self._job_finished(conn, job, f))

    def _job_finished(self, conn: Connection, job: Run, future: Future[Outcome]) -> None:
        self.done.append((conn, job, future.result()))
        self.core.waker.wake(b"j")

    def _finish_jobs(self) -> None:
        while self.done:
            conn, job, outcome = self.done.popleft()
            if job is None:  # a hand-over job's future
                self._watch(conn, outcome)
                continue
            if conn.closed:
                try:  # the outcome still reaches the session (what the job opened is freed)
                    conn.engine.resumed(job, outcome)
                except Exception:
                    log.debug("resuming a job of a closed connection", exc_info=True)
                continue
            self._guarded(conn, conn.engine.resumed, job, outcome)

    # --- time and stopping -------------------------------------------------------------

    def _fire_timers(self, now: float) -> None:
        """Fire the Timers that are due, expire hand-over pumps' deadlines; the next
        deadline (a Timer armed meanwhile lowers it too)."""
        self.next_timer, upcoming = NEVER, NEVER
        for conn in list(self.conns.values()):
            watch = conn.watch
            if isinstance(watch, Watch):
                watch.expire(now)
                upcoming = min(upcoming, now + TIMER_TICK)
                continue
            at = conn.timer_at
            if at is None:
                continue
            if at > now:
                upcoming = min(upcoming, at)
                continue
            conn.timer_at = None
            self._guarded(conn, conn.engine.timer)
        self.next_timer = min(self.next_timer, upcoming)

    def _stop_step(self) -> bool:
        """While stopping: True once every connection is gone (or the grace period ended)."""
        core = self.core
        for listener in core.listeners:
            if not listener.closed and not self.gate.paused_until:
                self.selector.unregister(listener)
                self._accept(listener, last=True)  # what was queued is served, not reset
        for endpoint in core.datagrams:
            if not endpoint.closed:
                self.selector.unregister(endpoint)
        core.close_listeners()  # (traced, as under every model)
        forced = drain_step(core, self.conns.values(), self._linger, self.close)
        return forced or not self.conns

    def _linger(self, conn: Connection) -> None:
        """End an idle connection with a lingering close (admission's drain rules)."""
        if not conn.engine.lingering:
            self._guarded(conn, conn.engine.linger, self.core.linger_time())


class Select(SelectorLoop):
    poller_class = SelectPoller


class Poll(SelectorLoop):
    poller_class = PollPoller


class Epoll(SelectorLoop):
    poller_class = EpollPoller
