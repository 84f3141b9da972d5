"""``ipcnet relay`` and ``ipcnet connect`` beside socat, HAProxy (mode tcp) and nginx stream:
an exec: upstream's failure in the log; an upstream that closes at once (a reset named as
one), that never accepts (connects hold up no other client; a timeout is no refusal), that
answers an upload and resets (the answer first); a client gone before the connect
completed; the PROXY header for a v4 client of a dual-stack listener; UDP: a 65507-byte
datagram, replies from the address sent to, an ICMP port unreachable; ``connect``: binary
data, 100 MiB through a pipe, a peer that resets.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import ipcnet.relay
from ipcnet.testing import free_port
from relay_helpers import RelayProcess, Server, env, recv_all, relay_process, server
from test_proxy_conformance import NGINX_STREAM, _peer, _wait_port, needs_nginx

needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy missing")
LINGER_0 = struct.pack("ii", 1, 0)


def _exchange(port: int, data: bytes = b"hi\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def _lines_with(relay: RelayProcess, text: str, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := [line for line in relay.lines if text in line]:
            return found
        time.sleep(0.02)
    return []


# --- 5: an exec: upstream's exit status -------------------------------------------------

FAILING = {
    "exit 3": ("sh -c 'cat >/dev/null; echo bye; exit 3'", "exited with status 3"),
    "SIGSEGV": ("sh -c 'cat >/dev/null; echo bye; kill -SEGV $$'", "killed by signal 11"),
}


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_an_exec_upstream_that_fails_is_logged_with_its_status(model: str) -> None:
    """socat logs ``E waitpid(): child N exited with status 3`` for its SYSTEM:/EXEC:
    child, and ``ipcnet connect exec:...`` exits 1 naming the status; the relay said
    nothing of it: its line read "client eof first, then server eof" like a success. Now
    a line after the connection's names the child, its pid and how it failed; a child
    that exits 0 gets none."""
    for command, said in FAILING.values():
        with relay_process("tcp://127.0.0.1:0", f"exec:{command}", "-m", model) as relay:
            assert _exchange(relay.port) == b"bye\n"
            found = _lines_with(relay, said)
            assert found, (command, relay.lines)
            assert found[0].startswith("ipcnet relay: tcp://127.0.0.1:")
            assert f"-> exec:{command}: the child (pid " in found[0], found
            # the connection's own line came first
            assert relay.lines.index(found[0]) > 0, relay.lines
    with relay_process("tcp://127.0.0.1:0", "exec:cat", "-m", model) as relay:
        assert _exchange(relay.port) == b"hi\n"
        assert relay.wait_lines(1)
        time.sleep(0.3)
        assert not [line for line in relay.lines if "the child" in line], relay.lines


def _closing_children() -> bool:
    return any(t.name == "ipcnet-relay-child" for t in threading.enumerate())


def test_a_child_the_relay_stops_is_no_failure_of_its_own(caplog: pytest.LogCaptureFixture) -> None:
    """A child still running when the relay closes its connection (--idle-timeout here)
    is terminated by the relay: that SIGTERM is ours, not the child's failure."""
    caplog.set_level(logging.INFO, "ipcnet.relay")
    with ipcnet.relay("tcp://127.0.0.1:0", "exec:sleep 30", idle_timeout=0.3) as relay:
        with socket.create_connection(("127.0.0.1", int(relay.address.port or 0))) as sock:
            sock.settimeout(10)
            assert recv_all(sock) == b""
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and (relay.stats["active"] or _closing_children()):
            time.sleep(0.05)
    text = caplog.text
    assert "idle timeout" in text, text
    assert "the child" not in text, text


# --- 1: an upstream that accepts and closes at once ---------------------------------------


