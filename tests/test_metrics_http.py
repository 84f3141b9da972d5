"""The web server's /_health and /_metrics (issue 14), read by real clients; the
exposition is checked with prometheus_client's own text parser."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipcnet.protocols.proxy import encode_v2
from ipcnet.testing import free_port
from serverkit import _start


@contextmanager
def web(root: Path, port: int, model: str = "epoll", *extra: str) -> Iterator[None]:
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root)]
    argv += [f"tcp://127.0.0.1:{port}", "--model", model, "--workers", "2", *extra]
    server = _start(argv, 1)
    try:
        yield
    finally:
        assert server.stop() == 0, "\n".join(server.log)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.mark.parametrize("model", ["epoll", "prefork"])
def test_health_and_prometheus_metrics(model: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a" * 1024)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with web(tmp_path, port, model, "-q"):
        assert _get(base + "/_health") == (200, "text/plain; charset=utf-8", "ok\n")
        for _ in range(5):
            assert _get(base + "/a.txt")[0] == 200
        assert _get(base + "/missing")[0] == 404
        status, ctype, text = _get(base + "/_metrics")
    assert status == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = families["ipcnet_http_requests"]
    assert requests.type == "counter"
    by_code = {s.labels["code"]: s.value for s in requests.samples}
    assert by_code["2xx"] >= 6 and by_code["4xx"] == 1  # /_health, 5 files; the 404
    assert all(s.name == "ipcnet_http_requests_total" for s in requests.samples)
    latency = families["ipcnet_http_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf"
    values = [s.value for s in buckets]
    assert values == sorted(values)  # cumulative
    count = next(s.value for s in latency.samples if s.name.endswith("_count"))
    assert count == values[-1] == sum(by_code.values())
    assert any(s.name.endswith("_sum") for s in latency.samples)
    assert families["ipcnet_http_response_body_bytes"].samples[0].value >= 5 * 1024
    assert families["ipcnet_connections_accepted"].samples[0].value >= 7
    assert families["ipcnet_sent_bytes"].type == "counter"
    assert families["ipcnet_up"].samples[0].value == 1


def test_access_log_shows_the_client_from_the_proxy_header(tmp_path: Path) -> None:
    import socket

    (tmp_path / "a.txt").write_text("a")
    log = tmp_path / "access.log"
    port = free_port()
    with web(tmp_path, port, "epoll", "--accept-proxy", "--access-log", str(log)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            header = encode_v2(("192.0.2.44", 50000), ("127.0.0.1", port))
            s.sendall(header + b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
    assert log.read_text().startswith("192.0.2.44 - - [")
