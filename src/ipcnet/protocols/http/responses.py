"""Response heads and the small built-in pages (errors, redirects, the 503 refusal).

Role: bytes for status lines and header blocks. Rules: every response says its length
(Content-Length) so keep-alive always works; error pages are tiny fixed HTML; header values
come from us or from checked sources (the path gate), never raw from the request.
"""

from __future__ import annotations

from http import HTTPStatus

SERVER = b"ipcnet"

REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}
REASONS[413] = b"Content Too Large"  # the names of RFC 9110 §15 (http.HTTPStatus has older ones)
REASONS[414] = b"URI Too Long"
REASONS[416] = b"Range Not Satisfiable"
REASONS[431] = b"Request Header Fields Too Large"


def status_line(status: int, version: str = "1.1") -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))


def head(status: int, date: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """A complete response head (status line, Server, Date, the given headers, Connection)."""
    return (
        status_line(status)
        + b"Server: "
        + SERVER
        + b"\r\nDate: "
        + date
        + block(headers, keep_alive)
    )


def block(headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
    """The part of a head after the Date line: it can be cached, the date cannot."""
    parts = [b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    return b"".join(parts)


OK_PREFIX = b"HTTP/1.1 200 OK\r\nServer: " + SERVER + b"\r\nDate: "


def error_body(status: int) -> bytes:
    reason = REASONS.get(status, b"Error")
    return b"<!doctype html>\n<title>%d %s</title>\n<h1>%d %s</h1>\n" % (
        status,
        reason,
        status,
        reason,
    )


def simple(
    status: int,
    date: bytes,
    keep_alive: bool,
    head_only: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = None,
    content_type: bytes = b"text/html; charset=utf-8",
) -> bytes:
    """A whole response with a small in-memory body (error pages, redirects, listings)."""
    if body is None:
        body = b"" if status in (204, 304) else error_body(status)
    headers = [(b"Content-Type", content_type), (b"Content-Length", b"%d" % len(body))]
    if extra:
        headers += extra
    out = head(status, date, headers, keep_alive)
    return out if head_only or status == 304 else out + body


def refusal(date: bytes) -> bytes:
    """What a connection over --max-conns receives before the server closes it."""
    return simple(503, date, False, extra=[(b"Retry-After", b"1")])
