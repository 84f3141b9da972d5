"""The asyncio model: sessions as ``asyncio.Protocol`` objects, on uvloop when installed.

Role: adapt the sans-IO contract to asyncio's callbacks with as little as possible in
between: ``data_received`` -> ``session.feed`` -> ``transport.write``, so a service costs
one call per read over a hand-written protocol. Rules:
- backpressure is asyncio's: the transport's write-buffer limits are set to the driver's
  high-water mark, and ``pause_writing`` pauses reading until ``resume_writing``;
- ``Run`` jobs run in the loop's executor (or are awaited, if the job is a coroutine
  function), and the protocol neither reads nor writes until the job's outcome is applied;
  ``SendFile`` uses ``loop.sendfile`` (zero copy where the loop can; uvloop cannot, and
  there the file is read in worker threads and written under flow control);
- the core accepts (so EMFILE pauses accepting and over-limit connections are refused as
  under every model); each accepted socket is handed to the loop, which owns it from then
  on; datagram endpoints stay ours and the loop only reports when they are readable.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import signal
from typing import Any, cast

from ipcnet.drivers.core import ACCEPT_PAUSE, Model, ServerCore, log
from ipcnet.drivers.jobs import DaemonPool
from ipcnet.drivers.selector import SWEEP
from ipcnet.errors import Busy
from ipcnet.protocols.base import (
    Actions,
    Close,
    Outcome,
    Peer,
    Run,
    SendFile,
    Session,
    ShutdownWrite,
    Timer,
    as_list,
)
from ipcnet.transports import SocketListener, SocketStream
from ipcnet.transports.files import read_region, release

FILE_CHUNK = 256 * 1024  # bytes per read when the loop cannot sendfile


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed, the stdlib's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _FileReader:
    """What loop.sendfile needs of a file: fileno() and a seek it will not use with offset."""

    def __init__(self, action: SendFile) -> None:
        self._fd = action.fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, *args: Any) -> int:
        return 0


class SessionProtocol(asyncio.Protocol):
    """One connection: bytes from asyncio into the session, actions back out."""

    def __init__(self, model: AsyncioModel, peer: Peer) -> None:
        self.model = model
        self.peer = peer
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a job or a sendfile is in progress; actions wait in `pending`
        self.pending: collections.deque[Any] = collections.deque()
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_active = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.writable = asyncio.Event()  # cleared while asyncio says the buffer is too full
        self.writable.set()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport = transport
        model = self.model
        core = model.core
        if core.stopping.is_set():
            transport.close()
            self.closed = True
            return
        core.row.add("accepted")
        core.row.add("active")
        model.protocols.add(self)
        transport.set_write_buffer_limits(high=core.config.high_water)
        self.last_active = model.loop.time()
        if core.trace:
            fd = transport.get_extra_info("socket").fileno()
            core.trace(f"accept -> new fd {fd} from {self.peer.address}")
        self.session, first = core.service.start(self.peer)
        if first is not None:
            self.apply(first)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        try:
            out = self.session.feed(data)  # type: ignore[union-attr]
            if out.__class__ is bytes and not self.busy:
                self.transport.write(out)  # type: ignore[union-attr]
                self.bytes_out += len(out)
            elif out is not None:
                self.apply(out)
        except Exception:
            self._failed()

    def eof_received(self) -> bool:
        try:
            self.apply(self.session.feed_eof())  # type: ignore[union-attr]
        except Exception:
            self._failed()
        return True  # keep the transport open: the session decides when to close

    def pause_writing(self) -> None:
        self.writable.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writable.set()
        if self.transport is not None and not self.transport.is_closing() and not self.busy:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._disarm()
        for action in self.pending:
            if isinstance(action, SendFile) and action.close:
                release(action.fd)
        self.pending.clear()
        model = self.model
        model.protocols.discard(self)
        row = model.core.row
        row.add("bytes_in", self.bytes_in)
        row.add("bytes_out", self.bytes_out)
        row.add("active", -1)
        row.add("handled")
        if exc is not None:
            log.debug("connection lost: %s", exc)

    # --- timer ----------------------------------------------------------------------------

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        try:
            self.apply(self.session.on_timer())  # type: ignore[union-attr]
        except Exception:
            self._failed()

    # --- actions ---------------------------------------------------------------------------

    def apply(self, actions: Actions) -> None:
        if self.busy:
            self.pending.extend(as_list(actions))
            return
        transport = self.transport
        assert transport is not None
        items = collections.deque(as_list(actions))
        while items:
            action = items.popleft()
            if isinstance(action, (bytes, bytearray, memoryview)):
                transport.write(action)
                self.bytes_out += len(action)
            elif isinstance(action, ShutdownWrite):
                if transport.can_write_eof():
                    transport.write_eof()
            elif isinstance(action, Timer):
                self._disarm()
                if action.seconds is not None:
                    self.timer = self.model.loop.call_later(action.seconds, self._on_timer)
            elif isinstance(action, Close):
                transport.close()
                for rest in items:
                    if isinstance(rest, SendFile) and rest.close:
                        release(rest.fd)
                return
            else:  # Run or SendFile: asynchronous; later actions wait for it
                self.busy = True
                transport.pause_reading()
                self.pending.extend(items)
                self.model.loop.create_task(self._run(action))
                return

    async def _run(self, action: Run | SendFile) -> None:
        try:
            if isinstance(action, SendFile):
                try:
                    sent = await self._send_file(action)
                finally:
                    if action.close:
                        release(action.fd)
                self.bytes_out += sent
                follow: Actions = None
            else:
                outcome = await self._outcome(action)
                follow = self.session.resume(action, outcome)  # type: ignore[union-attr]
        except (ConnectionError, OSError) as exc:  # the peer left mid-file: not our error
            log.debug("connection ended during %s: %s", type(action).__name__, exc)
            if self.transport is not None:
                self.transport.abort()
            return
        except Exception:
            self._failed()
            return
        self.busy = False
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        queued = list(self.pending)
        self.pending.clear()
        self.apply([*as_list(follow), *queued])
        if not self.busy and not self.transport.is_closing():
            self.transport.resume_reading()

    async def _send_file(self, action: SendFile) -> int:
        """loop.sendfile (zero copy) where the loop has it; uvloop does not, so there the
        file is read in worker threads and written with the transport's flow control."""
        model = self.model
        transport = self.transport
        assert transport is not None
        if model.loop_sendfile:
            try:
                return await model.loop.sendfile(
                    transport,
                    _FileReader(action),  # type: ignore[arg-type]
                    action.offset,
                    action.count,
                )
            except NotImplementedError:
                model.loop_sendfile = False
        sent, offset, left = 0, action.offset, action.count
        while left > 0:
            size = min(FILE_CHUNK, left)
            data = await model.loop.run_in_executor(
                model.jobs, read_region, action.fd, offset, size
            )
            if not data:
                break
            transport.write(data)
            sent += len(data)
            offset += len(data)
            left -= len(data)
            await self.writable.wait()
        return sent

    async def _outcome(self, job: Run) -> Outcome:
        try:
            if inspect.iscoroutinefunction(job.job):
                return Outcome(value=await job.job())
            return Outcome(value=await self.model.loop.run_in_executor(self.model.jobs, job.job))
        except Exception as exc:
            return Outcome(error=exc)

    def _failed(self) -> None:
        core = self.model.core
        core.row.add("errors")
        log.exception("%s failed on a connection", core.service.name)
        if self.transport is not None:
            self.transport.abort()

    @property
    def idle(self) -> bool:
        t = self.transport
        return not self.busy and (t is None or t.get_write_buffer_size() == 0)


