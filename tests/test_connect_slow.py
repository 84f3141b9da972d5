"""`ipcnet connect` against slow servers: nothing the peer sends before its EOF is lost.

Each server reads the client's whole request up to its EOF and only then answers: late,
dripped, or with more bytes than the socket buffers hold. OpenBSD `nc -N` runs beside
ipcnet as the reference client that gets everything. `--linger` is an idle timer; when it
(or a signal) makes ipcnet give up while the peer is still sending, ipcnet says so and
exits non-zero.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]
BIG = 8 * 1024 * 1024  # more than the kernel's socket buffers hold on loopback


@dataclass
class Server:
    """A server on a real socket (a thread per connection), answering after each client's EOF."""

    url: str
    nc_args: list[str]
    received: list[bytes] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def _listener(family: str, tmp: str) -> tuple[socket.socket, str, list[str]]:
    if family == "unix":
        path = os.path.join(tmp, "slow.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        return sock, f"unix://{path}", ["-U", path]
    if family == "tcp6":
        if not socket.has_ipv6:
            pytest.skip("no IPv6")
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.bind(("::1", 0))
        port = sock.getsockname()[1]
        return sock, f"tcp6://[::1]:{port}", ["::1", str(port)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    return sock, f"tcp://127.0.0.1:{port}", ["127.0.0.1", str(port)]


@pytest.fixture
def serve() -> Iterator[Callable[[str, Callable[[socket.socket], None]], Server]]:
    """serve(family, answer): answer(conn) runs after each client's request reached EOF."""
    tmp = tempfile.mkdtemp(prefix="ipcs", dir="/tmp")
    socks: list[socket.socket] = []
    loops: list[threading.Thread] = []

    def start(family: str, answer: Callable[[socket.socket], None]) -> Server:
        sock, url, nc_args = _listener(family, tmp)
        sock.listen(8)
        socks.append(sock)
        server = Server(url, nc_args)

        def session(conn: socket.socket) -> None:
            with conn:
                try:
                    chunks = []
                    while data := conn.recv(65536):
                        chunks.append(data)
                    server.received.append(b"".join(chunks))
                    answer(conn)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)  # wait for the client's close: no RST on our side
                except OSError as exc:  # EPIPE/ECONNRESET: the client left too early
                    server.errors.append(exc)

        def loop() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return  # the fixture closed the listener
                threading.Thread(target=session, args=(conn,), daemon=True).start()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        loops.append(thread)
        return server

    yield start
    for s in socks:  # wake accept() first: a closed fd's number is reused by the next test
        s.shutdown(socket.SHUT_RDWR)
    for thread in loops:
        thread.join(10)
    for s in socks:
        s.close()
    shutil.rmtree(tmp, ignore_errors=True)


def late(conn: socket.socket) -> None:
    time.sleep(0.8)  # longer than socat's 0.5 s half-close timeout (-t)
    conn.sendall(b"late answer\n")


DRIP = b"".join(b"line %d\n" % i for i in range(8))


def drip(conn: socket.socket) -> None:
    for line in DRIP.splitlines(keepends=True):
        time.sleep(0.25)
        conn.sendall(line)


def big(conn: socket.socket) -> None:
    conn.sendall(_big_payload())


def _big_payload() -> bytes:
    return hashlib.shake_256(b"ipcnet").digest(BIG)


ANSWERS = {"late": (late, b"late answer\n"), "drip": (drip, DRIP), "big": (big, None)}


def _openbsd_nc() -> str | None:
    """OpenBSD netcat (it has -N: shutdown(SHUT_WR) after stdin's EOF), or None."""
    nc = shutil.which("nc")
    if nc is None:
        return None
    usage = subprocess.run([nc, "-h"], capture_output=True, text=True, timeout=10)
    return nc if "-N" in usage.stdout + usage.stderr else None


def _client(cmd: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, input=data, capture_output=True, timeout=60)


@pytest.mark.parametrize("family", ["tcp", "tcp6", "unix"])
@pytest.mark.parametrize("case", list(ANSWERS))
def test_everything_the_peer_sends_after_our_eof_arrives(
    serve: Callable[[str, Callable[[socket.socket], None]], Server], family: str, case: str
) -> None:
    answer, expected = ANSWERS[case]
    expected = expected if expected is not None else _big_payload()
    server = serve(family, answer)
    nc = _openbsd_nc()
    clients = [[*IPCNET, server.url]]
    if nc is not None and case != "big":  # the reference client, at the same time
        clients.append([nc, "-N", *server.nc_args])
    with ThreadPoolExecutor(len(clients)) as pool:
        ours, *ref = pool.map(lambda cmd: _client(cmd, b"go\n"), clients)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == expected, (len(ours.stdout), ours.stderr)
    assert ours.stderr == b""
    assert [r.stdout for r in ref] == [expected] * len(ref)  # nc gets the same bytes
    assert server.received == [b"go\n"] * len(clients)
    assert server.errors == []  # no EPIPE/RST: ipcnet stayed until the server finished


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_linger_is_an_idle_timer_reset_by_traffic(
    serve: Callable[[str, Callable[[socket.socket], None]], Server], family: str
) -> None:
    # 8 lines 0.25 s apart take 2 s in all, but no gap reaches 1 s: nothing is cut
    server = serve(family, drip)
    ours = _client([*IPCNET, "--linger", "1", server.url], b"go\n")
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, DRIP, b"")


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_linger_that_runs_out_says_so_and_fails(
    serve: Callable[[str, Callable[[socket.socket], None]], Server], family: str
) -> None:
    server = serve(family, late)
    ours = _client([*IPCNET, "--linger", "0.3", server.url], b"go\n")
    assert ours.returncode == 1
    assert ours.stdout == b""
    assert ours.stderr.decode() == (
        "ipcnet connect: no data for 0.3 s: gave up before the peer ended its side "
        "(0 bytes received)\n"
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_peer_sends_is_reported(
    serve: Callable[[str, Callable[[socket.socket], None]], Server], sig: int
) -> None:
    def slow_drip(conn: socket.socket) -> None:
        for i in range(100):  # 10 s at most: the test stops the client long before
            conn.sendall(b"tick %d\n" % i)
            time.sleep(0.1)

    server = serve("tcp", slow_drip)
    proc = subprocess.Popen(
        [*IPCNET, server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        assert proc.stdout.readline() == b"tick 0\n"  # the peer is sending now
        proc.send_signal(sig)
        proc.stdout.read()
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + sig, err
    assert err.decode().startswith("ipcnet connect: interrupted: gave up before the peer ended")


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_after_the_peer_ends_first_all_of_stdin_still_goes(
    serve: Callable[[str, Callable[[socket.socket], None]], Server], family: str
) -> None:
    """The peer half-closes at once and goes on reading: our whole stdin must reach it."""
    tmp = tempfile.mkdtemp(prefix="ipcs", dir="/tmp")
    sock, url, _ = _listener(family, tmp)
    sock.listen(1)
    got: list[bytes] = []

    def peer() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.sendall(b"hello, send me everything\n")
            conn.shutdown(socket.SHUT_WR)
            chunks = []
            while data := conn.recv(65536):
                chunks.append(data)
            got.append(b"".join(chunks))

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        payload = _big_payload()
        ours = _client([*IPCNET, url], payload)
        thread.join(30)
    finally:
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        0,
        b"hello, send me everything\n",
        b"",
    )
    assert hashlib.sha256(got[0]).digest() == hashlib.sha256(payload).digest()
