"""``ipcnet bench ipc``: small messages between two processes over every IPC mechanism.

Role: ping-pong (round trips/s) and one-way streams (messages/s) of 100 B and 4 KiB messages
over ipcnet's shm:// ring and mq:// queue beside a raw posix_ipc loop, a plain pipe, ipcnet's
pipe, a plain unix socketpair, multiprocessing.Queue, faster-fifo, multiprocessing's
shared_memory with two Events, and iceoryx2 (each skipped with its reason when missing).
Rules: the parent and a forked child are pinned to different CPUs (as ``taskset -c 0`` and
``-c 1`` would); every peer runs once per round and rounds rotate the order, so each sees
the same machine; a run counts every message and checks the last one's bytes; medians and
ranges are reported. Stream transports carry fixed-size messages (the receiver fills
exactly one message per receive, as a framed protocol would).
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from ipcnet.bench.harness import (
    Child,
    Result,
    emit,
    missing,
    parse_size,
    parser,
    pin,
    positive,
    rounds,
)
from ipcnet.channel import Channel

SIZES = (100, 4096)
MODES = ("one-way", "ping-pong")


class End:
    """One process's side of a peer: ``send(msg)`` and ``recv() -> bytes`` (one message)."""

    def open(self) -> None:
        """Called after fork, in the process that uses this end."""

    def send(self, msg: bytes) -> None:
        raise NotImplementedError

    def recv(self) -> bytes:
        raise NotImplementedError

    def finish(self) -> None:
        """Called in the child before it exits (flush what a helper thread still sends)."""

    def close(self) -> None:
        """Called by the parent after the run (for both ends)."""


# --- stream transports: a fixed-size message per receive ---------------------------------


class _FdEnd(End):
    def __init__(self, rfd: int, wfd: int, size: int, sock: bool = False) -> None:
        self.rfd, self.wfd, self.size = rfd, wfd, size
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.sock = sock

    def send(self, msg: bytes) -> None:
        view = memoryview(msg)
        while view:
            view = view[os.write(self.wfd, view) :]

    def recv(self) -> bytes:
        got = 0
        while got < self.size:
            n = os.readv(self.rfd, [self.view[got:]])
            if n == 0:
                raise EOFError("peer closed")
            got += n
        return bytes(self.buf)

    def close(self) -> None:
        for fd in {self.rfd, self.wfd}:
            os.close(fd)


class _ChannelEnd(End):
    def __init__(self, ch: Channel, size: int) -> None:
        self.ch, self.size = ch, size
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)

    def send(self, msg: bytes) -> None:
        self.ch.write(msg)

    def recv(self) -> bytes:
        got = 0
        readinto = self.ch.readinto
        while got < self.size:
            n = readinto(self.view[got:])
            if n == 0:
                raise EOFError("peer closed")
            got += n
        return bytes(self.buf)

    def close(self) -> None:
        self.ch.close()


def _shm(size: int) -> tuple[End, End]:
    from ipcnet.channel import shm_pair

    a, b = shm_pair()
    return _ChannelEnd(a, size), _ChannelEnd(b, size)


def _pipe(size: int) -> tuple[End, End]:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    return _FdEnd(r1, w2, size), _FdEnd(r2, w1, size)


def _pipe_ipcnet(size: int) -> tuple[End, End]:
    from ipcnet.transports.pipes import make_pipe_pair

    a, b = make_pipe_pair()
    return _ChannelEnd(Channel(a), size), _ChannelEnd(Channel(b), size)


def _unix(size: int) -> tuple[End, End]:
    a, b = socket.socketpair()
    fa, fb = a.detach(), b.detach()
    return _FdEnd(fa, fa, size, True), _FdEnd(fb, fb, size, True)


# --- message transports ----------------------------------------------------------------


class _MqEnd(End):
    def __init__(self, receiver: Any, sender: Any) -> None:
        self.receiver, self.sender = receiver, sender

    def send(self, msg: bytes) -> None:
        self.sender.send(msg)

    def recv(self) -> bytes:
        data: bytes = self.receiver.recv()[0]
        return data

    def close(self) -> None:
        self.receiver.unlink()
        self.receiver.close()
        self.sender.close()


def _mq(size: int) -> tuple[End, End]:
    from ipcnet.channel import open_datagram

    names = [f"mq:///ipcnet-bench-{uuid.uuid4().hex}" for _ in range(2)]
    inbox = [open_datagram(f"{n}?msgsize={size}", listen=True) for n in names]
    outbox = [open_datagram(n) for n in names]
    return _MqEnd(inbox[0], outbox[1]), _MqEnd(inbox[1], outbox[0])


class _RawMqEnd(End):
    def __init__(self, receiver: Any, sender: Any) -> None:
        self.receiver, self.sender = receiver, sender

    def send(self, msg: bytes) -> None:
        self.sender.send(msg)

    def recv(self) -> bytes:
        data: bytes = self.receiver.receive()[0]
        return data

    def close(self) -> None:
        self.receiver.unlink()
        self.receiver.close()
        self.sender.close()


