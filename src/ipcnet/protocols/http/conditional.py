"""Validators and conditional requests (RFC 9110 §5.6.7, §8.8, §13): dates, ETags, 304, 412.

Role: pure functions over header values. Rules:
- ``preconditions`` is RFC 9110 §13.2.2 steps 1-4, in that order: If-Match (strong
  comparison: a weak tag never matches; ``*`` matches any current representation) -> 412;
  else If-Unmodified-Since -> 412; If-None-Match (weak comparison, ``*``) -> 304 for
  GET/HEAD, 412 otherwise; else, for GET/HEAD only, If-Modified-Since -> 304;
- If-Match and If-None-Match are read member by member (§5.6.1); a member that is not
  one entity-tag (``w/"a"``, ``x"a"``) matches nothing;
- a date that is not one HTTP-date (IMF-fixdate, rfc850-date or asctime-date, §5.6.7) is
  ignored, and so is a list of dates (§13.1.3, §13.1.4);
- step 5, ``if_range_holds``: an entity tag must match strongly, a date must be exactly
  our Last-Modified field value (§13.1.5); otherwise the Range is ignored (200).
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime
from email.utils import formatdate

from ipcnet.protocols.http.messages import Head


class DateCache:
    """HTTP dates, formatted once per second (every response carries one)."""

    __slots__ = ("_text", "second")

    def __init__(self) -> None:
        self.second = -1  # the time of the last now(), in whole seconds
        self._text = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self._text = formatdate(second, usegmt=True).encode()
        return self._text


def http_date(timestamp: float) -> str:
    return formatdate(int(timestamp), usegmt=True)


_MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"
_DAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = rb"(\d\d):(\d\d):(\d\d)"
_IMF = re.compile(_DAY + rb", (\d\d) " + _MONTH + rb" (\d{4}) " + _TIME + rb" GMT")
_RFC850 = re.compile(
    rb"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d\d)-"
    + _MONTH
    + rb"-(\d\d) "
    + _TIME
    + rb" GMT"
)
_ASCTIME = re.compile(_DAY + rb" " + _MONTH + rb" ([ \d]\d) " + _TIME + rb" (\d{4})")


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch for one HTTP-date in any of its three forms, else None."""
    if m := _IMF.fullmatch(value):
        day, month, year, hh, mm, ss = m.groups()
    elif m := _RFC850.fullmatch(value):
        day, month, yy, hh, mm, ss = m.groups()
        # §5.6.7: a two-digit year more than 50 years ahead is in the past century
        now = time.gmtime().tm_year
        full = now - now % 100 + int(yy)
        year = b"%d" % (full - 100 if full > now + 50 else full)
    elif m := _ASCTIME.fullmatch(value):
        month, day, hh, mm, ss, year = m.groups()
    else:
        return None
    numbers = int(year), _MONTHS.index(month) // 3 + 1, int(day), int(hh), int(mm), int(ss)
    try:
        moment = datetime(*numbers)
    except ValueError:  # 31 Feb, 25:00:00 ...
        return None
    return calendar.timegm(moment.timetuple())


# one list member (§5.6.1): an entity-tag (§8.8.3: "W/" is case-sensitive, etagc allows a
# comma) alone between OWS and a comma or the end; or anything else up to the next comma
_MEMBER = re.compile(rb'[ \t]*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|$)|[^,]*(?:,|$))')


def _tags(value: bytes) -> list[tuple[bool, bytes]]:
    """(weak, opaque-tag) for each entity-tag in a field value (RFC 9110 §8.8.3); a member
    that is not one (``w/"a"``, ``x"a"``, ``"a" "b"``) matches nothing (a tag found inside
    it made If-Match pass and If-None-Match answer 304 for a value no client sends)."""
    tags = []
    pos, end = 0, len(value)
    while pos < end:
        m = _MEMBER.match(value, pos)
        if m is None or m.end() == pos:
            break
        if m.group(2):
            tags.append((bool(m.group(1)), m.group(2)))
        pos = m.end()
    return tags


def strong_match(value: bytes, etag: bytes | None) -> bool:
    """If-Match (§13.1.1): ``*``, or one listed tag equal to ours and neither weak."""
    if value.strip() == b"*":
        return True
    if etag is None or etag.startswith(b"W/"):
        return False
    return any(not weak and tag == etag for weak, tag in _tags(value))


def weak_match(value: bytes, etag: bytes | None) -> bool:
    """If-None-Match (§13.1.2): ``*``, or one listed tag whose opaque part equals ours."""
    if value.strip() == b"*":
        return True
    if etag is None:
        return False
    mine = etag.removeprefix(b"W/")
    return any(tag == mine for _, tag in _tags(value))


def preconditions(head: Head, etag: bytes | None, mtime: int | None) -> int:
    """RFC 9110 §13.2.2 steps 1-4 for a representation that exists: 412, 304, or 0."""
    fields = head.fields
    if_match = head.combined(b"if-match")
    if if_match is not None:
        if not strong_match(if_match, etag):
            return 412
    elif mtime is not None and b"if-unmodified-since" in fields:
        since = parse_http_date(b", ".join(head.all(b"if-unmodified-since")))
        if since is not None and mtime > since:
            return 412
    safe = head.method == "GET" or head.method == "HEAD"
    if_none_match = head.combined(b"if-none-match")
    if if_none_match is not None:
        if weak_match(if_none_match, etag):
            return 304 if safe else 412
    elif safe and mtime is not None and b"if-modified-since" in fields:
        since = parse_http_date(b", ".join(head.all(b"if-modified-since")))
        if since is not None and mtime <= since:
            return 304
    return 0


def if_range_holds(value: bytes, etag: bytes, last_modified: bytes) -> bool:
    """If-Range (§13.1.5): the Range applies only to the representation the client has."""
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag and not etag.startswith(b"W/")
    if value.startswith(b"W/"):
        return False
    return value == last_modified
