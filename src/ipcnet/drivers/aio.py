"""The asyncio model: sessions as ``asyncio.Protocol`` objects, on uvloop when installed.

Role: perform each connection's ``Engine`` steps with asyncio's callbacks, with as little
as possible in between: ``data_received`` -> ``engine.feed`` -> ``transport.write``, so a
service costs two calls per read over a hand-written protocol. Rules:
- the transport holds the unsent output, so its write-buffer limits are set to the
  driver's high-water mark; reading pauses while ``pause_writing`` is in force or the
  engine says so (a job runs, a file is being sent, EOF, Close queued);
- ``Run`` jobs run in the loop's executor, or are awaited on the loop when the job is an
  ``async def`` function (the contract's coroutine form); a hand-over's job (it may
  connect) in a pool of its own, bounded by --max-conns (see ``drivers.selector``); a file region
  uses ``loop.sendfile`` (zero copy where the loop can; uvloop cannot, and
  there the file is read in worker threads and written under flow control);
- the core accepts (so EMFILE pauses accepting and over-limit connections are refused as
  under every model); each accepted socket is handed to the loop, which owns it from then
  on; datagram endpoints stay ours and the loop only reports when they are readable.
"""

from __future__ import annotations

import _socket
import asyncio
import inspect
import socket
import time
from typing import Any

from ipcnet.drivers.admission import ACCEPT_PAUSE, Gate, drain_step, sweep
from ipcnet.drivers.core import Model, ServerCore, log
from ipcnet.drivers.datagrams import answer
from ipcnet.drivers.engine import Engine, Region, run_job
from ipcnet.drivers.handover import AioWatch
from ipcnet.drivers.jobs import DaemonPool, handover_pool
from ipcnet.drivers.selector import SWEEP
from ipcnet.errors import IPCError
from ipcnet.protocols.base import Close, Outcome, Peer, Run, ShutdownWrite, Timer
from ipcnet.protocols.handover import Handover
from ipcnet.transports import SocketStream
from ipcnet.transports.files import read_region
from ipcnet.transports.splice import dup_stream

FILE_CHUNK = 256 * 1024  # bytes per read when the loop cannot sendfile
DRAIN_TICK = 0.05


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, the stdlib's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _LoopSocket(socket.socket):
    """An accepted socket as the loop is given it: ``family`` and ``type`` are the plain
    numbers. uvloop's connect_accepted_socket reads them three times, and socket.socket
    turns each into an enum member: 4.4 µs of a new connection, 0.13 µs as numbers."""

    __slots__ = ()
    family = _socket.socket.family  # type: ignore[assignment]
    type = _socket.socket.type  # type: ignore[assignment]


class _FileReader:
    """What loop.sendfile needs of a file: fileno() and a seek it will not use with offset."""

    def __init__(self, region: Region) -> None:
        self._fd = region.fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, *args: Any) -> int:
        return 0


