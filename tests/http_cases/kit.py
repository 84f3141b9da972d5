"""Helpers for the web server tests: a site to serve, servers, raw-socket clients."""

from __future__ import annotations

import gzip
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ipcnet.drivers import MODELS as REGISTRY
from serverkit import Server, _start

MODELS = list(REGISTRY)
SMALL = b"hello, world\n"
MEDIUM = bytes(range(256)) * 640  # 160 KiB: over the in-memory limit, sent with sendfile
BIG_SIZE = 4 * 1024 * 1024


def make_site(base: Path | None = None) -> Path:
    """A small tree with every kind of thing the server must handle (and refuse)."""
    root = Path(base or tempfile.mkdtemp(prefix="ipcnet-www-", dir="/tmp"))
    (root / "hello.txt").write_bytes(SMALL)
    (root / "medium.bin").write_bytes(MEDIUM)
    with open(root / "big.bin", "wb") as f:
        f.truncate(BIG_SIZE)  # sparse: cheap to make, still 4 MiB to send
    (root / "page.html").write_text("<!doctype html><title>page</title><p>a page</p>\n")
    (root / "style.css").write_text("body { color: #333 }\n" * 200)
    (root / "style.css.gz").write_bytes(gzip.compress((root / "style.css").read_bytes()))
    (root / "empty.txt").write_bytes(b"")
    docs = root / "docs"
    docs.mkdir()
    (docs / "index.html").write_text("<!doctype html><title>docs</title><p>docs index</p>\n")
    files = root / "files"
    files.mkdir()
    (files / "a b.txt").write_text("space\n")
    (files / "<script>alert(1)<\\script>.txt").write_text("xss\n")
    (files / "ünï.txt").write_text("unicode\n")
    (files / "sub").mkdir()
    outside = root.parent / (root.name + "-secret")
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("SECRET\n")
    os.symlink(outside / "secret.txt", root / "link-out.txt")
    os.symlink(outside, root / "dir-out")
    os.symlink(root / "hello.txt", root / "link-in.txt")
    os.mkfifo(root / "fifo")
    return root


def remove_site(root: Path) -> None:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(root.parent / (root.name + "-secret"), ignore_errors=True)


@contextmanager
def site() -> Iterator[Path]:
    root = make_site()
    try:
        yield root
    finally:
        remove_site(root)


@contextmanager
def http_server(
    root: Path, model: str = "epoll", extra: tuple[str, ...] = ("--quiet",), **popen: object
) -> Iterator[tuple[Server, str, int]]:
    """`ipcnet serve http ROOT tcp://127.0.0.1:0 --model M`; SIGTERM at the end, must exit 0."""
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root), "tcp://127.0.0.1:0"]
    argv += ["--model", model, "--workers", "2", *extra]
    server = _start(argv, 1, **popen)
    try:
        host, _, port = server.url("tcp").removeprefix("tcp://").rpartition(":")
        yield server, host, int(port)
    finally:
        code = server.stop()
        assert code == 0, "\n".join(server.log)


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> bytes:
    """Everything until EOF (raises on a reset: a reset is a failure in these tests)."""
    chunks = []
    total = 0
    while total < limit:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_head: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_head = raw_head


class RawReader:
    """Read HTTP/1.1 responses (Content-Length framed) off a raw socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 16)
        self.buf += chunk
        return bool(chunk)

    def response(self, head_only: bool = False) -> Response | None:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                if self.buf:
                    raise AssertionError(f"truncated response head: {self.buf[:200]!r}")
                return None
        raw_head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only or status == 304 else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self._fill():
                raise AssertionError("truncated response body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return Response(status, headers, body, raw_head)

    def at_eof(self) -> bool:
        """True when the server closed (EOF, never a reset) with nothing more sent."""
        if self.buf:
            return False
        return not self._fill()


PROBE = b"GET /hello.txt HTTP/1.1\r\nHost: probe\r\n\r\n"


def exchange(port: int, raw: bytes, head_only: bool = False) -> tuple[Response | None, bool]:
    """Send raw bytes, read one response; then say whether the server closed the connection.

    A keep-alive connection answers a probe request; a closing one gives EOF (our server
    half-closes after its last answer, so the EOF comes at once, never a reset).
    """
    with connect(port) as sock:
        sock.sendall(raw)
        reader = RawReader(sock)
        response = reader.response(head_only)
        try:
            sock.sendall(PROBE)
        except (BrokenPipeError, ConnectionResetError):
            return response, True
        try:
            probe = reader.response()
        except ConnectionResetError:
            return response, True  # closed without lingering: our probe hit a closed socket
        return response, probe is None


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
