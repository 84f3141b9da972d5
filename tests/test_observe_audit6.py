"""Audit round 6 of what the servers tell operators: the access log against nginx (the
same raw requests to both), the counters that /_metrics and the --metrics listener
expose as Prometheus counters (which must never go backwards: a scraper takes any
decrease for a restart), and the status page against the requests made."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipcnet.drivers.counters import Counters
from ipcnet.testing import free_port
from test_scale_conformance import NGINX_CONF


def test_counters_never_go_backwards_while_a_worker_row_is_retired() -> None:
    """Prometheus takes a counter that decreases for a reset (rate() then counts the whole
    value again). A prefork master retires a replaced worker's row into row 0 while a
    scrape (another process, or the master's --metrics thread) adds up the rows: the
    total seen must not drop in between, nor count the row twice."""
    counters = Counters(workers=1)
    pid = os.fork()
    if pid == 0:  # the master's part: a worker that served, ended and was retired, again
        try:
            row = counters.row(1)
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                row.set("pid", 1)
                row.opened()
                row.closed(10, 10, 0.001)
                counters.retire(1)
        finally:
            os._exit(0)
    previous: dict[str, int] = {}
    wrong = []
    end = time.monotonic() + 1.0
    try:
        while time.monotonic() < end:
            snap = counters.snapshot()
            now = {k: snap[k] for k in ("accepted", "handled", "bytes_in", "bytes_out")}
            now["durations"] = sum(snap["connection_seconds"]["buckets"])
            wrong += [(k, previous[k], v) for k, v in now.items() if v < previous.get(k, 0)]
            previous = now
    finally:
        os.waitpid(pid, 0)
    final = counters.snapshot()
    assert wrong == [], wrong[:5]
    assert final["accepted"] == final["handled"] == final["bytes_in"] // 10 > 0


# --- the access log against nginx ----------------------------------------------------------

CLF = re.compile(
    rb'^(\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(.*)" (\d{3}) (\d+|-)$'
)


@dataclass
class Pair:
    """nginx (its CLF log_format) and ipcnet serving the same directory, each with a log."""

    root: Path
    ports: tuple[int, int]  # nginx's, ours
    logs: tuple[Path, Path]

    def lines(self, which: int, count: int) -> list[tuple[bytes, ...]]:
        """(client, request, status, size) of the first ``count`` lines of a log."""
        deadline = time.monotonic() + 10
        log = self.logs[which]
        while len(lines := log.read_bytes().splitlines() if log.exists() else []) < count:
            assert time.monotonic() < deadline, lines
            time.sleep(0.02)
        found = [CLF.match(line) for line in lines]
        assert all(found), lines
        return [m.groups() for m in found if m is not None]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    if not shutil.which("nginx"):
        pytest.skip("needs nginx (Debian package nginx)")
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.txt").write_text("hello\n")
    (www / "big.bin").write_bytes(b"x" * (8 << 20))
    nginx_port, our_port = free_port(), free_port()
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(d=tmp_path, port=nginx_port))
    nginx = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stderr=subprocess.DEVNULL,
    )
    ours_log = tmp_path / "ours.log"
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(www)]
    argv += [f"tcp://127.0.0.1:{our_port}", "--access-log", str(ours_log)]
    ours = subprocess.Popen(argv, stderr=subprocess.PIPE)
    try:
        assert ours.stderr is not None and b"listening on" in ours.stderr.readline()
        deadline = time.monotonic() + 10
        while not (tmp_path / "nginx.pid").exists():
            assert time.monotonic() < deadline, "nginx never started"
            time.sleep(0.02)
        yield Pair(www, (nginx_port, our_port), (tmp_path / "access.log", ours_log))
    finally:
        for proc in (nginx, ours):
            proc.terminate()
            proc.wait(20)


def _send(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_a_request_head_cut_by_eof_is_logged_as_nginx_logs_it(pair: Pair) -> None:
    """A client that sends part of a request head and half-closes: nginx answers nothing
    and logs it (400, its first line as it came); we logged nothing at all, so a scanner
    that never finishes a request left no trace in the log nor in the counters."""
    for which, port in enumerate(pair.ports):
        for data in (b"GET /a.txt HT", b"GET /a.txt HTTP/1.1\r\nHost: x\r\n"):
            assert _send(port, data) == b""
        _send(port, b'\x16\x03\x01"x\\')  # nginx refuses it at once, before the EOF
        _send(port, b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = [(client, request, status) for client, request, status, _ in pair.lines(which, 4)]
        assert got[:3] == [
            (b"127.0.0.1", b"GET /a.txt HT", b"400"),
            (b"127.0.0.1", b"GET /a.txt HTTP/1.1", b"400"),
            (b"127.0.0.1", b"\\x16\\x03\\x01\\x22x\\x5C", b"400"),
        ], which
        assert got[3] == (b"127.0.0.1", b"GET /a.txt HTTP/1.1", b"200")
