"""The blocking models of the seeds: iterative, fork, forkconc, thread, pool.

Role: ``drive`` performs one connection's engine steps with blocking reads and writes
(seed 000 §6.6's serve_client; ``rpc.serve_channel`` uses it too) and ``run_connection``
adds a session, the counters and the error rules; the models are composed of
``accept_loop`` (over ``admission.Gate``) with ``Children`` (processes) or ``Threads``,
and differ only in who calls ``run_connection``:
- iterative: the accept loop itself, one connection at a time (server v1);
- fork: a child process per connection while the parent waits ("with protection", §6.7);
- forkconc: a child per connection, the parent does not wait; SIGCHLD reaps (§6.8);
- thread: a thread per connection, at most --max-conns (§7.3);
- pool: --workers threads take accepted connections from a bounded queue (§7.4).
Rules: over a limit a connection is refused explicitly, never left hanging; a stop request
ends idle connections at once, lets busy ones finish within the grace period, then forces;
a connection the stop ends (not its session, not its peer) closes lingering, as the
admission module's drain rules say: ``drive`` itself performs ``Engine.linger``'s steps
(half-close, drop, close at EOF or the timer), and a thread blocked reading is sent our
FIN by the draining thread, so its client's EOF or next bytes wake it to linger (a TLS
connection's thread is woken instead, ``Conn.wake``, and sends close_notify before the
FIN); every child is reaped and every thread joined.
"""

from __future__ import annotations

import gc
import os
import queue
import selectors
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ipcnet.drivers import handover
from ipcnet.drivers.admission import BATCH, QUEUED, Gate, drain_step, refuse
from ipcnet.drivers.core import (
    READ_SIZE,
    STOP_SIGNALS,
    Conn,
    Model,
    ServerCore,
    StopEvent,
    StopServing,
    log,
)
from ipcnet.drivers.counters import Row
from ipcnet.drivers.datagrams import answer
from ipcnet.drivers.engine import LINGER_IDLE, Engine, Region, run_job
from ipcnet.errors import Broken, Busy, Interrupted, IPCError, Timeout
from ipcnet.protocols.base import Close, Run, ShutdownWrite, Timer
from ipcnet.protocols.handover import Handover
from ipcnet.transports import SocketStream, process
from ipcnet.transports.base import StreamTransport
from ipcnet.transports.files import read_region
from ipcnet.transports.readiness import EpollPoller

READ = selectors.EVENT_READ
_GONE: Any = object()  # a ready fd unregistered by an earlier one of its batch
TICK = 0.05  # seconds between looks at in-flight connections while stopping
FLUSH_EVERY = 64  # reads between byte-counter updates of a long connection


def _never() -> bool:
    return False


_NEVER = StopEvent()  # drive()'s ``stop`` when there is no server to stop (serve_channel)


def run_connection(
    core: ServerCore,
    stream: StreamTransport,
    row: Row,
    conn: Conn | None = None,
    wakeable: bool = False,
) -> None:
    """Serve one connection until it ends; never raises (errors are logged and counted).
    ``wakeable``: its reads can be woken from another thread (``conn.wake``) where the
    session ends itself at a stop (TLS), so a drain need not send our FIN first."""
    engine: Engine | None = None
    conn = conn or Conn(stream)
    try:
        session, first = core.service.start(core.peer(stream))
        engine = conn.engine = Engine(session, core.config.high_water)
        if wakeable and hasattr(session, "linger") and isinstance(stream, SocketStream):
            stream.wakeable()
            conn.wake = stream.wake
        engine.push(first)
        drive(
            engine,
            stream,
            conn,
            row,
            core.trace,
            core.past_linger,
            core.config.idle_timeout,
            core.stopping,
        )
    except Timeout:
        log.debug("closing %s: idle for %s s", stream.where, core.config.idle_timeout)
    except (StopServing, Interrupted):  # a stop, a signal or the drain thread's wake
        pass
    except IPCError as exc:
        log.debug("connection %s ended: %s", stream.where, exc)
    except Exception:
        row.add("errors")
        log.exception("%s failed on a connection from %s", core.service.name, stream.where)
    finally:
        if engine is not None:
            _linger(core, engine, stream, conn, row)
            engine.end()
            _count(engine, row)
            row.observe(time.monotonic() - engine.born)
        if core.trace:
            core.trace(f"close(fd {stream.fileno()})")
        stream.close()
        row.add("handled")


