"""The readiness models: select, poll and epoll through ``selectors`` (seed 002 §7.4).

Role: one thread, non-blocking sockets, and a loop that asks the kernel which descriptors
are ready. Each connection's state lives in its selector key's ``data`` (as CPython's
selectors docs suggest): the session, the queue of unsent output, and what it waits for.
Rules:
- output is tried at once; what the kernel does not take is queued and the connection
  waits for EVENT_WRITE; above ``high_water`` queued bytes the connection stops being read
  (backpressure) until the queue drains;
- ``Run`` jobs go to a small thread pool; the connection is neither read nor written while
  its job runs (so Run should end its list of actions), and the outcome comes back through
  the waker pipe, so a slow handler never stalls the loop;
- byte counters are kept per connection and added to the shared row once a second and at
  close, to keep the per-read cost down.
"""

from __future__ import annotations

import collections
import os
import selectors
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

from ipcnet.drivers.blocking import run_job
from ipcnet.drivers.core import ACCEPT_PAUSE, READ_SIZE, Model, ServerCore, log
from ipcnet.drivers.jobs import DaemonPool
from ipcnet.errors import Busy, IPCError
from ipcnet.protocols.base import (
    Actions,
    Outcome,
    Run,
    SendFile,
    Session,
    ShutdownWrite,
    Timer,
    as_list,
)
from ipcnet.transports import DatagramEndpoint, SocketListener, SocketStream
from ipcnet.transports.files import release

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE
SWEEP = 1.0  # seconds between idle-timeout sweeps and counter flushes
TIMER_TICK = 0.1  # resolution of session timers while any is armed


class _File:
    """A SendFile action in progress."""

    __slots__ = ("action", "left", "offset")

    def __init__(self, action: SendFile) -> None:
        self.action = action
        self.offset = action.offset
        self.left = action.count


