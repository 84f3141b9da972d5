"""The blocking models of the seeds: iterative, fork, forkconc, thread, pool.

Role: ``run_connection`` serves one connection with blocking reads and writes (seed 000
§6.6's serve_client); the models differ only in who calls it:
- iterative: the accept loop itself, one connection at a time (server v1);
- fork: a child process per connection while the parent waits ("with protection", §6.7);
- forkconc: a child per connection, the parent does not wait; SIGCHLD reaps (§6.8);
- thread: a thread per connection, at most --max-conns (§7.3);
- pool: --workers threads take accepted connections from a bounded queue (§7.4).
Rules: over a limit a connection is refused explicitly, never left hanging; a stop request
closes idle connections at once, lets busy ones finish within the grace period, then forces;
every child is reaped and every thread joined.
"""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ipcnet.drivers.core import ACCEPT_PAUSE, READ_SIZE, Conn, Model, ServerCore, StopServing, log
from ipcnet.drivers.counters import Row
from ipcnet.errors import Busy, IPCError, Timeout
from ipcnet.protocols.base import (
    Action,
    Actions,
    Close,
    Outcome,
    Run,
    SendFile,
    Session,
    ShutdownWrite,
    Timer,
    as_list,
)
from ipcnet.transports import SocketStream
from ipcnet.transports.files import release

TICK = 0.05  # seconds between looks at in-flight connections while stopping
FLUSH_EVERY = 64  # reads between byte-counter updates of a long connection


class _State:
    """What the blocking loop keeps per connection besides the session."""

    __slots__ = ("conn", "timeout", "timer_at")

    def __init__(self, conn: Conn | None) -> None:
        self.conn = conn
        self.timer_at: float | None = None
        self.timeout: float | None = -1.0  # what the stream's timeout is set to now


def run_connection(
    core: ServerCore, stream: SocketStream, row: Row, conn: Conn | None = None
) -> None:
    """Serve one connection until it ends; never raises (errors are logged and counted)."""
    trace = core.trace
    fd = stream.fileno()
    state = _State(conn)
    try:
        session, first = core.service.start(core.peer(stream))
        if first is None or _apply(core, stream, session, first, row, state):
            _loop(core, stream, session, row, state)
    except Timeout:
        log.debug("closing %s: idle for %s s", stream.where, core.config.idle_timeout)
    except StopServing:
        pass
    except IPCError as exc:
        log.debug("connection %s ended: %s", stream.where, exc)
    except Exception:
        row.add("errors")
        log.exception("%s failed on a connection from %s", core.service.name, stream.where)
    finally:
        if trace:
            trace(f"close(fd {fd})")
        stream.close()
        row.add("handled")


