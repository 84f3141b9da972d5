"""The pump: both directions of one relayed connection, non-blocking, zero-copy where it can.

Role: a ``Bridge`` joins a client end and a server end (``transports.splice.RelayEnd``) and
moves bytes each way with splice(2) through a pipe, or by copying through one reused buffer
(``--no-splice``, or an end that cannot splice). It never blocks: ``advance()`` does what the
kernel takes now and says which descriptors it waits for; a model waits on them and calls
it again (a Bridge is a ``protocols.handover.Pump``; ``drivers.handover`` drives one under
each kind of model).
Rules:
- bounded: a direction holds at most one pipe (or one buffer) of bytes; while it is full
  the relay does not read from that direction's source, so a slow reader slows the writer;
- exact half-close: a source's EOF becomes shutdown(SHUT_WR) toward the other side once
  every byte before it is out (the pipe is drained first); the other direction goes on
  until its own EOF, however long it takes;
- a reset is passed on as a reset: an ECONNRESET (or a write to a side that left) ends the
  bridge, and the other side is closed with SO_LINGER 0, so it gets an RST, not an EOF;
  when it was a write that failed, what the side that reset had sent before it (still in
  the kernel) is passed on first, as far as the other side takes it at once: a server's
  answer to an upload it did not read reaches the client, as without a relay;
- but a side that stopped reading while it still sends (a broken pipe: an exec: child
  that closed its stdin or exited, a unix peer that closed) is heard out: that direction
  ends ("closed"), what the side sends goes on to its EOF, as it would reach the other
  side without a relay; the final close then resets a socket whose bytes nobody read,
  as the kernel does for a server that closes so;
- ``linger`` is an idle timer that starts with the first EOF: the bridge ends when the open
  direction moved nothing for that long; ``idle_timeout`` ends a bridge silent both ways;
- the outcome says which side ended first and how (eof, reset, timeout, stopped), as
  HAProxy's termination state does;
- ending never blocks: an exec: target's side, whose close waits for the child to exit
  (then terminates and kills it), is closed in a thread of its own when the child is
  still running, so a model's loop goes on driving every other connection; the child,
  once reaped, goes to ``on_child`` (after ``on_end``), which tells how it ended.
Which path a side takes is chosen once, here, in ``end_for``: a TLS stream (tls://,
tls+unix://, terminated or originated) gets the TLS layer's end
(``transports.tls.relayend``), which cannot splice, so every direction touching it copies
through the layer (its records leave before anything else that way: ``backlog``); any
other stream gets the kernel's end and splices unless ``--no-splice``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ipcnet.errors import Broken, IPCError, PeerClosed, Reset
from ipcnet.relay.stats import End
from ipcnet.transports import StreamTransport
from ipcnet.transports.splice import READ, WRITE, RelayEnd, SplicePipe

if TYPE_CHECKING:
    from subprocess import Popen

PIPE = 1 << 20  # splice pipe per direction (pipe-max-size's default; see BENCHMARKS.md)
BUFFER = 256 * 1024  # copy buffer per direction: a quarter of the memory for 25% more CPU
ROUNDS = 16  # transfers per direction per advance(), so one fast bridge cannot starve a loop


def end_for(transport: StreamTransport) -> RelayEnd:
    """The pump's end for a stream: the TLS layer's for a TLS stream (copy through the
    layer), the kernel's for any other (splice or copy)."""
    tls = sys.modules.get("ipcnet.transports.tls.stream")  # loaded if a TLS stream exists
    if tls is not None and isinstance(transport, tls.TLSStream):
        from ipcnet.transports.tls.relayend import TLSRelayEnd

        return TLSRelayEnd(transport)
    return RelayEnd(transport)


