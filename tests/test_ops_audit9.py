"""Operating a server, audit 9: the Prometheus text a scraper reads, the health answer a
balancer's check reads, checked against their peers: the text exposition format 0.0.4
(prometheus_client's parser, ``promtool check metrics``, and the rules neither checks:
one HELP/TYPE per family before its samples, no duplicate series, escaping, cumulative
buckets with ``le`` as Prometheus writes it), node_exporter's listener (each scrape its
own connection, a bound of parallel requests answered 503 beyond it), and HAProxy's
``option httpchk <uri>`` (its default method is OPTIONS).

Each case pins a defect the audit found:
- the --metrics listener answered one connection at a time, each allowed 5 s to send its
  request head: one idle connection (a port scan, a TCP check, a stuck client) held
  every scrape 5 s, two held it past Prometheus's default 10 s scrape_timeout; and its
  backlog of 16 lost the SYNs of a burst of connections (1 s each to retransmit);
- ``OPTIONS /_health`` (what ``option httpchk /_health`` sends) answered 200 during
  --drain-delay: HAProxy kept routing to a draining server;
- after SIGHUP a prefork worker being replaced answered ``/_health`` on the connections
  it still served with ``503 stopping`` (and ``ipcnet_up`` 0), though the server serves
  on: a checker that keeps its connection (Envoy's reuse_connection, Go's keep-alive
  client in Traefik) took the whole server out at every reload;
- sd_notify's STATUS= said "listening on ..." through a whole drain and stop (what
  `systemctl status` shows); now it says draining, stopping, reloading as they begin;
- a HELP text with a backslash or a newline went out raw, cutting the family in two;
- the --metrics listener took a request head ending in bare LFs (RFC 9112 §2.2 allows
  a recipient to accept them, and it did end the head there) but refused its fields.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from ipcnet.drivers.prometheus import family, histogram
from ipcnet.testing import free_port
from serverkit import Server, _start, children
from test_deploy_haproxy import server_states, wait_for

BOUND = 10.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# what Prometheus 2.x sends (scrape/scrape.go, scrapeAcceptHeader)
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def _http(port: int, request: bytes, timeout: float = BOUND) -> tuple[int, dict[str, str], bytes]:
    """One raw request, read to EOF (each request here says Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in fields.items()}, body


def _get(port: int, path: str, method: str = "GET", *fields: str) -> tuple[int, dict, bytes]:
    extra = "".join(f"{f}\r\n" for f in fields)
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    return _http(port, request.encode())


@dataclass
class Web:
    server: Server
    port: int
    mport: int


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """One web server with a --metrics listener, for every case that leaves it serving."""
    root = tmp_path_factory.mktemp("root")
    (root / "a.txt").write_text("a" * 100)
    port, mport = free_port(), free_port()
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root)]
    argv += [f"tcp://127.0.0.1:{port}", "--model", "prefork", "--workers", "1", "-q"]
    argv += ["--metrics", f"tcp://127.0.0.1:{mport}"]
    server = _start(argv, 1)
    try:
        yield Web(server, port, mport)
        # the last case: the server's own stop, seen by its worker on a kept connection
        with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as kept:
            health = b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n"
            assert _exchange(kept, health)[::2] == (200, b"ok\n")
            kept.sendall(health[:-2])  # under way: the worker waits for its end
            server.proc.send_signal(signal.SIGTERM)
            up = b'ipcnet_up{service="http",model="prefork"} 0'
            wait_for(lambda: up in _get(mport, "/metrics")[2], "the master stopping", 5)
            assert _exchange(kept, b"\r\n")[::2] == (503, b"stopping\n")
    finally:
        assert server.stop() == 0, "\n".join(server.log)


# --- the text format's rules ------------------------------------------------------------

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|\Z)')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^\n]*\})? (\S+)")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


def _labels(text: str | None) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    inner, pos, out = text[1:-1], 0, []
    while pos < len(inner):
        m = LABEL.match(inner, pos)
        assert m, f"bad label set (escaping?): {text!r}"
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    names = [n for n, _ in out]
    assert len(set(names)) == len(names), f"a label twice: {text!r}"
    return tuple(out)