def _loop(
    core: ServerCore, stream: SocketStream, session: Session, row: Row, state: _State
) -> None:
    """Read, feed, write until EOF or a Close. Byte counts go to the row every
    FLUSH_EVERY reads and at the end, not on every read (a locked add in thread models)."""
    trace = core.trace
    fd = stream.fileno()
    stopping = core.stopping.is_set
    conn = state.conn
    idle_timeout = core.config.idle_timeout
    read, write = stream.read, stream.write
    bytes_in = bytes_out = reads = 0
    try:
        while not stopping():
            timeout = idle_timeout
            if state.timer_at is not None:
                left = max(0.0, state.timer_at - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            if timeout != state.timeout:
                stream.timeout = state.timeout = timeout
            if conn is not None:
                conn.idle = True
            try:
                data = read(READ_SIZE)
            except Timeout:
                if state.timer_at is None or time.monotonic() < state.timer_at:
                    raise  # the idle timeout
                state.timer_at = None
                if not _apply(core, stream, session, session.on_timer(), row, state):
                    return
                continue
            finally:
                if conn is not None:
                    conn.idle = False
            if trace:
                eof = "" if data else " (EOF: the peer is done)"
                trace(f"read(fd {fd}) -> {len(data)} bytes{eof}")
            if not data:
                _apply(core, stream, session, session.feed_eof(), row, state)
                return
            bytes_in += len(data)
            out = session.feed(data)
            if out.__class__ is Run and not trace:  # a request/response service's call
                out = session.resume(out, run_job(out))
            if out.__class__ is bytes and not trace:
                write(out)
                bytes_out += len(out)
            elif out is not None and not _apply(core, stream, session, out, row, state):
                return
            reads += 1
            if reads % FLUSH_EVERY == 0:
                row.add("bytes_in", bytes_in)
                row.add("bytes_out", bytes_out)
                bytes_in = bytes_out = 0
    finally:
        row.add("bytes_in", bytes_in)
        row.add("bytes_out", bytes_out)


def _apply(
    core: ServerCore,
    stream: SocketStream,
    session: Session,
    actions: Actions,
    row: Row,
    state: _State,
) -> bool:
    """Carry out actions in order; False once the connection should close."""
    trace = core.trace
    items = as_list(actions)
    i = 0
    try:
        for i, action in enumerate(items):
            if not _act(core, stream, session, action, row, state, trace):
                _release_rest(items[i + 1 :])
                return False
    except BaseException:
        _release_rest(items[i + 1 :])  # files handed over after the failure are still ours
        raise
    return True


def _act(
    core: ServerCore,
    stream: SocketStream,
    session: Session,
    action: Action,
    row: Row,
    state: _State,
    trace: Callable[[str], None] | None,
) -> bool:
    """One action; False once the connection should close."""
    if isinstance(action, (bytes, bytearray, memoryview)):
        stream.write(action)
        row.add("bytes_out", len(action))
        if trace:
            trace(f"write(fd {stream.fileno()}, {len(action)} bytes)")
    elif isinstance(action, SendFile):
        try:
            sent = stream.sendfile(action.fd, action.offset, action.count)
        finally:
            if action.close:
                release(action.fd)
        row.add("bytes_out", sent)
        if trace:
            trace(f"sendfile(fd {stream.fileno()}, {action.path or action.fd}) -> {sent} bytes")
    elif isinstance(action, ShutdownWrite):
        stream.send_eof()
        if trace:
            trace(f"shutdown(fd {stream.fileno()}, SHUT_WR)")
    elif isinstance(action, Timer):
        state.timer_at = None if action.seconds is None else time.monotonic() + action.seconds
    elif isinstance(action, Close):
        return False
    elif isinstance(action, Run):
        return _apply(core, stream, session, session.resume(action, run_job(action)), row, state)
    return True


def _release_rest(actions: Sequence[Action]) -> None:
    """Files handed over in actions that will never run are still closed."""
    for action in actions:
        if isinstance(action, SendFile) and action.close:
            release(action.fd)


def run_job(job: Run) -> Outcome:
    try:
        return Outcome(value=job.job())
    except Exception as exc:
        return Outcome(error=exc)


class BlockingModel(Model):
    """The accept loop the blocking models share; ``dispatch`` hands a connection over."""

    def serve(self) -> None:
        core = self.core
        selector = selectors.DefaultSelector()
        for listener in core.listeners:
            listener.set_blocking(False)
            selector.register(listener, selectors.EVENT_READ, listener)
        for endpoint in core.datagrams:
            selector.register(endpoint, selectors.EVENT_READ, endpoint)
        selector.register(core.waker_r, selectors.EVENT_READ, None)
        paused_until = 0.0
        try:
            while not core.stopping.is_set():
                timeout = max(0.0, paused_until - time.monotonic()) if paused_until else None
                for key, _ in selector.select(self.tick(timeout)):
                    source = key.data
                    if source is None:
                        core.drain_waker()
                        self.on_wake()
                    elif source in core.datagrams:
                        core.answer_datagram(source)
                    elif not core.stopping.is_set():
                        try:
                            stream = core.accept(source)
                        except Busy:  # out of descriptors: stop watching the listeners
                            paused_until = time.monotonic() + ACCEPT_PAUSE
                            for listener in core.listeners:
                                selector.unregister(listener)
                            break
                        if stream is not None:
                            self.dispatch(stream)
                if paused_until and time.monotonic() >= paused_until:
                    paused_until = 0.0
                    for listener in core.listeners:
                        selector.register(listener, selectors.EVENT_READ, listener)
                self.on_tick()
        finally:
            selector.close()
            core.close_listeners()
        self.drain()

    def tick(self, timeout: float | None) -> float | None:
        return timeout

    def on_wake(self) -> None:
        """The waker fired (a stop request, a child exit)."""

    def on_tick(self) -> None:
        """Called after each round of the accept loop."""

    def dispatch(self, stream: SocketStream) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """After a stop request: let in-flight work finish within the grace period."""


class Iterative(BlockingModel):
    """Server v1: serve each connection to its end before accepting the next."""

    name = "iterative"

    def serve(self) -> None:
        self.current: Conn | None = None
        previous = _install_stop_handler(self.core, lambda: self.current)
        try:
            super().serve()
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
        finally:
            self.current = None
            row.add("active", -1)
            row.set_state("idle")


def _install_stop_handler(core: ServerCore, current: Any) -> dict[int, Any]:
    """SIGTERM/SIGINT: request a stop; if the connection in hand is idle, end it now."""

    def handler(signum: int, frame: object) -> None:
        core.request_stop()
        conn = current()
        if conn is not None and conn.idle:
            raise StopServing

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


# --- processes ---------------------------------------------------------------------------


class Fork(BlockingModel):
    """A child process per connection; the parent waits for it (the seed's protection)."""

    name = "fork"

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.children: set[int] = set()
        core.on_stop.append(self._signal_children)

    def dispatch(self, stream: SocketStream) -> None:
        if self.core.over_limit(len(self.children)):
            self.core.refuse(stream)
            return
        pid = self._fork(stream)
        if pid is not None:
            self.wait_child(pid)

    def _fork(self, stream: SocketStream) -> int | None:
        core = self.core
        row = core.row
        row.add("accepted")
        pid = os.fork()
        if pid == 0:
            _child_main(core, stream)
        if core.trace:
            core.trace(
                f"fork() -> child pid {pid} serves fd {stream.fileno()}; parent closes its copy"
            )
        stream.close()  # the child has its own copy; closing ours does not end the connection
        self.children.add(pid)
        row.add("active")
        return pid

    def wait_child(self, pid: int) -> None:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
        self._reaped(pid)

    def _reaped(self, pid: int) -> None:
        self.children.discard(pid)
        self.core.row.add("active", -1)
        self.core.row.add("handled")

    def _signal_children(self, force: bool) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)

    def reap_ready(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            if pid in self.children:
                self._reaped(pid)

    def drain(self) -> None:
        core = self.core
        while self.children:
            if core.time_left() <= 0:
                self._signal_children(force=True)
                for pid in list(self.children):
                    self.wait_child(pid)
                return
            self.reap_ready()
            time.sleep(TICK)


class ForkConcurrent(Fork):
    """A child per connection; the parent goes back to accept at once (§6.8)."""

    name = "forkconc"

    def serve(self) -> None:
        previous = signal.signal(signal.SIGCHLD, self._on_sigchld)
        try:
            super().serve()
        finally:
            signal.signal(signal.SIGCHLD, previous)
            self.reap_ready()

    def _on_sigchld(self, signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            os.write(self.core.waker_w, b"c")

    def dispatch(self, stream: SocketStream) -> None:
        self.reap_ready()
        if self.core.over_limit(len(self.children)):
            self.core.refuse(stream)
            return
        self._fork(stream)

    def on_wake(self) -> None:
        self.reap_ready()


def _child_main(core: ServerCore, stream: SocketStream) -> None:
    """In the forked child: serve the one connection, report the totals, exit."""
    code = 0
    try:
        core.after_fork_child()
        row = core.counters.row(0)
        local = _LocalRow()
        conn = Conn(stream)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, f: _child_stop(core, conn))
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        run_connection(core, stream, local, conn)  # type: ignore[arg-type]
        core.counters.add_shared(row, **local.totals())
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _child_stop(core: ServerCore, conn: Conn) -> None:
    core.stopping.set()
    if conn.idle:
        raise StopServing


class _LocalRow:
    """A forked child counts privately and adds its totals to the shared row once."""

    def __init__(self) -> None:
        self.values = {"bytes_in": 0, "bytes_out": 0, "errors": 0}

    def add(self, field: str, amount: int = 1) -> None:
        if field in self.values:
            self.values[field] += amount

    def set_state(self, state: str) -> None:
        pass

    def totals(self) -> dict[str, int]:
        return self.values


# --- threads -----------------------------------------------------------------------------


class ThreadPerConnection(BlockingModel):
    """A thread per connection, at most --max-conns of them."""

    name = "thread"

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def dispatch(self, stream: SocketStream) -> None:
        conn = self._admit(stream)
        if conn is None:
            return
        self.core.row.add("accepted")
        thread = threading.Thread(
            target=self._serve, args=(conn,), name=f"conn-{stream.fileno()}", daemon=True
        )
        self.threads.add(thread)
        if self.core.trace:
            self.core.trace(f"thread {thread.name} serves fd {stream.fileno()}")
        thread.start()

    def _admit(self, stream: SocketStream) -> Conn | None:
        """Register the connection, or refuse it when --max-conns are already served."""
        core = self.core
        with self._lock:
            full = core.over_limit(len(core.conns))
            if not full:
                conn = Conn(stream)
                core.conns[id(conn)] = conn
        if full:
            core.refuse(stream)
            return None
        core.row.add("active")
        return conn

    def _forget(self, conn: Conn) -> None:
        with self._lock:
            self.core.conns.pop(id(conn), None)
        self.core.row.add("active", -1)

    def _serve(self, conn: Conn) -> None:
        try:
            run_connection(self.core, conn.stream, self.core.row, conn)
        finally:
            self._forget(conn)
            self.threads.discard(threading.current_thread())

    def drain(self) -> None:
        _drain_threads(self.core, self._lock, lambda: list(self.threads))


def _drain_threads(core: ServerCore, lock: threading.Lock, threads: Any) -> None:
    """Close idle connections now, busy ones at the deadline; then join every thread."""
    while True:
        with lock:
            conns = list(core.conns.values())
        if not conns:
            break
        force = core.time_left() <= 0
        for conn in conns:
            if force or conn.idle:
                conn.stream.close()  # wakes the thread blocked in read()
        if force:
            break
        time.sleep(TICK)
    for thread in threads():
        thread.join(max(1.0, core.time_left()))


class Pool(ThreadPerConnection):
    """--workers threads; accepted connections wait in a bounded queue; full means refused."""

    name = "pool"

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        size = core.config.queue or 4 * core.config.workers
        self.queue: queue.Queue[Conn | None] = queue.Queue(maxsize=size)
        self.workers = [
            threading.Thread(target=self._work, name=f"pool-{i}", daemon=True)
            for i in range(core.config.workers)
        ]
        for worker in self.workers:
            worker.start()

    def dispatch(self, stream: SocketStream) -> None:
        conn = self._admit(stream)  # registered first: a worker may finish it at once
        if conn is None:
            return
        try:
            self.queue.put_nowait(conn)
        except queue.Full:
            self._forget(conn)
            self.core.refuse(stream)
            return
        self.core.row.add("accepted")

    def _work(self) -> None:
        while (conn := self.queue.get()) is not None:
            if self.core.trace:
                self.core.trace(
                    f"worker {threading.current_thread().name} takes fd {conn.stream.fileno()}"
                )
            self._serve(conn)

    def drain(self) -> None:
        _drain_threads(self.core, self._lock, lambda: [])
        for _ in self.workers:
            self.queue.put(None)
        for worker in self.workers:
            worker.join(max(1.0, self.core.time_left()))
