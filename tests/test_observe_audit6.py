"""Audit round 6 of what the servers tell operators: the access log against nginx (the
same raw requests to both), the counters that /_metrics and the --metrics listener
expose as Prometheus counters (which must never go backwards: a scraper takes any
decrease for a restart), and the status page against the requests made."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipcnet.drivers.counters import Counters
from ipcnet.drivers.engine import Engine
from ipcnet.protocols.base import Actions, BaseSession, Sent
from ipcnet.testing import free_port
from test_robust_differential import _exchange
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
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    """nginx and ipcnet under the model given by indirect parametrization (epoll)."""
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
    argv += ["--model", getattr(request, "param", "epoll")]
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


def test_a_request_head_cut_by_eof_is_logged_as_nginx_logs_it(pair: Pair) -> None:
    """A client that sends part of a request head and half-closes: nginx answers nothing
    and logs it (400, its first line as it came); we logged nothing at all, so a scanner
    that never finishes a request left no trace in the log nor in the counters."""
    for which, port in enumerate(pair.ports):
        for data in (b"GET /a.txt HT", b"GET /a.txt HTTP/1.1\r\nHost: x\r\n"):
            assert _exchange(port, data) == b""
        _exchange(port, b'\x16\x03\x01"x\\')  # nginx refuses it at once, before the EOF
        _exchange(port, b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = [(client, request, status) for client, request, status, _ in pair.lines(which, 4)]
        assert got[:3] == [
            (b"127.0.0.1", b"GET /a.txt HT", b"400"),
            (b"127.0.0.1", b"GET /a.txt HTTP/1.1", b"400"),
            (b"127.0.0.1", b"\\x16\\x03\\x01\\x22x\\x5C", b"400"),
        ], which
        assert got[3] == (b"127.0.0.1", b"GET /a.txt HTTP/1.1", b"200")


HOSTILE = [
    b'GET /a"b\\c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    b'GET /" 200 1 "x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',  # a forged field
    b"GET /a\x01\x1b[31m\x7f HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /\xc3\xa9\xe2\x80\xae HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # UTF-8, RLO
    b"GET /a\x00b] [x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /a%0d%0a127.0.0.1 - - HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",  # a TLS ClientHello's start
    b"GET /a.txt HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\\\\\\\r\n\r\n",
    b"GET /a.txt HT",  # cut by EOF
    b"GET /" + b"\xff" * 900 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
]


@pytest.mark.skipif(not shutil.which("goaccess"), reason="needs goaccess (Debian package)")
def test_goaccess_parses_every_line_hostile_requests_made(pair: Pair, tmp_path: Path) -> None:
    """A log analyser reads the log as CLF (goaccess --log-format=COMMON): every line a
    hostile request line made (quotes, backslashes, controls, UTF-8, a forged field, TLS
    bytes) parses, one line per request. (goaccess reads lines of up to 4 KiB: nginx's
    longer lines fail it the same way.)"""
    for data in HOSTILE:
        _exchange(pair.ports[1], data)
    lines = pair.lines(1, len(HOSTILE))
    assert len(lines) == len(HOSTILE)
    report = tmp_path / "report.json"
    argv = ["goaccess", str(pair.logs[1]), "--log-format=COMMON", "--no-global-config"]
    run = subprocess.run(
        [*argv, "-o", str(report)],
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    general = json.loads(report.read_text())["general"]
    assert (general["total_requests"], general["failed_requests"]) == (len(HOSTILE), 0)


def _read_then_reset(port: int, request: bytes, count: int) -> int:
    """Send ``request``, read ``count`` bytes of the answer, then reset the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(request)
        got = b""
        while len(got) < count and (chunk := s.recv(65536)):
            got += chunk
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return len(got) - got.index(b"\r\n\r\n") - 4  # the body bytes received


@pytest.mark.parametrize("pair", ["epoll", "thread"], indirect=True)
def test_a_response_cut_short_logs_the_body_bytes_sent_as_nginx_does(pair: Pair) -> None:
    """nginx's $body_bytes_sent is what went out: a client that resets halfway through an
    8 MiB file is logged with about what it got, not 8 MiB. We logged the whole size (and
    counted it in http_response_body_bytes_total) at the moment the response was queued."""
    size = 8 << 20
    request = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    for which, port in enumerate(pair.ports):
        received = _read_then_reset(port, request, 200_000)
        _exchange(port, b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # the order of the two lines is the order the servers learned each outcome: a
        # thread blocked in sendfile may learn of the reset after the next one is served
        lines = sorted(pair.lines(which, 2), key=lambda f: f[1] != b"GET /big.bin HTTP/1.1")
        (_, line, status, sent), after = lines
        assert (line, status) == (b"GET /big.bin HTTP/1.1", b"200")
        assert received <= int(sent) < size, (which, received, sent)
        assert after[1:3] == (b"GET /a.txt HTTP/1.1", b"200")


def test_the_engine_tells_a_sent_mark_what_never_went_out() -> None:
    """Sent(then): then(0) once the output before it went out; at an end before that,
    the bytes before it that did not (the in-flight buffer's rest included)."""
    told: list[int] = []

    class Two(BaseSession):
        def feed(self, data: bytes) -> Actions:
            return [b"head", b"bodybody", Sent(told.append), b"next", Sent(told.append)]

    engine = Engine(Two())
    engine.feed(b"x")
    assert engine.step() == b"head"
    engine.sent(4)
    assert engine.step() == b"bodybody"
    engine.sent(8)
    assert engine.step() == b"next" and told == [0]  # the first mark was reached
    engine.sent(1)
    engine.end()
    assert told == [0, 3]