def check_exposition(text: str) -> dict[str, str]:
    """The rules of the text format 0.0.4 that prometheus_client's parser lets pass;
    returns each family's type."""
    assert text.endswith("\n"), "the last line ends with a line feed"
    types: dict[str, str] = {}
    helps: set[str] = set()
    seen_samples: set[str] = set()  # families whose samples began
    done: set[str] = set()  # families whose samples ended (another family's came)
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    current = None
    buckets: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[str, float]]] = {}
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.split("\n")[:-1]:
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue  # a comment
            name = parts[2]
            assert NAME.fullmatch(name), line
            assert name not in seen_samples, f"{parts[1]} after the samples of {name}"
            if parts[1] == "HELP":
                assert name not in helps, f"a second HELP for {name}"
                helps.add(name)
                doc = parts[3] if len(parts) > 3 else ""
                assert re.fullmatch(r"(?:[^\\]|\\[\\n])*", doc), f"bad escape in HELP: {line!r}"
            else:
                assert name not in types, f"a second TYPE for {name}"
                types[name] = parts[3]
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped")
                if parts[3] == "counter":
                    assert name.endswith("_total"), f"a counter not named *_total: {name}"
            continue
        m = SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), _labels(m.group(2)), float(m.group(3))
        fam = next(
            (
                f
                for f, kind in types.items()
                for suffix in SUFFIXES.get(kind, ("",))
                if name == f + suffix
            ),
            name,
        )
        assert fam in types and fam in helps, f"{name}: no TYPE and HELP before it"
        assert fam not in done, f"the samples of {fam} are not together"
        if current is not None and current != fam:
            done.add(current)
        current = fam
        seen_samples.add(fam)
        assert (name, tuple(sorted(labels))) not in series, f"a series twice: {line}"
        series.add((name, tuple(sorted(labels))))
        if types[fam] == "counter":
            assert value >= 0 and not math.isnan(value), line
        if types[fam] == "histogram":
            rest = tuple(sorted((k, v) for k, v in labels if k != "le"))
            if name.endswith("_bucket"):
                le = dict(labels)["le"]
                assert le == floatToGoString(float(le)), f"le={le!r} is not as Prometheus writes"
                buckets.setdefault((fam, rest), []).append((le, value))
            elif name.endswith("_sum"):
                sums[(fam, rest)] = value
            else:
                counts[(fam, rest)] = value
    for key, row in buckets.items():
        bounds = [float(le) for le, _ in row]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), key
        assert row[-1][0] == "+Inf", f"{key}: the last bucket is not +Inf"
        values = [v for _, v in row]
        assert values == sorted(values), f"{key}: buckets not cumulative"
        assert counts[key] == row[-1][1], f"{key}: _count is not the +Inf bucket"
        assert key in sums, f"{key}: no _sum"
    return types


def _lint(text: str) -> None:
    """The peers' own checks: prometheus_client's parser, and promtool when installed."""
    parsed = list(text_string_to_metric_families(text))
    assert parsed
    if shutil.which("promtool"):
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert lint.returncode == 0 and not lint.stdout + lint.stderr, lint


@pytest.mark.xdist_group("ops-audit9-web")  # one server for the cases that share it
def test_both_expositions_follow_the_text_format_as_a_prometheus_scrape_reads_them(
    web: Web,
) -> None:
    """Scraped as Prometheus scrapes (its Accept asks for OpenMetrics first): the answer
    is the 0.0.4 text format, by its Content-Type (ipcnet speaks no OpenMetrics; like
    client_golang without EnableOpenMetrics it answers text, never 406), on GET and HEAD."""
    for _ in range(3):
        assert _get(web.port, "/a.txt")[0] == 200
    assert _get(web.port, "/nope")[0] == 404
    accept = f"Accept: {PROMETHEUS_ACCEPT}"
    for port, path in ((web.port, "/_metrics"), (web.mport, "/metrics")):
        status, fields, body = _get(port, path, "GET", accept, "Accept-Encoding: gzip")
        assert status == 200 and fields["content-type"] == CONTENT_TYPE, (path, fields)
        assert "content-encoding" not in fields
        text = body.decode()
        assert int(fields["content-length"]) == len(body)
        types = check_exposition(text)
        _lint(text)
        assert types["ipcnet_connection_duration_seconds"] == "histogram"
        if path == "/_metrics":
            assert types["ipcnet_http_request_duration_seconds"] == "histogram"
            assert types["ipcnet_http_requests_total"] == "counter"
        status, fields, body = _get(port, path, "HEAD", accept)
        assert (status, fields["content-type"], body) == (200, CONTENT_TYPE, b"")