def _mq_raw(size: int) -> tuple[End, End]:
    import posix_ipc

    names = [f"/ipcnet-bench-{uuid.uuid4().hex}" for _ in range(2)]
    q = [posix_ipc.MessageQueue(n, posix_ipc.O_CREX, max_message_size=size) for n in names]
    out = [posix_ipc.MessageQueue(n) for n in names]
    return _RawMqEnd(q[0], out[1]), _RawMqEnd(q[1], out[0])


class _QueueEnd(End):
    def __init__(self, inbox: Any, outbox: Any) -> None:
        self.inbox, self.outbox = inbox, outbox

    def send(self, msg: bytes) -> None:
        self.outbox.put(msg)

    def recv(self) -> bytes:
        data: bytes = self.inbox.get()
        return data

    def finish(self) -> None:
        join = getattr(self.outbox, "join_thread", None)  # multiprocessing's feeder thread
        if join is not None:
            self.outbox.close()
            join()

    def close(self) -> None:
        for q in (self.inbox, self.outbox):
            close = getattr(q, "close", None)
            if close is not None:
                close()


def _mp_queue(size: int) -> tuple[End, End]:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Queue(), ctx.Queue()
    return _QueueEnd(a, b), _QueueEnd(b, a)


def _faster_fifo(size: int) -> tuple[End, End]:
    import faster_fifo

    a = faster_fifo.Queue(max_size_bytes=1 << 20)
    b = faster_fifo.Queue(max_size_bytes=1 << 20)
    return _QueueEnd(a, b), _QueueEnd(b, a)


class _SharedMemoryEnd(End):
    """One slot per direction in multiprocessing.shared_memory; Events say full / empty."""

    def __init__(self, shared: dict[str, Any], size: int, out_at: int, events: list[Any]) -> None:
        self.shared, self.size = shared, size
        buf = shared["mem"].buf
        self.out_slot = buf[out_at : out_at + size]
        self.in_slot = buf[size - out_at : 2 * size - out_at]
        shared["views"] += [self.out_slot, self.in_slot]
        self.out_full, self.out_empty, self.in_full, self.in_empty = events

    def send(self, msg: bytes) -> None:
        self.out_empty.wait()
        self.out_empty.clear()
        self.out_slot[:] = msg
        self.out_full.set()

    def recv(self) -> bytes:
        self.in_full.wait()
        self.in_full.clear()
        data = bytes(self.in_slot)
        self.in_empty.set()
        return data

    def close(self) -> None:
        if self.shared["views"]:
            for view in self.shared["views"]:
                view.release()
            self.shared["views"] = []
            self.shared["mem"].close()
            self.shared["mem"].unlink()


def _mp_shared_memory(size: int) -> tuple[End, End]:
    import multiprocessing
    from multiprocessing import shared_memory

    ctx = multiprocessing.get_context("fork")
    shared: dict[str, Any] = {
        "mem": shared_memory.SharedMemory(create=True, size=2 * size),
        "views": [],
    }
    ab = [ctx.Event(), ctx.Event()]  # full, empty of the a -> b slot
    ba = [ctx.Event(), ctx.Event()]
    ab[1].set()
    ba[1].set()
    return (
        _SharedMemoryEnd(shared, size, 0, [*ab, *ba]),
        _SharedMemoryEnd(shared, size, size, [*ba, *ab]),
    )


class _IceoryxEnd(End):
    """iceoryx2 publish-subscribe, one service per direction; receive polls (its model)."""

    def __init__(self, out_name: str, in_name: str, size: int) -> None:
        self.out_name, self.in_name, self.size = out_name, in_name, size
        self.node: Any = None

    def open(self) -> None:
        import iceoryx2 as iox2

        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        self.node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)

        def service(name: str) -> Any:
            return (
                self.node.service_builder(iox2.ServiceName.new(name))
                .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                .enable_safe_overflow(False)
                .subscriber_max_buffer_size(256)
                .history_size(0)
                .open_or_create()
            )

        self.out_service, self.in_service = service(self.out_name), service(self.in_name)
        self.subscriber = self.in_service.subscriber_builder().buffer_size(256).create()
        self.publisher = (
            self.out_service.publisher_builder()
            .initial_max_slice_len(self.size)
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
            .create()
        )

    def send(self, msg: bytes) -> None:
        sample = self.publisher.loan_slice_uninit(self.size)
        ctypes.memmove(sample.payload().data_ptr, msg, self.size)
        sample.assume_init().send()

    def recv(self) -> bytes:
        receive = self.subscriber.receive
        while (sample := receive()) is None:
            pass
        data = ctypes.string_at(sample.payload().data_ptr, self.size)
        del sample
        return data

    def finish(self) -> None:
        self.close()  # the child exits with os._exit: drop the ports here, so they clean up

    def close(self) -> None:
        """Drop the ports, services and node: iceoryx2 removes their files in /dev/shm and
        /tmp/iceoryx2 when they are dropped (a process that exits without it leaves them)."""
        self.publisher = self.subscriber = self.out_service = self.in_service = None
        self.node = None
        gc.collect()


