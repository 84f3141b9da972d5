"""The web server against RFC 9110/9112 where an adversarial audit found it wrong, with
real clients (httpx, http.client, raw sockets) on a real server process. Each test names
the rule; nginx 1.22 on the same files was the reference where the RFC leaves a choice.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from http_cases.kit import (
    PROBE,
    SMALL,
    RawReader,
    connect,
    http_server,
    make_site,
    remove_site,
    site,
)

# one worker runs them all: each server below then starts once per suite run
pytestmark = pytest.mark.xdist_group("http-conformance")

TARBALL = gzip.compress(b"not really a tar\n" * 50)
ODD = b"bad\xffdir"  # a directory name that is not UTF-8


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = make_site()
    (path / "archive.tar.gz").write_bytes(TARBALL)
    (path / "data.tgz").write_bytes(TARBALL)
    odd = os.path.join(os.fsencode(path), ODD)
    os.mkdir(odd)
    with open(os.path.join(odd, b"inside.txt"), "wb") as f:
        f.write(SMALL)
    yield path
    remove_site(path)


@pytest.fixture(scope="module")
def port(root: Path) -> Iterator[int]:
    with http_server(root, extra=("--quiet", "--header-timeout", "1")) as (_, _, port):
        yield port


def get(port: int, target: str, **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", target, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_empty_lines_before_a_request_do_not_hold_off_the_header_deadline(port: int) -> None:
    """RFC 9112 §2.2 lets a server skip empty lines before the request line; they are still
    the start of a request, so the header deadline runs (slowloris: a CRLF every 0.1 s kept a
    connection open forever, past --header-timeout 1; nginx answers 408 and closes)."""
    with connect(port) as sock:
        sock.settimeout(0.1)
        reader = RawReader(sock)
        for _ in range(100):  # 10 s of trickle at most; the server must end it long before
            try:
                sock.sendall(b"\r\n")
                reader.buf += sock.recv(65536)
                break  # an answer (or EOF)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(10)
        answer = reader.response()
        assert answer is not None, "the connection was held open by empty lines"
        assert (answer.status, answer.headers["connection"]) == (408, "close")
        assert reader.at_eof()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/archive.tar.gz", "application/gzip"),  # was application/x-tar
        ("/data.tgz", "application/gzip"),  # was application/x-tar
        ("/style.css.gz", "application/gzip"),  # was text/css; charset=utf-8
    ],
)
def test_a_compressed_file_is_labelled_as_the_compressed_format(
    port: int, root: Path, target: str, expected: str
) -> None:
    """RFC 9110 §8.3: Content-Type is the media type of the content sent. The file goes out
    as stored, without Content-Encoding (§8.4), so its type is gzip's, not the inner one's:
    httpx must receive exactly the file's bytes, undecoded."""
    response = httpx.get(f"http://127.0.0.1:{port}{target}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == expected
    assert "content-encoding" not in response.headers
    assert response.content == (root / target.lstrip("/")).read_bytes()


@pytest.mark.parametrize(
    ("spec", "status", "content_range"),
    [
        ("bytes=0-99999999999999999999999", 206, f"bytes 0-12/{len(SMALL)}"),  # was 200
        ("bytes=-99999999999999999999999", 206, f"bytes 0-12/{len(SMALL)}"),  # was 200
        ("bytes=3-0000000000000000000000000004", 206, f"bytes 3-4/{len(SMALL)}"),  # was 200
        ("bytes=99999999999999999999999-", 416, f"bytes */{len(SMALL)}"),  # was 200
        ("bytes=-" + "9" * 5000, 206, f"bytes 0-12/{len(SMALL)}"),  # int() refuses that many
    ],
)
def test_range_positions_of_any_length(
    port: int, spec: str, status: int, content_range: str
) -> None:
    """RFC 9110 §14.1.1: positions are 1*DIGIT; a last-pos or suffix-length at or past the
    end means the rest of the representation, a first-pos past the end is unsatisfiable."""
    response = get(port, "/hello.txt", Range=spec)
    assert (response.status, response.getheader("content-range")) == (status, content_range)


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("*, gzip;q=0", False),  # was gzip: the explicit refusal wins over *
        ("gzip;q=0, *", False),
        ("x-gzip", True),  # §8.4.1.3: x-gzip is gzip
        ("*", True),
        ("br, *;q=0", False),
    ],
)
def test_accept_encoding_weights(port: int, accept: str, gzipped: bool) -> None:
    """RFC 9110 §12.5.3: ``*`` stands only for codings not named in the field, and a
    coding with q=0 is not acceptable."""
    response = get(port, "/style.css", **{"Accept-Encoding": accept})
    assert response.status == 200
    assert (response.getheader("content-encoding") == "gzip") is gzipped


