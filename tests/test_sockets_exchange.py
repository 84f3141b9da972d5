"""SocketStream.exchanging(): the raw recv/sendall a blocking driver's hot loop uses (issue
17) keep the stream's rules: errors leave translated, close() from another thread wakes a
blocked recv and the block raises Closed, timeouts are Timeout; streams whose read is more
than one recv(2) offer none."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

import ipcnet
from ipcnet.errors import Closed, Interrupted, IPCError, PeerClosed, Reset, Timeout, Unsupported
from ipcnet.transports.sockets import SocketStream, stream_for


def _tcp_pair() -> tuple[SocketStream, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    return stream_for(ours, "tcp://test-peer", "tcp"), peer


def test_raw_calls_move_bytes_and_a_peer_eof_is_empty() -> None:
    stream, peer = _tcp_pair()
    with peer:
        exchange = stream.exchanging()
        assert exchange is not None
        with exchange as (recv, send, flags):
            peer.sendall(b"ping")
            assert recv(100) == b"ping"
            send(b"pong", flags)
            assert peer.recv(100) == b"pong"
            peer.shutdown(socket.SHUT_WR)
            assert recv(100) == b""
        stream.close()


def test_close_from_another_thread_wakes_a_blocked_recv_and_raises_closed() -> None:
    stream, peer = _tcp_pair()
    with peer:
        exchange = stream.exchanging()
        assert exchange is not None
        got: list[BaseException | bytes] = []
        entered = threading.Event()

        def reader() -> None:
            try:
                with exchange as (recv, _, _):
                    entered.set()
                    got.append(recv(100))
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
        assert "tcp://test-peer" in str(got[-1])


def test_a_reset_leaves_the_block_as_an_ipcnet_error() -> None:
    stream, peer = _tcp_pair()
    exchange = stream.exchanging()
    assert exchange is not None
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    with pytest.raises(Reset) as info:
        with exchange as (recv, _, _):
            time.sleep(0.1)
            recv(100)
    assert isinstance(info.value.__cause__, OSError)
    assert "tcp://test-peer" in str(info.value)
    stream.close()


def test_writing_to_a_peer_that_left_is_peer_closed_or_reset() -> None:
    stream, peer = _tcp_pair()
    peer.close()
    exchange = stream.exchanging()
    assert exchange is not None
    with pytest.raises(IPCError) as info:
        with exchange as (_, send, flags):
            for _ in range(100):  # the first write draws the RST, a later one fails
                send(b"x" * 65536, flags)
                time.sleep(0.01)
    assert isinstance(info.value, PeerClosed | Reset), info.value
    stream.close()


def test_a_timeout_inside_the_block_is_timeout() -> None:
    stream, peer = _tcp_pair()
    with peer:
        stream.timeout = 0.05
        exchange = stream.exchanging()
        assert exchange is not None
        with pytest.raises(Timeout, match="tcp://test-peer"):
            with exchange as (recv, _, _):
                recv(100)
        stream.close()


def test_streams_whose_read_is_not_one_recv_offer_none() -> None:
    a, b = ipcnet.socketpair()  # a unix stream: its reads wait in poll(2) first
    with a, b:
        assert a.transport.exchanging() is None
    r, w = ipcnet.pipe()
    with r, w:
        assert r.transport.exchanging() is None
    first, second = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    packets = stream_for(first, "unixpacket:", "unixpacket")
    assert packets.exchanging() is None
    packets.close()
    second.close()


def _unix_pair() -> tuple[SocketStream, socket.socket]:
    ours, peer = socket.socketpair()
    return stream_for(ours, "unix://test-peer", "unix"), peer


@pytest.mark.parametrize("pair", [_tcp_pair, _unix_pair], ids=["tcp", "unix"])
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
