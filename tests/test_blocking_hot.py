"""drive()'s hot loop over a tcp socket (issue 17): a stop asked while a connection is busy
ends it after the request in hand, and only once the StopEvent is set; a Timer leaves the hot
loop for the general steps and still fires. Over a unix socket the hot loop serves too (its
reads wait in poll first), with the idle timeout and close() from another thread as ever."""

from __future__ import annotations

import socket
import threading

import pytest

from ipcnet.drivers.blocking import LocalRow, drive
from ipcnet.drivers.core import Conn, StopEvent
from ipcnet.drivers.engine import Engine
from ipcnet.errors import Closed, Timeout
from ipcnet.protocols.base import CLOSE, Actions, BaseSession, Timer
from ipcnet.transports.sockets import SocketStream, stream_for


def _tcp_pair() -> tuple[SocketStream, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    peer.settimeout(10)
    return stream_for(ours, "tcp://test-peer", "tcp"), peer


def _echo(peer: socket.socket, data: bytes) -> bytes:
    peer.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = peer.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


class _GatedEcho(BaseSession):
    """Echoes; holds ``b"last"`` in hand (in feed) until the test lets it go."""

    def __init__(self) -> None:
        self.in_hand = threading.Event()
        self.go = threading.Event()

    def feed(self, data: bytes) -> Actions:
        if data == b"last":
            self.in_hand.set()
            self.go.wait(10)
        return data


def test_a_stop_asked_while_busy_ends_the_connection_after_the_request_in_hand() -> None:
    stream, peer = _tcp_pair()
    session = _GatedEcho()
    engine = Engine(session)
    stop = StopEvent()
    linger = threading.Event()  # stopping(): past the linger time
    done = threading.Event()

    def serve() -> None:
        try:
            drive(engine, stream, Conn(stream), LocalRow(), None, linger.is_set, 30.0, stop)
        finally:
            done.set()
            stream.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with peer:
        for i in range(3):
            assert _echo(peer, b"x%d" % i) == b"x%d" % i
        linger.set()  # stopping() is true, but no stop was asked: serving goes on
        assert _echo(peer, b"still") == b"still"
        assert not done.is_set()
        peer.sendall(b"last")
        assert session.in_hand.wait(10)  # the server holds the request in hand...
        stop.set()  # ...when the stop is asked (as request_stop does)
        session.go.set()
        assert peer.recv(10) == b"last"  # the request in hand is answered...
        assert done.wait(10)  # ...then the connection ends
        assert peer.recv(10) == b""
    thread.join(5)


class _TimedEcho(BaseSession):
    """Echoes; the first request arms a 0.1 s Timer whose firing says so and closes."""

    def __init__(self) -> None:
        self.armed = False

    def feed(self, data: bytes) -> Actions:
        if self.armed:
            return data
        self.armed = True
        return [data, Timer(0.1)]

    def on_timer(self) -> Actions:
        return [b"timer\n", CLOSE]


def test_a_timer_armed_from_the_hot_loop_fires() -> None:
    stream, peer = _tcp_pair()
    engine = Engine(_TimedEcho())
    thread = threading.Thread(
        target=lambda: (drive(engine, stream, Conn(stream), LocalRow(), None), stream.close()),
        daemon=True,
    )
    thread.start()
    with peer:
        assert _echo(peer, b"one") == b"one"
        got = b""
        while chunk := peer.recv(100):
            got += chunk
        assert got == b"timer\n"
    thread.join(5)
    assert not thread.is_alive()


class _Echo(BaseSession):
    def feed(self, data: bytes) -> Actions:
        return data


@pytest.mark.parametrize("case", ["idle", "closed"])
def test_a_unix_stream_is_served_by_the_hot_loop_with_its_timeout_and_close_rules(
    case: str,
) -> None:
    """The general path's read is never called; an idle connection ends with Timeout, one
    closed from another thread while its reader waits with Closed."""
    ours, peer = socket.socketpair()
    peer.settimeout(10)
    stream = stream_for(ours, "unix://test-peer", "unix")
    reads: list[int] = []
    general_read = stream.read
    stream.read = lambda n: (reads.append(n), general_read(n))[1]  # type: ignore[method-assign]
    ended: list[BaseException | None] = []
    conn = Conn(stream)

    def serve() -> None:
        try:
            idle = 0.2 if case == "idle" else None
            drive(Engine(_Echo()), stream, conn, LocalRow(), None, idle_timeout=idle)
            ended.append(None)
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with peer:
        for i in range(3):
            assert _echo(peer, b"x%d" % i) == b"x%d" % i
        if case == "closed":
            for _ in range(100):  # waiting for the next request
                if conn.idle:
                    break
                threading.Event().wait(0.01)
            stream.close()
        thread.join(5)
        assert not thread.is_alive()
        assert reads == [], "the unix stream took the general path"
        expected = Timeout if case == "idle" else Closed
        assert isinstance(ended[0], expected) and "unix://test-peer" in str(ended[0]), ended
    stream.close()
