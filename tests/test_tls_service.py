"""The servers' TLS wrapper without sockets: a client TLSLayer talks to a TLSSession.

A tiny loop stands in for the driver engine: it hands ciphertext the session sends to
the client layer, runs Run jobs inline (as the blocking models do) and records the rest.
"""

from __future__ import annotations

import os

import pytest

from ipcnet import errors
from ipcnet.addresses import Address
from ipcnet.drivers.tls import PLAIN_HTTP_REPLY, TLSService, TLSSession
from ipcnet.protocols.base import (
    CLOSE,
    BaseService,
    BaseSession,
    Close,
    Outcome,
    Peer,
    Run,
    SendFile,
    ShutdownWrite,
    Timer,
    as_list,
)
from ipcnet.protocols.simple import Echo
from ipcnet.transports.tls import ServerContext, TLSLayer, client_context
from tlskit import certs, client_options, layers, server_options

PEER = Peer(Address("tcp", host="127.0.0.1", port=5555))


class Conn:
    """A TLSSession and the client layer at the other end of its (imaginary) socket."""

    def __init__(self, service: BaseService, **options: object) -> None:
        self.tls = TLSService(service, ServerContext(server_options(**options)))
        self.session, first = self.tls.start(PEER)
        assert isinstance(self.session, TLSSession)
        self.client, _ = layers()
        self.timer: float | None = None
        self.steps: list[str] = []
        self.closed = False
        self.apply(first)

    def apply(self, actions: object) -> None:
        for action in as_list(actions):  # type: ignore[arg-type]
            if isinstance(action, (bytes, bytearray, memoryview)):
                assert not self.closed, "bytes sent after Close"
                self.client.receive(bytes(action))
            elif isinstance(action, Run):
                value = action.job()
                self.apply(self.session.resume(action, Outcome(value=value)))
            elif isinstance(action, Timer):
                self.timer = action.seconds
                self.steps.append(f"timer {action.seconds}")
            elif isinstance(action, ShutdownWrite):
                self.steps.append("shutdown")
            elif isinstance(action, Close):
                self.steps.append("close")
                self.closed = True
            elif isinstance(action, SendFile):
                raise AssertionError("a SendFile reached the socket unencrypted")

    def to_server(self) -> None:
        if self.client.pending:
            self.apply(self.session.feed(self.client.outgoing()))

    def handshake(self) -> None:
        for _ in range(4):
            self.client.handshake()
            self.to_server()
        assert self.client.established and self.session.state != "handshake"


def test_echo_through_the_wrapper_then_clean_close():
    conn = Conn(Echo())
    assert conn.steps == ["timer 10.0"]  # the handshake deadline
    conn.handshake()
    assert conn.steps[-1] == "timer None"  # disarmed once the handshake is done
    conn.client.write(b"hello")
    conn.to_server()
    assert conn.client.read_all() == b"hello"
    conn.client.close_notify()  # the client half-closes: echo closes after it
    conn.to_server()
    assert conn.client.read_all() == b""  # our close_notify came
    assert conn.steps[-2:] == ["shutdown", "close"]  # no wait: the peer's came first
    snapshot = conn.tls.stats.snapshot()
    assert snapshot["handshakes"] == 1 and snapshot["versions"] == {"TLSv1.3": 1}
    assert sum(snapshot["ciphers"].values()) == 1


class _Reply(BaseSession):
    """Answers the first line with a fixed text, a file region, more text, then Close."""

    def __init__(self, path: str) -> None:
        self.path = path

    def feed(self, data: bytes):
        fd = os.open(self.path, os.O_RDONLY)
        size = os.fstat(fd).st_size
        return [b"head:", SendFile(fd, 3, size - 3, close=True), b":tail", CLOSE]


class _Files(BaseService):
    name = "files"

    def __init__(self, path: str) -> None:
        self.path = path

    def start(self, peer: Peer):
        return _Reply(self.path), None


def test_sendfile_is_copied_through_tls_and_the_close_waits(tmp_path):
    path = tmp_path / "big"
    data = os.urandom(600_000)
    path.write_bytes(data)
    conn = Conn(_Files(str(path)))
    conn.handshake()
    before = set(os.listdir("/proc/self/fd"))  # numbers, not a count: another test's
    # thread may close a descriptor of its own meanwhile
    conn.client.write(b"get\n")
    conn.to_server()
    assert conn.client.read_all() == b"head:" + data[3:] + b":tail"
    assert conn.client.read() == b""  # close_notify after the tail
    assert not set(os.listdir("/proc/self/fd")) - before  # the file's fd was released
    assert conn.steps[-2:] == ["shutdown", "timer 0.3"]  # waiting for the peer's close_notify
    assert not conn.closed
    conn.client.close_notify()
    conn.to_server()
    assert conn.steps[-1] == "close"


def test_the_close_wait_ends_at_its_deadline():
    class CloseAtOnce(BaseService):
        name = "closer"

        def start(self, peer):
            return BaseSession(), [b"bye", CLOSE]

    conn = Conn(CloseAtOnce())
    conn.handshake()
    assert conn.client.read_all() == b"bye"
    assert conn.steps[-2:] == ["shutdown", "timer 0.3"]
    conn.apply(conn.session.on_timer())  # the peer never answered
    assert conn.steps[-1] == "close"


@pytest.mark.parametrize("reply", [b"", PLAIN_HTTP_REPLY])
def test_plain_text_gets_the_configured_answer_and_a_close(reply):
    tls = TLSService(Echo(), ServerContext(server_options()), plain_reply=reply)
    session, _ = tls.start(PEER)
    actions = list(as_list(session.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
    assert actions == ([reply, CLOSE] if reply else [CLOSE])
    assert tls.stats.snapshot()["failures"] == {"not-tls": 1}
    if reply:
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert f"Content-Length: {len(body)}".encode() in head


def test_handshake_timeout_and_failures_are_counted_and_close():
    tls = TLSService(Echo(), ServerContext(server_options()))
    session, first = tls.start(PEER)
    assert first == Timer(10.0)
    assert list(as_list(session.on_timer())) == [CLOSE]
    untrusted = TLSService(Echo(), ServerContext(server_options(certs().other_server)))
    session, _ = untrusted.start(PEER)
    client = TLSLayer(
        client_context(client_options()), server_side=False, server_hostname="localhost"
    )
    client.handshake()
    for action in as_list(session.feed(client.outgoing())):
        client.receive(action)  # type: ignore[arg-type]
    with pytest.raises(errors.CertificateUntrusted):
        client.handshake()
    assert list(as_list(session.feed(client.outgoing())))[-1] == CLOSE  # the client's alert
    assert untrusted.stats.snapshot()["failures"] == {"cert-rejected": 1}
    assert tls.stats.snapshot()["failures"] == {"handshake-timeout": 1}


def test_raw_eof_without_close_notify_is_eof_for_the_inner_session():
    conn = Conn(Echo())
    conn.handshake()
    conn.client.write(b"last")
    conn.to_server()
    conn.apply(conn.session.feed_eof())  # TCP FIN, no close_notify (curl, browsers)
    assert conn.client.read_all() == b"last"
    assert conn.steps[-1] == "close"
