"""The web server under hostile or careless clients, as real processes and sockets:
slowloris, bodies, connection limits, clients that leave mid-file, idle keep-alive."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from http_cases.kit import RawReader, connect, http_server, make_site, read_all, remove_site


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = make_site()
    yield path
    remove_site(path)


@pytest.mark.parametrize("model", ["iterative", "thread", "epoll", "asyncio"])
def test_slowloris_gets_408_and_trickling_does_not_extend_it(root: Path, model: str) -> None:
    extra = ("--quiet", "--header-timeout", "0.5")
    with http_server(root, model=model, extra=extra) as (_, _, port), connect(port) as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\n")
        sent = 0
        sock.settimeout(0.2)
        data = b""
        while sent < 100:  # a byte every 0.2 s would take 20 s; the deadline is 0.5 s
            try:
                sock.sendall(b"X-a: b\r\n"[sent % 8 : sent % 8 + 1])
            except (BrokenPipeError, ConnectionResetError):  # closed after its answer:
                with contextlib.suppress(OSError):  # that answer may still be queued here
                    data += sock.recv(4096)
                break
            sent += 1
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            data += chunk
            if not chunk or b"\r\n\r\n" in data:
                break
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert sent < 100
        assert b"Connection: close" in data


@pytest.mark.parametrize("model", ["thread", "epoll", "asyncio"])
def test_body_is_refused_with_413_and_the_client_reads_it(root: Path, model: str) -> None:
    """Half-close and drain: a client still sending its body gets the answer, not a reset."""
    body = b"x" * (512 * 1024)
    head = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with http_server(root, model=model) as (_, _, port), connect(port) as sock:
        sock.sendall(head + body)
        reader = RawReader(sock)
        response = reader.response()
        assert response is not None and response.status == 413
        assert response.headers["connection"] == "close"
        assert reader.at_eof()  # EOF, not ECONNRESET


@pytest.mark.parametrize("model", ["thread", "epoll", "asyncio", "forkconc"])
def test_max_conns_answers_503_with_connection_close(root: Path, model: str) -> None:
    extra = ("--quiet", "--max-conns", "2")
    with http_server(root, model=model, extra=extra) as (_, _, port):
        held = [connect(port), connect(port)]
        try:
            # both held connections are served (so they count as active)
            for sock in held:
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = RawReader(sock).response()
                assert answer is not None and answer.status == 200
            with connect(port) as third:
                data = read_all(third)
            assert data.startswith(b"HTTP/1.1 503 "), data
            assert b"\r\nConnection: close\r\n" in data
            assert b"\r\nDate: " in data  # RFC 9110 §6.6.1, on this 503 too
        finally:
            for sock in held:
                sock.close()


@pytest.mark.parametrize(
    "model",
    [
        "iterative",
        "fork",
        "thread",
        "epoll",
        "asyncio",
    ],
)
def test_client_leaving_mid_file_is_not_an_error(root: Path, model: str) -> None:
    extra = ("--quiet", "--verbose")
    with http_server(root, model=model, extra=extra) as (server, _, port):
        for _ in range(3):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST with most of the 4 MiB unsent
        with connect(port) as sock:  # the server is still fine
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = RawReader(sock).response()
            assert answer is not None and answer.status == 200
    log = "\n".join(server.log)
    assert "ERROR" not in log and "Traceback" not in log, log


@pytest.mark.parametrize("model", ["thread", "epoll"])
def test_keep_alive_idle_timeout_closes(root: Path, model: str) -> None:
    extra = ("--quiet", "--idle-timeout", "1")
    with http_server(root, model=model, extra=extra) as (_, _, port), connect(port) as sock:
        sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = RawReader(sock)
        answer = reader.response()
        assert answer is not None and answer.headers["connection"] == "keep-alive"
        started = time.monotonic()
        assert reader.at_eof()  # the server closes the idle connection (EOF)
        assert time.monotonic() - started < 30


def test_many_pipelined_requests_are_answered_in_order(root: Path) -> None:
    count = 300  # more than one batch (Limits.pipeline = 100)
    with http_server(root) as (_, _, port), connect(port) as sock:
        names = ["hello.txt", "page.html", "medium.bin"]
        sock.sendall(
            b"".join(
                b"GET /%s?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (names[i % 3].encode(), i)
                for i in range(count)
            )
        )
        reader = RawReader(sock)
        sizes = [(root / n).stat().st_size for n in names]
        for i in range(count):
            answer = reader.response()
            assert answer is not None and answer.status == 200
            assert len(answer.body) == sizes[i % 3]


@pytest.mark.parametrize("root", ["/nonexistent-ipcnet-root", "/etc/hostname"])
def test_bad_web_root_is_one_clear_line(root: str) -> None:
    """A careless operator: no traceback, exit 1, and what is wrong with which path."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ipcnet", "serve", "http", root, "tcp://127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr == f"ipcnet serve: web root is not a directory: {root}\n"