def _closes_at_once(conn: socket.socket) -> None:
    """Accepts and closes, reading nothing: what the client sends next is answered with
    an RST by the upstream's kernel."""


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_an_upstream_that_closes_at_once_and_resets_what_follows_is_logged_as_a_reset(
    model: str,
) -> None:
    """The client reads the EOF, writes once more (the upstream's kernel resets the relay's
    connection), then half-closes: shutting the upstream down fails with ENOTCONN, which
    the relay logged as "server error (transport endpoint is not connected ...)". A
    socket's own send_eof names it for what it is, "connection reset by peer: shut down"
    (``ipcnet connect`` says so in the same case); so does the relay's line now. (HAProxy's
    tcplog calls it a normal end, "--": it never looks at the shutdown's result.)"""
    with (
        server(_closes_at_once) as up,
        relay_process("tcp://127.0.0.1:0", up.url, "-m", model) as relay,
    ):
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
            assert sock.recv(10) == b""
            sock.sendall(b"late")
            time.sleep(0.2)  # the upstream's RST is in
            sock.shutdown(socket.SHUT_WR)
            line = relay.wait_lines(1)[-1]
    assert "server eof first, then server reset (connection reset by peer: shut down" in line, line


# --- 1: an upstream that never accepts -------------------------------------------------


@contextmanager
def _never_accepts() -> Iterator[int]:
    """A port whose listener's accept queue is full: the kernel drops every further SYN,
    so a connect to it hangs until its timeout (a blackhole, without a namespace)."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.3)
        with probe, pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def _served_at_once(port: int, clients: int) -> list[float]:
    """``clients`` at once through a relay at ``port``: each one's seconds to its echo."""
    took: list[float] = []

    def one() -> None:
        started = time.monotonic()
        try:
            assert _exchange(port, b"x") == b"x"
        except (OSError, AssertionError):
            return
        took.append(time.monotonic() - started)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(took)


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


@contextmanager
def _haproxy_roundrobin(dead: int, live: int) -> Iterator[int]:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="ipcnet-a8-"))
    (tmp / "haproxy.cfg").write_text(textwrap.dedent(f"""
        defaults
            mode tcp
            timeout connect 1s
            timeout client 20s
            timeout server 20s
            retries 1
            option redispatch
        listen relay
            bind 127.0.0.1:{port}
            balance roundrobin
            server dead 127.0.0.1:{dead}
            server live 127.0.0.1:{live}
    """))  # fmt: skip
    try:
        with _peer(["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")], port):
            yield port
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _in_front(kind: str, dead: int, live: Server, *options: str) -> Iterator[int]:
    """HAProxy (roundrobin, redispatch) or ``ipcnet relay -m KIND`` in front of a
    blackholed target and a live one, with a 1 s connect timeout; yields its port."""
    if kind == "haproxy":
        if shutil.which("haproxy") is None:
            pytest.skip("haproxy missing")
        with _haproxy_roundrobin(dead, live.port) as port:
            yield port
        return
    with relay_process("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{dead}", live.url,
                       "--connect-timeout", "1", "-m", kind, *options) as relay:  # fmt: skip
        yield relay.port


@pytest.mark.parametrize("kind", ["haproxy", "epoll", "asyncio"])
def test_connects_to_a_target_that_never_answers_hold_up_no_client_of_another(kind: str) -> None:
    """Roundrobin over a blackholed target and a live one, a 1 s connect timeout, six
    clients at once: HAProxy serves those whose turn is the live target at once (its
    connects never block; its turn also moves on a redispatch, so two or three of six),
    and the others after the timeout, on the live one. The relay's event loops connected
    on a pool of --workers threads: two connects hanging on the blackhole held up every
    other client, the live target's too, for the whole timeout, and the last one for two
    (with the default 8 workers, 8 such connects stop a relay serving anyone for 5 s).
    Now a hand-over job never waits behind another (its threads are bounded by
    --max-conns, as the connections are)."""
    options = ("--balance", "roundrobin", "--workers", "2")
    with (
        _never_accepts() as dead,
        server(_echo) as live,
        _in_front(kind, dead, live, *options) as port,
    ):
        took = _served_at_once(port, 6)
    at_once = sum(t < 0.5 for t in took)
    assert len(took) == 6 and (at_once >= 2 if kind == "haproxy" else at_once == 3), took
    assert all(t < 1.8 for t in took), took  # one timeout, then the live one


def _collects(got: list[bytes]) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        got.append(recv_all(conn))

    return handle