def test_the_text_format_escapes_help_and_label_values() -> None:
    """0.0.4: in HELP a backslash and a line feed are escaped (\\\\, \\n); in a label value
    the quote too. What goes in comes back out of prometheus_client's parser."""
    doc = "a back\\slash,\na second line"
    value = 'q"uote \\ and\nnewline'
    text = family("odd", "gauge", doc, [({"service": value}, 1)])
    text += histogram("odd_seconds", doc, (0.5, 1.0), [1, 0, 1], 3.0, {"service": value})
    check_exposition(text)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["ipcnet_odd"].documentation == doc
    assert families["ipcnet_odd"].samples[0].labels == {"service": value}
    assert families["ipcnet_odd_seconds"].documentation == doc
    le = [s.labels["le"] for s in families["ipcnet_odd_seconds"].samples if "le" in s.labels]
    assert le == ["0.5", "1.0", "+Inf"]


@pytest.mark.xdist_group("ops-audit9-web")  # one server for the cases that share it
def test_the_metrics_listener_answers_a_scrape_while_other_connections_stall(web: Web) -> None:
    """node_exporter serves each connection on its own: an idle or trickling connection
    never holds a scrape (here it held each one 5 s: two idle ones pushed a scrape past
    Prometheus's default 10 s scrape_timeout). Past a bound of parallel requests
    (node_exporter's --web.max-requests, 40) a connection is answered 503 at once."""
    idle = [socket.create_connection(("127.0.0.1", web.mport), timeout=BOUND) for _ in range(3)]
    try:
        idle[0].sendall(b"GET /metr")  # a head cut short, that never ends
        # answered before the 5 s the idle ones may take for their heads (it waited 15 s)
        status, _, body = _http(web.mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 4.0)
        assert status == 200 and b"ipcnet_up" in body
        # a bare-LF head with fields: RFC 9112 §2.2 lets a recipient take LF as the end
        # of a line; this listener ends the head at "\n\n", so it reads its fields too
        status, _, body = _http(web.mport, b"GET /metrics HTTP/1.0\nHost: x\nAccept: */*\n\n")
        assert status == 200 and b"ipcnet_up" in body
        more = [
            socket.create_connection(("127.0.0.1", web.mport), timeout=BOUND) for _ in range(40)
        ]
        idle += more
        extra = socket.create_connection(("127.0.0.1", web.mport), timeout=BOUND)
        idle.append(extra)
        answer = b""
        while chunk := extra.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
    finally:
        for s in idle:
            s.close()
    # the slots come free as those connections close: scrapes are answered again
    wait_for(lambda: _get(web.mport, "/metrics")[0] == 200, "a scrape answered again", 5)