class SessionProtocol(asyncio.Protocol):
    """One connection: bytes from asyncio into the engine, its steps back out."""

    def __init__(self, model: AsyncioModel, peer: Peer) -> None:
        self.model = model
        self.peer = peer
        self.engine: Engine = None  # type: ignore[assignment]  # set by connection_made
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.last_active = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.writable = True  # False while asyncio says its buffer is too full
        self.drained: asyncio.Future[None] | None = None  # what a file region waits on
        self.reading = True
        self.closed = False
        self.watch: AioWatch | bool | None = None  # handed over: True while its job runs
        self.late: list[bytes] = []  # read while a hand-over was on its way (uvloop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's: no subclasses
        model = self.model
        core = model.core
        # accepted before a stop began (scale, issue 14): served like any other, never
        # closed here; drain waits for its first request (closing it reset the client)
        core.row.opened()
        model.protocols.add(self)
        # the transport holds the unsent output, so it measures the high-water mark
        self.transport.set_write_buffer_limits(high=core.config.high_water)
        try:
            session, first = core.service.start(self.peer)
            self.engine = Engine(session, core.config.high_water, last_answers=True)
            if first is not None:  # (http says nothing first: reading is on already)
                self.engine.push(first)
                self.perform()
        except Exception:
            self._failed()

    def data_received(self, data: bytes) -> None:
        if self.watch is not None:  # read before the hand-over stopped reading: the pump's
            self.late.append(data)
            return
        try:
            engine = self.engine
            out = engine.feed(data)
            if out.__class__ is bytes:  # the hot path first: one test a message
                self.transport.write(out)
                if engine.queue:
                    self.perform()  # the Close after a last answer
            elif out is None:
                self.perform()
            else:  # a Run (feed returns bytes, a Run or None)
                self._start(out)  # type: ignore[arg-type]
        except Exception:
            self._failed()

    def eof_received(self) -> bool:
        try:
            self.engine.feed_eof()
            self.perform()
        except Exception:
            self._failed()
        return True  # keep the transport open: the session decides when to close

    def pause_writing(self) -> None:
        self.writable = False
        self._read_as_told()

    def resume_writing(self) -> None:
        self.writable = True
        self._wake_file_region()
        self._read_as_told()

    def _wake_file_region(self) -> None:
        """A file region waiting to write again goes on (it stops if the connection is
        lost meanwhile)."""
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake_file_region()
        watch, self.watch = self.watch, None
        if isinstance(watch, AioWatch):
            watch.stop()  # a forced stop ends a handed-over connection
        if self.timer is not None:
            self._disarm()
        engine: Engine | None = self.engine  # None if the session did not start
        row = self.model.core.row
        self.model.protocols.discard(self)
        if engine is not None:
            engine.end()
            row.closed(*engine.counts(), time.monotonic() - engine.born)
        else:
            row.add("active", -1)
            row.add("handled")
        if exc is not None:
            log.debug("connection lost: %s", exc)

    # --- steps ---------------------------------------------------------------------------

    def perform(self) -> None:
        """Do every step the engine has; a file region or a job runs as a task."""
        engine = self.engine
        transport = self.transport
        while (step := engine.step()) is not None:
            cls = step.__class__
            if cls is Region or cls is Run:
                self._start(step)  # type: ignore[arg-type]
                return
            if cls is Timer:
                self._disarm()
                seconds = step.seconds  # type: ignore[union-attr]
                if seconds is not None:
                    self.timer = self.model.loop.call_later(seconds, self._on_timer)
            elif cls is ShutdownWrite:
                if transport.can_write_eof():
                    transport.write_eof()
            elif cls is Close:
                transport.close()
                engine.end()
                return
            elif cls is Handover:
                self._hand_over(step)  # type: ignore[arg-type]
                return
            else:
                transport.write(step)  # type: ignore[arg-type]
                engine.sent(len(step))  # type: ignore[arg-type]
        self._read_as_told()

    def _hand_over(self, step: Handover) -> None:
        """The job gets a duplicate of the socket (asyncio keeps its own descriptor, paused)
        and runs on a worker (it may connect); its pump then runs on this loop. uvloop
        starts reading only after connection_made returns: pause again one turn later,
        before the loop polls, so that no byte is read past the hand-over."""
        self.transport.pause_reading()
        self.reading = False
        self.watch = True
        self.model.loop.call_soon(self._give, step)

    def _give(self, step: Handover) -> None:
        if self.closed:
            return
        self.transport.pause_reading()
        stream = dup_stream(self.transport.get_extra_info("socket"), str(self.peer.address))
        self.model.loop.create_task(self._take_over(step, stream))

    async def _take_over(self, step: Handover, stream: SocketStream) -> None:
        loop = self.model.loop
        try:
            pump = await loop.run_in_executor(self.model.handovers, step.job, stream)
        except Exception:
            log.exception("a hand-over job failed on %s", stream.where)
            stream.close()
            pump = None
        if pump is None or self.closed:
            if pump is not None:
                pump.stop()
            self.watch = None
            self.transport.abort()
            return
        if self.late:
            pump.prepend(b"".join(self.late))
            self.late.clear()
        self.watch = AioWatch(pump, loop, self._handed_done)
        self.watch.step()

    def _handed_done(self, watch: AioWatch) -> None:
        self.watch = None
        self.transport.abort()  # the pump closed its descriptor: now the connection's last

    def _read_as_told(self) -> None:
        """Read while the engine wants input and asyncio's buffer is below high water."""
        if self.watch is not None:
            return  # handed over: asyncio's reading stays paused
        want = self.engine.reading and self.writable and not self.closed
        if want != self.reading and not self.transport.is_closing():
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _start(self, step: Run | Region) -> None:
        self._read_as_told()
        self.model.loop.create_task(self._run(step))

    async def _run(self, step: Run | Region) -> None:
        engine = self.engine
        try:
            if step.__class__ is Region:
                engine.sent(await self._send_file(step), whole=True)
                out = None
            else:
                out = engine.resumed(step, await self._outcome(step))  # type: ignore[arg-type]
        except Exception as exc:
            if step.__class__ is not Region:
                self._failed()  # the session's resume failed
                return
            # a file region is the loop's I/O alone: it failing means the connection did
            engine.sent(0, whole=True)  # the step is over: its file is released
            log.debug("connection ended during a file region: %s", exc)
            engine.end()
            self.transport.abort()
            return
        if self.closed or self.transport.is_closing():
            return
        try:
            if out is None:
                self.perform()
            elif out.__class__ is Run:
                self._start(out)
            else:
                self.transport.write(out)  # type: ignore[arg-type]
                self._read_as_told()
        except Exception:
            self._failed()

    async def _send_file(self, region: Region) -> int:
        """loop.sendfile (zero copy) where the loop has it; uvloop does not, so there the
        file is read in worker threads and written with the transport's flow control."""
        model = self.model
        transport = self.transport
        if model.loop_sendfile:
            try:
                return await model.loop.sendfile(
                    transport,
                    _FileReader(region),  # type: ignore[arg-type]
                    region.offset,
                    region.count,
                )
            except NotImplementedError:
                model.loop_sendfile = False
        sent, offset, left = 0, region.offset, region.count
        while left > 0:
            size = min(FILE_CHUNK, left)
            data = await model.loop.run_in_executor(
                model.jobs, read_region, region.fd, offset, size
            )
            if not data:
                break
            transport.write(data)
            sent += len(data)
            offset += len(data)
            left -= len(data)
            if not self.writable:
                self.drained = model.loop.create_future()
                await self.drained
                if self.closed:
                    break
        return sent

    async def _outcome(self, job: Run) -> Outcome:
        """An ``async def`` job is awaited on the loop; any other runs in a worker."""
        if inspect.iscoroutinefunction(job.job):
            try:
                return Outcome(value=await job.job())
            except Exception as exc:
                return Outcome(error=exc)
        return await self.model.loop.run_in_executor(self.model.jobs, run_job, job)

    # --- timer and failures ----------------------------------------------------------------

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        try:
            self.engine.timer()
            self.perform()
        except Exception:
            self._failed()

    def linger(self) -> None:
        """End an idle connection with a lingering close (admission's drain rules)."""
        if self.engine.lingering or self.closed:
            return
        try:
            self.engine.linger(self.model.core.linger_time())
            self.perform()
        except Exception:
            self._failed()

    def _failed(self) -> None:
        core = self.model.core
        core.row.add("errors")
        log.exception("%s failed on a connection", core.service.name)
        if self.engine is not None:
            self.engine.end()
        self.transport.abort()

    @property
    def idle(self) -> bool:
        return (
            self.engine.idle and self.transport.get_write_buffer_size() == 0 and self.watch is None
        )