@pytest.mark.parametrize("kind", ["haproxy", "epoll", "thread"])
def test_a_client_that_sent_and_closed_before_the_connect_completed_loses_no_byte(
    kind: str,
) -> None:
    """The client sends 200 KB and closes while the relay still waits on a blackholed first
    target (1 s connect timeout); the next target must still get every byte, then the
    EOF: HAProxy (redispatch, no abortonclose) delivers them, and so does the relay under
    an event loop and under a thread per connection."""
    payload = os.urandom(200_000)
    got: list[bytes] = []
    with _never_accepts() as dead, server(_collects(got)) as live:
        with _in_front(kind, dead, live) as port:
            clients = 2 if kind == "haproxy" else 1  # one of two starts at the blackhole
            for _ in range(clients):
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.sendall(payload)
            _wait_for(lambda: got.count(payload) == clients)
    assert got.count(payload) == clients, [len(g) for g in got]


def _wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


# --- 3: udp ---------------------------------------------------------------------------


@contextmanager
def _udp_echo() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def loop() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(70000)
                sock.sendto(data, peer)
            except OSError:
                return

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@needs_socat
def test_udp_a_65507_byte_datagram_both_ways_and_replies_from_the_address_sent_to() -> None:
    """The largest IPv4 UDP payload goes through whole both ways, and a client that sent
    to 127.0.0.2 on a wildcard listener gets its reply from 127.0.0.2 (a connected client
    drops any other). socat UDP-LISTEN:P UDP:... side by side does neither: it cuts the
    datagram to its 8192-byte buffer without a word, and its reply to the 127.0.0.2
    client comes from 127.0.0.1 (a connected client never sees it)."""
    data = os.urandom(65507)
    with _udp_echo() as upstream:
        socat_port = free_port()
        socat = subprocess.Popen(
            ["socat", f"UDP-LISTEN:{socat_port},reuseaddr", f"UDP:127.0.0.1:{upstream}"],
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(2)
                client.sendto(data, ("127.0.0.2", socat_port))
                theirs, sender = client.recvfrom(70000)
        finally:
            socat.kill()
            socat.wait()
        assert (len(theirs), sender[0]) == (8192, "127.0.0.1")  # the peer's two faults
        port = free_port()
        with ipcnet.relay(f"udp://0.0.0.0:{port}", f"udp://127.0.0.1:{upstream}") as relay:
            for host in ("127.0.0.2", "127.0.0.1"):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.settimeout(2)
                    client.connect((host, port))  # accepts replies from there only
                    client.send(data)
                    assert client.recv(70000) == data, host
            assert relay.stats["oversize"] == 0


# --- 4: ipcnet connect beside socat - and nc -N -----------------------------------------

IPCNET_CONNECT = [sys.executable, "-m", "ipcnet", "connect"]


def test_connect_binary_with_nuls_and_no_newline_like_socat_and_nc() -> None:
    """NULs and no trailing newline come back exactly, through ipcnet connect, socat - and
    nc -N alike (stdin's EOF half-closes, the echo's answer is waited for)."""
    small = b"\0a\0\xff\r\n\0b"
    with server(_echo) as up:
        for argv in (
            [*IPCNET_CONNECT, up.url],
            ["socat", "-", f"TCP:127.0.0.1:{up.port}"],
            ["nc", "-N", "127.0.0.1", str(up.port)],
        ):
            if shutil.which(argv[0]) is None:
                continue
            done = subprocess.run(argv, input=small, capture_output=True, timeout=20, env=env())
            assert (done.returncode, done.stdout, done.stderr) == (0, small, b""), argv


def test_connect_100_mib_through_a_pipe_come_back_whole() -> None:
    with server(_echo) as up:
        script = (
            "set -o pipefail; head -c 104857600 /dev/urandom | tee >(sha256sum >&2) "
            f"| {shlex.join([*IPCNET_CONNECT, up.url])} | sha256sum"
        )
        done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60, env=env())
    assert done.returncode == 0, done.stderr
    sent, got = done.stderr.split()[0], done.stdout.split()[0]
    assert sent == got


