"""The web server's basic behaviour under every concurrency model, with stdlib clients:
GET, HEAD, Range, 304, keep-alive, pipelining, listings, sendfile-sized bodies."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from http_cases.kit import (
    BIG_SIZE,
    MEDIUM,
    MODELS,
    SMALL,
    RawReader,
    connect,
    http_server,
    make_site,
    remove_site,
)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = make_site()
    yield path
    remove_site(path)


def _get(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, headers=headers)
    response = conn.getresponse()
    return response, response.read()


@pytest.mark.parametrize("model", MODELS)
def test_basics_under_every_model(root: Path, model: str) -> None:
    with http_server(root, model=model) as (_, host, port):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        r, body = _get(conn, "/hello.txt")
        assert (r.status, body) == (200, SMALL)
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert r.headers["Content-Length"] == str(len(SMALL))
        etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
        sock = conn.sock  # keep-alive: every request below rides this one connection

        r, body = _get(conn, "/hello.txt", "HEAD")
        assert (r.status, body, r.headers["Content-Length"]) == (200, b"", str(len(SMALL)))

        r, body = _get(conn, "/hello.txt", Range="bytes=0-4")
        assert (r.status, body) == (206, SMALL[:5])
        assert r.headers["Content-Range"] == f"bytes 0-4/{len(SMALL)}"

        r, body = _get(conn, "/medium.bin", Range="bytes=-100")
        assert (r.status, body) == (206, MEDIUM[-100:])

        r, body = _get(conn, "/hello.txt", **{"If-None-Match": etag})
        assert (r.status, body) == (304, b"")
        assert r.headers["ETag"] == etag

        r, body = _get(conn, "/hello.txt", **{"If-Modified-Since": modified})
        assert (r.status, body) == (304, b"")

        r, body = _get(conn, "/medium.bin")  # over the in-memory size: sendfile
        assert (r.status, body) == (200, MEDIUM)

        r, body = _get(conn, "/big.bin")
        assert r.status == 200 and len(body) == BIG_SIZE and body.count(0) == BIG_SIZE

        r, body = _get(conn, "/docs/")
        assert r.status == 200 and b"docs index" in body

        r, body = _get(conn, "/files/")
        assert r.status == 200 and b"a%20b.txt" in body and b"&lt;script&gt;" in body

        r, body = _get(conn, "/docs")
        assert (r.status, r.headers["Location"]) == (301, "/docs/")

        r, body = _get(conn, "/link-out.txt")
        assert r.status == 403 and b"SECRET" not in body

        r, body = _get(conn, "/nothing")
        assert r.status == 404
        assert conn.sock is sock, "the connection was not kept alive"
        conn.close()

        # pipelining: three requests in one write, answered in order on one connection
        with connect(port) as raw:
            raw.sendall(
                b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /medium.bin HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /page.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            reader = RawReader(raw)
            first, second, third = (reader.response() for _ in range(3))
            assert first is not None and first.body == SMALL
            assert second is not None and second.body == MEDIUM
            assert third is not None and b"a page" in third.body
            assert third.headers["connection"] == "close"
            assert reader.at_eof()

        # HTTP/1.0: closes after the answer unless asked to keep alive
        with connect(port) as raw:
            raw.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
            reader = RawReader(raw)
            answer = reader.response()
            assert answer is not None and answer.body == SMALL
            assert reader.at_eof()