def _linger(
    core: ServerCore, engine: Engine, stream: StreamTransport, conn: Conn, row: Row
) -> None:
    """A connection the stop ended closes lingering (see the rules); one its session or
    its peer ended, or a forced stop, closes at once."""
    if engine.closing or engine.eof or not core.stopping.is_set() or core.forcing.is_set():
        return
    engine.linger(core.linger_time())
    try:
        drive(engine, stream, conn, row, core.trace)
    except (IPCError, StopServing):  # broken, closed by the drain, or a second signal
        pass


def drive(
    engine: Engine,
    stream: StreamTransport,
    conn: Conn,
    row: Row | LocalRow,
    trace: Callable[[str], None] | None = None,
    stopping: Callable[[], bool] = _never,
    idle_timeout: float | None = None,
    stop: StopEvent | None = None,
) -> None:
    """Perform what is queued, then read, feed, perform until EOF or a Close, with
    blocking calls (any stream transport: a socket, or a Channel's pipe for
    ``rpc.serve_channel``). Raises Timeout when idle ``idle_timeout`` s. Byte counts go
    to the row every FLUSH_EVERY reads, not on every read (a locked add in thread models).
    ``stopping()`` is asked after a request only once ``stop`` (the server's StopEvent)
    has been set; without ``stop``, never."""
    if not _perform(engine, stream, conn, trace):
        return
    if stop is None:
        stop = _NEVER
    fd = stream.fileno()
    read, write, feed = stream.read, stream.write, engine.feed
    flush = FLUSH_EVERY  # reads left before the next counter update
    timeout_now: float | None = -1.0
    exchange = None if trace else stream.exchanging()  # raw calls, for the hot loop below
    # ``while True`` and a return, not ``while cond``: CPython 3.11 warms a function up
    # (to specialize its bytecode) on calls and on JUMP_BACKWARD only, and ``while cond``
    # loops back with POP_JUMP_BACKWARD_IF_*: a forked child, which calls drive() once,
    # ran its loop as generic bytecode for the whole connection
    while True:
        if stop.asked and stopping() and engine.fed:  # a stop waits for a first request (issue 14)
            return
        if conn.timer_at is not None or timeout_now != idle_timeout:  # not per request
            timeout = idle_timeout
            if conn.timer_at is not None:
                left = max(0.0, conn.timer_at - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            if timeout != timeout_now:
                stream.timeout = timeout_now = timeout
        if exchange is not None and conn.timer_at is None:
            # the hot loop: the socket's own recv/sendall (the transport translates their
            # errors when they leave the block), after its ``wait`` where it has one (a
            # unix socket's poll: no wake-up for nothing; nothing in time, and the recv
            # that does not wait fails as a timed-out read), a job run inline as below,
            # and the engine's one-bytes answer written at once; anything else (EOF,
            # queued actions, a Timer) leaves the block with ``data`` and ``out`` for the
            # general steps below (leaving costs a new manager: not once per RPC call)
            try:
                with exchange as (recv, send, flags, wait, nowait):
                    while True:
                        conn.idle = True
                        if wait is None or wait():
                            data = recv(READ_SIZE)
                        else:
                            data = recv(READ_SIZE, nowait)
                        conn.idle = False
                        if not data:
                            break
                        out = feed(data)
                        if out.__class__ is not bytes:  # (one test a message, not two)
                            while out.__class__ is Run:  # run_job raises nothing
                                out = engine.resumed(out, run_job(out))
                            if out.__class__ is not bytes:
                                break
                        send(out, flags)
                        flush -= 1
                        if not flush:
                            flush = FLUSH_EVERY
                            _count(engine, row)
                        if stop.asked and stopping() and engine.fed:
                            return
            finally:
                conn.idle = False
                exchange = stream.exchanging()  # a with-block's manager serves once
        else:
            conn.idle = True
            try:
                data = read(READ_SIZE)
            except Timeout:
                if conn.timer_at is None or time.monotonic() < conn.timer_at:
                    raise  # the idle timeout
                conn.timer_at = None
                engine.timer()
                if not _perform(engine, stream, conn, trace):
                    return
                continue
            finally:
                conn.idle = False
            if trace:
                trace(
                    f"read(fd {fd}) -> {len(data)} bytes"
                    + ("" if data else " (EOF: the peer is done)")
                )
            out = feed(data) if data else None
        if not data:
            engine.feed_eof()
            _perform(engine, stream, conn, trace)
            return
        while out.__class__ is Run:  # the hot path of a request/response service
            out = engine.resumed(out, run_job(out))
        if out is not None:
            write(out)  # type: ignore[arg-type]
            if trace:
                trace(f"write(fd {fd}, {len(out)} bytes)")  # type: ignore[arg-type]
        elif not _perform(engine, stream, conn, trace):
            return
        flush -= 1
        if not flush:
            flush = FLUSH_EVERY
            _count(engine, row)


def _count(engine: Engine, row: Row | LocalRow) -> None:
    """Add the bytes the connection moved since the last count to its counters row."""
    new_in, new_out = engine.counts()
    row.add("bytes_in", new_in)
    row.add("bytes_out", new_out)


def _run(engine: Engine, job: Run) -> bytes | None:
    """Run a job inline (and the jobs its outcome asks for); the answer to write now."""
    out = engine.resumed(job, run_job(job))
    while out.__class__ is Run:
        out = engine.resumed(out, run_job(out))
    return out  # type: ignore[return-value]


def _perform(
    engine: Engine, stream: StreamTransport, conn: Conn, trace: Callable[[str], None] | None
) -> bool:
    """Do every step the engine has, blocking; False once the connection should close."""
    fd = stream.fileno()
    while (step := engine.step()) is not None:
        cls = step.__class__
        if cls is Region:
            region: Any = step
            try:
                if isinstance(stream, SocketStream):
                    sent = stream.sendfile(region.fd, region.offset, region.count)
                else:  # a pipe: no sendfile(2) to a pipe's write end in every kernel; copy
                    sent = copy_region(stream, region.fd, region.offset, region.count)
            except IPCError as exc:  # the step is over: reported, so its file is released
                engine.sent(exc.written if isinstance(exc, Broken) else 0, whole=True)
                raise
            engine.sent(sent, whole=True)
            if trace:
                trace(f"sendfile(fd {fd}, {region.path}) -> {sent} bytes")
        elif cls is Run:
            out = _run(engine, step)  # type: ignore[arg-type]
            if out is not None:
                stream.write(out)
                if trace:
                    trace(f"write(fd {fd}, {len(out)} bytes)")
        elif cls is ShutdownWrite:
            stream.send_eof()
            if trace:
                trace(f"shutdown(fd {fd}, SHUT_WR)")
        elif cls is Close:
            return False
        elif cls is Timer:
            seconds = step.seconds  # type: ignore[union-attr]
            conn.timer_at = None if seconds is None else time.monotonic() + seconds
        elif cls is Handover:  # the job takes the connection; its pump runs here, blocking
            pump = step.job(stream)  # type: ignore[union-attr,call-arg]
            if pump is not None:
                if trace:
                    trace(f"fd {fd} handed over: a pump moves its bytes")
                handover.drive(pump)
            return False
        else:
            stream.write(step)  # type: ignore[arg-type]
            engine.sent(len(step))  # type: ignore[arg-type]
            if trace:
                trace(f"write(fd {fd}, {len(step)} bytes)")  # type: ignore[arg-type]
    return True


def copy_region(stream: StreamTransport, fd: int, offset: int, count: int) -> int:
    """Send a file region by reading and writing it (where sendfile(2) is not at hand)."""
    sent = 0
    while sent < count:
        data = read_region(fd, offset + sent, min(READ_SIZE, count - sent))
        if not data:
            break
        stream.write(data)
        sent += len(data)
    return sent


def accept_loop(
    core: ServerCore,
    active: Callable[[], int],
    dispatch: Callable[[SocketStream], object],
    on_wake: Callable[[], None] | None = None,
    serve_queued: bool = False,
) -> None:
    """The blocking models' accept loop: wait for listeners, datagrams and the waker;
    hand each admitted connection to ``dispatch``; close the listeners on a stop, after
    taking what the kernel had queued on them (``serve_queued``: models that serve those
    while they drain; closing would reset them, gunicorn #3397)."""
    selector = EpollPoller()
    gate = Gate(
        core,
        active,
        watch=lambda listener: selector.register(listener, READ, listener),
        unwatch=selector.unregister,
    )
    for listener in core.listeners:
        listener.set_blocking(False)
        selector.register(listener, READ, listener)
    datagrams = set(core.datagrams)
    for endpoint in datagrams:
        endpoint.timeout = 0.0  # a reply to a full unixgram queue is dropped, not awaited
        selector.register(endpoint, READ, endpoint)
    selector.register(core.waker_r, READ, None)
    sources = selector.data

    def take(listener: Any, last: bool = False) -> None:
        for stream in gate.accept(listener, QUEUED if last else BATCH, last):
            try:
                dispatch(stream)
            except IPCError as exc:  # no process or thread could take it
                refuse(core, stream, why=str(exc), quiet=True)  # pause() says it
                gate.pause(exc)

    try:
        while not core.stopping.is_set():
            wait = gate.wait()
            for fd, _ in selector.wait(-1.0 if wait is None else wait):
                source = sources.get(fd, _GONE)
                if source is _GONE:
                    continue
                if source is None:
                    core.drain_waker()
                    if on_wake is not None:
                        on_wake()
                elif source in datagrams:
                    answer(core, source)
                else:
                    take(source)
            gate.resume()
        if serve_queued and not core.forcing.is_set():
            for listener in core.listeners:
                take(listener, last=True)
    finally:
        selector.close()
        core.close_listeners()


def wait_for(core: ServerCore, conns: Callable[[], list[Any]], linger: Any, force: Any) -> None:
    """After a stop: end idle connections now (``linger``), force busy ones at the deadline."""
    while conns():
        if drain_step(core, conns(), linger, force):
            return
        time.sleep(TICK)


# --- one connection at a time ------------------------------------------------------------


class Iterative(Model):
    """Server v1: serve each connection to its end before accepting the next."""

    def serve(self) -> None:
        self.current: Conn | None = None
        previous = _install_stop_handler(self.core, lambda: self.current)
        try:
            accept_loop(self.core, lambda: 0, self.dispatch)
        finally:
            _restore_handlers(previous)

    def dispatch(self, stream: SocketStream) -> None:
        row = self.core.row
        row.add("accepted")
        row.add("active")
        row.set_state("busy")
        self.current = Conn(stream)
        try:
            run_connection(self.core, stream, row, self.current)
        except StopServing:  # the deadline's, in run_connection's own closing steps
            pass
        finally:
            self.current = None
            row.add("active", -1)
            row.set_state("idle")


def _install_stop_handler(core: ServerCore, current: Any) -> dict[int, Any]:
    """SIGTERM/SIGINT: request a stop; if the connection in hand is idle, end it now; if
    it is busy, at the end of the grace period (SIGALRM), or at once on a second signal:
    the one thread is the one serving it, in a blocking call or a job run inline, and only
    a signal's handler reaches it there (it waited out its job, --grace or not)."""

    def handler(signum: int, frame: object) -> None:
        core.terminate()  # during a --drain-delay it serves on: end nothing until stopping
        conn = current()
        if conn is None or not core.stopping.is_set():
            return
        if core.forcing.is_set() or (conn.idle and conn.quiet):
            raise StopServing
        if signal.getitimer(signal.ITIMER_REAL)[0] == 0:  # the deadline, once
            signal.setitimer(signal.ITIMER_REAL, max(core.time_left(), 0.001))

    def deadline(signum: int, frame: object) -> None:
        core.request_stop(force=True)
        if current() is not None:
            raise StopServing

    previous: dict[int, Any] = {}
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, deadline)
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    if signal.SIGALRM in previous:
        signal.setitimer(signal.ITIMER_REAL, 0)
    for sig, handler in previous.items():
        signal.signal(sig, handler)