def test_connect_to_a_peer_that_resets_fails_naming_the_reset_after_what_it_sent() -> None:
    """The peer answers, then resets: what it sent is on stdout, and ipcnet connect exits
    1 saying the peer reset (a reset is no clean end). socat 1.7.4 and nc -N exit 0 with
    no word here: they take the reset for an EOF."""

    def answers_then_resets(conn: socket.socket) -> None:
        conn.sendall(b"partial")
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)

    with server(answers_then_resets) as up:
        script = f"(printf 'a\\0b'; sleep 1) | {shlex.join([*IPCNET_CONNECT, up.url])}"
        done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=20, env=env())
    assert (done.returncode, done.stdout) == (1, b"partial"), done.stderr
    assert done.stderr.decode().startswith("ipcnet connect: connection reset by peer: read from")


@needs_socat
def test_udp_port_unreachable_from_the_upstream_is_counted_and_the_relay_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Datagrams to an upstream port nobody listens on come back as ICMP port
    unreachable: socat UDP-LISTEN exits 1 at the first ("E read(...): Connection
    refused"), so every client loses the relay; ipcnet counts each refusal against the
    target, logs it, and once the upstream listens the same client is answered."""
    dead = free_port()
    socat_port = free_port()
    socat = subprocess.Popen(
        ["socat", f"UDP-LISTEN:{socat_port},bind=127.0.0.1,reuseaddr", f"UDP:127.0.0.1:{dead}"],
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"x", ("127.0.0.1", socat_port))
            assert socat.wait(5) == 1
        assert socat.stderr is not None and b"Connection refused" in socat.stderr.read()
    finally:
        socat.kill()
        socat.wait()
    caplog.set_level(logging.INFO, "ipcnet.relay")
    with ipcnet.relay("udp://127.0.0.1:0", f"udp://127.0.0.1:{dead}") as relay:
        port = int(relay.address.port or 0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.connect(("127.0.0.1", port))
            for _ in range(3):
                client.send(b"x")
                time.sleep(0.1)
            _wait_for(lambda: relay.status()["connect_failures"] == {f"udp://127.0.0.1:{dead}": 3})
            assert relay.status()["connect_failures"] == {f"udp://127.0.0.1:{dead}": 3}
            assert "connection refused: nothing listens on" in caplog.text
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with upstream:
                upstream.bind(("127.0.0.1", dead))
                client.send(b"again")
                data, peer = upstream.recvfrom(100)
                upstream.sendto(b"answer", peer)
                assert (data, client.recv(100)) == (b"again", b"answer")


# --- 2: the PROXY protocol header for a v4 client of a dual-stack listener -------------


@contextmanager
def _nginx_reader(
    tmp: Path, answer: str = "$proxy_protocol_addr|$proxy_protocol_port"
) -> Iterator[int]:
    """nginx stream ``listen ... proxy_protocol`` answering ``answer`` (by default the
    client the header named)."""
    port = free_port()
    (tmp / "nginx.conf").write_text(textwrap.dedent(f"""
        load_module {NGINX_STREAM};
        daemon off;
        master_process off;
        pid {tmp}/nginx.pid;
        error_log {tmp}/error.log;
        events {{ worker_connections 64; }}
        stream {{
            server {{ listen 127.0.0.1:{port} proxy_protocol;
                     return "{answer}\\n"; }}
        }}
    """))  # fmt: skip
    argv = ["nginx", "-p", str(tmp), "-e", f"{tmp}/error.log", "-c", str(tmp / "nginx.conf")]
    with _peer(argv, port):
        yield port


def _named(port: int) -> tuple[str, str]:
    """(what the reader says the header named, our own address and port)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        ours = sock.getsockname()
        answer = recv_all(sock)
    return answer.decode().strip(), f"{ours[0]}|{ours[1]}"


@needs_haproxy
@needs_nginx
def test_a_v4_client_of_a_dual_stack_listener_is_named_as_the_v4_address_it_is(
    short_tmp: Path,
) -> None:
    """A relay on ``tcp://:PORT`` (one IPv6 socket, IPv4 too) names its IPv4 client in
    the PROXY header as the IPv4 address it is, so nginx's $proxy_protocol_addr is the
    client's own 127.0.0.1 and its port, in v1 and v2. HAProxy side by side (``bind
    :::PORT v4v6 ... send-proxy``) sends the socket's IPv4-mapped form, TCP6
    ::ffff:127.0.0.1, which the spec allows; the receiver then logs that form."""
    with _nginx_reader(short_tmp) as reader:
        for option in ("send-proxy", "send-proxy-v2"):
            port = free_port()
            (short_tmp / "haproxy.cfg").write_text(textwrap.dedent(f"""
                defaults
                    mode tcp
                    timeout connect 5s
                    timeout client 10s
                    timeout server 10s
                listen relay
                    bind :::{port} v4v6
                    server reader 127.0.0.1:{reader} {option}
            """))  # fmt: skip
            haproxy = subprocess.Popen(
                ["haproxy", "-db", "-f", str(short_tmp / "haproxy.cfg")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                _wait_port(port, haproxy)
                seen, ours = _named(port)
                assert seen == f"::ffff:{ours}", (option, seen, ours)
            finally:
                haproxy.terminate()
                haproxy.wait(10)
            (short_tmp / "haproxy.cfg").unlink()
        for version in ("v1", "v2"):
            target = f"tcp://127.0.0.1:{reader}"
            with ipcnet.relay("tcp://:0", target, send_proxy=version) as relay:
                seen, ours = _named(int(relay.address.port or 0))
            assert seen == ours, (version, seen, ours)
    for name in ("nginx.conf", "nginx.pid", "error.log"):
        (short_tmp / name).unlink(missing_ok=True)


# --- 1: a reset from an upstream that answered first ----------------------------------


def _answers_and_closes_unread(conn: socket.socket) -> None:
    """Reads one byte, answers, closes: the client's bytes it never read make its kernel
    send an RST after the answer (an HTTP server's "413" to an upload, without nginx's
    lingering close)."""
    conn.recv(1)
    conn.sendall(b"enough\n")


def _upload_and_read(port: int) -> bytes:
    """Upload 25 MiB while reading: the answer (then, often, a reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def upload() -> None:
            try:
                for _ in range(400):
                    sock.sendall(bytes(65536))
            except OSError:
                pass

        thread = threading.Thread(target=upload)
        thread.start()
        got = b""
        try:
            while data := sock.recv(100):
                got += data
        except ConnectionResetError:
            pass
        thread.join(10)
    return got


@pytest.mark.parametrize("model", ["epoll", "thread"])
@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
def test_the_answer_of_an_upstream_that_resets_an_upload_reaches_the_client_first(
    model: str, splice: bool
) -> None:
    """Without a relay the uploading client reads the answer every time, then the reset.
    The relay took the failed write to the upstream for the end of everything and reset
    the client at once: the answer, already in the relay's kernel, was lost in 3 of 5
    tries under epoll (HAProxy and socat lose it in about 2 of 5). Now what the upstream
    sent before its reset goes on to the client first, then the reset."""
    with server(_answers_and_closes_unread) as up:
        assert [_upload_and_read(up.port) for _ in range(5)] == [b"enough\n"] * 5  # direct
        options = () if splice else ("--no-splice",)
        with relay_process("tcp://127.0.0.1:0", up.url, "-m", model, *options) as relay:
            got = [_upload_and_read(relay.port) for _ in range(5)]
            lines = relay.wait_lines(5)
    assert got == [b"enough\n"] * 5, (got, lines)
    # the server is at fault either way: its reset, or (once the reset has been taken) EPIPE
    at_fault = re.compile(r"down 7 B, .*; server (reset|closed) first")
    assert all(at_fault.search(line) for line in lines), lines


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_a_target_that_never_answers_is_logged_as_a_timeout_not_a_refusal(model: str) -> None:
    """Every target silent for the connect timeout: the client is reset at once after it
    (1 s here), the relay serves on, and its line says the server timed out, as HAProxy's
    tcplog tells "sC" (a connect timeout) from "SC" (a refusal); it said "server refused
    first (timed out ...)". A refusal is still "refused"."""
    closed = free_port()
    with _never_accepts() as dead:
        with relay_process("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{dead}",
                           "--connect-timeout", "1", "-m", model) as relay:  # fmt: skip
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
                with pytest.raises(ConnectionResetError):
                    sock.recv(10)
            assert 0.9 < time.monotonic() - started < 2.5
            line = relay.wait_lines(1)[-1]
        assert "server timeout first (timed out: connect to" in line, line
    with relay_process("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{closed}", "-m", model) as relay:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
        line = relay.wait_lines(1)[-1]
    assert "server refused first (connection refused" in line, line