class Flow:
    """One direction: bytes from ``src`` to ``dst``."""

    __slots__ = (
        "buf",
        "bytes",
        "copied",
        "done",
        "dst",
        "eof",
        "held",
        "last",
        "pending",
        "pipe",
        "short",
        "shut",
        "spliced",
        "src",
        "view",
    )

    def __init__(
        self, src: RelayEnd, dst: RelayEnd, size: int | None, splice: bool, first: bytes
    ) -> None:
        self.src = src
        self.dst = dst
        self.pipe: SplicePipe | None = None
        self.buf: memoryview | None = None
        if splice and src.splices and dst.splices:
            self.pipe = SplicePipe.take(size or PIPE)
        else:
            self.buf = memoryview(bytearray(size or BUFFER))
        self.view = memoryview(first) if first else None  # unsent bytes (a buffer's, or first)
        self.held = 0  # bytes in the pipe
        self.short = False  # the last read took less than asked: the source is drained
        self.pending = len(first)  # bytes of ``view`` not yet written
        self.eof = src.read_fd is None  # a one-way end has nothing to send this way
        self.done = dst.write_fd is None  # ... or nowhere to send it
        self.shut = False  # the EOF was passed on (a TLS end may still be sending it)
        self.bytes = 0
        self.spliced = 0
        self.copied = 0
        self.last = time.monotonic()

    def advance(self) -> int:
        """Move what can be moved now; the descriptor events to wait for (0: done)."""
        src, dst = self.src, self.dst
        for _ in range(ROUNDS):
            if dst.backlog and not dst.flush():  # a TLS end's records go first
                return WRITE
            if self.pending:
                assert self.view is not None
                n = dst.write(self.view)
                if not n:
                    return WRITE
                self.view = self.view[n:]
                self.pending -= n
                self._moved(n, copied=True)
                continue
            if self.held:
                assert self.pipe is not None
                n = dst.splice_out(self.pipe, self.held)
                if not n:
                    return WRITE
                self.held -= n
                self._moved(n, copied=False)
                continue
            if self.eof:
                if not self.shut:
                    self.shut = True
                    if dst.write_fd is not None:
                        dst.shutdown_write()
                    if dst.backlog:  # a TLS end: close_notify is not all out yet
                        return WRITE
                self.done = True
                self.close()
                return 0
            if self.short:  # the last read drained the source: wait, do not try again
                self.short = False
                return READ
            if self.pipe is not None:
                got = src.splice_in(self.pipe, self.pipe.size)
                if got is None:
                    return READ
                if got == 0:
                    self.eof = True
                self.held = got
                self.short = 0 < got < self.pipe.size
            else:
                assert self.buf is not None
                got = src.read_into(self.buf)
                if got is None:
                    return READ
                if got == 0:
                    self.eof = True
                self.view = self.buf[:got]
                self.pending = got
                self.short = 0 < got < len(self.buf)
        return READ if not (self.pending or self.held) else WRITE

    def _moved(self, n: int, copied: bool) -> None:
        self.bytes += n
        if copied:
            self.copied += n
        else:
            self.spliced += n
        self.last = time.monotonic()

    def close(self) -> None:
        if self.pipe is not None:
            self.pipe.release(empty=self.held == 0)
            self.pipe = None


def _close(end: RelayEnd, reset: bool, reaped: Callable[[Popen[bytes]], None]) -> None:
    """Close one side (with a reset: ``abort``), never waiting for an exec: child; an
    exec: child, once closed and reaped, goes to ``reaped``."""
    close = end.abort if reset else end.close
    child = end.transport.process
    if child is None:
        close()
        return

    def closed() -> None:
        close()
        reaped(child)

    if child.poll() is None:
        threading.Thread(target=closed, name="ipcnet-relay-child").start()
    else:
        closed()


