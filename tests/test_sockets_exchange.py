"""SocketStream.exchanging(): the raw recv/sendall a blocking driver's hot loop uses (issue
17) keep the stream's rules: errors leave translated, close() from another thread wakes a
blocked recv and the block raises Closed, timeouts are Timeout; over a unix stream a read
waits in the exchange's ``wait`` (poll) first, so the peer consuming our bytes wakes no
one, under the same rules; streams whose read is more than these calls offer none."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

import ipcnet
from ipcnet.errors import Closed, Interrupted, IPCError, PeerClosed, Reset, Timeout, Unsupported
from ipcnet.transports.sockets import SocketStream, UnixStream, stream_for
from test_unix_wakeups import _switches


def _tcp_pair() -> tuple[SocketStream, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    return stream_for(ours, "tcp://test-peer", "tcp"), peer


def _unix_pair() -> tuple[SocketStream, socket.socket]:
    ours, peer = socket.socketpair()
    return stream_for(ours, "unix://test-peer", "unix"), peer


PAIRS = pytest.mark.parametrize("pair", [_tcp_pair, _unix_pair], ids=["tcp", "unix"])


def _read(
    recv: Callable[..., bytes], wait: Callable[[], object] | None, nowait: int, n: int = 100
) -> bytes:
    """A read as drive()'s hot loop makes it."""
    return recv(n) if wait is None or wait() else recv(n, nowait)


@PAIRS
def test_raw_calls_move_bytes_and_a_peer_eof_is_empty(pair) -> None:
    stream, peer = pair()
    with peer:
        exchange = stream.exchanging()
        assert exchange is not None
        with exchange as (recv, send, flags, wait, nowait):
            assert (wait is None) == (not isinstance(stream, UnixStream))
            peer.sendall(b"ping")
            assert _read(recv, wait, nowait) == b"ping"
            send(b"pong", flags)
            assert peer.recv(100) == b"pong"
            peer.shutdown(socket.SHUT_WR)
            assert _read(recv, wait, nowait) == b""
        stream.close()


@PAIRS
def test_close_from_another_thread_wakes_a_blocked_recv_and_raises_closed(pair) -> None:
    stream, peer = pair()
    with peer:
        exchange = stream.exchanging()
        assert exchange is not None
        got: list[BaseException | bytes] = []
        entered = threading.Event()

        def reader() -> None:
            try:
                with exchange as (recv, _, _, wait, nowait):
                    entered.set()
                    got.append(_read(recv, wait, nowait))  # unix: asleep in the poll
            except BaseException as exc:
                got.append(exc)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        assert entered.wait(5)
        time.sleep(0.1)  # asleep in recv
        stream.close()
        thread.join(5)
        assert not thread.is_alive(), "close() did not wake the blocked recv"
        # the shutdown that woke it reads as b"" in the block and leaving it says Closed
        # (a recv not yet asleep at the close fails at once: Closed too)
        assert got[:-1] in ([], [b""]) and isinstance(got[-1], Closed), got
        assert "://test-peer" in str(got[-1])


def test_a_reset_leaves_the_block_as_an_ipcnet_error() -> None:
    stream, peer = _tcp_pair()
    exchange = stream.exchanging()
    assert exchange is not None
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    with pytest.raises(Reset) as info:
        with exchange as (recv, _, _, _, _):
            time.sleep(0.1)
            recv(100)
    assert isinstance(info.value.__cause__, OSError)
    assert "tcp://test-peer" in str(info.value)
    stream.close()


@PAIRS
def test_writing_to_a_peer_that_left_is_peer_closed_or_reset(pair) -> None:
    stream, peer = pair()
    peer.close()
    exchange = stream.exchanging()
    assert exchange is not None
    with pytest.raises(IPCError) as info:
        with exchange as (_, send, flags, _, _):
            for _ in range(100):  # the first write draws the RST, a later one fails
                send(b"x" * 65536, flags)
                time.sleep(0.01)
    assert isinstance(info.value, PeerClosed | Reset), info.value
    stream.close()