class AsyncioModel(Model):
    """asyncio (uvloop when installed): many connections on one thread, at Protocol speed."""

    @classmethod
    def check(cls, core: ServerCore) -> None:
        """asyncio's transports take SOCK_STREAM sockets only: each unixpacket connection
        would be accepted and reset."""
        for listener in core.listeners:
            if getattr(listener, "seqpacket", False):
                raise IPCError(
                    f"the asyncio model cannot serve unixpacket:// ({listener.address}): "
                    "asyncio takes stream sockets only; choose another --model"
                )

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.loop = new_event_loop()
        self.protocols: set[SessionProtocol] = set()
        self.adopting = 0  # accepted, not yet handed to the loop
        self.jobs = DaemonPool(core.config.workers)
        # a hand-over's job connects (it may hang for a connect timeout): never behind
        # another one, up to --max-conns (as the readiness models, drivers.selector)
        self.handovers = handover_pool(core.config.max_conns)
        self.loop_sendfile = True  # until the loop says NotImplementedError (uvloop)
        self.gate = Gate(
            core,
            active=lambda: len(self.protocols) + self.adopting,
            watch=lambda listener: self.loop.add_reader(listener.fileno(), self._accept, listener),
            unwatch=lambda listener: self.loop.remove_reader(listener.fileno()),
        )

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.jobs.shutdown(wait=False)
            self.handovers.shutdown(wait=False)
            self.loop.close()
            asyncio.set_event_loop(None)

    async def _main(self) -> None:
        core = self.core
        loop = self.loop
        for listener in core.listeners:
            listener.set_blocking(False)
            self.gate.watch(listener)  # type: ignore[misc]
        for endpoint in core.datagrams:
            # the core answers datagrams for every model; asyncio only says when to
            # (uvloop's datagram transport also mangles abstract unix addresses)
            endpoint.timeout = 0.0
            loop.add_reader(endpoint.fileno(), answer, core, endpoint)
        stop = asyncio.Event()

        def woken() -> None:
            core.drain_waker()
            stop.set()

        # the stop signals are the core's handlers' (install_signals): its wakeup fd is the
        # waker, and uvloop runs Python's handlers from its own. Not add_signal_handler:
        # a signal that came while it swapped the handlers was taken by both, and its
        # second terminate() ended a --drain-delay at once
        loop.add_reader(core.waker_r, woken)
        sweeper = loop.create_task(self._sweep())
        while not core.stopping.is_set():
            stop.clear()
            await stop.wait()
        for listener in core.listeners:
            if not self.gate.paused_until:
                self.gate.unwatch(listener)  # type: ignore[misc]
        core.close_listeners()
        await self._drain()
        sweeper.cancel()
        loop.remove_reader(core.waker_r)
        for endpoint in core.datagrams:
            if not endpoint.closed:
                loop.remove_reader(endpoint.fileno())

    def _accept(self, listener: Any) -> None:
        """Accept here rather than in loop.create_server, so that EMFILE pauses accepting
        (uvloop would spin) and over-limit connections are refused the same way everywhere."""
        for stream in self.gate.accept(listener):
            self.adopting += 1
            self.loop.create_task(self._adopt(stream))
        if self.gate.paused_until:
            self.loop.call_later(ACCEPT_PAUSE, self.gate.reopen)

    async def _adopt(self, stream: SocketStream) -> None:
        try:
            peer = self.core.peer(stream)
            sock = stream.sock
            if sock.__class__ is socket.socket:
                sock.__class__ = _LoopSocket
            await self.loop.connect_accepted_socket(lambda: SessionProtocol(self, peer), sock=sock)
        except Exception as exc:  # the loop's own error: the peer left before adoption
            log.debug("could not adopt %s: %s", stream.where, exc)
            stream.close()
        finally:
            self.adopting -= 1

    async def _drain(self) -> None:
        def force(proto: SessionProtocol) -> None:
            proto.transport.abort()

        while self.protocols or self.adopting:  # accepted, not yet adopted: not lost
            if drain_step(self.core, self.protocols, SessionProtocol.linger, force):
                break
            await asyncio.sleep(DRAIN_TICK)
        await asyncio.sleep(0)

    async def _sweep(self) -> None:
        core = self.core

        def close(proto: SessionProtocol) -> None:
            if proto.idle:
                proto.transport.close()
            else:  # stalled: close() would wait for the peer to take what is buffered
                proto.transport.abort()

        while True:
            await asyncio.sleep(SWEEP)
            sweep(self.protocols, core.row, core.config.idle_timeout, time.monotonic(), close)
