"""Descriptor passing against the kernel read directly (recvmsg with MSG_CMSG_CLOEXEC, as
socket.recv_fds does): generated exchanges must agree, and the edge cases where ipcnet
disagreed with what a caller can rely on (bad descriptors, a size with no room for a byte,
a receiver out of descriptors) are errors that say what happened, with nothing leaked."""

from __future__ import annotations

import array
import os
import random
import resource
import socket
import threading
from collections.abc import Iterator

import pytest

import ipcnet
from ipcnet import errors
from ipcnet.transports import fdpass

KINDS = {"stream": socket.SOCK_STREAM, "seqpacket": socket.SOCK_SEQPACKET}


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _reference(sock: socket.socket, size: int, max_fds: int) -> tuple[str, bytes, list[int]]:
    """recvmsg as socket.recv_fds does it, with the outcome ipcnet must report."""
    space = socket.CMSG_SPACE(max(max_fds, 1) * 4)
    data, ancillary, flags, _ = sock.recvmsg(size, space, socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
            fds.frombytes(payload[: len(payload) - len(payload) % 4])
    if flags & socket.MSG_CTRUNC or len(fds) > max_fds or flags & socket.MSG_TRUNC:
        for fd in fds:
            os.close(fd)
        return (
            ("LimitExceeded" if flags & socket.MSG_CTRUNC or len(fds) > max_fds else "Truncated"),
            b"",
            [],
        )
    return "ok", data, list(fds)


def _exchange(kind: int, data: bytes, fds: list[int], size: int, max_fds: int, ours: bool):
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    before = _open_fds()
    sender = threading.Thread(target=fdpass.send_fds, args=(a, data, fds, "a"))
    sender.start()  # a large stream payload fills the buffer: the receiver must run too
    try:
        if ours:
            try:
                got, passed = fdpass.recv_fds(b, size, max_fds, "b")
                outcome = "ok"
            except errors.LimitExceeded as exc:
                outcome, got, passed = type(exc).__name__, b"", []
        else:
            outcome, got, passed = _reference(b, size, max_fds)
        same = [
            os.path.samestat(os.fstat(x), os.fstat(y)) for x, y in zip(passed, fds, strict=False)
        ]
        cloexec = [not os.get_inheritable(fd) for fd in passed]
        for fd in passed:
            os.close(fd)
    finally:
        b.close()
        sender.join()
        a.close()
    return outcome, got, len(passed), all(same) and all(cloexec), _open_fds() - before


def test_generated_exchanges_agree_with_the_kernel() -> None:
    rng = random.Random(8)
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    pool = [r, w, null]
    try:
        for _ in range(40):
            kind = rng.choice(list(KINDS.values()))
            count = rng.choice([0, 1, 2, 3, rng.randint(0, 253), 253])
            length = rng.choice([1, 7, 4096, rng.randint(1, 100_000)])
            max_fds = min(253, rng.choice([0, 1, count, max(count - 1, 0), count + 1, 253]))
            size = rng.choice([1, length, length + 1, max(length // 2, 1), 65536])
            fds = [rng.choice(pool) for _ in range(count)]
            data = rng.randbytes(length)
            ours = _exchange(kind, data, fds, size, max_fds, ours=True)
            theirs = _exchange(kind, data, fds, size, max_fds, ours=False)
            case = (kind, count, length, max_fds, size)
            assert ours == theirs, case
            assert ours[3] and not ours[4], case  # the same files, close-on-exec, no leak
    finally:
        for fd in pool:
            os.close(fd)


@pytest.fixture(params=sorted(KINDS))
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, KINDS[request.param])
    with a, b:
        yield a, b


@pytest.mark.parametrize("bad", [9999, -1])
def test_a_descriptor_that_is_not_open_is_named(pair, bad: int) -> None:
    a, b = pair
    with pytest.raises(errors.Closed, match=f"descriptor {bad} is not open: cannot send it on a"):
        fdpass.send_fds(a, b"x", [0, bad], "a")
    fdpass.send_fds(a, b"y", [0], "a")  # the socket is fine: the message said so
    data, fds = fdpass.recv_fds(b, 10, 4, "b")
    assert data == b"y" and len(fds) == 1
    os.close(fds[0])


@pytest.mark.parametrize("size", [0, -1])
def test_a_size_without_room_for_a_byte_is_refused(pair, size: int) -> None:
    # the kernel hands a stream's descriptors to a 0-byte read (b"", as at eof) and drops a
    # seqpacket packet: neither may happen; the message and its descriptors stay queued
    a, b = pair
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        fdpass.send_fds(a, b"hello", [fd], "a")
        with pytest.raises(errors.LimitExceeded, match=f"size must be 1 or more, not {size}"):
            fdpass.recv_fds(b, size, 4, "b")
        data, fds = fdpass.recv_fds(b, 10, 4, "b")
        assert data == b"hello" and len(fds) == 1
        os.close(fds[0])
    finally:
        os.close(fd)


def test_a_channel_with_read_ahead_refuses_a_bad_size_too() -> None:
    a, b = ipcnet.socketpair()
    with a, b:
        a.write(b"line\nrest")
        a.send_eof()  # (the old code read to eof here)
        assert b.readline() == b"line\n"
        with pytest.raises(errors.LimitExceeded, match="size must be 1 or more"):
            b.recv_fds(-1)
        assert b.recv_fds(10) == (b"rest", [])


def test_a_receiver_out_of_descriptors_is_told_so(pair) -> None:
    a, b = pair
    fd = os.open(os.devnull, os.O_RDONLY)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        fdpass.send_fds(a, b"m", [fd] * 10, "a")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(_open_fds()) + 16, hard))
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for _ in range(3):  # room for 3 of the 10
            os.close(held.pop())
        before = _open_fds()
        with pytest.raises(errors.Busy, match="too many open files: receive descriptors from b"):
            fdpass.recv_fds(b, 10, 16, "b")
        assert _open_fds() == before  # the 3 that were installed were closed
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for x in [*held, fd]:
            os.close(x)