class Bridge:
    """Both directions between a client and a server end (see the module's rules)."""

    def __init__(
        self,
        client: RelayEnd,
        server: RelayEnd,
        *,
        splice: bool = True,
        size: int | None = None,
        first: bytes = b"",
        linger: float | None = None,
        idle_timeout: float | None = None,
        on_end: Callable[[Bridge], None] | None = None,
        on_child: Callable[[Popen[bytes]], None] | None = None,
    ) -> None:
        self.client = client
        self.on_end = on_end
        self.on_child = on_child
        self._reaped: list[Popen[bytes]] | None = []  # children reaped before on_end ran
        self._lock = threading.Lock()
        self.server = server
        self.started = time.monotonic()
        self.linger = linger
        self.idle_timeout = idle_timeout
        self.ends: list[End] = []  # in order: who ended first, then the other
        self.finished = False
        self.up: Flow | None = None
        self.down: Flow | None = None
        try:
            self.up = Flow(client, server, size, splice, first)  # client -> server
            self.down = Flow(server, client, size, splice, b"")  # server -> client
        except IPCError:
            self._close_flows()
            raise

    def prepend(self, data: bytes) -> None:
        """Bytes read from the client before the bridge began: sent to the server first
        (after what ``first`` holds)."""
        up = self.up
        if data and up is not None:
            rest = bytes(up.view) if up.view is not None and up.pending else b""
            up.view = memoryview(rest + data)
            up.pending = len(up.view)

    # --- progress --------------------------------------------------------------------

    @property
    def bytes_up(self) -> int:
        return self.up.bytes if self.up else 0

    @property
    def bytes_down(self) -> int:
        return self.down.bytes if self.down else 0

    @property
    def spliced(self) -> int:
        return (self.up.spliced if self.up else 0) + (self.down.spliced if self.down else 0)

    @property
    def copied(self) -> int:
        return (self.up.copied if self.up else 0) + (self.down.copied if self.down else 0)

    def advance(self) -> dict[int, int]:
        """Move what can be moved; the (fd -> READ|WRITE) to wait for ({} once finished)."""
        wanted: dict[int, int] = {}
        if self.finished:
            return wanted
        assert self.up is not None and self.down is not None
        for flow, side in ((self.up, "client"), (self.down, "server")):
            if flow.done:
                continue
            try:
                events = flow.advance()
            except IPCError as exc:
                if self._broken(flow, side, exc):
                    continue
                return {}
            if not events:
                self.ends.append(End(side, "eof", time.monotonic()))
                continue
            fd = flow.src.read_fd if events == READ else flow.dst.write_fd
            assert fd is not None
            wanted[fd] = wanted.get(fd, 0) | events
        if self.up.done and self.down.done:
            self._finish()
        return wanted

    def _broken(self, flow: Flow, side: str, exc: IPCError) -> bool:
        """An error moving ``flow``. A destination that stopped reading (a broken pipe)
        while it still sends ends this direction only, and True: the bridge goes on.
        Otherwise the side at fault ends with a reset, and the other is reset."""
        reading = flow.eof is False and not (flow.pending or flow.held)
        at_fault = side if reading else ("server" if side == "client" else "client")
        other = self.down if flow is self.up else self.up
        if isinstance(exc, PeerClosed) and not reading and other is not None and not other.done:
            flow.done = True
            flow.close()
            self.ends.append(End(at_fault, "closed", time.monotonic(), str(exc)))
            return True
        how = "reset" if isinstance(exc, (Reset, PeerClosed)) else "error"
        if not isinstance(exc, Broken):
            how = "error"
        self.ends.append(End(at_fault, how, time.monotonic(), str(exc)))
        if not reading and isinstance(exc, Broken) and other is not None and not other.done:
            self._salvage(other)
        self.abort()
        return False

    @staticmethod
    def _salvage(flow: Flow) -> None:
        """A write to ``flow``'s source failed: it reset (a server that answered and closed
        with our bytes unread). What it sent before its reset is still in the kernel, to
        read: pass on what the other side takes now, so that the answer goes before the
        reset, as it would without a relay."""
        try:
            flow.advance()
        except IPCError:
            pass

    # --- timers ----------------------------------------------------------------------

    def deadline(self) -> float | None:
        """The monotonic time at which ``expire`` should be called (None: no timer)."""
        if self.finished or self.up is None or self.down is None:
            return None
        last = max(self.up.last, self.down.last)
        times = []
        if self.idle_timeout is not None:
            times.append(last + self.idle_timeout)
        if self.linger is not None and (self.up.done or self.down.done):
            times.append(last + self.linger)
        return min(times) if times else None

    def expire(self, now: float | None = None) -> bool:
        """End the bridge if a timer ran out; True if it did."""
        deadline = self.deadline()
        now = time.monotonic() if now is None else now
        if deadline is None or now < deadline:
            return False
        assert self.up is not None and self.down is not None
        side = "server" if self.up.done else "client"
        which = "linger" if self.up.done or self.down.done else "idle"
        self.ends.append(End(side, "timeout", now, f"{which} timeout"))
        self._finish()
        return True

    # --- ending ----------------------------------------------------------------------

    def stop(self) -> None:
        """End it now (a forced stop): both sides are closed, the open ones counted stopped."""
        if not self.finished:
            self.ends.append(End("relay", "stopped", time.monotonic()))
            self.abort()

    def abort(self) -> None:
        """Close both sides with a reset."""
        if self.finished:
            return
        self.finished = True
        self._close_flows()
        for end in (self.client, self.server):
            _close(end, True, self._child_reaped)
        self._ended()

    def _finish(self) -> None:
        self.finished = True
        self._close_flows()
        for end in (self.client, self.server):
            _close(end, False, self._child_reaped)
        self._ended()

    def _ended(self) -> None:
        if self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            on_end(self)
        with self._lock:
            reaped, self._reaped = self._reaped or [], None
        for child in reaped:
            self._report(child)

    def _child_reaped(self, child: Popen[bytes]) -> None:
        """An exec: side's child is reaped: reported after ``on_end`` (the connection's
        line first), from the thread that closed it when that thread outlived the bridge."""
        with self._lock:
            if self._reaped is not None:
                self._reaped.append(child)
                return
        self._report(child)

    def _report(self, child: Popen[bytes]) -> None:
        if self.on_child is not None:
            self.on_child(child)

    def _close_flows(self) -> None:
        for flow in (self.up, self.down):
            if flow is not None:
                flow.close()

    @property
    def duration(self) -> float:
        end = self.ends[-1].at if self.ends else time.monotonic()
        return end - self.started