@PAIRS
def test_a_timeout_inside_the_block_is_timeout(pair) -> None:
    stream, peer = pair()
    with peer:
        stream.timeout = 0.05
        if isinstance(stream, UnixStream):
            # the wait times out and the recv after it must not wait: one that did would
            # sleep the kernel's receive timeout, made long here, before its EAGAIN
            long = struct.pack("ll", 5, 0)
            stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, long)
        exchange = stream.exchanging()
        assert exchange is not None
        started = time.monotonic()
        with pytest.raises(Timeout, match=r"timed out: read from \w+://test-peer after 0.05 s"):
            with exchange as (recv, _, _, wait, nowait):
                _read(recv, wait, nowait)
        assert 0.04 < time.monotonic() - started < 2.5
        stream.close()


def test_a_unix_reader_waiting_in_the_exchange_is_not_woken_by_the_peer_consuming() -> None:
    """As tests/test_unix_wakeups.py, for the hot loop's read: the peer reading what we
    wrote (unix_write_space) wakes no thread waiting in the exchange."""
    stream, peer = _unix_pair()
    with peer:
        exchange = stream.exchanging()
        assert exchange is not None
        got: list[BaseException | bytes] = []

        def reader() -> None:
            try:
                with exchange as (recv, _, _, wait, nowait):
                    got.append(_read(recv, wait, nowait))
            except BaseException as exc:
                got.append(exc)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        assert thread.native_id is not None
        time.sleep(0.1)  # asleep in the wait
        before = _switches(thread.native_id)
        for _ in range(5):
            stream.write(b"request")  # the peer reads it: the kernel reports write space
            assert peer.recv(100) == b"request"
        time.sleep(0.1)  # time for the reader to have been woken, if it was
        assert _switches(thread.native_id) == before, "woken with no input"
        assert thread.is_alive() and not got
        peer.sendall(b"reply")
        thread.join(5)
        assert got == [b"reply"]
        stream.close()


def test_streams_whose_read_is_not_these_calls_offer_none() -> None:
    a, b = ipcnet.socketpair()  # a unix stream: its reads wait in poll(2), then recv
    with a, b:
        assert a.transport.exchanging() is not None
        a.transport.wakeable()  # a wake is a third outcome of the wait
        assert a.transport.exchanging() is None
    r, w = ipcnet.pipe()
    with r, w:
        assert r.transport.exchanging() is None
    first, second = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    packets = stream_for(first, "unixpacket:", "unixpacket")
    assert packets.exchanging() is None
    packets.close()
    second.close()


@PAIRS
def test_wake_ends_a_blocked_read_and_loses_nothing(pair) -> None:
    """wake() (a thread model's stop, for TLS) ends the read in progress or the next one
    with Interrupted; bytes already there are read first, later reads wait as before; the
    stream's eventfd closes with it."""
    stream, peer = pair()
    fds = len(os.listdir("/proc/self/fd"))
    with peer:
        with pytest.raises(Unsupported, match="not wakeable"):
            stream.wake()
        stream.wakeable()
        assert stream.exchanging() is None  # reads wait in poll(2): no hot loop
        got: list[BaseException | bytes] = []
        thread = threading.Thread(target=lambda: got.append(_read_or_error(stream)))
        thread.start()
        time.sleep(0.1)  # asleep in poll, most likely; a wake before it works the same
        stream.wake()
        thread.join(5)
        assert isinstance(got[0], Interrupted) and "test-peer" in str(got[0]), got
        peer.sendall(b"ping")
        stream.wake()
        assert stream.read(100) == b"ping"  # input first
        with pytest.raises(Interrupted):
            stream.read(100)
        stream.timeout = 0.05
        with pytest.raises(Timeout):  # the wake was taken: the next read waits again
            stream.read(100)
        peer.sendall(b"pong")
        assert stream.read(100) == b"pong"
        stream.close()
        with pytest.raises(Closed):
            stream.wake()
    assert len(os.listdir("/proc/self/fd")) == fds - 2  # both ends, and the eventfd, closed


def _read_or_error(stream: SocketStream) -> BaseException | bytes:
    try:
        return stream.read(100)
    except IPCError as exc:
        return exc
