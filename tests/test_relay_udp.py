"""Datagram relays: the session table on its own (sans-IO), then udp and unixgram for real.

One mapping per client, each with its own upstream socket: replies to 50 interleaved
clients never mix; --udp-replies ends a mapping after N replies, --udp-idle after silence;
the table is bounded; boundaries are kept and oversize datagrams counted, never cut.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

import ipcnet
import ipcnet.relay
from ipcnet.relay.sessions import SessionTable

# --- the table, no sockets -------------------------------------------------------------


def test_table_maps_each_client_and_expires_the_idle_ones() -> None:
    table: SessionTable[str] = SessionTable(limit=3, idle=10)
    a = table.add("a", "up-a", now=0)
    table.add("b", "up-b", now=1)
    assert table.get("a", now=5) is a  # renewed: now the youngest
    assert table.deadline() == 11  # b, idle since 1
    assert [m.client for m in table.expired(now=11)] == ["b"]
    assert table.get("b", now=11) is None
    assert [m.client for m in table.expired(now=15)] == ["a"]
    assert len(table) == 0 and table.deadline() is None


def test_table_is_bounded_and_keeps_what_it_has() -> None:
    table: SessionTable[int] = SessionTable(limit=2, idle=60)
    table.add("a", 1, 0)
    table.add("b", 2, 0)
    assert table.full
    with pytest.raises(ValueError, match="full"):
        table.add("c", 3, 0)
    assert table.get("a", 1) is not None and table.get("b", 1) is not None
    with pytest.raises(ValueError, match="already"):
        table.add("a", 4, 1)


def test_table_ends_a_mapping_after_n_replies() -> None:
    table: SessionTable[int] = SessionTable(limit=5, idle=60, replies=2)
    m = table.add("a", 1, 0)
    assert not table.replied(m, 1)
    assert table.replied(m, 2)
    assert table.get("a", 3) is None


# --- for real --------------------------------------------------------------------------


class UdpEcho:
    """Answers each datagram with a prefix and the datagram, from a socket of its own."""

    def __init__(self, family: int = socket.AF_INET, path: str | None = None) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if path:
            self.sock.bind(path)
            self.url = f"unixgram://{path}"
        else:
            self.sock.bind(("127.0.0.1", 0))
            self.url = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.senders: set[object] = set()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                data, sender = self.sock.recvfrom(70000)
            except OSError:
                return
            self.senders.add(sender)
            try:
                self.sock.sendto(b"echo:" + data, sender)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def _client(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def test_fifty_interleaved_clients_each_get_their_own_replies() -> None:
    echo = UdpEcho()
    with ipcnet.relay("udp://127.0.0.1:0", echo.url) as relay:
        clients = [_client(relay.address.port) for _ in range(50)]
        for round_ in range(4):
            for i, c in enumerate(clients):
                c.send(f"{i}:{round_}".encode())
            for i, c in enumerate(clients):
                assert c.recv(100) == f"echo:{i}:{round_}".encode()
        deadline = time.monotonic() + 5  # the count follows the send: let it land
        while relay.stats["datagrams_down"] < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        status = relay.status()
        assert status["udp_sessions"] == 50 and status["udp_total"] == 50
        assert status["datagrams_up"] == status["datagrams_down"] == 200
        assert len(echo.senders) == 50  # one upstream socket per client
        for c in clients:
            c.close()
    echo.close()


def test_boundaries_kept_and_oversize_reported() -> None:
    echo = UdpEcho()
    with ipcnet.relay("udp://127.0.0.1:0", echo.url, max_datagram=2000) as relay:
        c = _client(relay.address.port)
        for size in (0, 1, 1000, 1994):
            c.send(b"d" * size)
            assert c.recv(4000) == b"echo:" + b"d" * size  # one datagram, one reply, whole
        c.send(b"x" * 3000)  # over --max-datagram: dropped and counted, not cut
        c.send(b"y" * 1995)  # its reply (2000 bytes) fits exactly
        assert c.recv(4000) == b"echo:" + b"y" * 1995
        c.send(b"z" * 1996)  # its reply (2001 bytes) is over: dropped on the way back
        c.send(b"after")
        assert c.recv(4000) == b"echo:after"
        assert relay.stats["oversize"] == 2
        c.close()
    echo.close()


def test_udp_replies_ends_a_mapping_and_udp_idle_expires_one() -> None:
    echo = UdpEcho()
    with ipcnet.relay("udp://127.0.0.1:0", echo.url, udp_replies=1) as relay:
        c = _client(relay.address.port)
        for n in range(3):
            c.send(b"q%d" % n)
            assert c.recv(100) == b"echo:q%d" % n
        deadline = time.monotonic() + 5
        while relay.stats["udp_sessions"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert relay.stats["udp_total"] == 3 and relay.stats["udp_sessions"] == 0
        c.close()
    with ipcnet.relay("udp://127.0.0.1:0", echo.url, udp_idle=0.3) as relay:
        c = _client(relay.address.port)
        c.send(b"hi")
        assert c.recv(100) == b"echo:hi"
        assert relay.stats["udp_sessions"] == 1
        deadline = time.monotonic() + 5
        while relay.stats["udp_sessions"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert relay.stats["udp_sessions"] == 0
        c.close()
    echo.close()


def test_session_table_bound_refuses_new_clients_only() -> None:
    echo = UdpEcho()
    with ipcnet.relay("udp://127.0.0.1:0", echo.url, max_conns=2) as relay:
        a, b, c = (_client(relay.address.port) for _ in range(3))
        for s in (a, b):
            s.send(b"in")
            assert s.recv(100) == b"echo:in"
        c.send(b"over")
        a.send(b"still")
        assert a.recv(100) == b"echo:still"
        assert relay.stats["refused"] == 1
        c.settimeout(0.2)
        with pytest.raises(TimeoutError):
            c.recv(100)
        for s in (a, b, c):
            s.close()
    echo.close()


def test_unixgram_relay_and_an_unnamed_client(short_tmp) -> None:  # type: ignore[no-untyped-def]
    echo = UdpEcho(socket.AF_UNIX, str(short_tmp / "echo.sock"))
    listen = f"unixgram://{short_tmp}/relay.sock"
    with ipcnet.relay(listen, echo.url) as relay:
        named = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        named.bind(str(short_tmp / "client.sock"))
        named.settimeout(10)
        named.sendto(b"over unixgram", f"{short_tmp}/relay.sock")
        assert named.recv(100) == b"echo:over unixgram"
        unnamed = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        unnamed.sendto(b"who am i", f"{short_tmp}/relay.sock")  # cannot be answered
        deadline = time.monotonic() + 5
        while not relay.stats["refused"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert relay.stats["refused"] == 1
        named.close()
        unnamed.close()
    assert not os.path.exists(f"{short_tmp}/relay.sock")
    echo.close()