# --- processes ---------------------------------------------------------------------------


class Children:
    """The fork models' children: fork one per connection, reap, signal, drain."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.pids: set[int] = set()
        core.on_stop.append(self.signal)

    def fork(self, stream: SocketStream) -> int:
        core = self.core
        core.row.add("accepted")
        pid, held = core.fork(stream.where, self.pids.add)
        if pid == 0:
            _child_main(core, stream, held)
        if core.trace:
            core.trace(
                f"fork() -> child pid {pid} serves fd {stream.fileno()}; parent closes its copy"
            )
        stream.close()  # the child has its own copy; closing ours does not end the connection
        core.row.add("active")
        return pid

    def wait(self, pid: int) -> None:
        """Until child ``pid`` ends; while stopping, killed at the deadline (its SIGCHLD
        wakes the waker: see ``Fork``). A blocking waitpid(2) waited out a busy child,
        --grace or not."""
        core = self.core
        while (ended := process.wait(pid, block=False)) is not None and ended[0] == 0:
            if core.stopping.is_set() and core.time_left() <= 0:
                process.kill(pid, signal.SIGKILL)
                process.wait(pid)
                break
            core.waker.wait(core.time_left() if core.stopping.is_set() else None)
        self._reaped(pid)

    def _reaped(self, pid: int) -> None:
        self.pids.discard(pid)
        self.core.row.add("active", -1)
        self.core.row.add("handled")

    def signal(self, force: bool) -> None:
        for pid in list(self.pids):
            process.kill(pid, signal.SIGKILL if force else signal.SIGTERM)

    def reap_ready(self) -> None:
        while self.pids:
            ended = process.wait(block=False)
            if ended is None:  # no children at all any more
                self.pids.clear()
                return
            if ended[0] == 0:
                return
            if ended[0] in self.pids:
                self._reaped(ended[0])

    def drain(self) -> None:
        """Children got SIGTERM and stop by themselves; at the deadline they are killed."""
        while self.pids:
            if self.core.time_left() <= 0:
                self.signal(force=True)
                for pid in list(self.pids):
                    self.wait(pid)
                return
            self.reap_ready()
            time.sleep(TICK)


class Fork(Model):
    """A child process per connection; the parent waits for it (the seed's protection)."""

    def serve(self) -> None:
        children = Children(self.core)
        waker = self.core.waker  # the child's end wakes the parent's wait (Children.wait)
        previous = signal.signal(signal.SIGCHLD, lambda s, f: waker.wake(b"c"))
        try:
            accept_loop(self.core, children.pids.__len__, lambda s: children.wait(children.fork(s)))
            children.drain()
        finally:
            signal.signal(signal.SIGCHLD, previous)


class ForkConcurrent(Model):
    """A child per connection; the parent goes back to accept at once; SIGCHLD reaps (§6.8)."""

    def serve(self) -> None:
        children = Children(self.core)
        waker = self.core.waker
        previous = signal.signal(signal.SIGCHLD, lambda s, f: waker.wake(b"c"))
        try:
            accept_loop(
                self.core,
                self._active(children),
                children.fork,
                children.reap_ready,
                serve_queued=True,
            )
            children.drain()
        finally:
            signal.signal(signal.SIGCHLD, previous)
            children.reap_ready()

    @staticmethod
    def _active(children: Children) -> Callable[[], int]:
        def active() -> int:
            children.reap_ready()  # count only the children still serving
            return len(children.pids)

        return active


def _child_main(core: ServerCore, stream: SocketStream, held: Iterable[int]) -> None:
    """In the forked child: serve the one connection, report the totals, exit; SIGTERM
    stays blocked (``held``: the mask to restore) until its handler is ours."""
    # the inherited objects go to gc's permanent generation: a collection in this child
    # then never walks them, which would write their headers and copy their pages
    gc.freeze()
    code = 0
    try:
        core.after_fork_child()
        row = core.row  # its parent's (a prefork worker's own, under --inner forkconc)
        local = LocalRow()
        conn = Conn(stream)
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda s, f: _child_stop(core, conn))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a SIGTERM that came is heard now
        run_connection(core, stream, local, conn)  # type: ignore[arg-type]
        core.counters.add_shared(row, **local.totals())
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _child_stop(core: ServerCore, conn: Conn) -> None:
    """SIGTERM in a fork child: stop, ending a quiet connection now, but not one that
    lingers already (systemd signals every process of a unit and the parent forwards
    its own: the second SIGTERM is no force)."""
    core.stopping.set()
    if conn.quiet and not conn.engine.lingering:
        raise StopServing