class Connection:
    """One connection's state; it is the selector key's data."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "closed",
        "eof",
        "events",
        "fd",
        "job",
        "last_active",
        "loop",
        "out",
        "out_size",
        "reading",
        "session",
        "stream",
        "timer_at",
    )

    def __init__(self, loop: SelectorLoop, stream: SocketStream, session: Session) -> None:
        self.loop = loop
        self.stream = stream
        self.fd = stream.fileno()
        self.session = session
        self.out: collections.deque[Any] = collections.deque()  # memoryview | _File | marker
        self.out_size = 0
        self.events = READ
        self.job: Run | None = None
        self.reading = True
        self.eof = False
        self.closed = False
        self.timer_at: float | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_active = time.monotonic()

    # --- events ------------------------------------------------------------------------

    def on_readable(self) -> None:
        data = self.stream.try_read(READ_SIZE)
        if data is None:
            return
        trace = self.loop.trace
        if trace:
            trace(
                f"read(fd {self.fd}) -> {len(data)} bytes"
                + ("" if data else " (EOF: the peer is done)")
            )
        if not data:
            self.eof = True
            self.reading = False
            self._update_events()
            self.queue(self.session.feed_eof())
            return
        self.bytes_in += len(data)
        out = self.session.feed(data)
        if out.__class__ is bytes and not self.out and not trace:
            n = self.stream.try_write(out)
            self.bytes_out += n
            if n < len(out):
                self.out.append(memoryview(out)[n:])
                self.out_size += len(out) - n
                self._update_events()
        elif out is not None:
            self.queue(out)

    def on_writable(self) -> None:
        self.flush()

    # --- output ------------------------------------------------------------------------

    def queue(self, actions: Actions) -> None:
        for action in as_list(actions):
            if isinstance(action, (bytes, bytearray, memoryview)):
                if action:
                    self.out.append(memoryview(action).cast("B"))
                    self.out_size += len(action)
            elif isinstance(action, SendFile):
                self.out.append(_File(action))
                self.out_size += action.count
            elif isinstance(action, Timer):
                self.timer_at = (
                    None if action.seconds is None else time.monotonic() + action.seconds
                )
                self.loop.timers_armed = True
            else:  # Run, ShutdownWrite, Close: markers, acted on in order by flush()
                self.out.append(action)
        self.flush()

    def flush(self) -> None:
        """Send what the kernel takes now; act on markers in order."""
        out = self.out
        stream = self.stream
        trace = self.loop.trace
        while out and not self.closed:
            head = out[0]
            if isinstance(head, memoryview):
                n = stream.try_write(head)
                if trace and n:
                    trace(f"write(fd {self.fd}, {n} bytes)")
                self.bytes_out += n
                self.out_size -= n
                if n < len(head):
                    out[0] = head[n:]
                    break
                out.popleft()
            elif isinstance(head, _File):
                n = stream.try_sendfile(head.action.fd, head.offset, head.left)
                if trace and n:
                    trace(
                        f"sendfile(fd {self.fd}, {head.action.path or head.action.fd}) -> {n} bytes"
                    )
                self.bytes_out += n
                self.out_size -= n
                head.offset += n
                head.left -= n
                if head.left > 0 and n > 0:
                    continue
                if head.left > 0:
                    break
                out.popleft()
                if head.action.close:
                    release(head.action.fd)
            elif isinstance(head, Run):
                out.popleft()
                self.start_job(head)
                break
            elif isinstance(head, ShutdownWrite):
                out.popleft()
                stream.send_eof()
                if trace:
                    trace(f"shutdown(fd {self.fd}, SHUT_WR)")
            else:  # Close
                out.popleft()
                self.loop.close(self)
                return
        if not self.closed:
            self._update_events()

    def start_job(self, job: Run) -> None:
        self.job = job
        self._update_events()
        self.loop.submit(self, job)

    def fire_timer(self) -> None:
        self.queue(self.session.on_timer())

    def job_done(self, job: Run, outcome: Outcome) -> None:
        self.job = None
        if self.closed:
            return
        self.queue(self.session.resume(job, outcome))

    def _update_events(self) -> None:
        """Read unless a job runs, EOF came, or unsent output is above the high-water mark."""
        if self.reading and self.out_size > self.loop.high_water:
            self.reading = False
        elif not self.reading and not self.eof and self.out_size <= self.loop.low_water:
            self.reading = True
        wanted = 0
        if self.job is None:
            if self.reading:
                wanted = READ
            if self.out:
                wanted |= WRITE
        self._set_events(wanted)

    def _set_events(self, wanted: int) -> None:
        if wanted == self.events or self.closed:
            return
        self.loop.modify(self, self.events, wanted)
        self.events = wanted

    @property
    def idle(self) -> bool:
        return not self.out and self.job is None


class SelectorLoop(Model):
    """The loop; subclasses only pick the selector class."""

    selector_class: type[selectors.BaseSelector] = selectors.DefaultSelector

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.selector = self.selector_class()
        self.trace = core.trace
        self.high_water = core.config.high_water
        self.low_water = core.config.high_water // 4
        self.conns: dict[int, Connection] = {}
        self.done: collections.deque[tuple[Connection, Run, Outcome]] = collections.deque()
        self.executor: DaemonPool | None = None
        self.paused_until = 0.0
        self.timers_armed = False  # some connection has set a Timer: sweep more often

    # --- selector bookkeeping -------------------------------------------------------------

    def modify(self, conn: Connection, old: int, new: int) -> None:
        if old and new:
            self.selector.modify(conn.fd, new, conn)
        elif new:
            self.selector.register(conn.fd, new, conn)
        elif old:
            self.selector.unregister(conn.fd)

    # --- the loop ---------------------------------------------------------------------------

    def serve(self) -> None:
        core = self.core
        sel = self.selector
        for listener in core.listeners:
            listener.set_blocking(False)
            sel.register(listener, READ, listener)
        for endpoint in core.datagrams:
            endpoint.timeout = 0.0
            sel.register(endpoint, READ, endpoint)
        sel.register(core.waker_r, READ, None)
        next_sweep = time.monotonic() + SWEEP
        try:
            while True:
                if core.stopping.is_set() and self._stop_step():
                    break
                timeout = max(0.0, next_sweep - time.monotonic())
                if self.timers_armed:
                    timeout = min(timeout, TIMER_TICK)
                for key, mask in sel.select(timeout):
                    conn = key.data
                    if conn.__class__ is Connection:
                        try:
                            if mask & READ:
                                conn.on_readable()
                            if mask & WRITE and not conn.closed:
                                conn.on_writable()
                        except IPCError as exc:
                            log.debug("connection %s ended: %s", conn.stream.where, exc)
                            self.close(conn)
                        except Exception:
                            core.row.add("errors")
                            log.exception(
                                "%s failed on a connection from %s",
                                core.service.name,
                                conn.stream.where,
                            )
                            self.close(conn)
                    elif conn is None:
                        core.drain_waker()
                        self._finish_jobs()
                    elif isinstance(conn, SocketListener):
                        self._accept(conn)
                    elif isinstance(conn, DatagramEndpoint):
                        core.answer_datagram(conn)
                now = time.monotonic()
                if self.timers_armed:
                    self._fire_timers(now)
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + SWEEP
        finally:
            for conn in list(self.conns.values()):
                self.close(conn)
            if self.executor is not None:
                self.executor.shutdown(wait=False)
            sel.close()
            core.close_listeners()

    def _accept(self, listener: SocketListener) -> None:
        core = self.core
        if self.paused_until:
            return
        for _ in range(64):
            try:
                stream = core.accept(listener)
            except Busy:
                self.paused_until = time.monotonic() + ACCEPT_PAUSE
                self.selector.unregister(listener)
                return
            if stream is None:
                return
            if core.over_limit(len(self.conns)):
                core.refuse(stream)
                continue
            stream.set_blocking(False)
            core.row.add("accepted")
            core.row.add("active")
            try:
                session, first = core.service.start(core.peer(stream))
            except Exception:
                core.row.add("errors")
                log.exception("%s could not start a session", core.service.name)
                stream.close()
                core.row.add("active", -1)
                continue
            conn = Connection(self, stream, session)
            self.conns[conn.fd] = conn
            self.selector.register(conn.fd, READ, conn)
            if first is not None:
                conn.queue(first)

    def close(self, conn: Connection) -> None:
        if conn.closed:
            return
        if conn.events:
            self.selector.unregister(conn.fd)
        conn.closed = True
        self.conns.pop(conn.fd, None)
        for item in conn.out:
            if isinstance(item, _File) and item.action.close:
                release(item.action.fd)
        conn.out.clear()
        row = self.core.row
        row.add("bytes_in", conn.bytes_in)
        row.add("bytes_out", conn.bytes_out)
        row.add("active", -1)
        row.add("handled")
        if self.trace:
            self.trace(f"close(fd {conn.fd})")
        conn.stream.close()

    # --- jobs ----------------------------------------------------------------------------------

    def submit(self, conn: Connection, job: Run) -> None:
        if self.executor is None:
            self.executor = DaemonPool(self.core.config.workers)
        future = self.executor.submit(run_job, job)
        future.add_done_callback(lambda f: self._job_finished(conn, job, f))

    def _job_finished(self, conn: Connection, job: Run, future: Future[Outcome]) -> None:
        self.done.append((conn, job, future.result()))
        try:
            os.write(self.core.waker_w, b"j")
        except OSError:
            pass

    def _finish_jobs(self) -> None:
        while self.done:
            conn, job, outcome = self.done.popleft()
            self._guarded(conn, partial(conn.job_done, job, outcome), "resuming a job")

    def _guarded(self, conn: Connection, step: Callable[[], None], what: str) -> None:
        """Run one step of a connection outside the read/write path; errors close it."""
        try:
            step()
        except IPCError as exc:
            log.debug("connection %s ended: %s", conn.stream.where, exc)
            self.close(conn)
        except Exception:
            self.core.row.add("errors")
            log.exception("%s failed %s", self.core.service.name, what)
            self.close(conn)

    # --- time -----------------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        row = self.core.row
        idle_timeout = self.core.config.idle_timeout
        for conn in list(self.conns.values()):
            if conn.bytes_in or conn.bytes_out:
                row.add("bytes_in", conn.bytes_in)
                row.add("bytes_out", conn.bytes_out)
                conn.bytes_in = conn.bytes_out = 0
                conn.last_active = now
            elif idle_timeout is not None and conn.idle and now - conn.last_active > idle_timeout:
                log.debug("closing %s: idle for %s s", conn.stream.where, idle_timeout)
                self.close(conn)
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
            for listener in self.core.listeners:
                if not listener.closed:
                    self.selector.register(listener, READ, listener)

    def _fire_timers(self, now: float) -> None:
        armed = False
        for conn in list(self.conns.values()):
            if conn.timer_at is None:
                continue
            if conn.timer_at > now:
                armed = True
                continue
            conn.timer_at = None
            self._guarded(conn, conn.fire_timer, "in on_timer")
            armed = armed or conn.timer_at is not None
        self.timers_armed = armed

    def _stop_step(self) -> bool:
        """While stopping: True once every connection is gone (or the grace period ended)."""
        core = self.core
        for listener in core.listeners:
            if not listener.closed:
                if not self.paused_until:
                    self.selector.unregister(listener)
                listener.close()
        for endpoint in core.datagrams:
            if not endpoint.closed:
                self.selector.unregister(endpoint)
                endpoint.close()
        force = core.time_left() <= 0
        for conn in list(self.conns.values()):
            if force or conn.idle:
                self.close(conn)
        return not self.conns


class Select(SelectorLoop):
    name = "select"
    selector_class = selectors.SelectSelector


class Poll(SelectorLoop):
    name = "poll"
    selector_class = selectors.PollSelector


class Epoll(SelectorLoop):
    name = "epoll"
    selector_class = selectors.EpollSelector
