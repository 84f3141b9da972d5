"""Real clients against the web server: curl, urllib, httpx (h11-based); precompressed
files, multipart ranges, the access log, and the status page's counters."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from http_cases.kit import MEDIUM, SMALL, http_server, make_site, remove_site

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = make_site()
    yield path
    remove_site(path)


@pytest.fixture(scope="module")
def base(root: Path) -> Iterator[str]:
    with http_server(root) as (_, host, port):
        yield f"http://{host}:{port}"


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", "--max-time", "20", *args], capture_output=True, check=True)


@needs_curl
def test_curl_get_head_and_keep_alive(base: str) -> None:
    out = curl("-v", f"{base}/hello.txt", f"{base}/medium.bin", "-o", "/dev/null", "-o", "-")
    assert out.stdout == MEDIUM
    assert b"Re-using existing connection" in out.stderr or b"Reusing existing" in out.stderr
    head = curl("-I", f"{base}/hello.txt").stdout
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Length: %d\r\n" % len(SMALL) in head
    assert b"\r\nAccept-Ranges: bytes\r\n" in head


@needs_curl
def test_curl_http10(base: str) -> None:
    out = curl("-0", "-v", f"{base}/hello.txt")
    assert out.stdout == SMALL
    assert b"HTTP/1.1 200 OK" in out.stderr  # we answer as 1.1, as RFC 9110 §2.5 allows


@needs_curl
def test_curl_ranges_single_and_multipart(base: str) -> None:
    assert curl("-r", "2-6", f"{base}/medium.bin").stdout == MEDIUM[2:7]
    out = curl("-i", "-r", "0-1,4-6,-3", f"{base}/hello.txt").stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    boundary = re.search(rb"multipart/byteranges; boundary=(\S+)", head)
    assert boundary is not None
    parts = body.split(b"--" + boundary.group(1))
    assert parts[-1] == b"--\r\n"
    payloads = [p.partition(b"\r\n\r\n")[2].removesuffix(b"\r\n") for p in parts[1:-1]]
    assert payloads == [SMALL[0:2], SMALL[4:7], SMALL[-3:]]
    assert b"Content-Range: bytes 10-12/%d" % len(SMALL) in body
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    assert length == len(body)


@needs_curl
def test_curl_precompressed_sibling(root: Path, base: str) -> None:
    plain = (root / "style.css").read_bytes()
    out = curl("-i", "--compressed", f"{base}/style.css").stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head and b"Vary: Accept-Encoding" in head
    assert b"Content-Type: text/css; charset=utf-8" in head
    assert body == plain  # curl decompressed what we sent from style.css.gz
    raw = curl("-H", "Accept-Encoding: gzip", f"{base}/style.css").stdout
    assert gzip.decompress(raw) == plain
    identity = curl("-i", f"{base}/style.css").stdout
    assert b"Content-Encoding" not in identity.partition(b"\r\n\r\n")[0]
    assert identity.endswith(plain)
    refused = curl("-i", "-H", "Accept-Encoding: gzip;q=0", f"{base}/style.css").stdout
    assert b"Content-Encoding" not in refused.partition(b"\r\n\r\n")[0]


@needs_curl
def test_curl_conditional(base: str, tmp_path: Path) -> None:
    etags = tmp_path / "etags"
    curl("--etag-save", str(etags), f"{base}/hello.txt", "-o", "/dev/null")
    out = curl("-i", "--etag-compare", str(etags), f"{base}/hello.txt").stdout
    assert out.startswith(b"HTTP/1.1 304")


def test_urllib_listing_and_errors(base: str) -> None:
    with urllib.request.urlopen(f"{base}/files/", timeout=10) as r:
        page = r.read().decode()
    assert r.status == 200
    assert 'href="a%20b.txt"' in page
    assert "&lt;script&gt;alert(1)&lt;\\script&gt;.txt" in page  # escaped, not markup
    assert "<script>" not in page
    assert "%C3%BCn%C3%AF.txt" in page
    with urllib.request.urlopen(f"{base}/files/%C3%BCn%C3%AF.txt", timeout=10) as r:
        assert r.read() == b"unicode\n"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/nothing", timeout=10)
    assert err.value.code == 404
    with urllib.request.urlopen(f"{base}/docs", timeout=10) as r:  # follows the 301
        assert r.url.endswith("/docs/") and b"docs index" in r.read()


def test_httpx_keep_alive_and_status_json(base: str) -> None:
    httpx = pytest.importorskip("httpx")
    with httpx.Client(base_url=base, timeout=10) as client:
        before = client.get("/_status.json").json()
        for _ in range(20):
            r = client.get("/hello.txt")
            assert r.status_code == 200 and r.content == SMALL
        assert client.head("/medium.bin").headers["content-length"] == str(len(MEDIUM))
        assert client.get("/nothing").status_code == 404
        after = client.get("/_status.json").json()
    assert after["requests"]["total"] >= before["requests"]["total"] + 22
    assert after["requests"]["by_class"]["2xx"] >= before["requests"]["by_class"]["2xx"] + 21
    assert after["requests"]["by_class"]["4xx"] >= before["requests"]["by_class"]["4xx"] + 1
    assert after["model"] == "epoll"
    assert after["connections"]["total"] >= 1
    assert after["requests"]["per_second_10s"] >= 0
    assert any(s["state"] == "LISTEN" for s in after["sockets"])
    assert any(s["state"] == "ESTABLISHED" for s in after["sockets"])


def test_status_html_refreshes_itself(base: str) -> None:
    with urllib.request.urlopen(f"{base}/_status", timeout=10) as r:
        page = r.read().decode()
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert r.headers["Cache-Control"] == "no-store"
    assert "<meta http-equiv=refresh content=2>" in page
    assert "connections now" in page and "LISTEN" in page


def test_no_status_and_access_log(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    extra = ("--no-status", "--access-log", str(log))
    with http_server(root, extra=extra) as (server, host, port):
        base = f"http://{host}:{port}"
        with urllib.request.urlopen(f"{base}/hello.txt", timeout=10) as r:
            assert r.read() == SMALL
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/_status.json", timeout=10)
        assert err.value.code == 404
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/a%22b%0d%0ainjected", timeout=10)
    lines = log.read_text().splitlines()
    clf = re.compile(
        r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "([^"]*)" (\d{3}) (\d+|-)$'
    )
    parsed = [clf.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m.group(1), m.group(2), m.group(3)) for m in parsed[:2]] == [  # type: ignore[union-attr]
        ("GET /hello.txt HTTP/1.1", "200", str(len(SMALL))),
        ("GET /_status.json HTTP/1.1", "404", parsed[1].group(3)),  # type: ignore[union-attr]
    ]
    assert len(lines) == 3  # the CR/LF in the third target did not make a line of its own
    assert not any("access" in line for line in server.log)  # nothing of it on stderr


def test_access_log_on_stderr_and_quiet(root: Path) -> None:
    with http_server(root, extra=()) as (server, host, port):
        with urllib.request.urlopen(f"http://{host}:{port}/hello.txt", timeout=10) as r:
            r.read()
    assert any('"GET /hello.txt HTTP/1.1" 200 13' in line for line in server.log)
    with http_server(root, extra=("--quiet",)) as (server, host, port):
        with urllib.request.urlopen(f"http://{host}:{port}/hello.txt", timeout=10) as r:
            r.read()
    assert not any("GET /hello.txt" in line for line in server.log)


def test_status_counts_across_prefork_workers(root: Path) -> None:
    with http_server(root, model="prefork") as (_, host, port):
        base = f"http://{host}:{port}"
        deadline = time.monotonic() + 20  # the master listens first; workers start after
        while len(_worker_pids(base)) < 2:
            assert time.monotonic() < deadline, "the two workers never both listened"
            time.sleep(0.05)
        for _ in range(10):
            with urllib.request.urlopen(f"{base}/hello.txt", timeout=10) as r:
                r.read()
        with urllib.request.urlopen(f"{base}/_status.json", timeout=10) as r:
            info = json.load(r)
    assert info["model"] == "prefork" and info["workers"] == 2
    assert info["requests"]["by_class"]["2xx"] >= 10
    workers = info["per_worker"]
    assert len({w["pid"] for w in workers}) == 2 and info["pid"] in {w["pid"] for w in workers}
    assert sum(w["handled"] for w in workers) >= 10  # the 10 requests, and the waits
    assert {w["state"] for w in workers} <= {"idle", "busy"}


@needs_curl
def test_curl_methods_options_and_expect(base: str) -> None:
    """RFC 9110 §9.3.7 (OPTIONS), §15.5.6 (405 + Allow), §9.1 (501), §10.1.1 (Expect)."""
    out = curl("-i", "-X", "OPTIONS", f"{base}/hello.txt").stdout
    assert out.startswith(b"HTTP/1.1 200") and b"\r\nAllow: GET, HEAD, OPTIONS\r\n" in out
    out = curl("-i", "-X", "OPTIONS", "--request-target", "*", f"{base}/").stdout
    assert out.startswith(b"HTTP/1.1 200") and b"\r\nContent-Length: 0\r\n" in out
    out = curl("-i", "-X", "DELETE", f"{base}/hello.txt").stdout
    assert out.startswith(b"HTTP/1.1 405") and b"\r\nAllow: GET, HEAD, OPTIONS\r\n" in out
    assert curl("-i", "-X", "FROB", f"{base}/hello.txt").stdout.startswith(b"HTTP/1.1 501")
    # curl waits for 100 Continue; the final answer comes at once, and curl sends no body
    body = b"x" * 200_000
    done = subprocess.run(
        [
            CURL or "curl",
            "-sS",
            "-i",
            "--max-time",
            "20",
            "-X",
            "PUT",
            "--data-binary",
            "@-",
            "-H",
            "Expect: 100-continue",
            f"{base}/hello.txt",
        ],
        input=body,
        capture_output=True,
        check=True,
    )
    assert done.stdout.startswith(b"HTTP/1.1 405") and b"Connection: close" in done.stdout


def test_httpx_preconditions_and_head_errors(base: str) -> None:
    """412/304/206 by the precondition order; h11 (in httpx) checks every answer's framing."""
    httpx = pytest.importorskip("httpx")
    with httpx.Client(base_url=base, timeout=10) as client:
        first = client.get("/hello.txt")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        assert client.get("/hello.txt", headers={"If-Match": etag}).status_code == 200
        assert client.get("/hello.txt", headers={"If-Match": "W/" + etag}).status_code == 412
        old = "Sun, 06 Nov 1994 08:49:37 GMT"
        assert client.get("/hello.txt", headers={"If-Unmodified-Since": old}).status_code == 412
        r = client.get("/hello.txt", headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.headers["etag"] == etag and "date" in r.headers
        r = client.get("/hello.txt", headers={"Range": "bytes=0-4", "If-Range": modified})
        assert (r.status_code, r.content) == (206, SMALL[:5])
        for path, method, status in [
            ("/nothing", "HEAD", 404),
            ("/hello.txt", "POST", 405),
            ("/hello.txt", "FROB", 501),
        ]:
            r = client.request(method, path)
            assert r.status_code == status
            assert client.head("/hello.txt").headers["content-length"] == str(len(SMALL))
        assert client.get("/hello.txt").content == SMALL


def _worker_pids(base: str) -> set[int]:
    """The pids the status page lists as listening workers."""
    with urllib.request.urlopen(f"{base}/_status.json", timeout=10) as r:
        return {w["pid"] for w in json.load(r)["per_worker"]}
