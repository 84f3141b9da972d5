"""``ipcnet.relay``: streams through a running relay, with real servers on real sockets.

Half-close is exact (a reply that comes long after the client's EOF arrives; --linger is
an idle timer), resets are passed on as resets, targets are chosen by --balance, limits
refuse at once, unix socket files are removed only by the relay that made them, and the
counters and log lines say what happened.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import pytest

import ipcnet
import ipcnet.relay
from ipcnet.relay import Relay, RelayConfig
from ipcnet.relay.pump import Bridge
from ipcnet.relay.stats import End, log_line
from relay_helpers import both_ways, echo, recv_all, server

MiB = 1 << 20


def _connect(relay: Relay) -> socket.socket:
    return socket.create_connection(("127.0.0.1", relay.address.port), timeout=20)


def _wait(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
def test_64_mib_both_ways_at_once(splice: bool) -> None:
    with (
        server(echo) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", backend.url, splice=splice) as relay,
    ):
        sent, got, n = both_ways(relay.address.port, 64 * MiB)
        assert n == 64 * MiB and sent == got
        _wait(lambda: relay.stats["total"] == 1 and relay.stats["active"] == 0)
        assert relay.stats["bytes_up"] == relay.stats["bytes_down"] == 64 * MiB
        moved = "spliced" if splice else "copied"
        assert relay.stats[moved] == 128 * MiB
        assert relay.stats["copied" if splice else "spliced"] == 0


def test_reply_two_seconds_after_the_clients_eof_arrives() -> None:
    def late(conn: socket.socket) -> None:
        request = recv_all(conn)
        time.sleep(2)
        conn.sendall(b"late answer to " + request)

    with server(late) as backend, ipcnet.relay("tcp://127.0.0.1:0", backend.url) as relay:
        with _connect(relay) as c:
            c.sendall(b"question")
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"late answer to question"


def test_linger_is_an_idle_timer_after_the_first_eof(caplog: pytest.LogCaptureFixture) -> None:
    def drip(conn: socket.socket) -> None:
        recv_all(conn)
        for _ in range(6):  # 0.3 s apart: never idle for the 1 s linger, 1.5 s in total
            conn.sendall(b"x")
            time.sleep(0.3)
        time.sleep(3)  # now silent: the relay gives up after 1 s
        conn.sendall(b"too late")

    caplog.set_level(logging.INFO, logger="ipcnet.relay")
    with (
        server(drip) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", backend.url, linger=1.0) as relay,
    ):
        with _connect(relay) as c:
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"xxxxxx"
        _wait(lambda: relay.stats["active"] == 0)
    line = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()][-1]
    assert "client eof first, then server timeout (linger timeout)" in line


def test_the_other_direction_goes_on_after_a_half_close() -> None:
    """The server half-closes first; the client keeps sending, and the server reads it all."""
    got: list[bytes] = []

    def greet_then_read(conn: socket.socket) -> None:
        conn.sendall(b"hello")
        conn.shutdown(socket.SHUT_WR)
        got.append(recv_all(conn))

    with (
        server(greet_then_read) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", backend.url) as relay,
    ):
        with _connect(relay) as c:
            assert recv_all(c) == b"hello"  # EOF came through as EOF ...
            c.sendall(b"a" * 3 * MiB)  # ... and this direction still works
            c.shutdown(socket.SHUT_WR)
            _wait(lambda: bool(got))
    assert got == [b"a" * 3 * MiB]


def test_a_reset_is_passed_on_as_a_reset(caplog: pytest.LogCaptureFixture) -> None:
    def reset_mid_stream(conn: socket.socket) -> None:
        conn.sendall(b"partial")
        conn.recv(1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()

    caplog.set_level(logging.INFO, logger="ipcnet.relay")
    with (
        server(reset_mid_stream) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", backend.url) as relay,
    ):
        with _connect(relay) as c:
            assert c.recv(7) == b"partial"
            c.sendall(b"!")
            with pytest.raises(ConnectionResetError):
                while c.recv(65536):
                    pass
        _wait(lambda: relay.stats["active"] == 0)
    line = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()][-1]
    assert "server reset first" in line


def test_client_reset_reaches_the_server_as_a_reset() -> None:
    outcome: list[str] = []

    def wait_for_end(conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
            outcome.append("eof")
        except ConnectionResetError:
            outcome.append("reset")

    with server(wait_for_end) as backend, ipcnet.relay("tcp://127.0.0.1:0", backend.url) as relay:
        c = _connect(relay)
        c.sendall(b"some bytes")
        _wait(lambda: backend.accepted == 1)
        time.sleep(0.1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        c.close()
        _wait(lambda: bool(outcome))
    assert outcome == ["reset"]


def test_balance_first_skips_a_refusing_target_and_counts_it() -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    dead_url = f"tcp://127.0.0.1:{dead.getsockname()[1]}"
    with (
        dead,
        server(echo) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", [dead_url, backend.url]) as relay,
    ):
        for _ in range(3):
            with _connect(relay) as c:
                c.sendall(b"ping")
                c.shutdown(socket.SHUT_WR)
                assert recv_all(c) == b"ping"
        assert relay.status()["connect_failures"] == {dead_url: 3}


def test_all_targets_refusing_resets_the_client() -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    with dead, ipcnet.relay("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{dead.getsockname()[1]}") as r:
        with pytest.raises(ConnectionResetError), _connect(r) as c:
            c.recv(1)


def test_roundrobin_spreads_connections() -> None:
    def name(label: bytes):  # type: ignore[no-untyped-def]
        def handle(conn: socket.socket) -> None:
            recv_all(conn)
            conn.sendall(label)

        return handle

    with (
        server(name(b"a")) as a,
        server(name(b"b")) as b,
        ipcnet.relay("tcp://127.0.0.1:0", [a.url, b.url], balance="roundrobin") as relay,
    ):
        seen = []
        for _ in range(4):
            with _connect(relay) as c:
                c.shutdown(socket.SHUT_WR)
                seen.append(recv_all(c))
    assert sorted(seen) == [b"a", b"a", b"b", b"b"]


def test_max_conns_refuses_at_once_and_counts() -> None:
    hold = threading.Event()

    def wait(conn: socket.socket) -> None:
        hold.wait(10)

    with (
        server(wait) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", backend.url, max_conns=2) as relay,
    ):
        kept = [_connect(relay), _connect(relay)]
        _wait(lambda: relay.stats["active"] == 2)
        with pytest.raises(ConnectionResetError):  # at connect() already, or at the first read
            with _connect(relay) as third:
                third.recv(1)
        assert relay.stats["refused"] == 1
        hold.set()
        for c in kept:
            c.close()


def test_exec_target_a_child_per_connection() -> None:
    with ipcnet.relay("tcp://127.0.0.1:0", "exec:sh -c 'echo pid $$; wc -c'") as relay:
        pids = set()
        for size in (0, 5, 100_000):
            with _connect(relay) as c:
                c.sendall(b"z" * size)
                c.shutdown(socket.SHUT_WR)
                first, count = recv_all(c).decode().split("\n")[:2]
                assert int(count) == size
                pids.add(first)
    assert len(pids) == 3


def test_unix_listener_file_removed_only_if_the_relay_made_it(short_tmp) -> None:  # type: ignore[no-untyped-def]
    path = str(short_tmp / "relay.sock")
    with server(echo) as backend:
        with ipcnet.relay(f"unix://{path}", backend.url) as relay:
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                c.sendall(b"over unix")
                c.shutdown(socket.SHUT_WR)
                assert recv_all(c) == b"over unix"
            assert relay.status()["total"] == 1
        assert not os.path.exists(path)
        # a socket file replaced behind the relay's back is not the relay's to remove
        relay = ipcnet.relay(f"unix://{path}", backend.url)
        os.unlink(path)
        other = socket.socket(socket.AF_UNIX)
        other.bind(path)
        relay.close()
        assert os.path.exists(path)
        other.close()
        os.unlink(path)


def test_a_closed_relay_has_released_its_abstract_name() -> None:
    """close() returns once the listener and the --stats one are gone: the name binds again at once (it
    stayed bound while the accept thread was still on its way out)."""
    name = f"unix://@ipcnet-relay-rebind-{os.getpid()}"
    with server(echo) as backend:
        for _ in range(5):
            with ipcnet.relay(name, backend.url, stats=name + "-stats"):
                pass


def test_tcp_to_unix_and_abstract_targets(short_tmp) -> None:  # type: ignore[no-untyped-def]
    path = str(short_tmp / "backend.sock")
    with server(echo, unix=path) as backend:
        with ipcnet.relay(f"unix://@ipcnet-relay-test-{os.getpid()}", backend.url) as inner:
            with ipcnet.relay("tcp://127.0.0.1:0", str(inner.address)) as relay:
                sent, got, n = both_ways(relay.address.port, 4 * MiB)
    assert sent == got and n == 4 * MiB


def test_graceful_stop_lets_connections_finish_then_closes_the_rest() -> None:
    def slow(conn: socket.socket) -> None:
        recv_all(conn)
        time.sleep(0.5)
        conn.sendall(b"done")

    with server(slow) as backend:
        relay = ipcnet.relay("tcp://127.0.0.1:0", backend.url, grace=5)
        c = _connect(relay)
        c.shutdown(socket.SHUT_WR)
        _wait(lambda: relay.stats["active"] == 1)
        stopper = threading.Thread(target=relay.stop)
        stopper.start()
        assert recv_all(c) == b"done"  # finished within the grace period
        stopper.join(10)
        c.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", relay.address.port), timeout=2)

        relay = ipcnet.relay("tcp://127.0.0.1:0", backend.url)
        c = _connect(relay)
        c.sendall(b"no eof ever")
        _wait(lambda: relay.stats["active"] == 1)
        relay.stop(grace=0.2)  # the client never ends: it is closed after the grace
        with pytest.raises(ConnectionResetError):
            c.recv(1)
        c.close()


def test_stats_socket_serves_the_counters(short_tmp) -> None:  # type: ignore[no-untyped-def]
    stats = f"unix://{short_tmp}/stats.sock"
    with (
        server(echo) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", backend.url, stats=stats) as relay,
    ):
        with _connect(relay) as c:
            c.sendall(b"12345")
            c.shutdown(socket.SHUT_WR)
            recv_all(c)
        _wait(lambda: relay.stats["active"] == 0)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(stats[len("unix://") :])
            status = json.loads(recv_all(s))
    assert status["total"] == 1 and status["bytes_up"] == 5 and status["bytes_down"] == 5
    assert status["targets"] == [backend.url] and status["spliced"] == 10


def test_callable_module_and_bad_options() -> None:
    assert callable(ipcnet.relay)
    with pytest.raises(ipcnet.errors.Unsupported, match="--send-proxy takes v1 or v2"):
        Relay("tcp://127.0.0.1:0", ["tcp://127.0.0.1:9"], RelayConfig(send_proxy="v3"))
    with pytest.raises(ipcnet.errors.InvalidAddress, match="unknown balance"):
        Relay("tcp://127.0.0.1:0", ["tcp://127.0.0.1:9"], RelayConfig(balance="random"))
    with pytest.raises(ipcnet.errors.Unsupported, match="not a datagram address"):
        Relay("udp://127.0.0.1:0", ["tcp://127.0.0.1:9"])
    with pytest.raises(ipcnet.errors.InvalidAddress, match="at least one target"):
        Relay("tcp://127.0.0.1:0", [])


def test_log_line_says_who_ended_first_and_how() -> None:
    ends = [End("client", "eof"), End("server", "reset", detail="connection reset by peer")]
    line = log_line("tcp://127.0.0.1:5", "tcp://127.0.0.1:80", 3, 4, 1.5, ends)
    assert line == (
        "tcp://127.0.0.1:5 -> tcp://127.0.0.1:80: up 3 B, down 4 B, 1.500 s; "
        "client eof first, then server reset (connection reset by peer)"
    )
    assert Bridge.__doc__


def test_idle_timeout_ends_a_connection_silent_both_ways(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ipcnet.relay")
    with (
        server(echo) as backend,
        ipcnet.relay("tcp://127.0.0.1:0", backend.url, idle_timeout=0.3) as relay,
    ):
        with _connect(relay) as c:
            c.sendall(b"once")
            assert c.recv(4) == b"once"
            assert c.recv(1) == b""  # silent for 0.3 s: the relay closed it
        _wait(lambda: relay.stats["active"] == 0)
    line = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()][-1]
    assert "client timeout first (idle timeout)" in line


def test_once_shows_progress_on_a_terminal() -> None:
    import pty
    import subprocess
    import sys

    from relay_helpers import env

    with server(echo) as backend:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ipcnet", "relay", "--once", "tcp://127.0.0.1:0", backend.url],
            stderr=follower,
            env=env(),
        )
        os.close(follower)
        out = b""
        while b"->" not in out:
            out += os.read(leader, 1024)
        port = int(out.split(b"tcp://127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.sendall(b"p" * 100_000)
            c.shutdown(socket.SHUT_WR)
            assert len(recv_all(c)) == 100_000
        assert proc.wait(10) == 0
        try:
            while chunk := os.read(leader, 4096):
                out += chunk
        except OSError:  # EIO: the terminal's other side is closed
            pass
        os.close(leader)
    assert b"\rup 100,000 B, down 100,000 B" in out


def test_send_proxy_headers_for_every_kind_of_client() -> None:
    from ipcnet.addresses import parse
    from ipcnet.protocols.proxy import ProxyHeaderReader
    from ipcnet.relay.proxyio import endpoint, header_for

    def parsed(data: bytes):  # type: ignore[no-untyped-def]
        return ProxyHeaderReader().feed(data)

    tcp = endpoint(parse("tcp://192.0.2.7:4000")), endpoint(parse("tcp://192.0.2.1:80"))
    assert header_for("v1", *tcp) == b"PROXY TCP4 192.0.2.7 192.0.2.1 4000 80\r\n"
    h = parsed(header_for("v2", *tcp))
    assert (h.transport, h.source, h.destination) == (
        "TCP4",
        ("192.0.2.7", 4000),
        ("192.0.2.1", 80),
    )
    six = endpoint(parse("tcp://[2001:db8::7]:4000")), endpoint(parse("tcp://[2001:db8::1]:80"))
    assert parsed(header_for("v1", *six)).source == ("2001:db8::7", 4000)
    unix = endpoint(parse("unix:///tmp/client.sock")), endpoint(parse("unix://@relay"))
    # a unix client: v2 LOCAL with no addresses, as HAProxy sends it (HAProxy and nginx
    # refuse an AF_UNIX block); v1 has no unix form
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    assert header_for("v2", *unix) == local
    assert header_for("v2", None, endpoint(parse("unix:///tmp/relay.sock"))) == local
    assert header_for("v1", *unix) == b"PROXY UNKNOWN\r\n"
    assert parsed(header_for("v2", tcp[0], unix[1])).command == "LOCAL"  # mixed: no client
