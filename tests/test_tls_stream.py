"""The blocking TLS stream over real sockets: the stream contract, half-close, failures."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ipcnet import errors
from ipcnet.addresses import parse
from ipcnet.transports import open_listener, open_stream
from ipcnet.transports.tls import stream
from tlskit import certs, client_options, server_options, stream_pair, tls_server

# the conformance battery runs on tls:// and tls+unix:// pairs in test_conformance.py
# (ipcnet.testing.PAIR_MAKERS "tls" and "tls+unix")


def test_agreed_parameters_are_visible():
    a, b = stream_pair()
    with a, b:
        assert a.transport.version == b.transport.version == "TLSv1.3"
        assert a.transport.where.startswith("tls://127.0.0.1:")
        assert b.transport.where.startswith("tls://127.0.0.1:")


def test_sendfile_copies_through_tls(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "blob"
    path.write_bytes(data)
    a, b = stream_pair()
    with a, b, open(path, "rb") as f:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(b.read()))
        reader.start()
        assert a.transport.sendfile(f.fileno(), 1000, len(data)) == len(data) - 1000
        a.send_eof()
        reader.join(10)
        assert got == [data[1000:]]


def test_write_after_send_eof_is_refused():
    a, b = stream_pair()
    with a, b:
        a.send_eof()
        with pytest.raises(errors.Closed, match="sent eof"):
            a.write(b"more")


def test_peer_cut_without_close_notify_is_unclean_eof():
    a, b = stream_pair()
    with a:
        b.write(b"half a message")
        b.transport.raw.close()  # TCP FIN, no close_notify
        assert a.read(100) == b"half a message"
        with pytest.raises(errors.UncleanEOF, match="without close_notify"):
            a.read(100)


def test_close_waits_for_the_peer_close_notify_but_not_forever():
    a, b = stream_pair(client=client_options(close_timeout=0.3))
    with b:
        started = time.monotonic()
        a.close()  # b says nothing: a gives up after its close timeout
        assert time.monotonic() - started < 5
        assert b.read() == b""  # and b saw a clean EOF


def test_handshake_timeout_against_a_silent_server():
    with socket.socket() as quiet:
        quiet.bind(("127.0.0.1", 0))
        quiet.listen()
        raw = open_stream(parse(f"tcp://127.0.0.1:{quiet.getsockname()[1]}"), 5)
        with pytest.raises(errors.HandshakeTimeout, match="did not finish the handshake in 0.3 s"):
            stream.client(raw, client_options(handshake_timeout=0.3), "localhost")
        assert raw.closed


def test_wrong_host_lists_the_names_on_the_certificate():
    with tls_server(server_options(certs().wrong_host)) as url:
        raw = open_stream(parse(url), 5)
        with pytest.raises(errors.HostnameMismatch) as caught:
            stream.client(raw, client_options(), "localhost")
    assert str(caught.value).endswith(
        "is not valid for 'localhost' (it names: example.test, www.example.test)"
    )
    assert caught.value.names == ("example.test", "www.example.test")


def test_mutual_tls():
    a, b = stream_pair(
        server=server_options(ca=certs().ca),
        client=client_options(cert=certs().client.cert, key=certs().client.key),
    )
    with a, b:
        a.write(b"hi")
        assert b.read(2) == b"hi"
        assert b.transport.peer_certificate() is not None


def _tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


@pytest.mark.parametrize("tickets", [0, 2])
def test_a_client_that_closes_without_reading_loses_nothing_without_tickets(tickets):
    """Why --tls-tickets defaults to 0: TLS 1.3 tickets the client never reads make its
    kernel answer its close() with an RST, and the server loses the client's last bytes."""
    import ssl

    from ipcnet.transports.tls import ServerContext, TLSListener

    options = server_options(tls_tickets=tickets)
    listener = TLSListener(
        open_listener(parse("tcp4://127.0.0.1:0")), ServerContext(options), options
    )
    try:
        port = listener.address.port
        accepted: list[object] = []
        acceptor = threading.Thread(target=lambda: accepted.append(listener.accept()))
        acceptor.start()
        ctx = ssl.create_default_context(cafile=certs().ca)  # Python's own ssl client
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        client = ctx.wrap_socket(raw, server_hostname="localhost")
        acceptor.join(10)
        server_side = accepted[0]
        payload = b"x" * 50_000
        client.sendall(payload)
        client.close()  # without reading anything, and without close_notify
        sock = server_side.raw.sock  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while _tcp_state(sock) == 1 and time.monotonic() < deadline:  # ESTABLISHED
            time.sleep(0.005)
        got = bytearray()
        try:
            while chunk := server_side.read(65536):  # type: ignore[attr-defined]
                got += chunk
        except errors.UncleanEOF:
            pass  # no close_notify: expected, the data before it is what matters
        except errors.Reset:
            assert tickets, "an RST although the server sent no tickets"
            return
        finally:
            server_side.close()  # type: ignore[attr-defined]
        assert not tickets, "the unread tickets did not cause an RST (the test proves nothing)"
        assert bytes(got) == payload
    finally:
        listener.close()


def test_records_already_taken_from_the_kernel_count_as_ready():
    """Pollers (the rpc client) must not wait on the socket for records the layer holds."""
    a, b = stream_pair()
    with a, b:
        assert not a.transport.read_ready
        for i in range(3):
            b.write(b"reply %d\n" % i)  # three records of 8 + 22 bytes (TLS 1.3, AES-GCM)
        sock = a.transport.raw.sock
        deadline = time.monotonic() + 10
        while _queued(sock) < 90 and time.monotonic() < deadline:
            time.sleep(0.005)  # all three in our kernel queue: one recv takes them all
        assert a.read(8) == b"reply 0\n"  # a short read: the other records stay buffered
        assert a.transport.read_ready
        assert a.read(100) == b"reply 1\nreply 2\n"  # one call drains every whole record
        assert not a.transport.read_ready


def _queued(sock: socket.socket) -> int:
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
