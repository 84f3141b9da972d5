"""Validators and conditional requests (RFC 9110 §8.8, §13): ETag, dates, 304, If-Range.

Role: pure functions over header values. Rules: If-None-Match wins over If-Modified-Since
(weak comparison); If-Modified-Since is ignored when it does not parse; If-Range needs a
strong ETag match or the exact Last-Modified date, otherwise the whole file is sent.
"""

from __future__ import annotations

import calendar
import time
from email.utils import formatdate, parsedate_tz


class DateCache:
    """HTTP dates, formatted once per second (every response carries one)."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = formatdate(second, usegmt=True).encode()
        return self._text


def http_date(timestamp: float) -> str:
    return formatdate(int(timestamp), usegmt=True)


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch for an HTTP-date (any of the three RFC forms), else None."""
    try:
        parts = parsedate_tz(value.decode("latin-1"))
    except (ValueError, IndexError):
        return None
    if parts is None:
        return None
    try:
        stamp = calendar.timegm((*parts[:6], 0, 0, 0))
    except (ValueError, OverflowError, TypeError):
        return None
    return stamp - (parts[9] or 0)


def _tags(value: bytes) -> list[bytes]:
    return [t.strip() for t in value.split(b",") if t.strip()]


def none_match(value: bytes, etag: str) -> bool:
    """If-None-Match matches (weak comparison): the client's copy is current."""
    mine = etag.encode().removeprefix(b"W/")
    return any(tag == b"*" or tag.removeprefix(b"W/") == mine for tag in _tags(value))


def not_modified(inm: bytes | None, ims: bytes | None, etag: str, mtime: int) -> bool:
    """True when a GET/HEAD should be answered 304."""
    if inm is not None:
        return none_match(inm, etag)
    if ims is not None:
        since = parse_http_date(ims)
        return since is not None and mtime <= since
    return False


def if_range_holds(value: bytes, etag: str, mtime: int) -> bool:
    """If-Range: the range applies only to the representation the client already has."""
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag.encode()
    if value.startswith(b"W/"):
        return False
    return parse_http_date(value) == mtime
