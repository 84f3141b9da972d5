"""Real loopback TCP sockets in known states, read back through netlink and /proc."""

from __future__ import annotations

import os
import socket

import pytest

from inspector_helpers import find, rows_on_port, table, tcp_conn, wait_for
from ipcnet.inspector import SocketRow, list_sockets, sockets_of_pid

SOURCES = ["netlink", "proc"]


@pytest.mark.parametrize("source", SOURCES)
def test_listen_and_established_rows(source: str) -> None:
    with tcp_conn(backlog=7) as c:
        c.client.sendall(b"x" * 100)  # unread by the server: its Recv-Q
        wanted = (("LISTEN", c.port), ("ESTABLISHED", c.port), ("ESTABLISHED", c.client_port))

        def with_recv_q() -> list[SocketRow] | None:
            rows = table(c.port, source, *wanted)
            return rows if find(rows, "ESTABLISHED", c.port)[0].recv_q == 100 else None

        rows = wait_for(with_recv_q, what="recv-q 100")
        (listen,) = find(rows, "LISTEN", c.port)
        assert (listen.local_host, listen.remote_host, listen.remote_port) == (
            "127.0.0.1",
            "0.0.0.0",
            0,
        )
        assert listen.recv_q == 0  # accept queue: empty, we accepted
        assert listen.send_q == (7 if source == "netlink" else None)  # backlog; /proc lacks it
        assert listen.inode == os.fstat(c.listener.fileno()).st_ino
        assert listen.uid == os.geteuid()
        (srv,) = find(rows, "ESTABLISHED", c.port)
        (cli,) = find(rows, "ESTABLISHED", c.client_port)
        assert (srv.remote_host, srv.remote_port) == ("127.0.0.1", c.client_port)
        assert (cli.remote_host, cli.remote_port) == ("127.0.0.1", c.port)
        assert srv.recv_q == 100 and cli.recv_q == 0
        assert srv.inode == os.fstat(c.server.fileno()).st_ino
        assert cli.inode == os.fstat(c.client.fileno()).st_ino
        assert all(r.source == source and r.proto == "tcp" and r.type == "stream" for r in rows)


def test_accept_queue_length_of_listener() -> None:
    with tcp_conn(backlog=5) as c:
        extra = [socket.create_connection(("127.0.0.1", c.port)) for _ in range(2)]
        try:
            wait_for(
                lambda: find(table(c.port, "netlink", ("LISTEN", c.port)), "LISTEN")[0].recv_q == 2,
                what="two connections waiting in the accept queue",
            )
            (lst,) = find(table(c.port, "proc", ("LISTEN", c.port)), "LISTEN")
            assert lst.recv_q == 2
        finally:
            for s in extra:
                s.close()


@pytest.mark.parametrize("source", SOURCES)
def test_close_wait_fin_wait2_time_wait(source: str) -> None:
    with tcp_conn() as c:
        # the client half-closes: client FIN_WAIT2, server CLOSE_WAIT (it has not closed)
        c.client.shutdown(socket.SHUT_WR)
        rows = table(c.port, source, ("CLOSE_WAIT", c.port), ("FIN_WAIT2", c.client_port))
        (cw,) = find(rows, "CLOSE_WAIT", c.port)
        (fw2,) = find(rows, "FIN_WAIT2", c.client_port)
        assert cw.inode == os.fstat(c.server.fileno()).st_ino
        assert fw2.inode == os.fstat(c.client.fileno()).st_ino
        # the server closes too: the client, which closed first, ends in TIME_WAIT
        c.server.close()
        # by the client's port: the server's port number may also be the remote port of
        # TIME_WAIT leftovers from an earlier server that had it
        (tw,) = wait_for(
            lambda: find(rows_on_port(c.port, source), "TIME_WAIT", c.client_port),
            what="TIME_WAIT",
        )
        assert (tw.local_port, tw.remote_port) == (c.client_port, c.port)
        assert tw.inode is None and tw.uid is None  # a mini socket: unknown, not 0
        assert tw.timer == "timewait" and tw.timer_ms is not None and 0 < tw.timer_ms <= 60_000


def test_state_filter_goes_to_the_kernel() -> None:
    with tcp_conn() as c:
        only_listen = list_sockets(["tcp"], ["listen"], port=c.port)
        assert [r.state for r in only_listen] == ["LISTEN"]
        est = list_sockets(["tcp"], ["established"], port=c.port)
        assert sorted(r.local_port for r in est) == sorted([c.port, c.client_port])
        proc = list_sockets(["tcp"], ["ESTAB"], port=c.port, source="proc")
        assert {r.inode for r in proc} == {r.inode for r in est}


def test_ipv4_mapped_shown_as_ipv4_and_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with tcp_conn(host="::", family=socket.AF_INET6) as c:
        for source in SOURCES:
            rows = table(c.port, source, ("LISTEN", c.port), ("ESTABLISHED", c.port))
            (srv,) = [r for r in find(rows, "ESTABLISHED", c.port) if r.proto == "tcp6"]
            assert (srv.local_host, srv.remote_host) == ("127.0.0.1", "127.0.0.1"), source
            (lst,) = find(rows, "LISTEN", c.port)
            assert (lst.proto, lst.local_host) == ("tcp6", "::")
    try:
        c6 = tcp_conn(host="::1", family=socket.AF_INET6)
        conn = c6.__enter__()
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    try:
        for source in SOURCES:
            rows = table(conn.port, source, ("ESTABLISHED", conn.client_port))
            (cli,) = find(rows, "ESTABLISHED", conn.client_port)
            assert (cli.proto, cli.local_host, cli.remote_host) == ("tcp6", "::1", "::1")
    finally:
        c6.__exit__(None, None, None)


def test_owners_join_and_sockets_of_pid() -> None:
    with tcp_conn() as c:
        rows = rows_on_port(c.port, owners=True)
        me = os.getpid()
        by_inode = {r.inode: r for r in rows}
        for sock in (c.listener, c.client, c.server):
            row = by_inode[os.fstat(sock.fileno()).st_ino]
            assert row.owners is not None
            assert [(o.pid, o.fds) for o in row.owners] == [(me, (sock.fileno(),))]
            assert row.owners[0].name
        mine = {r.inode for r in sockets_of_pid(me)}
        assert {os.fstat(s.fileno()).st_ino for s in (c.listener, c.client, c.server)} <= mine


def test_udp_rows() -> None:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        b.connect(a.getsockname())
        b.send(b"hello")
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        for source in SOURCES:
            rows = list_sockets(["udp"], port=pa, source=source)  # type: ignore[arg-type]
            (ua,) = [r for r in rows if r.local_port == pa]
            (ub,) = [r for r in rows if r.local_port == pb]
            assert ua.state == "UNCONN" and ub.state == "ESTABLISHED"
            assert (ub.remote_host, ub.remote_port) == ("127.0.0.1", pa)
            assert ua.recv_q is not None and ua.recv_q > 0  # the unread datagram (bytes of memory)
            assert ua.type == "dgram" and ua.timer is None
    finally:
        a.close()
        b.close()
