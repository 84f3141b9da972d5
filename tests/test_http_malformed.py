"""Malformed and hostile requests as raw bytes, in the style of gunicorn's
tests/requests/invalid and nginx-tests: each case has the status we must answer and whether
the connection must close. Run against both parsers (httptools and h11)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from http_cases.kit import exchange, http_server, make_site, remove_site
from ipcnet.protocols.http.parsers import parser_available

H = b"Host: example\r\n"
CLOSE, KEEP = True, False


def req(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return line + b"\r\n" + H + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


# name: (raw request, expected status (or set of acceptable ones), closes?)
CASES: dict[str, tuple[bytes, int | set[int], bool]] = {
    # --- sane requests, as controls -------------------------------------------------------
    "ok": (req(b"GET /hello.txt HTTP/1.1"), 200, KEEP),
    "ok-absolute-form": (req(b"GET http://example/hello.txt HTTP/1.1"), 200, KEEP),
    "ok-leading-crlf": (b"\r\n\r\n" + req(b"GET /hello.txt HTTP/1.1"), 200, KEEP),
    "ok-http10": (b"GET /hello.txt HTTP/1.0\r\n\r\n", 200, CLOSE),
    "ok-http10-keepalive": (
        b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        200,
        KEEP,
    ),
    "ok-connection-close": (req(b"GET /hello.txt HTTP/1.1", b"Connection: close"), 200, CLOSE),
    "ok-close-among-tokens": (
        req(b"GET /hello.txt HTTP/1.1", b"Connection: keep-alive, close"),
        200,
        CLOSE,
    ),
    "ok-upgrade-ignored": (
        req(b"GET /hello.txt HTTP/1.1", b"Upgrade: websocket", b"Connection: upgrade"),
        200,
        KEEP,
    ),
    "ok-content-length-0": (req(b"GET /hello.txt HTTP/1.1", b"Content-Length: 0"), 200, KEEP),
    "ok-double-slash": (req(b"GET //hello.txt HTTP/1.1"), 200, KEEP),
    # --- framing: 400 and close -------------------------------------------------------------
    "cl-and-te": (
        req(b"GET / HTTP/1.1", b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        400,
        CLOSE,
    ),
    "te-and-cl": (
        req(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked", b"Content-Length: 5"),
        400,
        CLOSE,
    ),
    "cl-duplicate-differs": (
        req(b"GET / HTTP/1.1", b"Content-Length: 5", b"Content-Length: 6"),
        400,
        CLOSE,
    ),
    "cl-list-differs": (req(b"GET / HTTP/1.1", b"Content-Length: 1, 2"), 400, CLOSE),
    "cl-negative": (req(b"GET / HTTP/1.1", b"Content-Length: -1"), 400, CLOSE),
    "cl-plus": (req(b"GET / HTTP/1.1", b"Content-Length: +5"), 400, CLOSE),
    "cl-not-a-number": (req(b"GET / HTTP/1.1", b"Content-Length: abc"), 400, CLOSE),
    "cl-huge": (
        req(b"GET / HTTP/1.1", b"Content-Length: 99999999999999999999999"),
        {400, 413},
        CLOSE,
    ),
    "te-not-chunked": (req(b"POST / HTTP/1.1", b"Transfer-Encoding: gzip"), 400, CLOSE),
    "te-chunked-not-last": (
        req(b"POST / HTTP/1.1", b"Transfer-Encoding: chunked, gzip"),
        400,
        CLOSE,
    ),
    "te-in-http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, CLOSE),
    "te-obfuscated": (req(b"POST / HTTP/1.1", b"Transfer-Encoding : chunked"), 400, CLOSE),
    "no-host-http11": (b"GET / HTTP/1.1\r\n\r\n", 400, CLOSE),
    "two-hosts": (req(b"GET / HTTP/1.1", b"Host: other"), 400, CLOSE),
    "space-before-colon": (req(b"GET / HTTP/1.1", b"X-Thing : 1"), 400, CLOSE),
    "obs-fold": (req(b"GET / HTTP/1.1", b"X-Thing: 1", b" continued"), 400, CLOSE),
    "leading-space-header": (b"GET / HTTP/1.1\r\n Host: example\r\n\r\n", 400, CLOSE),
    "header-no-colon": (req(b"GET / HTTP/1.1", b"X-Thing"), 400, CLOSE),
    "header-bad-name-char": (req(b"GET / HTTP/1.1", b"X@Thing: 1"), 400, CLOSE),
    "header-ctl-in-value": (req(b"GET / HTTP/1.1", b"X-Thing: a\x01b"), 400, CLOSE),
    "header-nul-in-value": (req(b"GET / HTTP/1.1", b"X-Thing: a\x00b"), 400, CLOSE),
    "bare-lf": (b"GET / HTTP/1.1\nHost: example\n\n", 400, CLOSE),
    "bare-lf-between-fields": (req(b"GET / HTTP/1.1", b"X-A: 1\nX-B: 2"), 400, CLOSE),
    "bare-cr-in-value": (req(b"GET / HTTP/1.1", b"X-Thing: a\rb"), 400, CLOSE),
    "obs-fold-tab": (req(b"GET / HTTP/1.1", b"X-Thing: 1", b"\tcontinued"), 400, CLOSE),
    "header-del-in-value": (req(b"GET / HTTP/1.1", b"X-Thing: a\x7fb"), 400, CLOSE),
    "header-esc-in-value": (req(b"GET / HTTP/1.1", b"X-Thing: \x1b[31mred"), 400, CLOSE),
    "header-vtab-in-value": (req(b"GET / HTTP/1.1", b"X-Thing: a\x0bb"), 400, CLOSE),
    "ctl-in-target": (req(b"GET /a\x01b HTTP/1.1"), 400, CLOSE),
    "nul-in-method": (req(b"G\x00T / HTTP/1.1"), 400, CLOSE),
    "bad-method-char": (req(b"G(T / HTTP/1.1"), 400, CLOSE),
    "lowercase-method": (req(b"get / HTTP/1.1"), 501, KEEP),  # methods are case-sensitive
    "unknown-method": (req(b"FOO / HTTP/1.1"), 501, KEEP),
    "extra-token-request-line": (req(b"GET / HTTP/1.1 extra"), 400, CLOSE),
    "space-in-target": (req(b"GET /a b HTTP/1.1"), 400, CLOSE),
    "http09": (b"GET /\r\n\r\n", 400, CLOSE),
    "http2-version": (req(b"GET / HTTP/2.0"), 505, CLOSE),
    "http12-version": (req(b"GET / HTTP/1.2"), 200, KEEP),  # served as 1.1
    "bad-version": (req(b"GET / HTTX/1.1"), 400, CLOSE),
    # --- limits ----------------------------------------------------------------------------
    "request-line-9k": (req(b"GET /" + b"a" * 9000 + b" HTTP/1.1"), 414, CLOSE),
    "header-section-17k": (
        req(b"GET / HTTP/1.1", *[b"X-%d: %s" % (i, b"v" * 1000) for i in range(17)]),
        431,
        CLOSE,
    ),
    "101-fields": (req(b"GET / HTTP/1.1", *[b"X-%d: v" % i for i in range(101)]), 431, CLOSE),
    "100-fields-ok": (
        req(b"GET /hello.txt HTTP/1.1", *[b"X-%d: v" % i for i in range(98)]),
        200,
        KEEP,
    ),
    # --- bodies: never accepted ---------------------------------------------------------------
    "get-with-body": (
        req(b"GET /hello.txt HTTP/1.1", b"Content-Length: 5", body=b"hello"),
        413,
        CLOSE,
    ),
    "get-chunked": (
        req(b"GET / HTTP/1.1", b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
        413,
        CLOSE,
    ),
    "expect-continue": (
        req(b"GET / HTTP/1.1", b"Content-Length: 100", b"Expect: 100-continue"),
        413,
        CLOSE,
    ),
    "post-with-body": (req(b"POST / HTTP/1.1", b"Content-Length: 3", body=b"a=b"), 405, CLOSE),
    "post-no-body": (req(b"POST / HTTP/1.1", b"Content-Length: 0"), 405, KEEP),
    "delete": (req(b"DELETE /hello.txt HTTP/1.1"), 405, KEEP),
    "options-asterisk": (req(b"OPTIONS * HTTP/1.1"), 200, KEEP),
    "connect": (b"CONNECT example:443 HTTP/1.1\r\nHost: example:443\r\n\r\n", 405, KEEP),
    # --- paths: nothing escapes ROOT (403/404, the connection stays usable) ---------------------
    "dotdot": (req(b"GET /../../etc/passwd HTTP/1.1"), {400, 403}, KEEP),
    "dotdot-inside": (req(b"GET /docs/../hello.txt HTTP/1.1"), 200, KEEP),  # RFC 3986 §5.2.4
    "dotdot-encoded": (req(b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1"), 403, KEEP),
    "dotdot-mixed-case": (req(b"GET /%2E%2e/etc/passwd HTTP/1.1"), 403, KEEP),
    "dotdot-half-encoded": (req(b"GET /.%2e/etc/passwd HTTP/1.1"), 403, KEEP),
    "encoded-slash": (req(b"GET /..%2fetc%2fpasswd HTTP/1.1"), 403, KEEP),
    "encoded-slash-upper": (req(b"GET /docs%2Findex.html HTTP/1.1"), 403, KEEP),
    # decoded once (RFC 3986 §2.4): the names "%2e%2e" and "..%2fetc", which do not exist
    "double-encoded-dots": (req(b"GET /%252e%252e/%252e%252e/etc/passwd HTTP/1.1"), 404, KEEP),
    "double-encoded-slash": (req(b"GET /..%252fetc HTTP/1.1"), 404, KEEP),
    "backslash-raw": (req(b"GET /..\\..\\etc\\passwd HTTP/1.1"), {400, 403}, None),  # type: ignore[dict-item]
    "backslash-encoded": (req(b"GET /..%5c..%5cetc%5cpasswd HTTP/1.1"), 403, KEEP),
    "nul-encoded": (req(b"GET /hello.txt%00.html HTTP/1.1"), 403, KEEP),
    "bad-escape": (req(b"GET /%zz HTTP/1.1"), 400, KEEP),
    "overlong-utf8-dot": (req(b"GET /%c0%ae%c0%ae/etc/passwd HTTP/1.1"), {403, 404}, KEEP),
    "symlink-out": (req(b"GET /link-out.txt HTTP/1.1"), 403, KEEP),
    "symlink-dir-out": (req(b"GET /dir-out/secret.txt HTTP/1.1"), 403, KEEP),
    "symlink-in": (req(b"GET /link-in.txt HTTP/1.1"), 200, KEEP),
    "fifo": (req(b"GET /fifo HTTP/1.1"), 403, KEEP),
    "missing": (req(b"GET /nothing-here HTTP/1.1"), 404, KEEP),
    "file-as-dir": (req(b"GET /hello.txt/ HTTP/1.1"), 404, KEEP),
    "file-as-dir-child": (req(b"GET /hello.txt/x HTTP/1.1"), 404, KEEP),
    "absolute-form-escape": (req(b"GET http://example/../etc/passwd HTTP/1.1"), {400, 403}, KEEP),
    "authority-form-get": (req(b"GET example:80 HTTP/1.1"), 400, None),  # type: ignore[dict-item]
    # --- ranges ------------------------------------------------------------------------------
    "range-unsatisfiable": (req(b"GET /hello.txt HTTP/1.1", b"Range: bytes=100-200"), 416, KEEP),
    "range-suffix-zero": (req(b"GET /hello.txt HTTP/1.1", b"Range: bytes=-0"), 416, KEEP),
    "range-bad-syntax": (req(b"GET /hello.txt HTTP/1.1", b"Range: bytes=x-y"), 200, KEEP),
    "range-reversed": (req(b"GET /hello.txt HTTP/1.1", b"Range: bytes=5-1"), 200, KEEP),
    "range-other-unit": (req(b"GET /hello.txt HTTP/1.1", b"Range: lines=1-2"), 200, KEEP),
    "range-too-many": (
        req(
            b"GET /hello.txt HTTP/1.1",
            b"Range: bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(17)),
        ),
        200,
        KEEP,
    ),
    "range-many-overlapping": (
        req(b"GET /hello.txt HTTP/1.1", b"Range: bytes=0-5,0-5,0-5,1-4"),
        206,
        KEEP,
    ),
    "range-empty-file": (req(b"GET /empty.txt HTTP/1.1", b"Range: bytes=0-"), 416, KEEP),
}


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    if not parser_available(request.param):
        pytest.skip(f"{request.param} is not installed")
    root: Path = make_site()
    try:
        with http_server(root, extra=("--quiet", "--parser", request.param)) as (_, _, port):
            yield port
    finally:
        remove_site(root)


@pytest.mark.parametrize("name", list(CASES))
def test_malformed(server: int, name: str) -> None:
    raw, expected, closes = CASES[name]
    response, closed = exchange(server, raw, head_only=False)
    assert response is not None, "the server closed without answering"
    wanted = expected if isinstance(expected, set) else {expected}
    assert response.status in wanted, (response.status, response.raw_head)
    assert "location" not in response.headers or not response.headers["location"].startswith("//")
    if closes is not None:
        assert closed is closes, f"connection {'stayed open' if closes else 'closed'}"
    if closed:
        assert response.headers.get("connection") == "close"
    if response.status == 200 and name.startswith("ok"):
        assert response.body == b"hello, world\n"
    if "link" in name or "dotdot" in name or "escape" in name:
        assert b"SECRET" not in response.body and b"root:" not in response.body


@pytest.mark.parametrize(
    "target",
    [b"//docs", b"///docs", b"//example.com/docs", b"/docs", b"//docs?x=1", b"/.//docs"],
)
def test_redirect_never_protocol_relative(server: int, target: bytes) -> None:
    """CVE-2021-28861: a '//host' Location would send the browser to another site."""
    response, _ = exchange(server, req(b"GET " + target + b" HTTP/1.1"))
    assert response is not None
    if response.status == 301:
        location = response.headers["location"]
        assert location.startswith("/") and not location.startswith("//"), location
        assert location.split("?")[0].endswith("/")
    else:
        assert response.status == 404  # //example.com/docs names /example.com/docs