@pytest.mark.skipif(not shutil.which("haproxy"), reason="needs haproxy (Debian package haproxy)")
def test_haproxys_default_check_method_sees_the_drain(tmp_path: Path) -> None:
    """HAProxy's manual, ``option httpchk <uri>``: "When not set, the OPTIONS method is
    used". ``option httpchk /_health`` sends ``OPTIONS /_health HTTP/1.0``; during
    --drain-delay it must fail as GET and HEAD do (503, the body saying why), or the
    balancer never routes away. The server still serves files meanwhile."""
    (tmp_path / "a.txt").write_text("a")
    port, sock = free_port(), tmp_path / "h.sock"
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path)]
    argv += [f"tcp://127.0.0.1:{port}", "--model", "epoll", "-q", "--drain-delay", "30"]
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # as systemd's NOTIFY_SOCKET
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(BOUND)
    server = _start(argv, 1, env=dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify")))
    (tmp_path / "h.cfg").write_text(
        f"global\n    stats socket {sock} mode 600 level admin\n"
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
        "    timeout server 5s\n"
        "backend ipcnet\n    option httpchk /_health\n"
        f"    server web1 127.0.0.1:{port} check inter 50 fall 1 rise 1\n"
    )
    haproxy = subprocess.Popen(
        ["haproxy", "-db", "-f", str(tmp_path / "h.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    draining = False
    try:
        status, fields, body = _get(port, "/_health", "OPTIONS")
        assert (status, body) == (200, b"ok\n") and "GET" in fields["allow"]
        wait_for(lambda: sock.exists() and server_states(sock) == {"web1": "UP"}, "UP", 5)
        time.sleep(0.2)  # a few checks: still UP
        assert server_states(sock) == {"web1": "UP"}
        server.proc.send_signal(signal.SIGTERM)
        draining = True
        wait_for(lambda: _get(port, "/_health")[0] == 503, "draining", 5)
        for method in ("OPTIONS", "GET", "HEAD"):
            status, fields, body = _get(port, "/_health", method)
            assert status == 503, method
            assert body == (b"" if method == "HEAD" else b"draining\n"), method
        assert _get(port, "/a.txt")[0] == 200  # still serving
        wait_for(lambda: server_states(sock)["web1"].startswith("DOWN"), "web1 DOWN", 5)
        # sd_notify(3) STATUS=, as `systemctl status` shows it: not "listening" any more
        said = [manager.recv(4096).decode().split("\n") for _ in range(2)]
        assert "READY=1" in said[0] and f"STATUS=listening on tcp://127.0.0.1:{port}" in said[0]
        assert said[1] == ["STOPPING=1", "STATUS=draining: health checks fail for 30 s"]
    finally:
        haproxy.terminate()
        haproxy.wait(10)
        if not draining:  # stop() signals once: during the delay, the stop begins then
            server.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: _get(port, "/_health")[0] == 503, "draining", 5)
        assert server.stop() == 0, "\n".join(server.log)
        manager.settimeout(0)
        lines = []
        with contextlib.suppress(BlockingIOError):
            while True:
                lines.append(manager.recv(4096).decode())
        manager.close()
    assert lines[-1].startswith("STOPPING=1\nSTATUS=stopping: "), lines


def _exchange(sock: socket.socket, request: bytes) -> tuple[int, bytes, bytes]:
    """One request on a kept connection: status, head, body (by Content-Length)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    size = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < size:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(head.split(b" ")[1]), head, body


@pytest.mark.xdist_group("ops-audit9-web")  # one server for the cases that share it
def test_a_worker_replaced_by_sighup_answers_health_for_the_server(web: Web) -> None:
    """SIGHUP replaces a prefork worker; the old one finishes the requests it has under
    way (here: heads whose last line comes after its SIGTERM). The server
    serves on, so a check on such a connection is answered ok and ``ipcnet_up`` is 1, as
    after a SIGUSR2 hand-over; only the server's own stop is ``503 stopping``."""
    health = b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n"
    metrics = b"GET /_metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    pid, stderr = web.server.proc.pid, web.server.proc.stderr
    assert stderr is not None
    with (
        socket.create_connection(("127.0.0.1", web.port), timeout=BOUND) as kept,
        socket.create_connection(("127.0.0.1", web.port), timeout=BOUND) as other,
    ):
        assert _exchange(kept, health)[::2] == (200, b"ok\n")  # both on the one worker
        assert _exchange(other, health)[::2] == (200, b"ok\n")
        (old,) = children(pid)
        kept.sendall(health[:-2])  # requests under way: the old worker waits for their ends
        other.sendall(metrics[:-2])
        web.server.proc.send_signal(signal.SIGHUP)
        while "old ones drain" not in (line := stderr.readline()):  # SIGTERM sent to it
            assert line, "the server ended"
            web.server.log.append(line)
        time.sleep(0.1)  # it takes its SIGTERM: stopping, it finishes these requests
        status, _, body = _exchange(kept, b"\r\n")
        assert (status, body) == (200, b"ok\n")
        status, _, body = _exchange(other, b"\r\n")
        assert status == 200 and b'ipcnet_up{service="http",model="prefork"} 1' in body
    wait_for(lambda: old not in children(pid), "the old worker gone", 5)
    assert _get(web.port, "/_health")[::2] == (200, b"ok\n")
