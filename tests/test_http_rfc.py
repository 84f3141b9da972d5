"""RFC 9110 / RFC 9112 conformance of the web server, as raw requests on real sockets.

Each row of the README's "HTTP conformance" table names its cases here (by the prefix of
their names). Every case runs under every concurrency model with httptools, and with h11
under a readiness loop (epoll), threads and asyncio. Every answer is also checked for
what holds of all answers: a valid Date, an HTTP/1.1 status line, no Transfer-Encoding, a
Content-Length (except on 304), no body on an answer to HEAD (no stray bytes before the
next answer or EOF), and ``Connection: close`` whenever the server closes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from http_cases.kit import (
    MODELS,
    PROBE,
    SMALL,
    RawReader,
    Response,
    connect,
    http_server,
    make_site,
    remove_site,
)
from ipcnet.protocols.http.conditional import parse_http_date
from ipcnet.protocols.http.parsers import parser_available

CLOSE, KEEP = True, False
ALLOW = "GET, HEAD, OPTIONS"
OLD = "Sun, 06 Nov 1994 08:49:37 GMT"  # before any file of the test site was written


@dataclass
class Case:
    raw: bytes  # {etag} and {lm} stand for hello.txt's ETag and Last-Modified
    status: int
    closes: bool = KEEP
    headers: dict[str, str | None] = field(default_factory=dict)  # None: must be absent
    body: bytes | None = None


def get(
    target: str = "/hello.txt", *fields: str, method: str = "GET", version: str = "1.1"
) -> bytes:
    lines = [f"{method} {target} HTTP/{version}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


H = "Host: example"

CASES: dict[str, Case] = {
    # --- Host: RFC 9112 §3.2, RFC 3986 §3.2.2-3 -----------------------------------------
    "host-reg-name": Case(get("/hello.txt", "Host: example.com"), 200, body=SMALL),
    "host-port": Case(get("/hello.txt", "Host: example.com:8080"), 200),
    "host-empty-port": Case(get("/hello.txt", "Host: example.com:"), 200),
    "host-empty": Case(get("/hello.txt", "Host:"), 200),
    "host-ipv4": Case(get("/hello.txt", "Host: 127.0.0.1:80"), 200),
    "host-ipv6": Case(get("/hello.txt", "Host: [::1]:80"), 200),
    "host-ipv6-ipv4": Case(get("/hello.txt", "Host: [::ffff:127.0.0.1]"), 200),
    "host-ipvfuture": Case(get("/hello.txt", "Host: [v7.fe80::a+en1]"), 200),
    "host-pct-encoded": Case(get("/hello.txt", "Host: ex%41mple"), 200),
    "host-space": Case(get("/hello.txt", "Host: exa mple"), 400, CLOSE),
    "host-slash": Case(get("/hello.txt", "Host: example/x"), 400, CLOSE),
    "host-userinfo": Case(get("/hello.txt", "Host: user@example"), 400, CLOSE),
    "host-two-ports": Case(get("/hello.txt", "Host: example:80:80"), 400, CLOSE),
    "host-port-not-digits": Case(get("/hello.txt", "Host: example:8o"), 400, CLOSE),
    "host-ipv6-unclosed": Case(get("/hello.txt", "Host: [::1"), 400, CLOSE),
    "host-ipv6-malformed": Case(get("/hello.txt", "Host: [::zz]"), 400, CLOSE),
    "host-ipv6-unbracketed": Case(get("/hello.txt", "Host: ::1"), 400, CLOSE),
    "host-ipv6-zone": Case(get("/hello.txt", "Host: [fe80::1%25eth0]"), 400, CLOSE),
    "host-ipvfuture-empty": Case(get("/hello.txt", "Host: [v7.]"), 400, CLOSE),
    "host-bad-escape": Case(get("/hello.txt", "Host: ex%zzample"), 400, CLOSE),
    "host-missing-http11": Case(get("/hello.txt"), 400, CLOSE),
    "host-missing-http10": Case(get("/hello.txt", version="1.0"), 200, CLOSE),
    "host-invalid-http10": Case(get("/hello.txt", "Host: a b", version="1.0"), 400, CLOSE),
    "host-twice": Case(get("/hello.txt", H, H), 400, CLOSE),
    # --- absolute-form: RFC 9112 §3.2.2, RFC 9110 §4.2.1, §4.2.4 -------------------------
    "absolute-host-ignored": Case(get("http://example/hello.txt", "Host: other"), 200),
    "absolute-ipv6": Case(get("http://[::1]:8080/hello.txt", H), 200, body=SMALL),
    "absolute-needs-host-field": Case(get("http://example/hello.txt"), 400, CLOSE),
    "absolute-two-ports": Case(get("http://example:1:2/hello.txt", H), 400),
    "absolute-userinfo": Case(get("http://user@example/hello.txt", H), 400),
    "absolute-empty-host": Case(get("http:///hello.txt", H), 400),
    "absolute-bad-ip-literal": Case(get("http://[::1/hello.txt", H), 400),
    # --- methods: RFC 9110 §9.1, §9.3.7, §15.5.6, §15.6.2 --------------------------------
    "method-unknown": Case(get("/hello.txt", H, method="FROB"), 501),
    "method-case-sensitive": Case(get("/hello.txt", H, method="get"), 501),
    "method-webdav": Case(get("/hello.txt", H, method="PROPFIND"), 501),
    "method-post": Case(get("/hello.txt", H, method="POST"), 405, headers={"allow": ALLOW}),
    "method-put": Case(get("/hello.txt", H, method="PUT"), 405, headers={"allow": ALLOW}),
    "method-delete": Case(get("/hello.txt", H, method="DELETE"), 405, headers={"allow": ALLOW}),
    "method-patch": Case(get("/hello.txt", H, method="PATCH"), 405, headers={"allow": ALLOW}),
    "method-trace": Case(get("/hello.txt", H, method="TRACE"), 405, headers={"allow": ALLOW}),
    "method-post-body": Case(
        get("/hello.txt", H, "Content-Length: 3", method="POST") + b"a=b", 405, CLOSE
    ),
    "method-unknown-body": Case(
        get("/hello.txt", H, "Content-Length: 3", method="FROB") + b"a=b", 501, CLOSE
    ),
    "method-connect": Case(b"CONNECT example:443 HTTP/1.1\r\nHost: example:443\r\n\r\n", 405),
    "method-options-asterisk": Case(
        get("*", H, method="OPTIONS"), 200, headers={"allow": ALLOW, "content-length": "0"}
    ),
    "method-options-path": Case(
        get("/hello.txt", H, method="OPTIONS"), 200, headers={"allow": ALLOW}, body=b""
    ),
    "method-options-bad-path": Case(get("/../x", H, method="OPTIONS"), 403),
    "method-asterisk-not-options": Case(get("*", H), 400),
    # --- HEAD: RFC 9110 §9.3.2, §8.6 -------------------------------------------------------
    "head-ok": Case(
        get("/hello.txt", H, method="HEAD"), 200, headers={"content-length": str(len(SMALL))}
    ),
    "head-404": Case(get("/nothing", H, method="HEAD"), 404),
    "head-range-ignored": Case(
        get("/hello.txt", H, "Range: bytes=0-1", method="HEAD"),
        200,
        headers={"content-length": str(len(SMALL)), "content-range": None},
    ),
    "head-400-bad-field": Case(get("/hello.txt", H, "X@Y: 1", method="HEAD"), 400, CLOSE),
    "head-400-bad-host": Case(get("/hello.txt", "Host: a b", method="HEAD"), 400, CLOSE),
    "head-414": Case(get("/" + "a" * 9000, H, method="HEAD"), 414, CLOSE),
    "head-431": Case(
        get("/hello.txt", H, *[f"X-{i}: v" for i in range(101)], method="HEAD"), 431, CLOSE
    ),
    "head-413": Case(
        get("/hello.txt", H, "Content-Length: 5", method="HEAD") + b"hello", 413, CLOSE
    ),
    "head-505": Case(get("/hello.txt", H, method="HEAD", version="2.0"), 505, CLOSE),
    "head-304": Case(get("/hello.txt", H, "If-None-Match: {etag}", method="HEAD"), 304),
    "head-412": Case(get("/hello.txt", H, 'If-Match: "x"', method="HEAD"), 412),
    # --- versions: RFC 9112 §2.3, RFC 9110 §2.5, §6.2 --------------------------------------
    "version-http12": Case(get("/hello.txt", H, version="1.2"), 200, body=SMALL),
    "version-http19-needs-host": Case(get("/hello.txt", version="1.9"), 400, CLOSE),
    "version-http12-close": Case(
        get("/hello.txt", H, "Connection: close", version="1.2"), 200, CLOSE
    ),
    "version-http10": Case(get("/hello.txt", version="1.0"), 200, CLOSE, body=SMALL),
    "version-http10-keep-alive": Case(
        get("/hello.txt", "Connection: keep-alive", version="1.0"), 200
    ),
    "version-http20": Case(get("/hello.txt", H, version="2.0"), 505, CLOSE),
    "version-http30": Case(get("/hello.txt", H, version="3.0"), 505, CLOSE),
    "version-http09-explicit": Case(get("/hello.txt", H, version="0.9"), 505, CLOSE),
    "version-http09-none": Case(b"GET /hello.txt\r\n\r\n", 400, CLOSE),
    "version-lowercase": Case(b"GET /hello.txt http/1.1\r\nHost: a\r\n\r\n", 400, CLOSE),
    "version-no-single-spaces": Case(b"GET /hello.txt  HTTP/1.1\r\nHost: a\r\n\r\n", 400, CLOSE),
    "version-two-digits": Case(get("/hello.txt", H, version="1.10"), 400, CLOSE),
    # --- framing and bodies: RFC 9112 §6.1, §6.3, RFC 9110 §9.3.1, §10.1.1 -------------------
    "framing-cl-and-te": Case(
        get("/hello.txt", H, "Content-Length: 5", "Transfer-Encoding: chunked"), 400, CLOSE
    ),
    "framing-te-not-chunked": Case(get("/hello.txt", H, "Transfer-Encoding: gzip"), 400, CLOSE),
    "framing-te-unknown-coding": Case(
        get("/hello.txt", H, "Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n", 501, CLOSE
    ),
    "framing-te-two-fields": Case(
        get("/hello.txt", H, "Transfer-Encoding: gzip", "Transfer-Encoding: chunked"), 501, CLOSE
    ),
    "framing-te-chunked-twice": Case(
        get("/hello.txt", H, "Transfer-Encoding: chunked, chunked"), 400, CLOSE
    ),
    "framing-te-http10": Case(
        get("/hello.txt", "Transfer-Encoding: chunked", version="1.0") + b"0\r\n\r\n", 400, CLOSE
    ),
    "framing-cl-twice": Case(
        get("/hello.txt", H, "Content-Length: 0", "Content-Length: 0"), 400, CLOSE
    ),
    "framing-cl-list": Case(get("/hello.txt", H, "Content-Length: 0, 0"), 400, CLOSE),
    "framing-cl-bad": Case(get("/hello.txt", H, "Content-Length: 1x"), 400, CLOSE),
    "framing-get-body": Case(get("/hello.txt", H, "Content-Length: 5") + b"hello", 413, CLOSE),
    "framing-get-chunked": Case(
        get("/hello.txt", H, "Transfer-Encoding: chunked") + b"5\r\nhello\r\n0\r\n\r\n", 413, CLOSE
    ),
    "framing-leading-crlf": Case(b"\r\n\r\n" + get("/hello.txt", H), 200, body=SMALL),
    "framing-cl-zero": Case(get("/hello.txt", H, "Content-Length: 0"), 200),
    "expect-continue-with-body": Case(
        get("/hello.txt", H, "Content-Length: 100", "Expect: 100-continue"), 413, CLOSE
    ),
    "expect-continue-no-body": Case(get("/hello.txt", H, "Expect: 100-continue"), 200, body=SMALL),
    "expect-continue-http10": Case(
        get("/hello.txt", "Expect: 100-continue", version="1.0"), 200, CLOSE
    ),
    # --- connection management: RFC 9112 §9.3, §9.6 ---------------------------------------
    "connection-close": Case(
        get("/hello.txt", H, "Connection: close"), 200, CLOSE, {"connection": "close"}
    ),
    "connection-close-on-error": Case(
        get("/nothing", H, "Connection: close"), 404, CLOSE, {"connection": "close"}
    ),
    "connection-keep-alive": Case(get("/hello.txt", H), 200, headers={"connection": "keep-alive"}),
    # --- preconditions: RFC 9110 §13.1, §13.2.2 (order), §15.4.5 (304), §15.5.13 (412) ------
    "if-match-strong": Case(get("/hello.txt", H, "If-Match: {etag}"), 200, body=SMALL),
    "if-match-list": Case(get("/hello.txt", H, 'If-Match: "x", {etag}'), 200),
    "if-match-two-fields": Case(get("/hello.txt", H, 'If-Match: "x"', "If-Match: {etag}"), 200),
    "if-match-star": Case(get("/hello.txt", H, "If-Match: *"), 200),
    "if-match-weak-never": Case(get("/hello.txt", H, "If-Match: W/{etag}"), 412),
    "if-match-other": Case(get("/hello.txt", H, 'If-Match: "nope"'), 412),
    "if-match-garbage": Case(get("/hello.txt", H, "If-Match: nope"), 412),
    "if-match-missing-file": Case(get("/nothing", H, 'If-Match: "x"'), 404),
    "if-match-beats-inm": Case(get("/hello.txt", H, 'If-Match: "x"', "If-None-Match: {etag}"), 412),
    "if-unmodified-since-old": Case(get("/hello.txt", H, f"If-Unmodified-Since: {OLD}"), 412),
    "if-unmodified-since-same": Case(get("/hello.txt", H, "If-Unmodified-Since: {lm}"), 200),
    "if-unmodified-since-invalid": Case(get("/hello.txt", H, "If-Unmodified-Since: soon"), 200),
    "if-unmodified-since-list": Case(
        get("/hello.txt", H, f"If-Unmodified-Since: {OLD}, {OLD}"), 200
    ),
    "if-unmodified-since-after-if-match": Case(
        get("/hello.txt", H, "If-Match: {etag}", f"If-Unmodified-Since: {OLD}"), 200
    ),
    "if-none-match-strong": Case(
        get("/hello.txt", H, "If-None-Match: {etag}"),
        304,
        headers={"etag": "{etag}", "last-modified": "{lm}", "content-length": None},
        body=b"",
    ),
    "if-none-match-weak": Case(get("/hello.txt", H, "If-None-Match: W/{etag}"), 304),
    "if-none-match-star": Case(get("/hello.txt", H, "If-None-Match: *"), 304),
    "if-none-match-list": Case(get("/hello.txt", H, 'If-None-Match: "a", {etag}'), 304),
    "if-none-match-other": Case(get("/hello.txt", H, 'If-None-Match: "a"'), 200, body=SMALL),
    "if-none-match-vary": Case(
        get("/style.css", H, "If-None-Match: *"), 304, headers={"vary": "Accept-Encoding"}
    ),
    "if-none-match-post": Case(get("/hello.txt", H, "If-None-Match: *", method="POST"), 405),
    "if-none-match-listing": Case(get("/files/", H, "If-None-Match: *"), 304),
    "if-match-listing": Case(get("/files/", H, 'If-Match: "x"'), 412),
    "if-modified-since-same": Case(get("/hello.txt", H, "If-Modified-Since: {lm}"), 304),
    "if-modified-since-old": Case(get("/hello.txt", H, f"If-Modified-Since: {OLD}"), 200),
    "if-modified-since-rfc850": Case(
        get("/docs/index.html", H, "If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT"), 200
    ),
    "if-modified-since-invalid": Case(get("/hello.txt", H, "If-Modified-Since: yesterday"), 200),
    "if-modified-since-list": Case(get("/hello.txt", H, "If-Modified-Since: {lm}, {lm}"), 200),
    "if-modified-since-after-inm": Case(
        get("/hello.txt", H, 'If-None-Match: "a"', "If-Modified-Since: {lm}"), 200
    ),
    "if-range-etag": Case(
        get("/hello.txt", H, "Range: bytes=0-4", "If-Range: {etag}"), 206, body=SMALL[:5]
    ),
    "if-range-weak-etag": Case(
        get("/hello.txt", H, "Range: bytes=0-4", "If-Range: W/{etag}"), 200, body=SMALL
    ),
    "if-range-other-etag": Case(
        get("/hello.txt", H, "Range: bytes=0-4", 'If-Range: "a"'), 200, body=SMALL
    ),
    "if-range-date-exact": Case(
        get("/hello.txt", H, "Range: bytes=0-4", "If-Range: {lm}"), 206, body=SMALL[:5]
    ),
    "if-range-date-other": Case(
        get("/hello.txt", H, "Range: bytes=0-4", f"If-Range: {OLD}"), 200, body=SMALL
    ),
    "if-range-without-range": Case(get("/hello.txt", H, "If-Range: {etag}"), 200, body=SMALL),
    # --- ranges: RFC 9110 §14 -----------------------------------------------------------------
    "range-single": Case(
        get("/hello.txt", H, "Range: bytes=1-3"),
        206,
        headers={"content-range": f"bytes 1-3/{len(SMALL)}", "content-length": "3"},
        body=SMALL[1:4],
    ),
    "range-416": Case(
        get("/hello.txt", H, "Range: bytes=100-"),
        416,
        headers={"content-range": f"bytes */{len(SMALL)}"},
    ),
    "range-416-before-preconditions": Case(
        get("/hello.txt", H, "Range: bytes=100-", "If-None-Match: {etag}"), 416
    ),
    "range-other-unit-ignored": Case(get("/hello.txt", H, "Range: lines=1-2"), 200, body=SMALL),
    "range-post-ignored": Case(get("/hello.txt", H, "Range: bytes=0-1", method="POST"), 405),
}


# the parser adapters do not depend on the model: h11 under one model of each kind
SERVERS = [(model, "httptools") for model in MODELS]
SERVERS += [("epoll", "h11"), ("thread", "h11"), ("asyncio", "h11")]


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = make_site()
    future = path / "future.txt"
    future.write_bytes(SMALL)
    later = time.time() + 86400
    os.utime(future, (later, later))
    yield path
    remove_site(path)


@pytest.fixture(scope="module", params=SERVERS, ids=lambda p: f"{p[0]}-{p[1]}")
def server(request: pytest.FixtureRequest, root: Path) -> Iterator[tuple[int, dict[str, str]]]:
    model, parser = request.param
    if not parser_available(parser):
        pytest.skip(f"{parser} is not installed")
    extra = ("--quiet", "--parser", parser, "--header-timeout", "1")
    with http_server(root, model=model, extra=extra) as (_, _, port):
        with connect(port) as sock:
            sock.sendall(get("/hello.txt", H))
            first = RawReader(sock).response()
        assert first is not None
        yield port, {"etag": first.headers["etag"], "lm": first.headers["last-modified"]}


def check_every_answer(response: Response, head_only: bool) -> None:
    """What RFC 9110/9112 require of every answer this server gives."""
    assert response.raw_head.startswith(b"HTTP/1.1 "), response.raw_head  # RFC 9110 §2.5
    assert parse_http_date(response.headers["date"].encode()) is not None  # §6.6.1
    assert "transfer-encoding" not in response.headers  # §6.1 of RFC 9112
    if response.status != 304:
        assert "content-length" in response.headers  # RFC 9112 §6.3: framed by length
    if head_only or response.status == 304:
        assert response.body == b""


def talk(port: int, raw: bytes) -> tuple[Response, bool]:
    """Send a request, read its answer, then learn whether the connection stays usable.

    A probe request follows: on a kept connection it must be answered cleanly (any stray
    body bytes would garble it); on a closed one we must read EOF, with nothing before it.
    """
    head_only = raw.startswith(b"HEAD ")
    with connect(port) as sock:
        sock.sendall(raw)
        reader = RawReader(sock)
        response = reader.response(head_only)
        assert response is not None, "the server closed without answering"
        check_every_answer(response, head_only)
        try:
            sock.sendall(PROBE)
            probe = reader.response()
        except (BrokenPipeError, ConnectionResetError):
            return response, True
        if probe is not None:
            assert (probe.status, probe.body) == (200, SMALL), probe.raw_head
        return response, probe is None


@pytest.mark.parametrize("name", list(CASES))
def test_rfc(server: tuple[int, dict[str, str]], name: str) -> None:
    port, values = server
    case = CASES[name]

    def fill(text: str) -> str:
        return text.replace("{etag}", values["etag"]).replace("{lm}", values["lm"])

    raw = fill(case.raw.decode("latin-1")).encode("latin-1")
    response, closed = talk(port, raw)
    assert response.status == case.status, response.raw_head
    assert closed is case.closes, f"connection {'stayed open' if case.closes else 'closed'}"
    if closed:
        assert response.headers.get("connection") == "close"
    for header, value in case.headers.items():
        got = response.headers.get(header)
        assert got == (None if value is None else fill(value)), (header, response.raw_head)
    if case.body is not None:
        assert response.body == case.body


def test_pipelined_requests_after_close_are_not_processed(
    server: tuple[int, dict[str, str]],
) -> None:
    """RFC 9112 §9.6: after a request with ``Connection: close`` nothing more is answered."""
    port, _ = server
    with connect(port) as sock:
        sock.sendall(get("/hello.txt", H, "Connection: close") + get("/page.html", H))
        reader = RawReader(sock)
        answer = reader.response()
        assert answer is not None and answer.body == SMALL
        assert reader.at_eof()


def test_head_timeout_408_has_no_body(server: tuple[int, dict[str, str]]) -> None:
    """RFC 9110 §9.3.2 for the 408 of an incomplete HEAD request (--header-timeout 1)."""
    port, _ = server
    with connect(port) as sock:
        sock.sendall(b"HEAD /hello.txt HTTP/1.1\r\nHost: example\r\n")
        reader = RawReader(sock)
        answer = reader.response(head_only=True)
        assert answer is not None and answer.status == 408
        check_every_answer(answer, head_only=True)
        assert answer.headers["connection"] == "close"
        assert reader.at_eof()  # no error page after the head


def test_multipart_ranges(server: tuple[int, dict[str, str]]) -> None:
    """RFC 9110 §14.6: multipart/byteranges, one Content-Range per part, in the order asked."""
    port, _ = server
    with connect(port) as sock:
        sock.sendall(get("/hello.txt", H, "Range: bytes=4-6,0-1"))
        answer = RawReader(sock).response()
    assert answer is not None and answer.status == 206
    ctype = answer.headers["content-type"]
    assert ctype.startswith("multipart/byteranges; boundary=")
    boundary = ctype.partition("boundary=")[2].encode()
    parts = answer.body.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    found = []
    for part in parts[1:-1]:
        fields, _, payload = part.partition(b"\r\n\r\n")
        assert b"Content-Type: text/plain; charset=utf-8" in fields
        found.append(
            (fields.split(b"Content-Range: ")[1].split(b"\r\n")[0], payload.removesuffix(b"\r\n"))
        )
    n = len(SMALL)
    assert found == [(b"bytes 4-6/%d" % n, SMALL[4:7]), (b"bytes 0-1/%d" % n, SMALL[0:2])]


def test_last_modified_never_after_date(server: tuple[int, dict[str, str]]) -> None:
    """RFC 9110 §8.8.2.1: a file dated in the future gets Last-Modified = Date, not later."""
    port, _ = server
    with connect(port) as sock:
        reader = RawReader(sock)
        for fields in [(), ('If-None-Match: "x"',)]:  # the plain and the general path
            sock.sendall(get("/future.txt", H, *fields))
            answer = reader.response()
            assert answer is not None and (answer.status, answer.body) == (200, SMALL)
            modified = parse_http_date(answer.headers["last-modified"].encode())
            date = parse_http_date(answer.headers["date"].encode())
            assert modified is not None and date is not None and modified <= date
