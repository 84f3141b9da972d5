"""Relay: copy bytes between two channels in both directions, with exact half-close.

Role: the engine of ``ipcnet connect`` (stdio <-> a channel) and of any two-channel bridge.
Rules:
- each direction is a pump: read into one reused buffer, write the same memoryview, and on
  EOF send EOF onward (half-close), so the far side sees exactly what this side saw;
- the relay ends when both directions ended, or when one ended and the other stays silent
  for ``linger`` seconds after it (what socat does with -t), or at the first error;
- an error is reported with the direction it happened in, and never leaves a thread behind
  that could write after the relay returned.
Datagram endpoints relay one read of the stream side as one datagram, and one datagram as
one write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ipcnet.addresses import Address
from ipcnet.channel import Channel
from ipcnet.errors import IPCError
from ipcnet.transports import DatagramEndpoint

CHUNK = 64 * 1024


@dataclass
class Direction:
    """How one direction of a relay ended."""

    name: str
    done: threading.Event = field(default_factory=threading.Event)
    error: IPCError | None = None
    bytes: int = 0


@dataclass
class RelayResult:
    forward: Direction  # a -> b
    backward: Direction  # b -> a
    #: set when the relay returns: errors after that (closing wakes a blocked thread) are moot
    ended: threading.Event = field(default_factory=threading.Event)

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
            direction.done.set()

    thread = threading.Thread(target=target, name=f"ipcnet-relay-{direction.name}", daemon=True)
    thread.start()
    return thread


def _pump(src: Channel, dst: Channel, direction: Direction) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := src.readinto(view):
        dst.write(view[:n])
        direction.bytes += n
    dst.send_eof()


def _wait(result: RelayResult, linger: float) -> RelayResult:
    directions = (result.forward, result.backward)
    while True:
        for d in directions:
            d.done.wait(0.05)
        if result.error is not None:
            return result.end()
        finished = [d.done.is_set() for d in directions]
        if all(finished):
            return result.end()
        if any(finished):
            pending = directions[finished.index(False)]
            pending.done.wait(linger)
            return result.end()


def relay_streams(a: Channel, b: Channel, *, linger: float = 0.5) -> RelayResult:
    """Copy a -> b and b -> a until both end (or one ends and the other lingers)."""
    result = RelayResult(Direction("forward"), Direction("backward"))
    if a.transport.readable and b.transport.writable:
        _run(result, result.forward, lambda: _pump(a, b, result.forward))
    else:
        result.forward.done.set()
    if b.transport.readable and a.transport.writable:
        _run(result, result.backward, lambda: _pump(b, a, result.backward))
    else:
        result.backward.done.set()
    return _wait(result, linger)


def relay_datagrams(
    stream: Channel,
    endpoint: DatagramEndpoint,
    *,
    reply_to_first: bool = False,
    linger: float = 0.5,
) -> RelayResult:
    """stream -> datagrams (one per read) and datagrams -> stream (one write each).

    With ``reply_to_first`` (a listening endpoint) the sender of the first datagram becomes
    the peer, as ``nc -u -l`` does; stream data waits until it is known.
    """
    result = RelayResult(Direction("forward"), Direction("backward"))
    peer: list[Address | None] = []
    known = threading.Event()
    if not reply_to_first:
        known.set()

    def outgoing() -> None:
        buf = bytearray(min(CHUNK, endpoint.max_size))
        view = memoryview(buf)
        while n := stream.readinto(view):
            known.wait()
            endpoint.send(view[:n], to=peer[0] if peer else None)
            result.forward.bytes += n

    def incoming() -> None:
        while True:
            data, sender = endpoint.recv()
            if not peer and reply_to_first:
                peer.append(sender)
                known.set()
            stream.write(data)
            result.backward.bytes += len(data)

    _run(result, result.forward, outgoing)
    _run(result, result.backward, incoming)
    while not result.forward.done.wait(0.05):
        if result.error is not None:
            return result.end()
    if result.error is None:
        result.backward.done.wait(linger)
    return result.end()