class AsyncioModel(Model):
    """asyncio (uvloop when installed): many connections on one thread, at Protocol speed."""

    name = "asyncio"

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.loop = new_event_loop()
        self.protocols: set[SessionProtocol] = set()
        self.adopting = 0  # accepted, not yet handed to the loop
        self.jobs = DaemonPool(core.config.workers)
        self.loop_sendfile = True  # until the loop says NotImplementedError (uvloop)

    def serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.jobs.shutdown(wait=False)
            self.loop.close()
            asyncio.set_event_loop(None)

    async def _main(self) -> None:
        core = self.core
        loop = self.loop
        for listener in core.listeners:
            listener.set_blocking(False)
            loop.add_reader(listener.fileno(), self._accept, listener)
        for endpoint in core.datagrams:
            # the core answers datagrams for every model; asyncio only says when to
            # (uvloop's datagram transport also mangles abstract unix addresses)
            endpoint.timeout = 0.0
            loop.add_reader(endpoint.fileno(), core.answer_datagram, endpoint)
        stop = asyncio.Event()

        def woken() -> None:
            core.drain_waker()
            stop.set()

        loop.add_reader(core.waker_r, woken)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, core.request_stop)
            except (RuntimeError, ValueError):
                pass  # not the main thread: the caller stops us through request_stop()
        sweeper = loop.create_task(self._sweep())
        await self._until_stopped(stop)
        for listener in core.listeners:
            loop.remove_reader(listener.fileno())
        core.close_listeners()
        await self._drain()
        sweeper.cancel()
        loop.remove_reader(core.waker_r)
        for endpoint in core.datagrams:
            if not endpoint.closed:
                loop.remove_reader(endpoint.fileno())

    def _accept(self, listener: SocketListener) -> None:
        """Accept here rather than in loop.create_server, so that EMFILE pauses accepting
        (uvloop would spin) and over-limit connections are refused the same way everywhere."""
        core = self.core
        for _ in range(64):
            try:
                stream = core.accept(listener)
            except Busy:
                self.loop.remove_reader(listener.fileno())
                self.loop.call_later(ACCEPT_PAUSE, self._resume_accept, listener)
                return
            if stream is None:
                return
            if core.over_limit(len(self.protocols) + self.adopting):
                core.refuse(stream)
                continue
            self.adopting += 1
            self.loop.create_task(self._adopt(stream))

    def _resume_accept(self, listener: SocketListener) -> None:
        if not listener.closed and not self.core.stopping.is_set():
            self.loop.add_reader(listener.fileno(), self._accept, listener)

    async def _adopt(self, stream: SocketStream) -> None:
        try:
            peer = self.core.peer(stream)
            await self.loop.connect_accepted_socket(
                lambda: SessionProtocol(self, peer), sock=stream.sock
            )
        except OSError as exc:
            log.debug("could not adopt %s: %s", stream.where, exc)
            stream.close()
        finally:
            self.adopting -= 1

    async def _until_stopped(self, stop: asyncio.Event) -> None:
        while not self.core.stopping.is_set():
            stop.clear()
            await stop.wait()

    async def _drain(self) -> None:
        core = self.core
        while self.protocols:
            force = core.time_left() <= 0
            for proto in list(self.protocols):
                if proto.transport is not None and (force or proto.idle):
                    proto.transport.abort() if force else proto.transport.close()
            if force:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)

    async def _sweep(self) -> None:
        idle_timeout = self.core.config.idle_timeout
        row = self.core.row
        while True:
            await asyncio.sleep(SWEEP)
            now = self.loop.time()
            for proto in list(self.protocols):
                if proto.bytes_in:
                    proto.last_active = now
                    row.add("bytes_in", proto.bytes_in)
                    row.add("bytes_out", proto.bytes_out)
                    proto.bytes_in = proto.bytes_out = 0
                elif (
                    idle_timeout is not None
                    and proto.idle
                    and now - proto.last_active > idle_timeout
                    and proto.transport is not None
                ):
                    proto.transport.close()