def _iceoryx2(size: int) -> tuple[End, End]:
    import iceoryx2  # noqa: F401  (skip the peer when it is not installed)

    names = [f"ipcnet-bench-{uuid.uuid4().hex}" for _ in range(2)]
    return _IceoryxEnd(names[0], names[1], size), _IceoryxEnd(names[1], names[0], size)


PEERS: dict[str, Callable[[int], tuple[End, End]]] = {
    "shm": _shm,
    "mq": _mq,
    "posix_ipc mq (raw)": _mq_raw,
    "pipe (plain)": _pipe,
    "pipe (ipcnet)": _pipe_ipcnet,
    "unix socketpair (plain)": _unix,
    "multiprocessing.Queue": _mp_queue,
    "faster-fifo": _faster_fifo,
    "shared_memory+Event": _mp_shared_memory,
    "iceoryx2": _iceoryx2,
}


# --- one run -----------------------------------------------------------------------------


def run_once(peer: str, mode: str, size: int, count: int) -> float:
    """Messages (one-way) or round trips (ping-pong) per second of one run."""
    ours, theirs = PEERS[peer](size)
    go_r, go_w = os.pipe()
    msg = bytes(range(256)) * (size // 256) + bytes(size % 256)

    def child(ready: Callable[[], None]) -> None:
        theirs.open()
        ready()
        os.read(go_r, 1)
        if mode == "one-way":
            for _ in range(count):
                theirs.send(msg)
            theirs.recv()  # the parent's "all received", so nothing is torn down early
        else:
            for _ in range(count):
                theirs.send(theirs.recv())
        theirs.finish()  # both modes

    peer_process = Child(child, 1)  # stopped (killed if need be) however this run ends
    try:
        pin(0)
        ours.open()
        peer_process.wait_ready()
        os.write(go_w, b"g")
        start = time.perf_counter()
        last = b""
        if mode == "one-way":
            for _ in range(count):
                last = ours.recv()
            seconds = time.perf_counter() - start
            ours.send(msg)
        else:
            for _ in range(count):
                ours.send(msg)
                last = ours.recv()
            seconds = time.perf_counter() - start
        peer_process.result()
        if last != msg:
            raise RuntimeError(f"{peer} {mode} {size} B: wrong last message")
        return count / seconds
    finally:
        peer_process.stop()
        for fd in (go_r, go_w):
            os.close(fd)
        ours.close()
        theirs.close()


def unavailable(peer: str) -> str:
    """Why a peer cannot run here ("" if it can)."""
    module = {
        "faster-fifo": "faster_fifo",
        "iceoryx2": "iceoryx2",
        "mq": "posix_ipc",
        "posix_ipc mq (raw)": "posix_ipc",
    }.get(peer)
    return missing(module) if module else ""


OURS = ("shm", "mq", "pipe (ipcnet)")


def measure(
    peers: list[str], modes: list[str], sizes: list[int], count: int, n_rounds: int
) -> list[Result]:
    """Every peer, mode and size in ``n_rounds`` interleaved rounds: messages per second."""
    results = {}
    for mode, size, peer in itertools.product(modes, sizes, peers):
        unit = "msgs/s" if mode == "one-way" else "round trips/s"
        name = f"ipcnet {peer.removesuffix(' (ipcnet)')}" if peer in OURS else peer
        results[(peer, mode, size)] = Result(f"{mode} {size} B", name, unit, note=unavailable(peer))

    def one(key: tuple[str, str, int]) -> None:
        r = results[key]
        if r.note:
            return
        try:
            r.samples.append(run_once(*key, count if key[1] == "one-way" else max(1, count // 4)))
        except Exception as exc:  # a peer that breaks is reported, not fatal
            r.note, r.samples = f"failed: {exc}", []

    rounds(list(results), n_rounds, one, "ipc", lambda k: f"{k[0]} {k[1]} {k[2]} B")
    return list(results.values())


def main(argv: list[str] | None = None) -> int:
    p = parser("ipc")
    p.add_argument("--count", type=positive(int), default=20000, help="messages per one-way run")
    p.add_argument("--rounds", type=positive(int), default=5, help="runs per cell (default 5)")
    p.add_argument("--size", type=parse_size, action="append", help="message bytes (100, 4096)")
    p.add_argument("--mode", choices=MODES, action="append", help="one-way, ping-pong")
    p.add_argument("--only", choices=list(PEERS), action="append", help="only this peer")
    args = p.parse_args(argv)
    peers = args.only or list(PEERS)
    results = measure(
        peers, args.mode or list(MODES), args.size or list(SIZES), args.count, args.rounds
    )
    if not args.json:
        print(
            f"{args.rounds} rounds; one-way: {args.count} messages/run, ping-pong: "
            f"{max(1, args.count // 4)} round trips/run; parent and child on different CPUs"
        )
    emit(args, results, "ipc: messages per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
