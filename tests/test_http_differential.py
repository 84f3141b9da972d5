"""Cases a differential pass found: ~1800 generated and mutated requests sent to ipcnet
(epoll and thread models, both parsers), to nginx 1.22 on the same files and, as a parser
reference, to h11. Each case here is one where ipcnet disagreed with the RFC, or where its
two parsers disagreed with each other; the two servers below cover both parsers and a
readiness-loop and a blocking model (one server, many connections, each)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from http_cases.kit import exchange, http_server, make_site, remove_site
from ipcnet.protocols.http.parsers import parser_available

# one worker runs them all: each of the two servers below then starts once per suite run
pytestmark = pytest.mark.xdist_group("http-differential")

CLOSE, KEEP = True, False
EPOCH = b"Thu, 01 Jan 1970 00:00:00 GMT"


def get(*fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET /hello.txt " + version + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


# name: (raw request, status, closes?)
CASES: dict[str, tuple[bytes, int, bool]] = {
    # RFC 9112 §5: OWS after a field value is not part of it (llhttp hands it over; h11 does
    # not): a valid Host with trailing SP/HTAB got 400, a date with it was ignored
    "host-trailing-space": (get(b"Host: example "), 200, KEEP),
    "host-trailing-tab": (get(b"Host: example\t"), 200, KEEP),
    "host-both-sides": (get(b"Host: \t example \t"), 200, KEEP),
    "host-trailing-space-http10": (get(b"Host: example ", version=b"HTTP/1.0"), 200, CLOSE),
    "if-unmodified-since-trailing-space": (
        get(b"Host: example", b"If-Unmodified-Since: " + EPOCH + b" "),
        412,
        KEEP,
    ),
    "if-modified-since-trailing-tab": (
        get(b"Host: example", b"If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\t"),
        304,
        KEEP,
    ),
    # llhttp refuses a Transfer-Encoding value that ends in HTAB (400); it is chunked, or
    # an unknown coding then chunked, like any other (§6.1): 405 or 501 as with h11
    "te-chunked-trailing-tab": (
        b"POST /hello.txt HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\t\r\n\r\n",
        405,
        CLOSE,
    ),
    "te-gzip-chunked-trailing-tab": (
        b"POST /hello.txt HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: gzip, chunked\t\r\n\r\n",
        501,
        CLOSE,
    ),
    # ... but a request line that ends in whitespace is still refused (§3)
    "request-line-trailing-tab": (
        b"GET /hello.txt HTTP/1.1\t\r\nHost: example\r\n\r\n",
        400,
        CLOSE,
    ),
    # a Host that stays invalid once the OWS is gone is still refused (§3.2)
    "host-inner-space": (get(b"Host: exa mple "), 400, CLOSE),
}


@pytest.fixture(scope="module", params=[("epoll", "httptools"), ("thread", "h11")], ids=str)
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    model, parser = request.param
    if not parser_available(parser):
        pytest.skip(f"{parser} is not installed")
    root = make_site()
    try:
        extra = ("--quiet", "--parser", parser)
        with http_server(root, model=model, extra=extra) as (_, _, port):
            yield port
    finally:
        remove_site(root)


@pytest.mark.parametrize("name", list(CASES))
def test_differential(server: int, name: str) -> None:
    raw, status, closes = CASES[name]
    response, closed = exchange(server, raw)
    assert response is not None, "the server closed without answering"
    assert response.status == status, (response.status, response.raw_head)
    assert closed is closes, f"connection {'stayed open' if closes else 'closed'}"
    if status == 200:
        assert response.body == b"hello, world\n"