class LocalRow:
    """A forked child counts privately and adds its totals to the shared row once."""

    def __init__(self) -> None:
        self.values = {"bytes_in": 0, "bytes_out": 0, "errors": 0}

    def add(self, field: str, amount: int = 1) -> None:
        if field in self.values:
            self.values[field] += amount

    def set_state(self, state: str) -> None:
        pass

    def observe(self, seconds: float) -> None:
        pass  # a forked child's connection: the shared histogram does not see it

    def totals(self) -> dict[str, int]:
        return self.values


# --- threads -----------------------------------------------------------------------------


class Threads:
    """Connections served on threads: register (or refuse), serve, forget, drain."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.lock = threading.Lock()

    def active(self) -> int:
        return len(self.core.conns)

    def admit(self, stream: SocketStream) -> Conn:
        conn = Conn(stream)
        with self.lock:
            self.core.conns[id(conn)] = conn
        self.core.row.add("active")
        return conn

    def forget(self, conn: Conn) -> None:
        with self.lock:
            self.core.conns.pop(id(conn), None)
        self.core.row.add("active", -1)

    def serve(self, conn: Conn) -> None:
        try:
            run_connection(self.core, conn.stream, self.core.row, conn, wakeable=True)
        finally:
            self.forget(conn)

    def drain(self) -> None:
        """Idle connections get our FIN now (a TLS one: its thread is woken, to end it
        with close_notify first); one whose client stays silent LINGER_IDLE s is closed
        (closing wakes its thread's read), one whose client's EOF or bytes woke its
        thread, or the wake, lingers there (``_linger``); busy ones are closed at the
        deadline."""
        core = self.core

        def conns() -> list[Conn]:
            with self.lock:
                return list(core.conns.values())

        def linger(conn: Conn) -> None:
            if conn.linger_until is None:
                conn.linger_until = time.monotonic() + min(LINGER_IDLE, core.linger_time())
                try:
                    conn.wake() if conn.wake is not None else conn.stream.send_eof()
                except IPCError:
                    conn.stream.close()
            elif not conn.engine.lingering and time.monotonic() >= conn.linger_until:
                conn.stream.close()

        def close(conn: Conn) -> None:
            conn.stream.close()

        wait_for(core, conns, linger, close)


class ThreadPerConnection(Model):
    """A thread per connection, at most --max-conns of them."""

    def serve(self) -> None:
        self.threads = Threads(self.core)
        self.running: set[threading.Thread] = set()
        accept_loop(self.core, self.threads.active, self.dispatch, serve_queued=True)
        self.threads.drain()
        for thread in list(self.running):
            thread.join(max(1.0, self.core.time_left()))

    def dispatch(self, stream: SocketStream) -> None:
        conn = self.threads.admit(stream)
        self.core.row.add("accepted")
        thread = threading.Thread(
            target=self._serve, args=(conn,), name=f"conn-{stream.fileno()}", daemon=True
        )
        self.running.add(thread)
        if self.core.trace:
            self.core.trace(f"thread {thread.name} serves fd {stream.fileno()}")
        try:
            thread.start()
        except RuntimeError as exc:  # out of threads (RLIMIT_NPROC, memory): refused
            self.running.discard(thread)
            self.threads.forget(conn)
            raise Busy(f"cannot start a thread to serve {stream.where}: {exc}") from exc

    def _serve(self, conn: Conn) -> None:
        try:
            self.threads.serve(conn)
        finally:
            self.running.discard(threading.current_thread())


class Pool(Model):
    """--workers threads; accepted connections wait in a bounded queue; full means refused."""

    def serve(self) -> None:
        core = self.core
        self.threads = Threads(core)
        self.queue: queue.Queue[Conn | None] = queue.Queue(
            maxsize=core.config.queue or 4 * core.config.workers
        )
        workers = [
            threading.Thread(target=self._work, name=f"pool-{i}", daemon=True)
            for i in range(core.config.workers)
        ]
        for worker in workers:
            worker.start()
        accept_loop(core, self.threads.active, self.dispatch, serve_queued=True)
        self.threads.drain()
        for _ in workers:
            self.queue.put(None)
        for worker in workers:
            worker.join(max(1.0, core.time_left()))

    def dispatch(self, stream: SocketStream) -> None:
        conn = self.threads.admit(stream)  # registered first: a worker may finish it at once
        try:
            self.queue.put_nowait(conn)
        except queue.Full:
            self.threads.forget(conn)
            refuse(self.core, stream, why=f"the pool's queue of {self.queue.maxsize} is full")
            return
        self.core.row.add("accepted")

    def _work(self) -> None:
        while (conn := self.queue.get()) is not None:
            if self.core.trace:
                self.core.trace(
                    f"worker {threading.current_thread().name} takes fd {conn.stream.fileno()}"
                )
            self.threads.serve(conn)
