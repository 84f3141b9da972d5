"""Datagram endpoints on udp4, udp6 and unixgram: whole messages, nothing cut silently."""

from __future__ import annotations

import socket
import threading
import uuid

import pytest

import ipcnet
from ipcnet import errors


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _server_url(kind: str, tmp) -> str:
    if kind == "udp4":
        return "udp4://127.0.0.1:0"
    if kind == "udp6":
        if not _ipv6():
            pytest.skip("no IPv6 loopback on this machine")
        return "udp6://[::1]:0"
    return f"unixgram://{tmp}/dgram"


@pytest.fixture(params=["udp4", "udp6", "unixgram"])
def endpoints(request, short_tmp):
    server = ipcnet.open_datagram(_server_url(request.param, short_tmp), listen=True, timeout=5)
    target = server.where if request.param != "unixgram" else f"unixgram://{short_tmp}/dgram"
    client = ipcnet.open_datagram(target, timeout=5)
    yield client, server
    client.close()
    server.close()


def test_echo_keeps_boundaries(endpoints) -> None:
    client, server = endpoints
    messages = [b"one", b"", b"three" * 100, bytes(range(256))]
    for m in messages:
        client.send(m)
    for m in messages:
        data, sender = server.recv()
        assert data == m  # one recv = one datagram, empty ones included
        server.send(data.upper(), to=sender)
        assert client.recv()[0] == m.upper()


def test_truncation_is_reported(endpoints) -> None:
    client, server = endpoints
    server.max_size = 100
    server._buf = bytearray(100)
    client.send(b"x" * 1000)
    with pytest.raises(
        errors.Truncated, match="datagram of 1000 bytes is larger than the 100-byte buffer"
    ):
        server.recv()
    client.send(b"fits")
    assert server.recv()[0] == b"fits"  # the endpoint keeps working


def test_oversize_send_is_message_too_large(endpoints) -> None:
    client, _ = endpoints
    size = 65536 if client.sock.family != socket.AF_UNIX else 16 * 1024 * 1024  # over every limit
    with pytest.raises(errors.MessageTooLarge, match="^message too large"):
        client.send(b"x" * size)


def test_sender_address(endpoints) -> None:
    client, server = endpoints
    client.send(b"who")
    _, sender = server.recv()
    assert sender == client.local_address


def test_close_wakes_recv() -> None:
    server = ipcnet.open_datagram("udp://127.0.0.1:0", listen=True)
    outcome: list[BaseException] = []

    def recv() -> None:
        try:
            server.recv()
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=recv)
    t.start()
    t.join(0.1)
    server.close()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome[0], errors.Closed)


def test_unixgram_abstract_and_recv_timeout() -> None:
    name = f"unixgram://@ipcnet-{uuid.uuid4().hex}"
    with ipcnet.open_datagram(name, listen=True, timeout=0.05) as server:
        with pytest.raises(errors.Timeout):
            server.recv()
        with ipcnet.open_datagram(name) as client:
            client.send(b"hi")
            data, sender = server.recv()
            assert data == b"hi" and sender is not None and sender.abstract


def test_stream_address_is_refused_for_datagrams() -> None:
    with pytest.raises(errors.Unsupported, match="not a datagram address"):
        ipcnet.open_datagram("tcp://127.0.0.1:1")
