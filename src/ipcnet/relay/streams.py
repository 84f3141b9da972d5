"""Relay: copy bytes between two channels in both directions, with exact half-close.

Role: the engine of ``ipcnet connect`` (stdio <-> a channel) and of any two-channel bridge.
Rules:
- each direction is a pump: read into one reused buffer, write the same memoryview, and on
  EOF send EOF onward (half-close), so the far side sees exactly what this side saw;
- the relay ends when both directions ended, or at the first error (but when writing to
  b fails because b stopped reading, b -> a still runs to b's end: no reply is lost). By
  default it waits for the second direction however long it takes (as ``nc -N`` does): a
  peer may answer long after our EOF. ``linger`` is an idle timer, not a deadline: once
  one direction ended, the other is given up after ``linger`` seconds in which it moved no
  byte, and the result names it in ``unfinished`` so that nobody mistakes a cut stream for
  a whole one; a write still in progress is not idleness (its reader is slow, not gone:
  giving up would drop what was already received);
- KeyboardInterrupt (Ctrl-C, or a signal turned into it) ends the wait the same way;
- an error is reported with the direction it happened in, and never leaves a thread behind
  that could write after the relay returned.
Datagram endpoints relay one read of the stream side as one datagram, and one datagram as
one write; having no EOF, they end ``linger`` idle seconds after the stream side's EOF.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ipcnet.channel import Channel
from ipcnet.errors import IPCError, PeerClosed, Reset
from ipcnet.transports import DatagramEndpoint

CHUNK = 64 * 1024
POLL = 0.05  # how often the waiting thread looks for an error in the other direction


@dataclass
class Direction:
    """How one direction of a relay went."""

    name: str
    done: threading.Event = field(default_factory=threading.Event)
    error: IPCError | None = None
    bytes: int = 0
    #: monotonic time of the last byte moved, or of the end of the direction
    last: float = field(default_factory=time.monotonic)
    writing: bool = False  # a write is in progress: the direction is not idle
    #: held by a stream pump from its write to the count of it (see ``delivered``)
    counting: threading.Lock = field(default_factory=threading.Lock)

    def moved(self, n: int) -> None:
        self.bytes += n
        self.last = time.monotonic()
        self.writing = False

    def delivered(self, wait: float = 0.5) -> int:
        """The bytes written so far, counting a write that has returned but whose count
        the pump has not made yet (a stop signal's report came in between: "0 bytes
        received" for bytes the reader had); a write still blocked is waited for at most
        ``wait`` seconds, and then not counted."""
        if self.counting.acquire(timeout=wait):
            self.counting.release()
        return self.bytes


@dataclass
class RelayResult:
    forward: Direction  # a -> b
    backward: Direction  # b -> a
    #: set when the relay returns: errors after that (closing wakes a blocked thread) are moot
    ended: threading.Event = field(default_factory=threading.Event)
    #: directions still open when the relay stopped waiting (linger ran out, or interrupted)
    unfinished: tuple[Direction, ...] = ()
    interrupted: bool = False

    def end(self) -> RelayResult:
        self.ended.set()
        return self

    @property
    def error(self) -> IPCError | None:
        return self.forward.error or self.backward.error


def _run(result: RelayResult, direction: Direction, body: Callable[[], object]) -> threading.Thread:
    def target() -> None:
        try:
            body()
        except IPCError as exc:
            if not result.ended.is_set():
                direction.error = exc
        finally:
            direction.last = time.monotonic()
            direction.done.set()

    thread = threading.Thread(target=target, name=f"ipcnet-relay-{direction.name}", daemon=True)
    thread.start()
    return thread


def _pump(src: Channel, dst: Channel, direction: Direction) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := src.readinto(view):
        with direction.counting:
            direction.writing = True
            dst.write(view[:n])
            direction.moved(n)
    dst.send_eof()


def _wait(
    result: RelayResult,
    linger: float | None,
    watch: tuple[Direction, ...],
    fatal: tuple[Direction, ...] | None = None,
) -> None:
    """Wait until every direction in ``watch`` ended, or one in ``fatal`` (default: both)
    failed; once only one is left, give it up after ``linger`` seconds in which no byte
    moved either way (None: never)."""
    fatal = fatal or (result.forward, result.backward)
    try:
        while not any(d.error for d in fatal):
            pending = [d for d in watch if not d.done.is_set()]
            if not pending:
                return
            wait = POLL
            if linger is not None and len(pending) == 1:
                idle = time.monotonic() - max(result.forward.last, result.backward.last)
                if result.forward.writing or result.backward.writing:
                    idle = 0.0  # a slow reader, not an idle peer
                if idle >= linger:
                    result.unfinished = tuple(pending)
                    return
                wait = min(POLL, linger - idle)
            pending[0].done.wait(wait)
    except KeyboardInterrupt:
        result.interrupted = True
        result.unfinished = tuple(d for d in watch if not d.done.is_set())


def relay_streams(a: Channel, b: Channel, *, linger: float | None = None) -> RelayResult:
    """Copy a -> b and b -> a until both end (see the module's rules for ``linger``)."""
    result = RelayResult(Direction("forward"), Direction("backward"))
    both = (result.forward, result.backward)
    # one try from the first thread's start into _wait's own: a signal may come at any
    # bytecode once a pump moves bytes (its output seen, a signal sent at once), and one
    # that fell between them left the interruption to the caller, unreported
    try:
        if a.transport.readable and b.transport.writable:
            _run(result, result.forward, lambda: _pump(a, b, result.forward))
        else:
            result.forward.done.set()
        if b.transport.readable and a.transport.writable:
            _run(result, result.backward, lambda: _pump(b, a, result.backward))
        else:
            result.backward.done.set()
        _wait(result, linger, both)
    except KeyboardInterrupt:
        result.interrupted = True
        result.unfinished = tuple(d for d in both if not d.done.is_set())
        return result.end()
    # a write to b failed because b stopped reading (EPIPE, reset), but b's replies, sent
    # before or after that, are still there to read: b -> a goes on until b ends it, then
    # the error is reported (socat loses them; the kernel keeps them for us)
    lost_reader = isinstance(result.forward.error, (PeerClosed, Reset))
    if lost_reader and not result.backward.done.is_set() and not result.interrupted:
        _wait(result, linger, (result.backward,), fatal=(result.backward,))
    return result.end()


def relay_datagrams(
    stream: Channel,
    endpoint: DatagramEndpoint,
    *,
    reply_to_first: bool = False,
    linger: float = 0.5,
) -> RelayResult:
    """stream -> datagrams (one per read) and datagrams -> stream (one write each).

    With ``reply_to_first`` (a listening endpoint) the sender of the first datagram becomes
    the only peer (``DatagramEndpoint.keep_to``), as ``nc -u -l`` does; stream data waits
    until it is known.
    """
    result = RelayResult(Direction("forward"), Direction("backward"))
    known = threading.Event()
    if not reply_to_first:
        known.set()

    def outgoing() -> None:
        buf = bytearray(min(CHUNK, endpoint.max_payload))  # one read: one datagram that fits
        view = memoryview(buf)
        while n := stream.readinto(view):
            known.wait()
            result.forward.writing = True
            endpoint.send(view[:n])
            result.forward.moved(n)

    def incoming() -> None:
        while True:
            data, sender = endpoint.recv()
            if not known.is_set():
                endpoint.keep_to(sender)
                known.set()
            result.backward.writing = True
            stream.write(data)
            result.backward.moved(len(data))

    _run(result, result.forward, outgoing)
    _run(result, result.backward, incoming)
    _wait(result, None, (result.forward,))
    if result.error is None and not result.interrupted:
        result.backward.last = time.monotonic()  # the idle time counts from the stream's EOF
        _wait(result, linger, (result.backward,))
        result.unfinished = ()  # datagrams have no end: running out of linger is the end
    return result.end()
