"""Peers for the relay tests: real servers on real sockets, and a relay CLI in a subprocess."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import ipcnet

SRC = str(Path(ipcnet.__file__).resolve().parent.parent)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


class Server:
    """A TCP (or unix) server running ``handle(conn)`` on a thread per connection."""

    def __init__(self, handle: Callable[[socket.socket], None], unix: str | None = None) -> None:
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix)
            self.url = f"unix://{unix}"
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
            self.url = f"tcp://127.0.0.1:{self.port}"
        self.sock.listen(128)
        self.handle = handle
        self.accepted = 0
        self.errors: list[BaseException] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.handle(conn)
        except OSError as exc:
            self.errors.append(exc)

    def close(self) -> None:
        self.sock.close()


def echo(conn: socket.socket) -> None:
    """Echo until EOF, then half-close."""
    while data := conn.recv(1 << 18):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def recv_all(sock: socket.socket) -> bytes:
    parts = []
    while data := sock.recv(1 << 20):
        parts.append(data)
    return b"".join(parts)


@contextmanager
def server(handle: Callable[[socket.socket], None], unix: str | None = None) -> Iterator[Server]:
    s = Server(handle, unix)
    try:
        yield s
    finally:
        s.close()


def both_ways(port: int, size: int, host: str = "127.0.0.1") -> tuple[str, str, int]:
    """Send ``size`` random bytes through an echo path while reading; (sha sent, sha got, n)."""
    data = os.urandom(1 << 20)
    sent = hashlib.sha256()
    got = hashlib.sha256()
    with socket.create_connection((host, port)) as sock:

        def writer() -> None:
            left = size
            while left:
                chunk = data[: min(left, len(data))]
                sock.sendall(chunk)
                sent.update(chunk)
                left -= len(chunk)
            sock.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=writer)
        t.start()
        n = 0
        while chunk := sock.recv(1 << 20):
            got.update(chunk)
            n += len(chunk)
        t.join()
    return sent.hexdigest(), got.hexdigest(), n


class RelayProcess:
    """``ipcnet relay ...`` in a subprocess; its listening address from its first line."""

    def __init__(self, *args: str, prefix: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "ipcnet", "relay", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if not line.startswith("ipcnet relay: "):
            self.proc.kill()
            rest = self.proc.stderr.read()
            raise AssertionError(f"relay did not start: {line}{rest}")
        self.address = line.split()[2]
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def wait_lines(self, count: int, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        return code


@contextmanager
def relay_process(*args: str) -> Iterator[RelayProcess]:
    r = RelayProcess(*args)
    try:
        yield r
    finally:
        r.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