def test_a_directory_name_that_is_not_utf8(port: int) -> None:
    """The redirect to the slashed form and the listing of a directory whose name is not
    UTF-8 (the redirect dropped the connection without an answer; the listing was a 500)."""
    with connect(port) as sock:
        reader = RawReader(sock)
        sock.sendall(b"GET /bad%FFdir?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        moved = reader.response()
        assert moved is not None and moved.status == 301
        assert moved.headers["location"] == "/bad%FFdir/?x=1"
        sock.sendall(b"GET /bad%FFdir/ HTTP/1.1\r\nHost: a\r\n\r\n")
        listing = reader.response()
        assert listing is not None and listing.status == 200
        assert "Index of /bad\ufffddir/".encode() in listing.body
        assert b'href="inside.txt"' in listing.body
        sock.sendall(b"GET /bad%FFdir/inside.txt HTTP/1.1\r\nHost: a\r\n\r\n" + PROBE)
        inside, probe = reader.response(), reader.response()
        assert inside is not None and (inside.status, inside.body) == (200, SMALL)
        assert probe is not None and probe.status == 200


LARGE = 64 << 20  # sparse files far larger than what loopback's socket buffers hold


class Served:
    """A server of one model over a site of its own, with its --stats socket."""

    def __init__(self, root: Path, port: int, stats: Path) -> None:
        self.root, self.port, self.stats = root, port, stats

    def counters(self) -> dict[str, int]:
        """The server's counters from the --stats socket (cheap: no page to render)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.stats))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        counters: dict[str, int] = json.loads(data)
        return counters

    def large_file(self, name: str) -> Path:
        path = self.root / name  # a new name for each test: no cached lookup of another
        with open(path, "wb") as f:
            f.truncate(LARGE)
        return path


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """One per model (the tests name theirs), shared by the tests of that model."""
    with site() as root:
        stats = root.parent / (root.name + ".stats")
        extra = ("--quiet", "--idle-timeout", "0.5", "--stats", f"unix://{stats}")
        with http_server(root, model=request.param, extra=extra) as (_, _, port):
            yield Served(root, port, stats)


@pytest.mark.parametrize("served", ["epoll"], indirect=True)  # blocking: test_engine
def test_a_file_that_shrinks_while_it_is_sent_ends_the_connection(served: Served) -> None:
    """The answer announced Content-Length; once the file has shrunk under sendfile(2) only
    closing can tell the client it is cut short (RFC 9112 §8: an incomplete message), as
    nginx does. The blocking models kept the connection open as if the answer were whole,
    and the readiness loops took sendfile's 0 for a full socket buffer and spun at 100%
    CPU, the client waiting forever."""
    path = served.large_file("shrinks.bin")
    with connect(served.port, timeout=20) as sock:
        sock.sendall(b"GET /shrinks.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nContent-Length: %d\r\n" % LARGE in first
        os.truncate(path, 0)
        received = len(first)
        while chunk := sock.recv(1 << 20):  # EOF, not the 20 s timeout
            received += len(chunk)
    assert received < LARGE


@pytest.mark.parametrize("served", ["epoll", "asyncio"], indirect=True)
def test_a_client_that_stops_reading_is_closed_after_the_idle_timeout(served: Served) -> None:
    """A slow-read client (it asks for a large file and reads nothing) must not hold its
    connection forever: nginx closes it after send_timeout, the blocking models after
    --idle-timeout through SO_SNDTIMEO. The readiness loops and asyncio never did: their
    idle sweep skipped every connection that still owed output."""
    served.large_file("stalls.bin")
    before = served.counters()["accepted"]
    with connect(served.port, timeout=20) as sock:
        sock.sendall(b"GET /stalls.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in range(400):  # 20 s at most; the sweep (once a second) acts within 2 s
            counters = served.counters()
            if counters["accepted"] > before and counters["active"] == 0:
                break
            time.sleep(0.05)
        assert counters["active"] == 0, "the stalled connection is still open"
        received = 0
        try:
            while chunk := sock.recv(1 << 20):  # EOF (or a reset), not the timeout
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < LARGE
